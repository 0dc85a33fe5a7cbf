"""
The netlab runner's locks, through Salt's own runner loader, with real processes.

- Concurrent enrolments of one node (each: a new key written into the root and
  pre-accepted on the master) always end with the accepted key equal to the key
  in the root (without the node lock, runs interleaved and the node could never
  enrol again).
- A reimage while another run holds the lab lock is refused before anything
  changes, naming the holder; a killed holder does not block it.
"""

import copy
import multiprocessing
import os
import signal

import pytest
import salt.config
import salt.loader

import netlab_lock
import netlab_roots_keys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CTX = multiprocessing.get_context("fork")


def _runners(base, wait=0.5):
    opts = salt.config.master_config(None)
    opts.update({
        "root_dir": str(base), "cachedir": str(base / "cache"),
        "pki_dir": str(base / "pki"), "sock_dir": str(base / "sock"),
        "extension_modules": str(base / "extmods"),
        "runner_dirs": [os.path.join(REPO, "_runners")],
        "utils_dirs": [os.path.join(REPO, "_utils")],
        "netlab_lock_wait": wait,
    })
    return salt.loader.runner(opts, utils=salt.loader.utils(opts)), opts


@pytest.fixture
def lab_raw(example_pillar, tmp_path):
    raw = copy.deepcopy(example_pillar)
    raw["netnode"]["storage"] = str(tmp_path / "srv")
    for node in raw["nodes"].values():
        node["power"] = {"driver": "manual"}
    root = tmp_path / "srv" / "roots" / "nuc2"
    (root / "etc" / "salt" / "pki" / "minion").mkdir(parents=True)
    (tmp_path / "srv" / "images" / "b1" / "rootfs" / "etc").mkdir(parents=True)
    os.symlink("b1", tmp_path / "srv" / "images" / "current")
    # the master's public key, which every root netlab writes pins
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "master.pub").write_text(netlab_roots_keys.gen_minion_keys()[1])
    return raw


def _enrol_many(base, raw, count, errors):
    run, _ = _runners(base, wait=60)
    for _ in range(count):
        ret = run["netlab.enrol"]("nuc2", pillar=raw)
        if "Error" in ret:
            errors.put(ret["Error"])


def test_concurrent_enrolments_keep_root_and_master_keys_equal(lab_raw, tmp_path):
    errors = CTX.Queue()
    procs = [CTX.Process(target=_enrol_many, args=(tmp_path, lab_raw, 4, errors))
             for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    assert errors.empty(), errors.get()
    in_root = (tmp_path / "srv/roots/nuc2/etc/salt/pki/minion/minion.pub").read_text()
    accepted = (tmp_path / "pki" / "minions" / "nuc2").read_text()
    assert in_root == accepted
    # and the root pins this master
    assert (tmp_path / "srv/roots/nuc2/etc/salt/pki/minion/minion_master.pub").read_text() \
        == (tmp_path / "pki" / "master.pub").read_text()


def _hold(state_dir, ready, release, name="lab"):
    with netlab_lock.hold(state_dir, name, "salt-run state.orchestrate netlab.deploy",
                          wait=0):
        ready.set()
        release.wait(60)


def test_reimage_refused_while_another_run_holds_the_lab(lab_raw, tmp_path):
    state_dir = str(tmp_path / "srv" / "state")
    ready, release = CTX.Event(), CTX.Event()
    holder = CTX.Process(target=_hold, args=(state_dir, ready, release))
    holder.start()
    try:
        assert ready.wait(20)
        run, _ = _runners(tmp_path, wait=0.5)
        ret = run["netlab.reimage"]("nuc2", timeout=5, pillar=lab_raw)
        assert ret["retcode"] == 1
        assert "lab lock is held by salt-run state.orchestrate netlab.deploy" in ret["Error"]
        assert "pid {}".format(holder.pid) in ret["Error"]
        # nothing changed: no root reset, no key accepted, no lifecycle record
        assert not (tmp_path / "pki" / "minions" / "nuc2").exists()
        assert not os.path.exists(os.path.join(state_dir, "lifecycle.json"))
    finally:
        release.set()
        holder.join(10)


def test_a_killed_holder_does_not_block_an_enrolment(lab_raw, tmp_path):
    state_dir = str(tmp_path / "srv" / "state")
    ready, release = CTX.Event(), CTX.Event()
    holder = CTX.Process(target=_hold, args=(state_dir, ready, release, "node-nuc2"))
    holder.start()
    assert ready.wait(20)
    run, _ = _runners(tmp_path, wait=0.3)
    busy = run["netlab.enrol"]("nuc2", pillar=lab_raw)
    assert "node nuc2 lock is held by" in busy["Error"]
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(10)
    ret = run["netlab.enrol"]("nuc2", pillar=lab_raw)
    assert ret == {"node": "nuc2", "root": str(tmp_path / "srv/roots/nuc2"),
                   "accepted": True}
