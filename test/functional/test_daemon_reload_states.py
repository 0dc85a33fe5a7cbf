"""
``netlab_daemon.reloaded`` and ``netlab_daemon.exports_released`` through Salt's
state system (``state.high`` with ``watch``), on a stand-in daemon: a shell
process that, on SIGHUP, logs ganesha's reread marker (``ok``) or ignores it
(``mute``: a reload that is never confirmed). Shown: a change reloads the same
process; a process that started on the config is not reloaded; an unconfirmed
reload falls back to a restart and says so; a replaced root's export is taken
out of the running config before the new one.
"""

import json

import pytest

from lib.saltlocal import SaltLocal, by_id
from conftest import REPO

import netlab_proc

FAKE = """#!/bin/sh
log=$1; mode=$2
trap 'if [ "$mode" = ok ]; then echo "x :EVENT :Reread exports complete" >> "$log"; fi' HUP
echo "x :EVENT :started" >> "$log"
while :; do sleep 0.2 & wait $!; done
"""


@pytest.fixture
def env(tmp_path):
    script = tmp_path / "fake-daemon.sh"
    script.write_text(FAKE)
    salt = SaltLocal(tmp_path / "salt", REPO, {"netlab": {}})
    salt.sync()
    out = {"salt": salt, "tmp": tmp_path, "script": script, "conf": tmp_path / "fake.conf",
           "pidfile": str(tmp_path / "fake.pid")}
    yield out
    netlab_proc.stop(netlab_proc.read_pid(out["pidfile"]), 5)


def daemon(env, mode):
    return {"mode": "process", "name": "fake", "pidfile": env["pidfile"],
            "cmd": ["/bin/sh", str(env["script"]), str(env["tmp"] / "fake.log"), mode],
            "log": str(env["tmp"] / "fake.out"), "settle": 0.3, "stop_timeout": 5,
            "reload_log": str(env["tmp"] / "fake.log"),
            # the marker comes at once; a margin for a loaded machine. A mute daemon
            # must fall back to a restart, so its wait is short
            "reload_timeout": 10 if mode == "ok" else 2}


def high(env, contents, mode, released=False):
    d = daemon(env, mode)
    meta = {"__sls__": "netlab_test", "__env__": "base"}
    more = {}
    if released:  # as in netlab.netnode.nfs: it sees the config before it changes
        more["rel"] = dict(meta, netlab_daemon=[
            "exports_released", {"name": str(env["conf"])}, {"exports": []}, {"daemon": d},
            {"require_in": [{"file": "cfg"}]}])
    return dict(more, **{
        "cfg": dict(meta, file=[{"name": str(env["conf"])}, {"contents": contents},
                                "managed"]),
        "run": dict(meta, netlab_daemon=[
            "running", {"name": "fake"}, {"cmd": d["cmd"]}, {"pidfile": d["pidfile"]},
            {"log": d["log"]}, {"settle": 0.3}, {"stop_timeout": 5},
            {"require": [{"file": "cfg"}]}]),
        "reload": dict(meta, netlab_daemon=[
            "reloaded", {"name": "fake"}, {"config": str(env["conf"])}, {"daemon": d},
            {"require": [{"netlab_daemon": "run"}]}, {"watch": [{"file": "cfg"}]}]),
    })


def apply(env, data):
    out = env["salt"].run("state.high", json.dumps(data))
    assert isinstance(out, dict), out
    return by_id(out)


def test_a_changed_config_reloads_the_same_process(env):
    first = apply(env, high(env, "v1", "ok"))
    pid = netlab_proc.read_pid(env["pidfile"])
    assert first["run"]["changes"]["started"] == "fake"
    # it started on this config: nothing to reload
    assert first["reload"]["changes"] == {}, first["reload"]
    assert "started on this config" in first["reload"]["comment"]
    again = apply(env, high(env, "v2", "ok"))
    assert again["reload"]["changes"]["reloaded"] == "fake", again["reload"]
    assert "reread confirmed" in again["reload"]["comment"]
    assert netlab_proc.read_pid(env["pidfile"]) == pid
    unchanged = apply(env, high(env, "v2", "ok"))
    assert all(not v["changes"] for v in unchanged.values()), unchanged


def test_an_unconfirmed_reload_falls_back_to_a_restart(env):
    apply(env, high(env, "v1", "mute"))
    pid = netlab_proc.read_pid(env["pidfile"])
    ret = apply(env, high(env, "v2", "mute"))["reload"]
    assert ret["result"] is True, ret
    assert ret["changes"]["restarted"] == "fake"
    assert "no 'Reread exports complete'" in ret["changes"]["reload_failed"]
    assert "reload failed" in ret["comment"] and "restarted instead" in ret["comment"]
    new = netlab_proc.read_pid(env["pidfile"])
    assert new != pid and netlab_proc.alive(new) and not netlab_proc.alive(pid)


def test_a_replaced_root_is_taken_out_of_the_running_config_first(env):
    apply(env, high(env, "v1", "ok"))
    pid = netlab_proc.read_pid(env["pidfile"])
    block = ('# node {n} root (inode {i})\nEXPORT {{\n    Export_Id = {e};\n'
             '    Path = "/r/{n}";\n}}\n')
    env["conf"].write_text("NFS_CORE_PARAM { }\n" + block.format(n="a", i=11, e=101) +
                           block.format(n="b", i=12, e=102))
    exports = [{"id": 101, "inode": 11, "exists": True, "path": "/r/a"},
               {"id": 102, "inode": 99, "exists": True, "path": "/r/b"}]   # b: new inode
    meta = {"__sls__": "netlab_test", "__env__": "base"}
    state = dict(meta, netlab_daemon=["exports_released", {"name": str(env["conf"])},
                                      {"exports": exports}, {"daemon": daemon(env, "ok")}])
    predicted = env["salt"].run("state.high", json.dumps({"rel": state}), "test=True")
    assert by_id(predicted)["rel"]["result"] is None
    ret = apply(env, {"rel": state})["rel"]
    assert ret["changes"]["released"] == ["/r/b"] and ret["changes"]["reloaded"] == "fake"
    text = env["conf"].read_text()
    assert "Export_Id = 101;" in text and "Export_Id = 102;" not in text
    assert netlab_proc.read_pid(env["pidfile"]) == pid
    # the same exports again: nothing renewed (b is no longer in the running config)
    assert apply(env, {"rel": state})["rel"]["changes"] == {}


def test_settings_outside_the_exports_restart_it(env):
    """A reread applies EXPORT blocks only: another NFS_CORE_PARAM restarts."""
    export = "EXPORT {\n    Export_Id = 1;\n}\n"
    apply(env, high(env, "NFS_CORE_PARAM { A; }\n", "ok", released=True))
    pid = netlab_proc.read_pid(env["pidfile"])
    ret = apply(env, high(env, "NFS_CORE_PARAM { A; }\n" + export, "ok", released=True))
    assert ret["reload"]["changes"]["reloaded"] == "fake", ret["reload"]
    assert netlab_proc.read_pid(env["pidfile"]) == pid
    ret = apply(env, high(env, "NFS_CORE_PARAM { B; }\n" + export, "ok", released=True))
    assert ret["reload"]["changes"]["restarted"] == "fake", ret["reload"]
    assert "reload_failed" not in ret["reload"]["changes"]
    assert "settings outside its exports changed" in ret["reload"]["comment"]
    assert netlab_proc.read_pid(env["pidfile"]) != pid
