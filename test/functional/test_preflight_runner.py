"""
``netlab.preflight``'s pillar check through Salt's runner loader, with the pillar
compiled from real pillar_roots (top.sls + lab SLS): the lab reaching a lab node is
reported; inside an orchestration (where ``__opts__['pillar']`` holds the master's
own pillar, which Salt would merge into every compiled pillar) a correct top.sls
passes.
"""

import yaml

from conftest import REPO
from lib.saltrunner import lab_in_pillar_roots


def _setup(root, target):
    lab = yaml.safe_load((REPO / "pillar.example").read_text())["netlab"]
    return lab_in_pillar_roots(root, lab, target), lab


def test_lab_reaching_lab_nodes_is_reported(tmp_path):
    runners, _lab = _setup(tmp_path, "*")
    ret = runners["netlab.preflight"](checks="pillar")
    assert ret["retcode"] == 1
    assert ret["problems"] == [
        "pillar: pillar 'netlab' (the whole lab with its secrets) reaches lab node(s) nuc1, "
        "nuc2, nuc3: target it in top.sls to netnode and netnode_master only; lab nodes "
        "get their own slice from netlab's ext_pillar"]


def test_right_targeting_passes_even_with_the_orchestration_pillar_in_opts(tmp_path):
    runners, lab = _setup(tmp_path, "L@netnode,netnode_master")
    runners.opts["pillar"] = {"netlab": lab}  # what state.orchestrate's opts carry
    ret = runners["netlab.preflight"](checks="pillar")
    assert ret == {"retcode": 0, "passed": ["pillar"], "problems": []}


def test_invalid_pillar_is_an_error_not_a_traceback(tmp_path):
    runners, lab = _setup(tmp_path, "L@netnode,netnode_master")
    lab["network"]["cidr"] = "not-a-cidr"
    ret = runners["netlab.preflight"](pillar=lab)
    assert ret["retcode"] == 1 and "netlab:network:cidr" in ret["Error"]
    ret = runners["netlab.preflight"](checks="nonsense", pillar=yaml.safe_load(
        (REPO / "pillar.example").read_text())["netlab"])
    assert ret["retcode"] == 1 and "unknown check(s) nonsense" in ret["Error"]
