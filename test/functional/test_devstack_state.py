"""
devstack execution module + states through Salt's own loaders, against a temp dir.

No daemons: ``salt.loader.minion_mods`` / ``salt.loader.states`` load netlab's
``_modules`` and ``_states`` (``_utils`` on the path) with a minimal minion config
(file_client local) and the pillar each test gives. The file owner is the system
user ``nobody`` (present on every Debian), so no user is created.
"""

import copy
import os
import pwd
import stat

import pytest
import salt.config
import salt.loader
from salt.exceptions import CommandExecutionError

import netlab_lab
import netlab_localconf
import netlab_slice

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OWNER = "nobody"


@pytest.fixture
def lab_raw(example_pillar, tmp_path):
    raw = copy.deepcopy(example_pillar)
    for node_id, node in raw["nodes"].items():
        node.setdefault("devstack", {})["dest"] = str(tmp_path / node_id / "stack")
    raw["devstack"]["user"] = OWNER
    return raw


@pytest.fixture
def salt_env(tmp_path):
    """``make(pillar, minion_id='nuc2', test=False)`` -> (modules, states)."""

    def make(pillar, minion_id="nuc2", test=False):
        root = tmp_path / "salt-{}-{}".format(minion_id, int(test))
        opts = salt.config.minion_config(None)
        opts.update({
            "id": minion_id,
            "file_client": "local",
            "root_dir": str(root),
            "cachedir": str(root / "cache"),
            "extension_modules": str(root / "extmods"),
            "module_dirs": [os.path.join(REPO, "_modules")],
            "states_dirs": [os.path.join(REPO, "_states")],
            "utils_dirs": [os.path.join(REPO, "_utils")],
            "grains": {"id": minion_id},
            "pillar": pillar,
            "test": test,
        })
        utils = salt.loader.utils(opts)
        mods = salt.loader.minion_mods(opts, utils=utils)
        states = salt.loader.states(opts, mods, utils, {})
        return mods, states

    return make


def _target(raw, node_id="nuc2"):
    path = os.path.join(raw["nodes"][node_id]["devstack"]["dest"], "devstack", "local.conf")
    os.makedirs(os.path.dirname(path))
    return path


def test_first_run_writes_the_rendered_file_mode_0600_owned_by_the_stack_user(
        lab_raw, salt_env):
    _, states = salt_env({"netlab": lab_raw})
    path = _target(lab_raw)
    ret = states["devstack.local_conf_managed"](path, node_id="nuc2")
    assert ret["result"] is True, ret["comment"]
    assert set(ret["changes"]) == {"diff", "user", "group", "mode"}
    lab = netlab_lab.load(lab_raw)
    with open(path, encoding="utf-8") as fh:
        assert fh.read() == netlab_localconf.render(lab, "nuc2")
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    owner = pwd.getpwnam(OWNER)
    assert (st.st_uid, st.st_gid) == (owner.pw_uid, owner.pw_gid)
    assert ret["changes"]["mode"] == "0600"
    assert ret["changes"]["user"] == OWNER
    assert not [p for p in os.listdir(os.path.dirname(path)) if p != "local.conf"], \
        "a temporary file was left behind"


def test_second_run_changes_nothing(lab_raw, salt_env):
    _, states = salt_env({"netlab": lab_raw})
    path = _target(lab_raw)
    assert states["devstack.local_conf_managed"](path, node_id="nuc2")["changes"]
    ret = states["devstack.local_conf_managed"](path, node_id="nuc2")
    assert ret["result"] is True
    assert ret["changes"] == {}
    assert "correct state" in ret["comment"]


def test_test_mode_predicts_the_changes_and_changes_nothing(lab_raw, salt_env):
    path = _target(lab_raw)
    _, dry = salt_env({"netlab": lab_raw}, test=True)
    predicted = dry["devstack.local_conf_managed"](path, node_id="nuc2")
    assert predicted["result"] is None
    assert not os.path.exists(path)
    _, real = salt_env({"netlab": lab_raw})
    applied = real["devstack.local_conf_managed"](path, node_id="nuc2")
    assert applied["result"] is True
    assert predicted["changes"] == applied["changes"]
    # nothing to predict any more: result True, not None
    again = dry["devstack.local_conf_managed"](path, node_id="nuc2")
    assert again["result"] is True and again["changes"] == {}


def test_test_mode_predicts_creation_when_the_checkout_is_not_there_yet(lab_raw, salt_env):
    path = os.path.join(lab_raw["nodes"]["nuc2"]["devstack"]["dest"], "devstack", "local.conf")
    _, dry = salt_env({"netlab": lab_raw}, test=True)
    ret = dry["devstack.local_conf_managed"](path, node_id="nuc2")
    assert ret["result"] is None and "diff" in ret["changes"]
    _, real = salt_env({"netlab": lab_raw})
    ret = real["devstack.local_conf_managed"](path, node_id="nuc2")
    assert ret["result"] is False
    assert "does not exist" in ret["comment"]


def test_diff_masks_passwords(lab_raw, salt_env):
    path = _target(lab_raw)
    lab_raw["devstack"]["localrc"]["ADMIN_PASSWORD"] = "first-Secret"
    lab_raw["devstack"]["local_conf"]["post-config"]["$NOVA_CONF"]["database"] = {
        "connection": "mysql+pymysql://root:db-Secret@192.168.42.11/nova"}
    _, states = salt_env({"netlab": lab_raw})
    first = states["devstack.local_conf_managed"](path, node_id="nuc2")
    assert "+ADMIN_PASSWORD=******" in first["changes"]["diff"]
    assert "first-Secret" not in str(first)
    assert "db-Secret" not in str(first)
    assert "root:******@" in first["changes"]["diff"]

    lab_raw["devstack"]["localrc"]["ADMIN_PASSWORD"] = "second-Secret"
    _, states = salt_env({"netlab": lab_raw})
    second = states["devstack.local_conf_managed"](path, node_id="nuc2")
    diff = second["changes"]["diff"]
    assert "-ADMIN_PASSWORD=******" in diff and "+ADMIN_PASSWORD=******" in diff
    assert "Secret" not in str(second)
    assert set(second["changes"]) == {"diff"}
    with open(path, encoding="utf-8") as fh:
        assert "ADMIN_PASSWORD=second-Secret\n" in fh.read()


def test_mode_and_owner_drift_are_fixed_without_rewriting(lab_raw, salt_env):
    _, states = salt_env({"netlab": lab_raw})
    path = _target(lab_raw)
    states["devstack.local_conf_managed"](path, node_id="nuc2")
    inode = os.stat(path).st_ino
    os.chmod(path, 0o644)
    os.chown(path, 0, 0)
    ret = states["devstack.local_conf_managed"](path, node_id="nuc2")
    assert ret["result"] is True
    assert set(ret["changes"]) == {"mode", "user", "group"}
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_ino == inode
    assert st.st_uid == pwd.getpwnam(OWNER).pw_uid


def test_missing_user_is_a_clean_error_and_writes_nothing(lab_raw, salt_env):
    _, states = salt_env({"netlab": lab_raw})
    path = _target(lab_raw)
    ret = states["devstack.local_conf_managed"](path, node_id="nuc2",
                                                user="no-such-user-xyz")
    assert ret["result"] is False
    assert "'no-such-user-xyz' does not exist" in ret["comment"]
    assert not os.path.exists(path)


def test_invalid_lab_fails_with_every_problem_and_writes_nothing(lab_raw, salt_env):
    path = _target(lab_raw)
    lab_raw["nodes"]["nuc3"]["ip"] = "192.168.42.300"
    lab_raw["devstack"]["localrc"]["9BAD"] = "x"
    _, states = salt_env({"netlab": lab_raw})
    ret = states["devstack.local_conf_managed"](path, node_id="nuc2")
    assert ret["result"] is False
    assert "netlab:nodes:nuc3:ip: 192.168.42.300 is not an IPv4 address" in ret["comment"]
    assert "netlab:devstack:localrc:9BAD:" in ret["comment"]
    assert not os.path.exists(path)


def _slice_pillar(lab_raw, node_id):
    lab = netlab_lab.load(lab_raw)
    text = netlab_localconf.render(lab, node_id)
    return {"netlab_node": netlab_slice.node_slice(lab, node_id, local_conf=text)}, text


def test_lab_node_writes_its_own_slice(lab_raw, salt_env):
    pillar, text = _slice_pillar(lab_raw, "nuc3")
    mods, states = salt_env(pillar, minion_id="nuc3")
    path = _target(lab_raw, "nuc3")
    assert mods["devstack.settings"]()["local_conf_path"] == path
    ret = states["devstack.local_conf_managed"](path)
    assert ret["result"] is True, ret["comment"]
    with open(path, encoding="utf-8") as fh:
        assert fh.read() == text
    assert states["devstack.node_valid"]("nuc3")["result"] is True


def test_lab_node_cannot_get_another_nodes_local_conf(lab_raw, salt_env):
    pillar, _ = _slice_pillar(lab_raw, "nuc3")
    mods, _ = salt_env(pillar, minion_id="nuc3")
    assert mods["devstack.local_conf"]("nuc3") == pillar["netlab_node"]["local_conf"]
    with pytest.raises(CommandExecutionError) as exc:
        mods["devstack.local_conf"]("nuc2")
    assert "lab node nuc3" in str(exc.value) and "nuc2" in str(exc.value)
    with pytest.raises(CommandExecutionError):
        mods["devstack.settings"]("nuc2")


def test_networking_node_renders_any_node_and_requires_a_known_id(lab_raw, salt_env):
    mods, _ = salt_env({"netlab": lab_raw}, minion_id="netnode")
    lab = netlab_lab.load(lab_raw)
    for node_id in lab.nodes:
        assert mods["devstack.local_conf"](node_id) == netlab_localconf.render(lab, node_id)
    assert mods["devstack.local_conf"]("nuc2", generation=3) == \
        netlab_localconf.render(lab, "nuc2", generation=3)
    with pytest.raises(CommandExecutionError, match="node_id is required"):
        mods["devstack.local_conf"]()
    with pytest.raises(CommandExecutionError, match="nuc9 is not a node"):
        mods["devstack.local_conf"]("nuc9")


@pytest.mark.parametrize("pillar, expected", [
    ({}, "neither pillar 'netlab'"),
    ({"netlab_node": {"error": "the lab pillar is invalid; run netlab.validate"}},
     "the lab pillar is invalid"),
    ({"netlab_node": {"id": "nuc2", "devstack": {"user": "stack"}}},
     "netlab_node:local_conf is missing"),
])
def test_node_valid_fails_before_anything_when_the_slice_is_unusable(
        salt_env, pillar, expected):
    _, states = salt_env(pillar)
    ret = states["devstack.node_valid"]("nuc2")
    assert ret["result"] is False
    assert expected in ret["comment"]


def test_node_valid_rejects_a_slice_for_another_node(lab_raw, salt_env):
    pillar, _ = _slice_pillar(lab_raw, "nuc3")
    _, states = salt_env(pillar, minion_id="nuc2")
    ret = states["devstack.node_valid"]("nuc2")
    assert ret["result"] is False and "for node nuc3, not nuc2" in ret["comment"]


def test_git_base_with_the_default_repo_clones_devstack_from_the_mirror(lab_raw, salt_env):
    """docs/operations.rst: with ``devstack:git_base`` at a mirror of opendev and
    ``repo`` left at its default, local.conf's ``GIT_BASE`` is the mirror and DevStack
    itself is cloned from ``<git_base>/openstack/devstack.git`` (what
    ``netlab.node.prepare`` checks out, from ``devstack.checkout_source``); a node
    with a repository of its own keeps it. The LAN cache's git mirror is off here
    (on, it takes the place of both)."""
    mirror = "http://192.168.42.2:8080/git"
    lab_raw["devstack"]["git_base"] = mirror + "/"
    lab_raw["cache"]["git"]["enabled"] = False
    lab_raw["nodes"]["nuc3"]["devstack"]["repo"] = "https://example.org/you/devstack"
    mods, _ = salt_env({"netlab": lab_raw}, minion_id="netnode")
    assert "GIT_BASE={}/".format(mirror) in mods["devstack.local_conf"]("nuc2").splitlines()
    lab = netlab_lab.load(lab_raw)
    for node_id, repo in (("nuc2", mirror + "/openstack/devstack.git"),
                          ("nuc3", "https://example.org/you/devstack")):
        # the node's own pillar, as the ext_pillar builds it
        mods, _ = salt_env({"netlab_node": netlab_slice.for_node(lab, node_id)},
                           minion_id=node_id)
        src = mods["devstack.checkout_source"]()
        assert (src["repo"], src["branch"]) == (repo, "master")
        assert "GIT_BASE={}/".format(mirror) in mods["devstack.local_conf"]().splitlines()
