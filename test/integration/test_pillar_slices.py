"""
Who sees what, from each minion's point of view (real master, real minions).

The whole lab -- every node, BMC credentials, passwords -- reaches the networking
node only. A compute sees its own slice and nothing of the other nodes.
"""

import json

import pytest

import netlab_saltcompat

pytestmark = pytest.mark.slow


def _pillar(env, minion_id):
    # Salt 3008 masks pillar values in output unless asked (3006 never masks)
    return env.call(minion_id, "pillar.items", *netlab_saltcompat.pillar_items_args())


def test_networking_node_has_the_whole_lab(netlab_env):
    pillar = _pillar(netlab_env, "netnode")
    assert set(pillar["netlab"]["nodes"]) == {"nuc1", "nuc2", "nuc3"}
    assert pillar["netlab"]["nodes"]["nuc3"]["power"]["password"] == "ipmi-secret"
    assert "netlab_node" not in pillar


@pytest.mark.parametrize("node_id", ["nuc1", "nuc2", "nuc3"])
def test_lab_node_sees_only_its_own_slice(netlab_env, node_id):
    pillar = _pillar(netlab_env, node_id)
    assert set(pillar) == {"netlab_node"}, "a lab node got more than its slice"
    mine = pillar["netlab_node"]
    assert mine["id"] == node_id
    assert mine["ip"] == netlab_env.lab_pillar["nodes"][node_id]["ip"]
    assert "[[local|localrc]]" in mine["local_conf"]
    assert "HOST_IP={}".format(mine["ip"]) in mine["local_conf"].replace('"', "")
    text = json.dumps(pillar)
    # no BMC credentials, no other node's identity, MAC or DevStack directory
    assert "ipmi-secret" not in text
    assert "192.168.43.13" not in text
    for other_id, other in netlab_env.lab_pillar["nodes"].items():
        if other_id == node_id:
            continue
        assert other["mac"] not in text
        assert other["devstack"]["dest"] not in text
        assert '"{}"'.format(other_id) not in text
        if not other["role"] == "controller":
            # the controller's IP is every subnode's SERVICE_HOST; nothing else leaks
            assert other["ip"] not in text


def test_compute_cannot_render_another_nodes_local_conf(netlab_env):
    ret = netlab_env.salt_cli.run("devstack.local_conf", "nuc3", minion_tgt="nuc2")
    assert "nuc3" in str(ret.data) or "nuc3" in ret.stdout
    assert "ADMIN_PASSWORD" not in ret.stdout
    mine = netlab_env.call("nuc2", "devstack.local_conf")
    pillar = _pillar(netlab_env, "nuc2")
    assert mine == pillar["netlab_node"]["local_conf"]


def test_compute_cannot_see_the_lab_through_netlab_functions(netlab_env):
    ret = netlab_env.salt_cli.run("netlab.nodes", minion_tgt="nuc2")
    assert "nuc3" not in ret.stdout
    assert "missing from pillar" in ret.stdout


def test_minion_outside_the_lab_gets_nothing(netlab_env):
    netlab_env.add_minion("stranger")
    try:
        netlab_env.call("stranger", "saltutil.refresh_pillar", "wait=True")
        assert _pillar(netlab_env, "stranger") == {}
    finally:
        netlab_env.remove_minion("stranger")


def test_networking_node_validates_and_lists_nodes(netlab_env):
    ret = netlab_env.call("netnode", "netlab.validate")
    assert ret == {"valid": True, "errors": []}
    table = netlab_env.call("netnode", "netlab.nodes")
    assert [row["id"] for row in table] == ["nuc1", "nuc2", "nuc3"]
    assert all("password" not in row for row in table)


def test_invalid_pillar_is_reported_with_every_path(netlab_env):
    def break_it(lab):
        lab["nodes"]["nuc3"]["ip"] = "192.168.42.300"
        lab["nodes"]["nuc2"]["mac"] = lab["nodes"]["nuc1"]["mac"]
        lab["nodez"] = {}

    with netlab_env.lab_changed(break_it):
        cli = netlab_env.minions["netnode"].salt_call_cli(timeout=120)
        ret = cli.run("netlab.validate", "--retcode-passthrough")
        assert ret.returncode != 0
        errors = ret.data["errors"]
        assert "netlab:nodes:nuc3:ip: 192.168.42.300 is not an IPv4 address" in errors
        assert any(e.startswith("netlab:nodes:nuc2:mac:") for e in errors)
        assert any(e.startswith("netlab:nodez:") for e in errors)
