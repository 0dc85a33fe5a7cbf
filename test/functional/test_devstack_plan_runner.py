"""
``salt-run devstack.plan`` (docs/operations.rst, the runner table): which nodes a
``devstack.stack`` of a wave would run ``stack.sh`` on, from the lab in the
master's own pillar (real pillar_roots) and the lifecycle on the networking
node's storage, without changing anything: a ``ready`` node is left out unless
``force=True``. Once through Salt's own ``salt-run`` command line (what the user
sees), the other cases through the runner loader; no master runs.
"""

import copy
import os
import subprocess
import sys
import time

import pytest

import netlab_lab
import netlab_lifecycle
from lib.saltrunner import lab_in_pillar_roots, master_conf

SALT_RUN = os.path.join(os.path.dirname(sys.executable), "salt-run")


@pytest.fixture
def planned(example_pillar, tmp_path):
    """The runners and the lab's state directory: nuc2 ``ready``, nuc3 ``up``
    (nuc1 has no record: ``registered``)."""
    raw = copy.deepcopy(example_pillar)
    raw["netnode"]["storage"] = str(tmp_path / "srv")
    lab = netlab_lab.load(raw)
    for state in ("up", "stacking", "ready"):
        netlab_lifecycle.set_state(lab, "nuc2", state, result="stacked")
    netlab_lifecycle.set_state(lab, "nuc3", "up", result="minion started")
    return lab_in_pillar_roots(tmp_path / "master", raw), lab.netnode.state_dir


def _snapshot(state_dir):
    return {name: open(os.path.join(state_dir, name), "rb").read()
            for name in sorted(os.listdir(state_dir))}


def test_plan_prints_the_nodes_a_stack_would_run_on_and_changes_nothing(planned,
                                                                         tmp_path):
    _, state_dir = planned
    before = _snapshot(state_dir)
    start = time.monotonic()
    proc = subprocess.run([SALT_RUN, "-c", str(master_conf(tmp_path / "master").parent),
                           "devstack.plan", "role=compute"],
                          capture_output=True, text=True, timeout=120, check=False)
    print("salt-run devstack.plan: {:.1f} s".format(time.monotonic() - start))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["ready:", "-", "nuc2", "stack:", "-", "nuc3"]
    assert _snapshot(state_dir) == before  # no lifecycle change, no lock file


def test_plan_for_all_forced_and_named_nodes(planned):
    runners, state_dir = planned
    before = _snapshot(state_dir)
    plan = runners["devstack.plan"]
    # the whole lab, controller first; a controller without a record is stacked
    assert plan() == {"stack": ["nuc1", "nuc3"], "ready": ["nuc2"]}
    assert plan(role="controller") == {"stack": ["nuc1"], "ready": []}
    assert plan(role="compute", force=True) == {"stack": ["nuc2", "nuc3"], "ready": []}
    assert plan(nodes="nuc3,nuc2") == {"stack": ["nuc3"], "ready": ["nuc2"]}
    assert plan(nodes="nuc9") == {
        "Error": "not a node of this lab: nuc9 (known: nuc1, nuc2, nuc3)", "retcode": 1}
    assert _snapshot(state_dir) == before
