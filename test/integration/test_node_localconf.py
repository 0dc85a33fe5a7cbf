"""
netlab.node.localconf with a real master and real minions (pytest-salt-factories).

The master renders each lab node's local.conf into that node's slice (ext_pillar);
``state.apply netlab.node.localconf`` on the node writes it into the node's own
DevStack checkout directory. Checked for the controller and both computes of
pillar.example: the right text for the right node, mode 0600, owner the stack
user; ``test=True`` predicts the first apply; a second apply changes nothing.
"""

import os
import pwd
import stat

import pytest

import netlab_lab
import netlab_localconf

pytestmark = pytest.mark.slow

NODES = ("nuc1", "nuc2", "nuc3")
SLS = "netlab.node.localconf"
STATE = "local_conf_managed"


def _path(env, node_id):
    return env.node_dest(node_id) / "devstack" / "local.conf"


def _apply(env, node_id, **kwargs):
    ret = env.apply(node_id, SLS, **kwargs)
    assert isinstance(ret.data, dict), ret
    return ret.data


def _local_conf_state(data):
    found = [v for k, v in data.items() if k.startswith("devstack_|-") and k.endswith(STATE)]
    assert len(found) == 1, data
    return found[0]


def _changed(data):
    return {k for k, v in data.items() if v["changes"]}


@pytest.fixture(scope="module")
def applied(netlab_env):
    """test=True, then a real apply, then a second apply, on every lab node (from a
    node without local.conf, whatever other tests did before)."""
    runs = {}
    for node_id in NODES:
        path = _path(netlab_env, node_id)
        if path.exists():
            path.unlink()
        dry = _apply(netlab_env, node_id, test=True)
        first = _apply(netlab_env, node_id)
        second = _apply(netlab_env, node_id)
        runs[node_id] = (dry, first, second)
    return runs


@pytest.mark.parametrize("node_id", NODES)
def test_each_node_gets_its_own_local_conf(netlab_env, applied, node_id):
    _, first, _ = applied[node_id]
    assert all(v["result"] is True for v in first.values()), first
    generation = netlab_env.call(node_id, "pillar.get", "netlab_node:identity:generation")
    lab = netlab_lab.load(netlab_env.lab_pillar)
    expected = netlab_localconf.render(lab, node_id, generation=int(generation or 0))
    path = _path(netlab_env, node_id)
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    assert text == expected
    assert "HOST_IP={}\n".format(lab.node(node_id).ip) in text
    assert "SERVICE_HOST={}\n".format(lab.controller.ip) in text
    assert ("disable_all_services" in text) == (node_id != "nuc1")
    # the master renders the same text for that node
    assert netlab_env.call("netnode", "devstack.local_conf", node_id,
                           "generation={}".format(int(generation or 0))) == text


@pytest.mark.parametrize("node_id", NODES)
def test_local_conf_is_private_to_the_stack_user(netlab_env, applied, node_id):
    st = os.stat(_path(netlab_env, node_id))
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == pwd.getpwnam(netlab_env.stack_user).pw_uid


@pytest.mark.parametrize("node_id", NODES)
def test_second_apply_changes_nothing(applied, node_id):
    _, _, second = applied[node_id]
    assert all(v["result"] is True for v in second.values()), second
    assert _changed(second) == set(), second


@pytest.mark.parametrize("node_id", NODES)
def test_test_mode_predicts_the_first_apply(applied, node_id):
    dry, first, _ = applied[node_id]
    assert _changed(dry) == _changed(first)
    predicted = _local_conf_state(dry)
    actual = _local_conf_state(first)
    assert predicted["result"] is None
    assert predicted["changes"] == actual["changes"]
    assert set(actual["changes"]) == {"diff", "user", "group", "mode"}
    # the diff shows the passwords' names, never their values
    assert "+ADMIN_PASSWORD=******" in actual["changes"]["diff"]
    assert "change-me" not in str(first) and "change-me" not in str(dry)


def test_a_pillar_change_reaches_only_the_nodes_it_concerns(netlab_env, applied):
    def change(lab):
        lab["nodes"]["nuc3"]["devstack"]["localrc"]["LIBVIRT_TYPE"] = "kvm"

    with netlab_env.lab_changed(change):
        nuc3 = _apply(netlab_env, "nuc3")
        nuc2 = _apply(netlab_env, "nuc2")
        diff = _local_conf_state(nuc3)["changes"]["diff"]
        assert "-LIBVIRT_TYPE=qemu" in diff and "+LIBVIRT_TYPE=kvm" in diff
        assert _changed(nuc2) == set()
    # back to the original pillar
    restored = _apply(netlab_env, "nuc3")
    assert "+LIBVIRT_TYPE=qemu" in _local_conf_state(restored)["changes"]["diff"]


def test_invalid_slice_fails_before_any_change(netlab_env, applied):
    path = _path(netlab_env, "nuc2")
    before = path.read_bytes()

    def corrupt(lab):
        lab["devstack"]["localrc"]["ADMIN_PASSWORD"] = "changed-but-invalid"
        lab["nodes"]["nuc1"]["ip"] = "192.168.42.300"

    with netlab_env.lab_changed(corrupt):
        data = _apply(netlab_env, "nuc2")
        check = [v for k, v in data.items() if "node_valid" in k]
        assert check and check[0]["result"] is False
        assert "lab pillar is invalid" in check[0]["comment"]
        assert all(v["result"] is False for v in data.values()), data
        assert path.read_bytes() == before
