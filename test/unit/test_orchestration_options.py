"""netlab_options: the orchestrations' options and target nodes, read in one place."""

import copy

import pytest

import netlab_lab
import netlab_options


@pytest.fixture
def lab(example_pillar):
    return netlab_lab.load(copy.deepcopy(example_pillar))


def test_deploy_defaults_and_every_spelling():
    assert netlab_options.orchestration("deploy", None) == {
        "force": False, "netnode": True, "image": True, "boot": True, "stack": True,
        "checkout": True, "boot_timeout": 900, "preflight": True}
    opts = netlab_options.orchestration("deploy", {
        "force": "true", "stack": "False", "checkout": 0, "image": "no", "boot": 1,
        "boot_timeout": "1200", "preflight": "ports,storage"})
    assert opts["force"] is True and opts["stack"] is False and opts["checkout"] is False
    assert opts["image"] is False and opts["boot"] is True and opts["boot_timeout"] == 1200
    assert opts["preflight"] == "ports,storage"


@pytest.mark.parametrize("options,message", [
    ({"force": "maybe"}, "netlab_deploy:force must be true or false, not 'maybe'"),
    ({"boot_timeout": "soon"}, "netlab_deploy:boot_timeout must be a number of seconds"),
])
def test_deploy_refuses_unreadable_values(options, message):
    with pytest.raises(netlab_options.OptionError, match=message):
        netlab_options.orchestration("deploy", options)


def test_restack_targets(lab):
    everything = netlab_options.targets(lab)
    assert everything == {"targets": ["nuc1", "nuc2", "nuc3"], "controller": "nuc1",
                          "computes": ["nuc2", "nuc3"]}
    assert netlab_options.targets(lab, computes_only=True) == {
        "targets": ["nuc2", "nuc3"], "controller": None, "computes": ["nuc2", "nuc3"]}
    assert netlab_options.targets(lab, "nuc3,nuc1")["targets"] == ["nuc1", "nuc3"]
    with pytest.raises(netlab_options.OptionError,
                       match=r"not nodes of this lab: nuc9 \(known: nuc1, nuc2, nuc3\)"):
        netlab_options.targets(lab, ["nuc9"])


def test_restack_options():
    assert netlab_options.orchestration("restack", {"computes_only": "True",
                                                    "nodes": "nuc2, nuc3"}) == {
        "computes_only": True, "nodes": ["nuc2", "nuc3"]}
