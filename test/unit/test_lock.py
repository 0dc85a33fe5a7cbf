"""
netlab_lock with real processes: one holder at a time, a second run waits a
bounded time then is refused naming the holder, a killed holder blocks nobody,
and the read-modify-write of devstack.json keeps every writer's outcome.
"""

import json
import multiprocessing
import os
import signal
import stat
import time

import pytest

import netlab_lock
import netlab_stack

CTX = multiprocessing.get_context("fork")


def _hold_then_signal(state_dir, name, command, ready, release):
    with netlab_lock.hold(state_dir, name, command, wait=0):
        ready.set()
        release.wait(30)


def _start_holder(state_dir, name="lab", command="salt-run netlab.reimage nuc2"):
    ready, release = CTX.Event(), CTX.Event()
    proc = CTX.Process(target=_hold_then_signal,
                       args=(str(state_dir), name, command, ready, release))
    proc.start()
    assert ready.wait(20), "the holder did not get the lock"
    return proc, release


def test_second_run_is_refused_naming_the_holder(tmp_path):
    proc, release = _start_holder(tmp_path)
    try:
        start = time.monotonic()
        with pytest.raises(netlab_lock.LockBusy) as exc:
            with netlab_lock.hold(str(tmp_path), "lab", "salt-run devstack.stack", wait=0.5):
                pass
        waited = time.monotonic() - start
        msg = str(exc.value)
        assert "salt-run netlab.reimage nuc2" in msg
        assert "pid {}".format(proc.pid) in msg
        assert "since 20" in msg and "UTC" in msg
        assert 0.4 <= waited < 10, waited
        assert exc.value.holder["pid"] == proc.pid
        assert netlab_lock.holder(str(tmp_path), "lab")["pid"] == proc.pid
    finally:
        release.set()
        proc.join(10)
    assert netlab_lock.holder(str(tmp_path), "lab") == {}


def test_a_waiting_run_gets_the_lock_when_the_holder_ends(tmp_path):
    proc, release = _start_holder(tmp_path)
    try:
        releaser = CTX.Process(target=lambda: (time.sleep(0.5), release.set()))
        releaser.start()
        with netlab_lock.hold(str(tmp_path), "lab", "second", wait=20) as me:
            assert me["pid"] == os.getpid()
        releaser.join(10)
    finally:
        release.set()
        proc.join(10)


def test_a_killed_holder_does_not_block(tmp_path):
    proc, _release = _start_holder(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    start = time.monotonic()
    with netlab_lock.hold(str(tmp_path), "lab", "after the crash", wait=0):
        pass
    assert time.monotonic() - start < 1


def test_node_locks_are_separate_from_each_other(tmp_path):
    proc, release = _start_holder(tmp_path, name="node-nuc2")
    try:
        with netlab_lock.hold(str(tmp_path), "node-nuc3", "other node", wait=0):
            pass
        with pytest.raises(netlab_lock.LockBusy, match="node nuc2 lock is held by"):
            with netlab_lock.hold_lab(str(tmp_path), "reimage all", ["nuc3", "nuc2"],
                                      wait=0.2):
                pass
        # a refused run let go of what it had taken (the lab lock)
        with netlab_lock.hold(str(tmp_path), "lab", "next", wait=0):
            pass
    finally:
        release.set()
        proc.join(10)


def test_reentrant_within_one_process(tmp_path):
    with netlab_lock.hold(str(tmp_path), "lab", "devstack.bring_up", wait=0):
        with netlab_lock.hold(str(tmp_path), "lab", "netlab.reimage", wait=0) as inner:
            assert inner["command"] == "devstack.bring_up"
    assert netlab_lock.holder(str(tmp_path), "lab") == {}


def test_lock_files_are_private(tmp_path):
    with netlab_lock.hold(str(tmp_path), "lab", "x", wait=0):
        pass
    path = netlab_lock.lock_path(str(tmp_path), "lab")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700


def _save_many(state_dir, prefix, count):
    for i in range(count):
        netlab_stack.save_results(state_dir, [{"node": "{}{}".format(prefix, i),
                                               "result": True}])


def test_concurrent_result_writers_lose_nothing(tmp_path):
    procs = [CTX.Process(target=_save_many, args=(str(tmp_path), p, 40)) for p in "abc"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    data = json.loads((tmp_path / netlab_stack.RESULTS_NAME).read_text())
    assert len(data) == 120
    assert stat.S_IMODE((tmp_path / netlab_stack.RESULTS_NAME).stat().st_mode) == 0o600
