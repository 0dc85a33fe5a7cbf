"""
The netlab runner's locks, through Salt's own runner loader, with real processes.

- Concurrent enrolments of one node (each: a new key written into the root and
  pre-accepted on the master) always end with the accepted key equal to the key
  in the root (without the node lock, runs interleaved and the node could never
  enrol again).
- A reimage while another run holds the lab lock is refused before anything
  changes, naming the holder; a killed holder does not block it.
- A reimage runs master option ``netlab_exports_refresh`` (argv lists) once the
  roots are reset, then applies ``netlab.netnode.nfs`` on the networking node's
  minion; ``netlab_exports_apply: false`` applies nothing. No master runs here:
  its local client and event bus are replaced by a recorder.
"""

import copy
import multiprocessing
import os
import signal
import time

import pytest
import salt.client
import salt.config
import salt.loader

import netlab_lock
import netlab_master_ops
import netlab_roots_keys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CTX = multiprocessing.get_context("fork")


def _runners(base, wait=0.5, **more):
    opts = salt.config.master_config(None)
    opts.update({
        "root_dir": str(base), "cachedir": str(base / "cache"),
        "pki_dir": str(base / "pki"), "sock_dir": str(base / "sock"),
        "extension_modules": str(base / "extmods"),
        "runner_dirs": [os.path.join(REPO, "_runners")],
        "utils_dirs": [os.path.join(REPO, "_utils")],
        "netlab_lock_wait": wait,
    }, **more)
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



class _Recorder:
    """The master's local client and event bus as far as a reimage uses them (no
    master runs here): each call and event is recorded with what the refresh
    commands had logged by then; no minion ever starts."""

    def __init__(self, log):
        self.log, self.calls, self.events = log, [], []

    def cmd(self, tgt, fun, arg=(), **kw):
        self.calls.append((tgt, fun, list(arg), self.log.read_text()))
        return {tgt: {}}

    def fire_event(self, data, tag):
        self.events.append((tag, self.log.read_text()))
        return True

    def get_event(self, wait=5, **kw):
        time.sleep(min(wait, 0.05))   # an idle bus: nothing arrives
        return None

    def subscribe(self, *a):
        pass

    def destroy(self):
        pass


@pytest.mark.parametrize("apply", [True, False])
def test_reimage_runs_the_exports_refresh_commands_then_the_nfs_state(
        lab_raw, tmp_path, monkeypatch, apply):
    t0 = time.monotonic()
    lab_raw["netnode"]["nfs"]["server"] = "ganesha"   # no exportfs on this host
    log = tmp_path / "refresh.log"
    log.write_text("")
    root = tmp_path / "srv" / "roots" / "nuc2"
    # argv as given (one argument with a space); the root it sees is the new one
    record = 'echo "$1|$2|$(stat -c %i {})" >> {}'.format(root, log)
    rec = _Recorder(log)
    monkeypatch.setattr(salt.client, "get_local_client", lambda *a, **kw: rec)
    monkeypatch.setattr(netlab_master_ops, "event_bus", lambda *a, **kw: rec)
    opts = {"netlab_exports_refresh": [["sh", "-c", record, "sh", "--all", "a b"]]}
    if not apply:
        opts["netlab_exports_apply"] = False
    run, _ = _runners(tmp_path, **opts)
    ret = run["netlab.reimage"]("nuc2", timeout=0.2, pillar=lab_raw)
    # manual power, no minion: the node fails waiting for its start, after the
    # exports step (a failed refresh would name it)
    reason = ret["nodes"]["nuc2"]["reason"]
    assert "no salt/minion/nuc2/start event within 0 s" in reason, reason
    line = "--all|a b|{}\n".format(os.stat(root).st_ino)
    assert log.read_text() == line
    # once, after the reset, before the node is powered on
    assert [e for e in rec.events if e[0].endswith(("/reimaging", "/booting"))] == [
        ("netlab/node/nuc2/reimaging", ""), ("netlab/node/nuc2/booting", line)]
    if apply:
        assert rec.calls == [("netnode", "state.sls", ["netlab.netnode.nfs"], line)]
    else:
        assert rec.calls == []
    print("\nreimage with netlab_exports_refresh, exports_apply={}: {:.1f} s".format(
        apply, time.monotonic() - t0))
