"""
netlab_master: what both runners share (lab loading, the refusal convention,
option parsing), without a master: the pillar compiler is passed in.
"""

import copy

import pytest

import netlab_lab
import netlab_master


def test_pillar_ids_follow_the_master_and_the_networking_node():
    assert netlab_master.pillar_ids({"id": "netnode_master"}) == ["netnode_master", "netnode"]
    assert netlab_master.pillar_ids({"id": "salt", "netlab_pillar_id": "nn"}) == [
        "salt", "nn", "salt_master"]


def test_raw_lab_takes_the_first_pillar_that_has_netlab(example_pillar):
    asked = []

    def compiler(opts, minion_id):
        asked.append(minion_id)
        return {"netlab": example_pillar} if minion_id == "netnode" else {}

    raw = netlab_master.raw_lab({"id": "netnode_master"}, compiler=compiler)
    assert raw is example_pillar and asked == ["netnode_master", "netnode"]
    # a pillar= argument: the value, or a dict holding it under netlab
    assert netlab_master.raw_lab({}, {"netlab": example_pillar}) is example_pillar
    assert netlab_master.raw_lab({}, example_pillar) is example_pillar


def test_load_lab_refuses_missing_and_invalid_pillar(example_pillar):
    with pytest.raises(netlab_master.Refused, match="no 'netlab' pillar for the master "
                       r"\(compiled for m, m_master\)"):
        netlab_master.load_lab({"id": "m"}, compiler=lambda opts, mid: {})
    bad = copy.deepcopy(example_pillar)
    bad["network"]["cidr"] = "nonsense"
    with pytest.raises(netlab_master.Refused, match="netlab:network:cidr"):
        netlab_master.load_lab({}, bad)
    assert netlab_master.load_lab({}, example_pillar).controller.id == "nuc1"


def test_guard_returns_the_refusal_with_retcode_on_both_channels():
    __context__ = {}  # what Salt injects into a runner module's globals

    def refused():
        netlab_master.refuse("node nuc9 is not a node")

    globals()["__context__"] = __context__
    try:
        ret = netlab_master.guard(refused)()
    finally:
        del globals()["__context__"]
    assert ret == {"Error": "node nuc9 is not a node", "retcode": 1}
    assert __context__ == {"retcode": 1}
    assert netlab_master.guard(lambda: 5)() == 5
    with pytest.raises(ValueError):
        netlab_master.guard(lambda: int("x"))()
    assert netlab_master.guard(lambda: int("x"), (ValueError,))()["retcode"] == 1


def test_finish_sets_retcode_from_the_result():
    ctx = {}
    assert netlab_master.finish(ctx, {"result": True}) == {"result": True, "retcode": 0}
    assert ctx == {}
    assert netlab_master.finish(ctx, {"result": False})["retcode"] == 1 and ctx["retcode"] == 1
    assert netlab_master.finish({}, {"x": 1}, ok=False) == {"x": 1, "retcode": 1}


@pytest.mark.parametrize("value,default,want", [
    (True, False, True), ("true", False, True), ("True", False, True), (1, False, True),
    ("1", False, True), ("yes", False, True), (False, True, False), ("false", True, False),
    ("False", True, False), (0, True, False), ("0", True, False), (None, True, True),
    ("", False, False),
])
def test_flag_reads_every_spelling(value, default, want):
    assert netlab_master.flag(value, default) is want


def test_flag_refuses_anything_else():
    with pytest.raises(netlab_master.Refused, match="force must be true or false, not 'maybe'"):
        netlab_master.flag("maybe", name="force")


def test_node_list_and_seconds(example_pillar):
    lab = netlab_master.load_lab({}, example_pillar)
    assert netlab_master.node_list(lab, "nuc2, nuc3,nuc2") == ["nuc2", "nuc3"]
    assert netlab_master.node_list(lab, "all") == list(lab.nodes)
    with pytest.raises(netlab_master.Refused, match="not nodes of this lab: nuc9"):
        netlab_master.node_list(lab, ["nuc9"])
    with pytest.raises(netlab_master.Refused, match="name the nodes"):
        netlab_master.node_list(lab, "")
    assert netlab_master.seconds("12") == 12.0
    with pytest.raises(netlab_master.Refused, match="timeout must be positive"):
        netlab_master.seconds(0)
    with pytest.raises(netlab_master.Refused, match="not 'soon'"):
        netlab_master.seconds("soon")


def test_jobs_to_nodes_wait_at_least_30_s_for_a_still_running_answer():
    # Salt's default (10 s) counts a busy node gone; a longer configured wait stays
    assert netlab_master.job_kwargs({}) == {"gather_job_timeout": 30}
    assert netlab_master.job_kwargs({"gather_job_timeout": 10}) == {"gather_job_timeout": 30}
    assert netlab_master.job_kwargs({"gather_job_timeout": 90}) == {"gather_job_timeout": 90}
    assert netlab_master.job_kwargs({"gather_job_timeout": "x"}) == {"gather_job_timeout": 30}


def test_jobs_to_a_virtual_node_wait_120_s_for_a_still_running_answer(example_pillar, tmp_path):
    # a qemu guest may have an emulated CPU: a job to it (or to a list holding it)
    # waits longer; jobs to the other nodes keep the 30 s floor, and a longer
    # configured wait still wins
    raw = copy.deepcopy(example_pillar)
    raw["netnode"]["storage"] = str(tmp_path / "srv")
    raw["nodes"]["nuc2"]["power"] = {"driver": "virtual", "bridge": "br0"}
    lab = netlab_lab.load(raw)
    assert netlab_master.job_kwargs({}, lab, ["nuc1"]) == {"gather_job_timeout": 30}
    assert netlab_master.job_kwargs({}, lab, ["nuc1", "nuc2"]) == {"gather_job_timeout": 120}
    assert netlab_master.job_kwargs({}, lab, ["gone"]) == {"gather_job_timeout": 30}
    assert netlab_master.job_kwargs({"gather_job_timeout": 300}, lab, ["nuc2"]) == {
        "gather_job_timeout": 300}
