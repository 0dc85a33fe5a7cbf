"""
netlab_waves.stack with fake collaborators: what runs, what is recorded, what is
left out, and when computes wait for their controller.
"""

import copy

import pytest

import netlab_lab
import netlab_waves


@pytest.fixture
def lab(example_pillar, tmp_path):
    raw = copy.deepcopy(example_pillar)
    raw["netnode"]["storage"] = str(tmp_path / "srv")
    return netlab_lab.load(raw)


class Fake:
    def __init__(self, states, answering=None, returns=None, excluded=()):
        self._states = dict(states)
        self.answering = answering
        self.returns = returns or {}
        self._excluded = set(excluded)
        self.recorded, self.failures, self.lines, self.events, self.jobs = [], [], [], [], []

    def ops(self):
        return netlab_waves.Ops(
            states=lambda: dict(self._states), excluded=lambda: set(self._excluded),
            ping=lambda nodes: [n for n in nodes if self.answering is None
                                or n in self.answering],
            publish=self.publish, record=self.record,
            failure=lambda *a: self.failures.append(a), progress=self.lines.append,
            fire=lambda tag, data: self.events.append(tag), clock=lambda: 1.0)

    def publish(self, nodes, fun, kwarg):
        self.jobs.append((tuple(nodes), fun, kwarg))
        return {n: self.returns.get(n) for n in nodes}

    def record(self, node, state, result=None, reason=None):
        self.recorded.append((node, state))
        self._states[node] = state


def ok(secs=60):
    return {"result": True, "duration": secs, "retcode": 0, "log": "/x", "log_tail": ""}


def test_computes_in_one_job_and_each_outcome_recorded(lab):
    fake = Fake({"nuc1": "ready", "nuc2": "up", "nuc3": "booting"},
                returns={"nuc2": ok(), "nuc3": {"result": False, "retcode": 1,
                                                "duration": 5, "log_tail": "boom"}})
    ret = netlab_waves.stack(lab, fake.ops(), role="compute")
    assert fake.jobs == [(("nuc2", "nuc3"), "devstack.stack", {"lines": 25})]
    assert ret["result"] is False and ret["stacked"] == ["nuc2"] and ret["failed"] == ["nuc3"]
    assert ("nuc3", "up") in fake.recorded and ("nuc3", "stacking") in fake.recorded
    assert ("nuc2", "ready") in fake.recorded and ("nuc3", "failed") in fake.recorded
    assert fake.failures[0][:3] == ("stack.sh", ret["nodes"]["nuc3"]["reason"], "nuc3")
    assert ret["comment"] == "stack.sh failed on nuc3"
    assert fake.events == ["netlab/stack/compute/started", "netlab/stack/compute/finished"]


def test_computes_wait_for_a_controller_that_is_not_ready(lab):
    fake = Fake({"nuc1": "failed", "nuc2": "up", "nuc3": "up"})
    ret = netlab_waves.stack(lab, fake.ops(), role="compute")
    assert fake.jobs == [] and ret["result"] is False
    assert ret["comment"] == "not stacking nuc2, nuc3: the controller nuc1 is not ready (failed)"


def test_nodes_that_failed_earlier_are_left_out(lab):
    fake = Fake({"nuc1": "ready", "nuc2": "up", "nuc3": "up"}, returns={"nuc2": ok()},
                excluded={"nuc3"})
    ret = netlab_waves.stack(lab, fake.ops(), role="compute")
    assert fake.jobs[0][0] == ("nuc2",) and ret["left_out"] == ["nuc3"]
    assert ret["comment"] == "stacked nuc2; left out (failed earlier): nuc3"


def test_nothing_to_stack_when_ready_unless_forced(lab):
    fake = Fake({"nuc1": "ready", "nuc2": "ready", "nuc3": "ready"},
                returns={"nuc2": ok(), "nuc3": ok()})
    ret = netlab_waves.stack(lab, fake.ops(), role="compute")
    assert ret["result"] is True and ret["comment"] == "nothing to stack: nuc2, nuc3 ready"
    ret = netlab_waves.stack(lab, fake.ops(), role="compute", force=True)
    assert ret["stacked"] == ["nuc2", "nuc3"]


def test_a_node_that_does_not_answer_fails_without_running(lab):
    fake = Fake({"nuc1": "ready", "nuc2": "up", "nuc3": "up"}, answering={"nuc2"},
                returns={"nuc2": ok()})
    ret = netlab_waves.stack(lab, fake.ops(), role="compute")
    assert fake.jobs[0][0] == ("nuc2",)
    assert ret["failed"] == ["nuc3"] and "no answer from the minion" in \
        ret["nodes"]["nuc3"]["reason"]
    assert ("nuc3", "stacking") not in fake.recorded


def test_prepare_applies_in_one_job_and_names_the_first_failing_state(lab):
    fake = Fake({}, answering={"nuc1", "nuc2"}, returns={
        "nuc1": {"a": {"result": True, "comment": "", "__id__": "a"}},
        "nuc2": {"file_|-x_|-/etc/x_|-managed": {"result": False, "comment": "no space\nmore",
                                                  "__id__": "x"}}})
    synced = []
    ops = fake.ops()
    ops.sync = synced.append
    ret = netlab_waves.prepare(lab, ops, checkout=False)
    assert synced == [["nuc1", "nuc2"]]
    assert fake.jobs == [(("nuc1", "nuc2"), "state.apply",
                          {"mods": "netlab.node", "pillar": {"netlab_checkout": False}})]
    assert ret["prepared"] == ["nuc1"] and ret["failed"] == ["nuc3", "nuc2"]  # no answer first, as found
    assert ret["nodes"]["nuc2"]["reason"].startswith("netlab.node: state ")
    assert ret["nodes"]["nuc2"]["reason"].endswith(": no space")
    assert "no answer from the minion" in ret["nodes"]["nuc3"]["reason"]
    assert ("nuc2", "failed") in fake.recorded and ("nuc3", "failed") in fake.recorded
    assert [f[0] for f in fake.failures] == ["node states", "node states"]
    assert ret["comment"] == "netlab.node applied on nuc1; failed: nuc3, nuc2"


# --------------------------------------------------------------------------- bring-up
class FakeRun:
    """netlab.reimage / netlab.boot: the listed nodes come up (the fake records it)."""

    def __init__(self, fake, up=(), raises=None):
        self.fake, self.up, self.raises, self.calls = fake, set(up), raises, []

    def __call__(self, action, nodes):
        self.calls.append((action, list(nodes)))
        if self.raises and action in self.raises:
            raise RuntimeError(self.raises[action])
        for node in nodes:
            if node in self.up:
                self.fake.record(node, "up")
        return {"nodes": {n: {"state": "up"} if n in self.up else
                          {"state": "failed", "reason": "no start event"} for n in nodes}}


def test_bring_up_reimages_new_boots_known_and_leaves_answering_alone(lab):
    fake = Fake({"nuc1": "booting", "nuc2": "ready", "nuc3": "registered"},
                answering={"nuc1"})
    run = FakeRun(fake, up={"nuc2", "nuc3"})
    ret = netlab_waves.bring_up(lab, fake.ops(), run, {"nuc1": {"role": "controller"}})
    assert run.calls == [("reimage", ["nuc3"]), ("boot", ["nuc2"])]
    assert ("nuc1", "up") in fake.recorded            # answered, was booting
    assert ret["result"] is True and fake.failures == []
    assert ret["plan"]["up"] == ["nuc1"]
    assert ret["comment"] == "up: nuc1; reimaged: nuc3; booted: nuc2"
    assert "nuc3: reimage (new node: root created from the image)" in fake.lines


def test_bring_up_dry_run_says_what_it_would_do_and_does_nothing(lab):
    fake = Fake({"nuc1": "booting", "nuc2": "ready", "nuc3": "registered"},
                answering={"nuc1"})
    run = FakeRun(fake, up={"nuc2", "nuc3"})
    ret = netlab_waves.bring_up(lab, fake.ops(), run, {"nuc1": {"role": "controller"}},
                                dry_run=True)
    assert run.calls == [] and fake.recorded == [] and fake.failures == []
    assert ret["dry_run"] is True and ret["result"] is True
    assert ret["plan"]["reimage"] == ["nuc3"] and ret["plan"]["boot"] == ["nuc2"]
    assert ret["would"] == ["nuc3: reimage (new node: root created from the image)",
                            "nuc2: boot ({})".format(ret["plan"]["reasons"]["nuc2"])]
    assert ret["comment"] == ("dry run, nothing changed. up: nuc1; would reimage: nuc3; "
                              "would boot: nuc2")


def test_bring_up_reimages_a_node_whose_role_changed(lab):
    fake = Fake({"nuc1": "ready", "nuc2": "ready", "nuc3": "ready"})
    run = FakeRun(fake, up={"nuc2"})
    ret = netlab_waves.bring_up(lab, fake.ops(), run, {"nuc2": {"role": "controller"}})
    assert run.calls == [("reimage", ["nuc2"])]
    assert "role changed from controller to compute" in ret["plan"]["reasons"]["nuc2"]


def test_bring_up_names_nodes_that_did_not_come_up_and_goes_on(lab):
    fake = Fake({"nuc1": "ready", "nuc2": "failed", "nuc3": "registered"},
                answering={"nuc1"})
    run = FakeRun(fake, up=(), raises={"reimage": "image not built"})
    ret = netlab_waves.bring_up(lab, fake.ops(), run, {})
    # the reimage raised: the boot still ran
    assert run.calls == [("reimage", ["nuc3"]), ("boot", ["nuc2"])]
    assert ret["result"] is False and ret["reimage"] == {"error": "image not built"}
    assert [f[:3] for f in fake.failures] == [("reimage", "image not built", "nuc3"),
                                              ("boot", "no start event", "nuc2")]
    assert ret["comment"].endswith("; NOT up: nuc2, nuc3")
    assert "reimage of nuc3 failed: image not built" in fake.lines


def test_unstack_sends_stacked_nodes_back_to_up_and_a_failure_into_the_run(lab):
    """unstack.sh fails on nuc3, nuc2 is unstacked: nuc2 goes back to ``up``; nuc3's
    failure (its reason and masked log tail) goes into the run, so the restack's
    later steps leave it out; a node that does not answer is a failure too."""
    fake = Fake({"nuc1": "ready", "nuc2": "ready", "nuc3": "ready"},
                answering={"nuc2", "nuc3"},
                returns={"nuc2": ok(3), "nuc3": {"result": False, "retcode": 1, "duration": 2,
                                                 "log": "/opt/stack/logs/netlab-unstack.log",
                                                 "log_tail": "ADMIN_PASSWORD=s3cret\nboom"}})
    ret = netlab_waves.unstack(lab, fake.ops(), role="all")
    assert fake.jobs == [(("nuc2", "nuc3"), "devstack.unstack", {"lines": 25})]
    assert ret["result"] is False and ret["unstacked"] == ["nuc2"]
    assert ret["failed"] == ["nuc1", "nuc3"]
    assert fake.recorded == [("nuc2", "up")]
    steps = {f[2]: f for f in fake.failures}
    assert steps["nuc3"][0] == "unstack.sh"
    assert steps["nuc3"][1] == "unstack.sh failed after 2 s (exit 1): boom"
    assert steps["nuc3"][3] == "/opt/stack/logs/netlab-unstack.log"
    assert "s3cret" not in steps["nuc3"][4] and "boom" in steps["nuc3"][4]
    assert "no answer from the minion" in steps["nuc1"][1]
    assert ret["nodes"]["nuc3"]["comment"] == steps["nuc3"][1]
    assert fake.lines == ["unstacked nuc2; failed: nuc1, nuc3"]


def test_unstack_of_a_node_without_devstack_is_a_success(lab):
    fake = Fake({"nuc2": "up"}, returns={"nuc2": dict(ok(0), skipped=True)})
    ret = netlab_waves.unstack(lab, fake.ops(), nodes=["nuc2"])
    assert ret["result"] is True and ret["unstacked"] == ["nuc2"] and not fake.failures
    assert fake.recorded == []  # it was not stacked: its state stays
