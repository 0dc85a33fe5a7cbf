"""
netlab_ganesha: what each reload step renders after a root reset, how a reread
is confirmed from ganesha's log, and when the refresh falls back to a restart;
netlab_master_ops' pure parts of the exports refresh.
"""

import copy
import os
import re
import shutil

import jinja2
import pytest

import netlab_boot
import netlab_ganesha
import netlab_lab
import netlab_master_ops
from conftest import REPO

TEMPLATES = REPO / "netlab" / "files" / "netnode"


def render(exports):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             undefined=jinja2.StrictUndefined)
    return env.get_template("ganesha.conf.jinja").render(exports=exports, recovery_root="/r")


@pytest.fixture
def lab(example_pillar, tmp_path):
    raw = copy.deepcopy(example_pillar)
    raw["netnode"]["storage"] = str(tmp_path / "srv")
    raw["netnode"].setdefault("nfs", {})["server"] = "ganesha"
    for node in raw["nodes"]:
        (tmp_path / "srv" / "roots" / node).mkdir(parents=True)
    return netlab_lab.load(raw)


def blocks(text):
    """``{Export_Id: Path}`` of the EXPORT blocks of a rendered config."""
    return {int(i): p for i, p in re.findall(
        r'EXPORT \{\n\s*Export_Id = (\d+);\n\s*Path = "([^"]+)";', text)}


def reset(lab, node):
    root = "{}/{}".format(lab.netnode.roots_dir, node)
    os.rename(root, root + ".old")
    os.mkdir(root)


def test_the_config_names_each_exports_root_inode(lab):
    ex = netlab_boot.exports(lab)
    text = render(ex)
    assert netlab_ganesha.loaded_inodes(text) == {e["id"]: e["inode"] for e in ex}
    assert len(ex) == 3


def test_nothing_renewed_when_no_root_was_replaced(lab):
    text = render(netlab_boot.exports(lab))
    assert netlab_ganesha.renewed(text, netlab_boot.exports(lab)) == []
    assert netlab_ganesha.without(text, []) == text


def test_a_reset_root_is_unexported_first_then_exported_again(lab):
    """Step 1: the running config without the reset root's block (the others
    byte for byte as ganesha has them); step 2: the new config, which has it
    again under the same Export_Id with the new root's inode."""
    old = render(netlab_boot.exports(lab))
    reset(lab, "nuc2")
    new_ex = netlab_boot.exports(lab)
    ids = netlab_ganesha.renewed(old, new_ex)
    nuc2 = [e for e in new_ex if e["path"].endswith("/nuc2")][0]
    assert ids == [nuc2["id"]]
    step1 = netlab_ganesha.without(old, ids)
    assert nuc2["id"] not in blocks(step1)
    assert blocks(step1) == {i: p for i, p in blocks(old).items() if i != nuc2["id"]}
    for i in blocks(step1):  # every other block exactly as in the running config
        block = re.search(r"EXPORT \{\n\s*Export_Id = %d;.*?\n\}" % i, old, re.S).group(0)
        assert block in step1
    assert "NFS_CORE_PARAM" in step1 and "EXPORT_DEFAULTS" in step1
    step2 = render(new_ex)
    assert blocks(step2) == blocks(old)
    assert netlab_ganesha.loaded_inodes(step2)[nuc2["id"]] == nuc2["inode"]
    assert netlab_ganesha.renewed(step2, new_ex) == []  # a second run: nothing to do


def test_removed_or_new_roots_are_no_renewal(lab, tmp_path):
    old = render(netlab_boot.exports(lab))
    shutil.rmtree(tmp_path / "srv" / "roots" / "nuc3")
    ex = netlab_boot.exports(lab)
    assert netlab_ganesha.renewed(old, ex) == []   # gone: the new config drops it
    first = render(ex)
    (tmp_path / "srv" / "roots" / "nuc3").mkdir()
    assert netlab_ganesha.renewed(first, netlab_boot.exports(lab)) == []  # new: added


def test_reread_is_seen_only_after_the_offset(tmp_path):
    log = tmp_path / "ganesha.log"
    log.write_text("x : reread_exports :CONFIG :EVENT :Reread exports complete\n")
    off = netlab_ganesha.log_offset(str(log))
    assert not netlab_ganesha.reread_seen(str(log), off)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("y : reread_exports :CONFIG :EVENT :Reread exports complete\n")
    assert netlab_ganesha.reread_seen(str(log), off)
    log.write_text("rotated: Reread exports complete\n")   # shorter than the offset
    assert netlab_ganesha.reread_seen(str(log), off)
    assert not netlab_ganesha.reread_seen(str(tmp_path / "none.log"), 0)
    assert netlab_ganesha.log_offset(str(tmp_path / "none.log")) == 0


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


def test_reload_waits_for_the_marker_then_returns(tmp_path):
    log = tmp_path / "ganesha.log"
    log.write_text("old: Reread exports complete\n")
    clock, sent = Clock(), []

    def send():
        sent.append(1)

    def sleep(s):
        clock.sleep(s)
        if clock.t >= 0.5:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write("new: Reread exports complete\n")

    took = netlab_ganesha.reload(send, str(log), timeout=5, clock=clock, sleep=sleep)
    assert sent == [1] and 0.5 <= took < 1


def test_reload_not_observed_is_a_clear_error(tmp_path):
    log = tmp_path / "ganesha.log"
    log.write_text("Reread exports complete\n")   # an earlier reread does not count
    clock = Clock()
    with pytest.raises(netlab_ganesha.ReloadError, match=r"no 'Reread exports complete' in "
                       r".*ganesha\.log within 3 s after SIGHUP"):
        netlab_ganesha.reload(lambda: None, str(log), timeout=3, clock=clock,
                              sleep=clock.sleep)


def test_reload_that_cannot_be_sent_raises_at_once(tmp_path):
    def send():
        raise netlab_ganesha.ReloadError("nfs-ganesha is not running")

    with pytest.raises(netlab_ganesha.ReloadError, match="not running"):
        netlab_ganesha.reload(send, str(tmp_path / "g.log"), timeout=3)


def test_reload_or_restart_decision(lab):
    old = render(netlab_boot.exports(lab))
    reset(lab, "nuc2")
    new = render(netlab_boot.exports(lab))
    assert netlab_ganesha.decide(False, old, new) == "start"
    assert netlab_ganesha.decide(True, old, new) == "reload"     # exports only
    assert netlab_ganesha.decide(True, None, new) == "reload"    # nothing known to compare
    assert netlab_ganesha.core(old) == netlab_ganesha.core(new)
    assert "EXPORT {" not in netlab_ganesha.core(new) and "NFS_CORE_PARAM" in \
        netlab_ganesha.core(new)
    # a setting a reread does not apply: restart
    assert netlab_ganesha.decide(True, old.replace("Enable_NLM = false", "Enable_NLM = true"),
                                 new) == "restart"
    # the package's own config, which ganesha may run with on a first install
    debian = "EXPORT\n{\n\tExport_Id = 77;\n\tPath = /tmp;\n}\nLOG { Default_Log_Level = EVENT; }\n"
    assert netlab_ganesha.decide(True, debian, new) == "restart"


# --------------------------------------------------------------------------- the runner's side
def test_no_stop_command_by_default_and_the_override_is_kept(lab):
    assert netlab_master_ops.exports_commands({}, lab) == ([], [])
    own = [["systemctl", "restart", "nfs-ganesha"]]
    assert netlab_master_ops.exports_commands({"netlab_exports_refresh": own}, lab) == (own, [])
    assert netlab_master_ops.exports_commands(
        {"netlab_exports_refresh": ["true"]}, lab) == ([["true"]], [])


def test_kernel_server_keeps_exportfs(example_pillar):
    raw = copy.deepcopy(example_pillar)
    raw["netnode"]["nfs"] = {"server": "kernel"}
    kernel = netlab_lab.load(raw)
    assert netlab_master_ops.exports_commands({}, kernel) == (
        [], [["exportfs", "-ra"], ["exportfs", "-f"]])


def key(sid, name, fun):
    return "netlab_daemon_|-{}_|-{}_|-{}".format(sid, name, fun)


def test_outcome_reads_reload_and_fallback_from_the_state():
    rel = key("netlab-netnode-nfs-netlab_daemon-exports_released-ganesha", "/etc/g.conf",
              "exports_released")
    rl = key("netlab-netnode-nfs-netlab_daemon-reloaded-ganesha", "nfs-ganesha", "reloaded")
    other = "file_|-netlab-netnode-nfs-file-managed-ganesha_|-/etc/g.conf_|-managed"
    ok = {rel: {"changes": {"released": ["/r/nuc2"], "reloaded": "nfs-ganesha"},
                "comment": "released", "result": True},
          rl: {"changes": {"reloaded": "nfs-ganesha"}, "comment": "reloaded", "result": True},
          other: {"changes": {"diff": "..."}, "result": True}}
    out = netlab_master_ops.ganesha_outcome(ok)
    assert out == {"reloaded": True, "restarted": None, "comments": ["released", "reloaded"]}
    bad = {rl: {"changes": {"restarted": "nfs-ganesha", "reload_failed": "no reread",
                            "pid": 7}, "comment": "restarted instead", "result": True}}
    out = netlab_master_ops.ganesha_outcome(bad)
    assert out["restarted"] == "no reread" and not out["reloaded"]
    assert netlab_master_ops.ganesha_outcome({rl: {"changes": {}, "result": True}}) == {
        "reloaded": False, "restarted": None, "comments": []}
