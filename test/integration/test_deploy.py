"""
``salt-run state.orchestrate netlab.deploy`` with real daemons.

The lead's harness (``netlab_env``): master ``netnode`` and minions ``netnode``,
``nuc1`` (controller), ``nuc2``, ``nuc3`` (computes) on this machine, each lab
node with its own DevStack ``dest``. DevStack is the stand-in repository of
test/lib/fake_devstack.py: its ``stack.sh`` parses the node's local.conf the way
DevStack does, sources localrc in bash and records start/end times, so the
order and overlap of the runs can be asserted from the records. The networking
node's SLS and the image build are skipped (``netlab_deploy: {netnode: false,
image: false}``); the minions answer, so no node is powered or reimaged.
"""

import copy
import json
import os
import pathlib
import subprocess

import pytest
import yaml

import netlab_lifecycle
import netlab_run
from lib import fake_devstack
from lib.vm import VENV_BIN

pytestmark = pytest.mark.slow

COMPUTES = ("nuc2", "nuc3")
SLEEP = 3.0  # seconds each fake stack.sh takes: long enough to see overlap


def _deploy(env, **options):
    opts = dict({"netnode": False, "image": False}, **options)
    return env.runner("state.orchestrate", "netlab.deploy",
                      "pillar=" + json.dumps({"netlab_deploy": opts}))


def _records(env, node_id, event="stack"):
    return fake_devstack.records(env.node_dest(node_id), event)


def _states(env):
    state_dir = pathlib.Path(env.lab_pillar["netnode"]["storage"]) / "state"
    return {n: r["state"] for n, r in netlab_lifecycle.read(str(state_dir))["nodes"].items()}


def _state_dir(env):
    return pathlib.Path(env.lab_pillar["netnode"]["storage"]) / "state"


def _summary(env):
    ret = env.runner("devstack.summary", "fail=False")
    assert ret.returncode == 0, ret
    return ret.data


@pytest.fixture(scope="module")
def lab(netlab_env):
    """The harness lab with DevStack = the stand-in; the deploy's side effects undone."""
    env = netlab_env
    fake = fake_devstack.create(env.base / "fake-devstack", sleep=SLEEP,
                                owner=env.stack_user)
    saved = copy.deepcopy(env.lab_pillar)
    lab = copy.deepcopy(saved)
    lab["devstack"]["repo"] = fake.url
    env.write_lab(lab)
    try:
        yield fake
    finally:
        env.write_lab(saved)
        sudoers = pathlib.Path("/etc/sudoers.d") / ("50_netlab_" + env.stack_user)
        if sudoers.exists():
            sudoers.unlink()


@pytest.fixture(scope="module")
def first_deploy(netlab_env, lab):
    with netlab_env.watch() as watcher:
        ret = _deploy(netlab_env)
        assert ret.returncode == 0, ret.stdout + ret.stderr
        events = watcher.events(settle_tag="netlab/deploy/summary")
    return {"ret": ret, "events": events}


def _node_tags(events, node_id):
    prefix = "netlab/node/{}/".format(node_id)
    return [t[len(prefix):] for t, _ in events if t.startswith(prefix)]


def test_deploy_fires_its_events_in_order_per_node_and_per_wave(netlab_env, first_deploy):
    events = first_deploy["events"]
    tags = [t for t, _ in events]
    print("\n".join(tags))
    assert tags[0] == "netlab/deploy/started" and tags[-1] == "netlab/deploy/summary", tags
    assert len(tags) == len(set(tags)), "an event fired twice: {}".format(tags)
    per_node = ["up", "prepared", "stacking", "stack/started", "stack/finished", "ready"]
    assert _node_tags(events, "nuc1") == per_node + ["discover/started",
                                                     "discover/finished"], tags
    for node_id in COMPUTES:
        assert _node_tags(events, node_id) == per_node, (node_id, tags)
    waves = [t for t in tags if t.startswith(("netlab/stack/", "netlab/prepare/"))]
    assert waves == ["netlab/prepare/started",
                     "netlab/stack/controller/started", "netlab/stack/controller/finished",
                     "netlab/stack/compute/started", "netlab/stack/compute/finished",
                     "netlab/stack/discover/finished"], waves
    pos = {t: i for i, t in enumerate(tags)}
    # every node is up and prepared before any stack.sh; the controller's stack.sh
    # runs inside its wave, which ends before the computes' wave starts
    last_prepared = max(pos["netlab/node/{}/prepared".format(n)] for n in ("nuc1",) + COMPUTES)
    assert last_prepared < pos["netlab/node/nuc1/stacking"]
    assert pos["netlab/stack/controller/started"] < pos["netlab/node/nuc1/stack/started"] \
        < pos["netlab/node/nuc1/stack/finished"] < pos["netlab/node/nuc1/ready"] \
        < pos["netlab/stack/controller/finished"] < pos["netlab/stack/compute/started"]
    for node_id in COMPUTES:
        assert pos["netlab/stack/controller/finished"] < pos[
            "netlab/node/{}/stack/started".format(node_id)] < pos[
            "netlab/node/{}/ready".format(node_id)] < pos["netlab/stack/compute/finished"]
    # both computes' stack.sh started before either finished (the parallel wave)
    assert max(pos["netlab/node/{}/stack/started".format(n)] for n in COMPUTES) < min(
        pos["netlab/node/{}/stack/finished".format(n)] for n in COMPUTES)
    assert pos["netlab/stack/compute/finished"] < pos["netlab/node/nuc1/discover/started"] \
        < pos["netlab/stack/discover/finished"] < pos["netlab/deploy/summary"]
    summary = dict(events)["netlab/deploy/summary"]
    assert summary["ready"] == ["nuc1", "nuc2", "nuc3"] and summary["failed"] == {}
    # nothing was lost on the way: no warning in the run's summary
    assert "warning:" not in _summary(netlab_env)["text"]


def test_every_node_is_stacked_and_ready(netlab_env, first_deploy):
    for node_id in ("nuc1",) + COMPUTES:
        recs = _records(netlab_env, node_id)
        assert len(recs) == 1, (node_id, recs)
        assert recs[0]["rc"] == 0
        assert recs[0]["user"] == netlab_env.stack_user
    states = _states(netlab_env)
    assert {n: states[n] for n in ("nuc1",) + COMPUTES} == {
        "nuc1": "ready", "nuc2": "ready", "nuc3": "ready"}
    summary = _summary(netlab_env)
    assert summary["ready"] == ["nuc1", "nuc2", "nuc3"]
    assert summary["failed"] == {}


def test_controller_finishes_before_any_compute_starts(netlab_env, first_deploy):
    ctl = _records(netlab_env, "nuc1")[0]
    for node_id in COMPUTES:
        assert ctl["end"] < _records(netlab_env, node_id)[0]["start"], node_id


def test_computes_run_at_the_same_time(netlab_env, first_deploy):
    runs = [_records(netlab_env, n)[0] for n in COMPUTES]
    # every compute started before any of them finished: the runs overlap
    assert max(r["start"] for r in runs) < min(r["end"] for r in runs)


def test_discovery_runs_on_the_controller_after_the_last_compute(netlab_env, first_deploy):
    discover = _records(netlab_env, "nuc1", "discover")
    assert len(discover) == 1
    last_end = max(_records(netlab_env, n)[0]["end"] for n in COMPUTES)
    assert discover[0]["start"] > last_end
    for node_id in COMPUTES:
        assert _records(netlab_env, node_id, "discover") == []


def test_each_node_got_its_own_local_conf(netlab_env, first_deploy):
    lab = netlab_env.lab_pillar
    digests = set()
    for node_id in ("nuc1",) + COMPUTES:
        rec = _records(netlab_env, node_id)[0]
        assert rec["host_ip"] == lab["nodes"][node_id]["ip"]
        assert rec["localrc"]["HOST_IP"] == lab["nodes"][node_id]["ip"]
        assert rec["sections"][0] == "local|localrc"
        if node_id != "nuc1":
            assert rec["service_host"] == lab["nodes"]["nuc1"]["ip"]
        conf = netlab_env.node_dest(node_id) / "devstack" / "local.conf"
        text = conf.read_text()
        assert text == netlab_env.call(node_id, "devstack.local_conf")
        digests.add(rec["local_conf_sha256"])
    assert len(digests) == 3


def test_stack_sh_log_stays_on_the_node(netlab_env, first_deploy):
    for node_id in ("nuc1",) + COMPUTES:
        log = netlab_env.node_dest(node_id) / "logs" / "netlab-stack.log"
        assert "fake stack.sh: completed" in log.read_text()


def test_a_rerun_stacks_nothing_that_is_ready_but_discovers_again(netlab_env, first_deploy):
    ret = _deploy(netlab_env)
    assert ret.returncode == 0, ret.stdout
    for node_id in ("nuc1",) + COMPUTES:
        assert len(_records(netlab_env, node_id)) == 1, node_id
    assert len(_records(netlab_env, "nuc1", "discover")) == 2


@pytest.fixture(scope="module")
def compute_failure(netlab_env, first_deploy):
    """One deploy (force) in which stack.sh fails on nuc3, then the rerun with it
    working again: what both showed, kept for the tests of the failure itself and
    of the secrets its log printed (one failing deploy serves both: each deploy
    costs the integration tier about half a minute of CPU). Leaves every node
    ready."""
    env = netlab_env
    marker = env.node_dest("nuc3") / "fake-devstack" / "fail"
    marker.write_text("1")
    seen = {}
    try:
        seen["before"] = {n: len(_records(env, n)) for n in ("nuc1",) + COMPUTES}
        with env.watch() as watcher:
            seen["ret"] = _deploy(env, force=True)
            seen["events"] = watcher.events(settle_tag="netlab/deploy/summary")
        seen["after"] = {n: _records(env, n) for n in ("nuc1",) + COMPUTES}
        seen["states"] = _states(env)
        seen["summary"] = _summary(env)
        # what the node keeps and what the master keeps, before the rerun rewrites them
        log = pathlib.Path(seen["after"]["nuc3"][-1]["dest"]) / "logs" / "netlab-stack.log"
        seen["node_log"] = log.read_text(encoding="utf-8")
        results = _state_dir(env) / "devstack.json"
        seen["results_mode"] = results.stat().st_mode & 0o777
        seen["results"] = results.read_text(encoding="utf-8")
        seen["run"] = (_state_dir(env) / "run.json").read_text(encoding="utf-8")
    finally:
        marker.unlink()
    seen["discoveries"] = len(_records(env, "nuc1", "discover"))
    seen["rerun"] = _deploy(env)
    seen["rerun_records"] = {n: _records(env, n) for n in ("nuc1",) + COMPUTES}
    seen["rerun_discoveries"] = len(_records(env, "nuc1", "discover"))
    seen["rerun_states"] = _states(env)
    return seen


def test_a_failing_compute_stops_no_other_and_a_rerun_stacks_only_it(compute_failure):
    seen = compute_failure
    ret, events = seen["ret"], seen["events"]
    assert ret.returncode != 0, "a deploy with a failed node must fail"
    tags = [t for t, _ in events]
    # nuc3's failure is an event of its own and of the run; nuc2 still ends ready
    assert _node_tags(events, "nuc3")[-4:] == ["stacking", "stack/started",
                                               "stack/failed", "failed"], tags
    assert _node_tags(events, "nuc2")[-1] == "ready", tags
    run_failed = [d for t, d in events if t == "netlab/run/failed"]
    assert [(d["step"], d["node"]) for d in run_failed] == [("stack.sh", "nuc3")], run_failed
    assert tags.index("netlab/node/nuc3/failed") < tags.index(
        "netlab/stack/compute/finished") < tags.index("netlab/deploy/summary")
    assert dict(events)["netlab/deploy/summary"]["failed"] == ["nuc3"] or \
        list(dict(events)["netlab/deploy/summary"]["failed"]) == ["nuc3"]
    before, after = seen["before"], seen["after"]
    # all three ran again (force); nuc2 finished although nuc3 failed
    assert {n: len(r) for n, r in after.items()} == {n: c + 1 for n, c in before.items()}
    assert after["nuc2"][-1]["rc"] == 0
    assert after["nuc3"][-1]["rc"] == 1
    assert seen["states"]["nuc3"] == "failed" and seen["states"]["nuc2"] == "ready"
    summary = seen["summary"]
    assert list(summary["failed"]) == ["nuc3"]
    assert "fake failure requested" in summary["failed"]["nuc3"]["log_tail"]
    assert "stack.sh failed" in summary["failed"]["nuc3"]["reason"]
    assert "FAILED  nuc3" in summary["text"]
    assert "fake failure requested" in ret.stdout, "the deploy output names the failure"
    # the rerun, with stack.sh working again: nuc3 only, then discovery
    assert seen["rerun"].returncode == 0, seen["rerun"].stdout
    again = seen["rerun_records"]
    assert len(again["nuc1"]) == len(after["nuc1"])
    assert len(again["nuc2"]) == len(after["nuc2"])
    assert len(again["nuc3"]) == len(after["nuc3"]) + 1
    assert again["nuc3"][-1]["rc"] == 0
    assert seen["rerun_discoveries"] == seen["discoveries"] + 1
    assert seen["rerun_states"]["nuc3"] == "ready"


def test_secrets_a_failing_stack_log_shows_are_masked_in_events_results_and_summary(
        netlab_env, compute_failure):
    """docs/lifecycle.rst, trust model: stack.sh log tails are masked again on the
    master before they reach events, devstack.json (mode 0600) and summaries. The
    stand-in's failing stack.sh prints the lab's ADMIN_PASSWORD the way DevStack's
    xtrace does (a bare argument, ``OS_PASSWORD=...``, URL credentials)."""
    seen = compute_failure
    secret = netlab_env.lab_pillar["devstack"]["localrc"]["ADMIN_PASSWORD"]
    assert len(secret) >= 4 and "$" not in secret
    ret, events = seen["ret"], seen["events"]
    assert ret.returncode != 0, ret.stdout
    # the secret really was in the log the node keeps (the test would prove
    # nothing otherwise), and nowhere netlab shows or keeps it
    assert "--bootstrap-password " + secret in seen["node_log"]
    failed = dict(events)
    node_tail = failed["netlab/node/nuc3/stack/failed"]["data"]["log_tail"]
    assert "--bootstrap-password ******" in node_tail, node_tail
    assert "OS_PASSWORD=******" in node_tail and "root:******@" in node_tail
    for tag in ("netlab/node/nuc3/failed", "netlab/run/failed"):
        assert tag in failed, [t for t, _ in events]
    assert secret not in json.dumps(events)
    assert secret not in ret.stdout + ret.stderr
    summary = seen["summary"]
    assert "--bootstrap-password ******" in summary["failed"]["nuc3"]["log_tail"]
    assert "--bootstrap-password ******" in summary["first_failure"]["log_tail"]
    assert secret not in json.dumps(summary)
    assert oct(seen["results_mode"]) == "0o600"
    assert "--bootstrap-password ******" in seen["results"] and secret not in seen["results"]
    assert secret not in seen["run"]


def test_a_failing_controller_stacks_no_compute_and_is_named_first(netlab_env, first_deploy):
    """stack.sh fails on the controller: no compute is stacked (they need its
    services), no host discovery runs, the summary names the controller's failure
    as the first one, with its log, and the deploy fails."""
    env = netlab_env
    marker = env.node_dest("nuc1") / "fake-devstack" / "fail"
    marker.write_text("1")
    try:
        counts = {n: len(_records(env, n)) for n in ("nuc1",) + COMPUTES}
        discoveries = len(_records(env, "nuc1", "discover"))
        ret = _deploy(env, force=True)
        assert ret.returncode != 0
        assert len(_records(env, "nuc1")) == counts["nuc1"] + 1
        assert {n: len(_records(env, n)) for n in COMPUTES} == {n: counts[n] for n in COMPUTES}
        assert len(_records(env, "nuc1", "discover")) == discoveries
        summary = _summary(env)
        assert summary["first_failure"]["node"] == "nuc1"
        assert summary["first_failure"]["step"] == "stack.sh"
        assert "first failure: stack.sh failed on node nuc1: stack.sh failed" in summary["text"]
        assert "fake failure requested" in summary["first_failure"]["log_tail"]
        assert "first failure: stack.sh failed on node nuc1" in ret.stdout
        assert "the controller nuc1 failed earlier in this run" in ret.stdout
    finally:
        marker.unlink()
    ret = _deploy(env)
    assert ret.returncode == 0, ret.stdout
    assert set(_states(env).values()) == {"ready"}


def test_a_node_whose_states_fail_is_left_out_while_the_others_go_on(netlab_env, first_deploy):
    """netlab.node fails on one compute (its DevStack dest cannot be made): that node
    is marked failed and not stacked; the controller and the other compute are; the
    summary names the failing state; the deploy fails."""
    env = netlab_env
    saved = copy.deepcopy(env.lab_pillar)
    blocker = env.base / "nuc3-blocked"
    blocker.write_text("a file where a directory is needed\n")
    lab = copy.deepcopy(saved)
    lab["nodes"]["nuc3"]["devstack"]["dest"] = str(blocker / "stack")
    env.write_lab(lab)
    try:
        counts = {n: len(fake_devstack.records(pathlib.Path(saved["nodes"][n]["devstack"]
                                                             ["dest"]), "stack"))
                  for n in ("nuc1",) + COMPUTES}
        ret = _deploy(env, force=True)
        assert ret.returncode != 0
        after = {n: len(fake_devstack.records(pathlib.Path(saved["nodes"][n]["devstack"]
                                                            ["dest"]), "stack"))
                 for n in ("nuc1",) + COMPUTES}
        assert after == {"nuc1": counts["nuc1"] + 1, "nuc2": counts["nuc2"] + 1,
                         "nuc3": counts["nuc3"]}
        assert _states(env)["nuc3"] == "failed"
        summary = _summary(env)
        first = summary["first_failure"]
        assert first["node"] == "nuc3" and first["step"] == "node states"
        assert first["cause"].startswith("netlab.node: state ")
        assert "left out (failed earlier): nuc3" in ret.stdout
    finally:
        env.write_lab(saved)
        blocker.unlink()
    ret = _deploy(env)
    assert ret.returncode == 0, ret.stdout
    assert _states(env)["nuc3"] == "ready"


def test_adding_a_node_to_pillar_stacks_only_that_node(netlab_env, first_deploy):
    env = netlab_env
    counts = {n: len(_records(env, n)) for n in ("nuc1",) + COMPUTES}
    discoveries = len(_records(env, "nuc1", "discover"))

    def add_nuc4(lab):
        lab["nodes"]["nuc4"] = {
            "mac": "94:c6:91:aa:00:04", "ip": "192.168.42.14", "role": "compute",
            "power": {"driver": "manual"},
            "devstack": {"dest": str(env.base / "nuc4" / "opt" / "stack")},
        }

    saved = copy.deepcopy(env.lab_pillar)
    with env.lab_changed(add_nuc4):
        env.add_minion("nuc4")
        try:
            ret = _deploy(env)
            assert ret.returncode == 0, ret.stdout
            new = _records(env, "nuc4")
            assert len(new) == 1 and new[0]["rc"] == 0
            assert new[0]["host_ip"] == "192.168.42.14"
            for node_id in ("nuc1",) + COMPUTES:
                assert len(_records(env, node_id)) == counts[node_id], node_id
            discover = _records(env, "nuc1", "discover")
            assert len(discover) == discoveries + 1
            assert discover[-1]["start"] > new[0]["end"]
            assert _states(env)["nuc4"] == "ready"
            # removed from pillar again: the next deploy deletes its minion key
            assert "nuc4" in _accepted_keys(env)
            env.write_lab(saved)
            # the machine is gone too (a running minion would just ask again, and
            # the test master accepts keys automatically)
            env.minions["nuc4"].terminate()
            ret = _deploy(env)
            assert ret.returncode == 0, ret.stdout
            assert "nuc4" not in _accepted_keys(env)
            assert len(fake_devstack.records(env.base / "nuc4" / "opt" / "stack")) == 1
        finally:
            env.minions.pop("nuc4").terminate()
            env.master.salt_key_cli().run("-y", "-d", "nuc4")


def _accepted_keys(env):
    ret = env.master.salt_key_cli().run("-L")
    assert ret.returncode == 0, ret
    return ret.data["minions"]


def test_restack_computes_only_leaves_the_controller_alone(netlab_env, first_deploy):
    env = netlab_env
    counts = {n: len(_records(env, n)) for n in ("nuc1",) + COMPUTES}
    ret = env.runner("state.orchestrate", "netlab.restack",
                     "pillar=" + json.dumps({"netlab_restack": {"computes_only": True}}))
    assert ret.returncode == 0, ret.stdout
    assert len(_records(env, "nuc1")) == counts["nuc1"]
    assert _records(env, "nuc1", "unstack") == []
    runs = []
    for node_id in COMPUTES:
        unstack = _records(env, node_id, "unstack")
        stack = _records(env, node_id)
        assert len(stack) == counts[node_id] + 1
        assert unstack and unstack[-1]["end"] <= stack[-1]["start"]
        runs.append(stack[-1])
    assert max(r["start"] for r in runs) < min(r["end"] for r in runs)


def test_changing_the_branch_in_pillar_moves_every_checkout_on_restack(netlab_env, lab):
    env = netlab_env
    head = lab.add_branch("stable/2025.1", version="stable-2025.1")

    def switch(raw):
        raw["devstack"]["branch"] = "stable/2025.1"

    with env.lab_changed(switch):
        ret = env.runner("state.orchestrate", "netlab.restack")
        assert ret.returncode == 0, ret.stdout
        for node_id in ("nuc1",) + COMPUTES:
            rec = _records(env, node_id)[-1]
            assert rec["version"] == "stable-2025.1", node_id
            assert rec["commit"] == head
    # pillar is back on master: the next deploy's node states move every checkout
    # back (a deploy moves checkouts; only a restack runs stack.sh again), so no
    # restack is spent here on putting the records back


def test_unstack_takes_nodes_back_to_up(netlab_env, first_deploy):
    env = netlab_env
    ret = env.runner("state.orchestrate", "netlab.unstack")
    assert ret.returncode == 0, ret.stdout
    state_dir = pathlib.Path(env.lab_pillar["netnode"]["storage"]) / "state"
    assert netlab_run.read(str(state_dir))["kind"] == "unstack"   # a run of its own
    states = _states(env)
    for node_id in ("nuc1",) + COMPUTES:
        assert states[node_id] == "up", node_id
        assert _records(env, node_id, "unstack")
    # and a deploy stacks them again
    ret = _deploy(env)
    assert ret.returncode == 0, ret.stdout
    assert all(_states(env)[n] == "ready" for n in ("nuc1",) + COMPUTES)


def test_an_invalid_pillar_stops_the_deploy_with_the_report_before_any_change(
        netlab_env, first_deploy):
    env = netlab_env
    counts = {n: len(_records(env, n)) for n in ("nuc1",) + COMPUTES}
    discoveries = len(_records(env, "nuc1", "discover"))

    def break_it(lab):
        lab["nodes"]["nuc3"]["ip"] = "192.168.42.300"
        lab["nodes"]["nuc2"]["role"] = "storage"

    with env.lab_changed(break_it):
        ret = _deploy(env, force=True)
    assert ret.returncode != 0
    assert "netlab:nodes:nuc3:ip: 192.168.42.300 is not an IPv4 address" in ret.stdout
    assert "netlab:nodes:nuc2:role: 'storage' is not a role" in ret.stdout
    assert {n: len(_records(env, n)) for n in counts} == counts
    assert len(_records(env, "nuc1", "discover")) == discoveries


def test_restack_named_nodes_restacks_only_those(netlab_env, first_deploy):
    """``netlab_restack: {nodes: [nuc2]}``: unstack.sh then stack.sh on nuc2 only."""
    env = netlab_env
    counts = {n: len(_records(env, n)) for n in ("nuc1",) + COMPUTES}
    unstacks = {n: len(_records(env, n, "unstack")) for n in ("nuc1",) + COMPUTES}
    ret = env.runner("state.orchestrate", "netlab.restack",
                     "pillar=" + json.dumps({"netlab_restack": {"nodes": ["nuc2"]}}))
    assert ret.returncode == 0, ret.stdout
    after = {n: len(_records(env, n)) for n in counts}
    assert after == dict(counts, nuc2=counts["nuc2"] + 1), after
    assert {n: len(_records(env, n, "unstack")) for n in unstacks} == dict(
        unstacks, nuc2=unstacks["nuc2"] + 1)
    unstack, stack = _records(env, "nuc2", "unstack")[-1], _records(env, "nuc2")[-1]
    assert unstack["end"] <= stack["start"] and stack["rc"] == 0  # one node's own clock
    assert all(_states(env)[n] == "ready" for n in ("nuc1",) + COMPUTES)


def test_a_failing_unstack_leaves_that_node_out_of_the_restack(netlab_env, first_deploy):
    """unstack.sh fails on nuc2 (a service does not stop): the restack does not
    move nuc2's checkout nor run stack.sh over it; the other compute is restacked;
    the summary names nuc2's unstack.sh first, with its log; the run fails. The
    next restack, with unstack.sh working again, restacks nuc2."""
    env = netlab_env
    marker = env.node_dest("nuc2") / "fake-devstack" / "unstack-fail"
    marker.write_text("1")
    counts = {n: len(_records(env, n)) for n in COMPUTES}
    try:
        ret = env.runner("state.orchestrate", "netlab.restack",
                         "pillar=" + json.dumps({"netlab_restack": {"computes_only": True}}))
        assert ret.returncode != 0, ret.stdout
        assert _records(env, "nuc2", "unstack")[-1]["rc"] == 1
        assert len(_records(env, "nuc2")) == counts["nuc2"]   # no stack.sh over it
        others = [n for n in COMPUTES if n != "nuc2"]
        assert {n: len(_records(env, n)) for n in others} == {
            n: counts[n] + 1 for n in others}
        summary = _summary(env)
        first = summary["first_failure"]
        assert first["node"] == "nuc2" and first["step"] == "unstack.sh", summary
        assert "fake unstack failure requested" in first["log_tail"]
        assert "first failure: unstack.sh failed on node nuc2" in ret.stdout
    finally:
        marker.unlink()
    ret = env.runner("state.orchestrate", "netlab.restack",
                     "pillar=" + json.dumps({"netlab_restack": {"nodes": ["nuc2"]}}))
    assert ret.returncode == 0, ret.stdout
    assert len(_records(env, "nuc2")) == counts["nuc2"] + 1
    assert set(_states(env).values()) == {"ready"}


def _add_nuc5(env):
    """A pillar change adding nuc5: a compute with manual power and no minion (a
    machine that is off)."""
    def change(lab):
        lab["nodes"]["nuc5"] = {
            "mac": "94:c6:91:aa:00:05", "ip": "192.168.42.15", "role": "compute",
            "power": {"driver": "manual"},
            "devstack": {"dest": str(env.base / "nuc5" / "opt" / "stack")},
        }
    return change


def test_boot_false_powers_nothing_and_names_a_node_that_does_not_answer(
        netlab_env, first_deploy):
    """``netlab_deploy: {boot: false}`` with a node in pillar whose machine is off
    (nuc5: no minion, manual power): nothing is powered or reimaged (no event of
    the bring-up for it, no "press the button"), the node step names nuc5 as not
    answering, the run fails, and the nodes that answer are not stacked again."""
    env = netlab_env
    counts = {n: len(_records(env, n)) for n in ("nuc1",) + COMPUTES}

    with env.lab_changed(_add_nuc5(env)), env.watch() as watcher:
        ret = _deploy(env, boot=False)
        events = watcher.events(settle_tag="netlab/deploy/summary")
    assert ret.returncode != 0, ret.stdout
    assert "Traceback" not in ret.stdout + ret.stderr
    nuc5 = _node_tags(events, "nuc5")
    assert not {"reimaging", "booting", "action-needed"} & set(nuc5), nuc5
    assert "failed" in nuc5, nuc5
    failures = [d for t, d in events if t == "netlab/run/failed"]
    assert any(f.get("node") == "nuc5" and "no answer from the minion" in str(f.get("cause"))
               for f in failures), failures
    assert "nuc5" in ret.stdout and "no answer from the minion" in ret.stdout
    assert {n: len(_records(env, n)) for n in counts} == counts
    assert all(_states(env)[n] == "ready" for n in ("nuc1",) + COMPUTES)


def test_boot_timeout_bounds_the_wait_for_a_known_node_that_stays_off(
        netlab_env, first_deploy):
    """``netlab_deploy: {boot_timeout: 5}`` with a known node whose machine stays
    off (nuc5: set up before, no minion now, manual power): the bring-up boots it
    (the "press the button" event), waits 5 s, not the default 900, for its
    minion and names it failed with that deadline; the run fails, the nodes that
    answer are not stacked again."""
    env = netlab_env
    counts = {n: len(_records(env, n)) for n in ("nuc1",) + COMPUTES}

    with env.lab_changed(_add_nuc5(env)):
        # known: it was up once (a reimaged node that has since been switched off)
        ret = env.runner("netlab.set_state", "nuc5", "up")
        assert ret.returncode == 0, ret
        # the bring-up's dry run names what the deploy will do and does none of it
        with env.watch() as watcher:
            dry = env.runner("devstack.bring_up", "dry_run=True", "ping_timeout=5")
            # a marker after the run: any event the dry run fired is on the bus before it
            env.runner("event.send", "netlab/test/dry-run-done")
            events = watcher.events(settle_tag="netlab/test/dry-run-done")
        assert ("netlab/test/dry-run-done" in [t for t, _ in events]), events
        assert dry.returncode == 0, dry
        assert "nuc5: boot (minion does not answer (was up))" in dry.stdout, dry.stdout
        assert "would boot: nuc5" in dry.stdout, dry.stdout
        assert _node_tags(events, "nuc5") == [], events
        assert _states(env)["nuc5"] == "up"
        with env.watch() as watcher:
            ret = _deploy(env, boot_timeout=5)
            events = watcher.events(settle_tag="netlab/deploy/summary")
    assert ret.returncode != 0, ret.stdout
    assert "Traceback" not in ret.stdout + ret.stderr
    # the bring-up's plan and outcome: booted (not reimaged), not up
    assert "minion does not answer (was up)" in ret.stdout, ret.stdout
    assert "booted: nuc5; NOT up: nuc5" in ret.stdout, ret.stdout
    nuc5 = _node_tags(events, "nuc5")
    assert nuc5 == ["booting", "action-needed", "failed"], nuc5
    failed = [d for t, d in events if t == "netlab/node/nuc5/failed"]
    assert "no salt/minion/nuc5/start event within 5 s" in str(failed[0]), failed
    assert {n: len(_records(env, n)) for n in counts} == counts
    assert all(_states(env)[n] == "ready" for n in ("nuc1",) + COMPUTES)


# ---------------------------------------------------------------------------------
# Documented behaviour only a real run shows: docs/operations.rst (a lost event
# warns; preflight stops a deploy), README.rst (state.apply netlab chooses per
# minion). Each test names its claim; they reuse this module's deploy and leave
# every node ready.

def _config_without_event_bus(env, where):
    """A copy of the master's config whose sock_dir has every socket of the
    master's but the event bus's pull socket: a salt-run with it publishes jobs and
    reads their returns, but every event it fires is refused."""
    sock_dir = where / "sock"
    sock_dir.mkdir(parents=True)
    real = pathlib.Path(env.master.config["sock_dir"])
    for entry in real.iterdir():
        if entry.name != "master_event_pull.ipc":
            (sock_dir / entry.name).symlink_to(entry)
    conf_dir = where / "conf"
    conf_dir.mkdir()
    with open(pathlib.Path(env.master.config_dir) / "master", encoding="utf-8") as fh:
        conf = yaml.safe_load(fh)
    conf["sock_dir"] = str(sock_dir)
    (conf_dir / "master").write_text(yaml.safe_dump(conf), encoding="utf-8")
    return conf_dir


def test_an_event_the_master_cannot_fire_is_a_warning_of_the_run(netlab_env, first_deploy):
    """docs/operations.rst, events: an event that cannot be fired (the master's
    event bus could not be reached) is a warning in the master's log and a
    ``warning:`` line in the run's summary. The deploy's salt-run cannot reach the
    bus's pull socket; Salt's LocalClient needs that bus too, so the run stops at
    preflight's first question to a minion, before any change (a lost event of a
    run that goes on cannot be made at this tier: every path that loses an event
    also loses what the run waits for)."""
    env = netlab_env
    counts = {n: len(_records(env, n)) for n in ("nuc1",) + COMPUTES}
    conf_dir = _config_without_event_bus(env, env.base / "no-event-bus")
    cmd = [os.path.join(VENV_BIN, "salt-run"), "-c", str(conf_dir), "--out=txt",
           "state.orchestrate", "netlab.deploy",
           "pillar=" + json.dumps({"netlab_deploy": {"netnode": False, "image": False}})]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    lost = "warning: event netlab/deploy/started was not fired: the master's event bus " \
        "did not take it"
    assert lost in proc.stdout, proc.stdout + proc.stderr
    assert lost in _summary(env)["text"].splitlines()
    master_log = pathlib.Path(env.master.config["log_file"])
    assert "netlab: " + lost[len("warning: "):] in master_log.read_text(encoding="utf-8") \
        or "netlab: " + lost[len("warning: "):] in proc.stderr
    assert {n: len(_records(env, n)) for n in counts} == counts
    assert all(_states(env)[n] == "ready" for n in ("nuc1",) + COMPUTES)


def _sls_run(ret):
    """The SLS files a ``state.apply`` return ran states from."""
    assert isinstance(ret.data, dict), ret.stdout
    return {v.get("__sls__") for v in ret.data.values() if isinstance(v, dict)}


def test_state_apply_netlab_does_the_right_thing_on_each_minion(netlab_env, first_deploy):
    """README.rst: ``netlab`` is the right thing per minion: the networking node ->
    netnode (+ cache, image); a lab node -> node; any other minion: a failure that
    says why, without changes (all with test=True: nothing is changed here)."""
    env = netlab_env
    netnode = _sls_run(env.apply("netnode", "netlab", test=True))
    assert any(s.startswith("netlab.netnode") for s in netnode), netnode
    assert not any(s.startswith("netlab.node") for s in netnode), netnode
    node = _sls_run(env.apply("nuc2", "netlab", test=True))
    assert node and all(s.startswith("netlab.node") for s in node), node
    env.add_minion("stranger")
    try:
        ret = env.apply("stranger", "netlab", test=True)
    finally:
        env.remove_minion("stranger")
    assert ret.returncode != 0, ret.stdout
    (only,) = ret.data.values()
    assert only["result"] is False and only["changes"] == {}, only
    assert "stranger is neither the networking node" in only["name"], only


def test_a_preflight_problem_stops_the_deploy_before_anything_changes(
        netlab_env, first_deploy):
    """docs/operations.rst: netlab.deploy runs netlab.preflight and stops with every
    problem found before anything has changed. The problem: top.sls gives the whole
    lab (BMC credentials, passwords) to a lab node too."""
    env = netlab_env
    top = env.pillar_dir / "top.sls"
    saved = top.read_text(encoding="utf-8")
    leaky = saved.replace("'L@netnode,netnode_master'", "'L@netnode,netnode_master,nuc2'")
    assert leaky != saved
    counts = {n: len(_records(env, n)) for n in ("nuc1",) + COMPUTES}
    discoveries = len(_records(env, "nuc1", "discover"))
    before = _states(env)
    top.write_text(leaky, encoding="utf-8")
    try:
        env.refresh_pillar()
        ret = _deploy(env, force=True)
    finally:
        top.write_text(saved, encoding="utf-8")
        env.refresh_pillar()
    assert ret.returncode != 0, ret.stdout
    problem = "pillar 'netlab' (the whole lab with its secrets) reaches lab node(s) nuc2"
    assert problem in ret.stdout
    first = _summary(env)["first_failure"]
    assert first["step"] == "preflight" and problem in first["cause"], first
    assert {n: len(_records(env, n)) for n in counts} == counts
    assert len(_records(env, "nuc1", "discover")) == discoveries
    assert _states(env) == before
