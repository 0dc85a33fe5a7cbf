"""Lifecycle records: transitions, generation, locking, the status view."""

import copy
import json
import multiprocessing
import os

import pytest

import netlab_lab
import netlab_lifecycle as lc


@pytest.fixture
def lab(example_pillar, tmp_path):
    raw = copy.deepcopy(example_pillar)
    raw["netnode"]["storage"] = str(tmp_path / "srv")
    return netlab_lab.load(raw)


def test_unknown_node_is_registered_generation_zero(lab):
    assert lc.generation(lab, "nuc1") == 0
    assert lc.record(lab, "nuc1")["state"] == "registered"
    assert not os.path.exists(lc.db_path(lab.netnode.state_dir))


def test_full_path_and_generation(lab):
    lc.set_state(lab, "nuc1", "reimaging", now=100.0)
    lc.set_state(lab, "nuc1", "booting", result="root reset (snapshot)", generation=1,
                 now=101.0)
    lc.set_state(lab, "nuc1", "up", result="minion started after 48 s", now=150.0)
    lc.set_state(lab, "nuc1", "stacking", now=151.0)
    rec = lc.set_state(lab, "nuc1", "ready", result="stack.sh ok", now=900.0)
    assert rec["state"] == "ready" and rec["since"] == 900.0
    assert lc.generation(lab, "nuc1") == 1
    assert [h["state"] for h in rec["history"]] == [
        "reimaging", "booting", "up", "stacking", "ready"]
    with open(lc.db_path(lab.netnode.state_dir)) as fh:
        assert json.load(fh)["nodes"]["nuc1"]["generation"] == 1


@pytest.mark.parametrize("path,bad", [
    (["reimaging"], "up"),             # must boot first
    (["reimaging", "booting"], "ready"),
    ([], "stacking"),                  # registered -> stacking
])
def test_illegal_transitions_name_node(lab, path, bad):
    for st in path:
        lc.set_state(lab, "nuc2", st)
    with pytest.raises(lc.LifecycleError, match="node nuc2: cannot go from"):
        lc.set_state(lab, "nuc2", bad)


def test_failed_from_anywhere_needs_reason(lab):
    lc.set_state(lab, "nuc1", "reimaging")
    with pytest.raises(lc.LifecycleError, match="node nuc1: a failed state needs a reason"):
        lc.set_state(lab, "nuc1", "failed")
    rec = lc.set_state(lab, "nuc1", "failed", reason="no start event within 30 s")
    assert rec["reason"] == "no start event within 30 s"
    # reimage is the way out
    rec = lc.set_state(lab, "nuc1", "reimaging")
    assert rec["reason"] is None


def test_unknown_state_and_unknown_node(lab):
    with pytest.raises(lc.LifecycleError, match="'asleep' is not a lifecycle state"):
        lc.set_state(lab, "nuc1", "asleep")
    with pytest.raises(KeyError, match="nuc9 is not a node"):
        lc.set_state(lab, "nuc9", "booting")


def test_status_rows_and_table(lab):
    lc.set_state(lab, "nuc1", "reimaging", now=1000.0)
    lc.set_state(lab, "nuc1", "failed", reason="power on failed: BMC unreachable", now=1010.0)
    rows = lc.status(lab)
    assert [r["node"] for r in rows] == ["nuc1", "nuc2", "nuc3"]
    r1 = rows[0]
    assert (r1["role"], r1["ip"], r1["state"], r1["result"]) == (
        "controller", "192.168.42.11", "failed", "power on failed: BMC unreachable")
    assert rows[1]["state"] == "registered" and rows[1]["since"] is None
    text = lc.status_table(lab, now=1070.0)
    lines = text.splitlines()
    assert lines[0].split() == ["NODE", "ROLE", "IP", "STATE", "GEN", "BUILD", "SINCE",
                                "LAST", "RESULT"]
    assert "nuc1" in lines[1] and "failed" in lines[1] and "(60s ago)" in lines[1]
    assert "BMC unreachable" in lines[1]
    assert lines[2].split()[:4] == ["nuc2", "compute", "192.168.42.12", "registered"]


def test_corrupt_state_file_is_a_clear_error(lab):
    os.makedirs(lab.netnode.state_dir)
    with open(lc.db_path(lab.netnode.state_dir), "w") as fh:
        fh.write("{not json")
    with pytest.raises(lc.LifecycleError, match="lifecycle.json is not valid JSON"):
        lc.generation(lab, "nuc1")


def _bump(args):
    state_dir, n = args
    for _ in range(n):
        with lc.locked(state_dir) as data:
            rec = data["nodes"].setdefault("nuc1", {"generation": 0})
            rec["generation"] = rec.get("generation", 0) + 1


def test_lock_serialises_concurrent_writers(lab):
    """Four processes doing read-modify-write: no update is lost."""
    os.makedirs(lab.netnode.state_dir)
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_bump, [(lab.netnode.state_dir, 25)] * 4)
    assert lc.generation(lab, "nuc1") == 100


def test_state_file_is_private(lab):
    """Failure reasons may quote logs: the lifecycle file is readable by root only."""
    lc.set_state(lab, "nuc2", "reimaging")
    mode = os.stat(lc.db_path(lab.netnode.state_dir)).st_mode & 0o777
    assert mode == 0o600
