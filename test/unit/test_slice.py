"""The node slice: what a lab node's pillar holds (identity, settings, local.conf)."""

import copy
import json

import netlab_lab
import netlab_slice
import pytest


@pytest.fixture()
def lab(example_pillar):
    return netlab_lab.load(copy.deepcopy(example_pillar))


def test_identity_is_stable_for_a_node_and_generation(lab):
    assert netlab_slice.identity(lab, "nuc2", 3) == netlab_slice.identity(lab, "nuc2", 3)


def test_identity_differs_between_nodes_and_after_reimage(lab):
    ids = [netlab_slice.identity(lab, n, g) for n in lab.nodes for g in (0, 1)]
    for key in ("machine_id", "ovn_uuid"):
        values = [i[key] for i in ids]
        assert len(set(values)) == len(values), key


def test_machine_id_has_systemd_format(lab):
    mid = netlab_slice.identity(lab, "nuc1")["machine_id"]
    assert len(mid) == 32 and int(mid, 16) >= 0 and mid == mid.lower()


def test_identity_depends_on_the_lab_domain(example_pillar):
    other = copy.deepcopy(example_pillar)
    other["network"]["domain"] = "other.example"
    a = netlab_slice.identity(netlab_lab.load(copy.deepcopy(example_pillar)), "nuc1")
    b = netlab_slice.identity(netlab_lab.load(other), "nuc1")
    assert a["machine_id"] != b["machine_id"]


def test_slice_holds_only_the_nodes_own_data(lab, example_pillar):
    data = netlab_slice.node_slice(lab, "nuc2", generation=1, local_conf="TEXT")
    assert data["id"] == "nuc2" and data["ip"] == "192.168.42.12"
    assert data["local_conf"] == "TEXT"
    assert data["identity"]["generation"] == 1
    assert data["devstack"]["user"] == "stack"
    text = json.dumps(data)
    assert "ipmi-secret" not in text and "password" not in text.lower()
    for other in ("nuc1", "nuc3"):
        assert example_pillar["nodes"][other]["mac"] not in text
        assert example_pillar["nodes"][other]["ip"] not in text


def test_slice_of_unknown_node_names_it(lab):
    with pytest.raises(KeyError, match="nuc9 is not a node of this lab"):
        netlab_slice.node_slice(lab, "nuc9")
