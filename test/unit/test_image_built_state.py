"""
netlab_image_state.built (the ``netlab_image.built`` state's decisions) with fake
plan and build calls: no change when current, a prediction in test mode, a
refusal when the host cannot build, and the last good image kept on failure.
"""

import pytest

import netlab_image_state

CUR = {"build_id": "20261130-1", "input_hash": "a" * 64, "kernel_version": "6.1.0"}
NEW = {"build_id": "20261130-2", "input_hash": "b" * 64, "kernel_version": "6.1.0"}


class Failed(Exception):
    pass


def plan(action="build", problems=None, cur=CUR):
    return lambda: {"action": action, "current": cur, "input_hash": "b" * 64,
                    "reason": "inputs changed", "host_problems": problems or []}


def no_build():
    pytest.fail("nothing may be built")


def test_current_image_is_left_alone():
    ret = netlab_image_state.built("img", plan("none"), no_build, False)
    assert ret == {"name": "img", "changes": {}, "result": True,
                   "comment": "Node image 20261130-1 is current (input hash bbbbbbbbbbbb)"}


def test_test_mode_predicts_the_rebuild_without_building():
    ret = netlab_image_state.built("img", plan(), no_build, True)
    assert ret["result"] is None and ret["comment"] == \
        "Node image would be rebuilt: inputs changed"
    assert ret["changes"]["image"]["old"] == CUR


def test_a_host_that_cannot_build_is_refused_in_both_modes():
    for test in (True, False):
        ret = netlab_image_state.built("img", plan(problems=["no mmdebstrap"]), no_build,
                                       test)
        assert ret["result"] is False and ret["comment"].endswith("no mmdebstrap")


def test_a_build_reports_old_and_new_and_what_was_pruned():
    res = {"changed": True, "action": "build", "build_id": NEW["build_id"], "duration": 42,
           "current": NEW, "pruned": ["20261129-1"]}
    ret = netlab_image_state.built("img", plan(), lambda: res, False)
    assert ret["result"] is True
    assert ret["changes"] == {"image": {"old": CUR, "new": NEW}, "pruned": ["20261129-1"]}
    assert ret["comment"] == "Built node image 20261130-2 in 42s (inputs changed)"


def test_a_failed_build_keeps_the_last_good_image_and_a_failed_plan_is_named():
    def boom():
        raise Failed("mmdebstrap exited 1")

    ret = netlab_image_state.built("img", plan(), boom, False, errors=(Failed,))
    assert ret["result"] is False
    assert ret["comment"] == ("Node image build failed; the last good image 20261130-1 "
                              "stays current.\nmmdebstrap exited 1")
    ret = netlab_image_state.built("img", boom, no_build, False, errors=(Failed,))
    assert ret == {"name": "img", "changes": {}, "result": False,
                   "comment": "mmdebstrap exited 1"}
