"""
The virtual lab's commands that need no VM (docs/virtual-lab.rst): ``status``,
``events``, ``salt``/``salt-run``/``salt-key`` run against the lab's master inside
its namespace (``nsenter`` into the namespace holder, the master's config); ``up
--uplink`` gives the lab nodes a way out; one ``./vlab`` command per lab at a time
(a second is refused naming the first, a dead holder blocks nothing); ``down
--keep`` keeps the lab directory.

``nsenter`` is a stand-in on PATH that records its arguments (the lab's namespace
holder is a pid this test names); namespace, link and table commands of ``up`` and
``down`` go to a recorder instead of the machine. Booting the lab is
test/e2e/test_vlab.py.
"""

import json
import os
import signal
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import vlab  # noqa: E402  pylint: disable=wrong-import-position

HOLDER = 4242

# Records its arguments (one JSON line each call); answers netlab.status with rows;
# exits 3 for salt-key (to show the tool's exit status is the command's).
FAKE_NSENTER = """#!{python}
import json, sys
with open({record!r}, "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
if "netlab.status" in sys.argv:
    print(json.dumps([{{"node": "ctl", "state": "ready", "since": 0, "result": "stacked"}},
                      {{"node": "cmp1", "state": "failed", "since": 0,
                        "result": "stack.sh failed"}}]))
sys.exit(3 if any(a.endswith("/salt-key") for a in sys.argv) else 0)
"""


@pytest.fixture
def nsenter(tmp_path, monkeypatch):
    """Calls of the stand-in nsenter: a function returning the list of argv lists."""
    bin_dir, record = tmp_path / "bin", tmp_path / "nsenter.calls"
    bin_dir.mkdir()
    (bin_dir / "nsenter").write_text(FAKE_NSENTER.format(python=sys.executable,
                                                         record=str(record)))
    (bin_dir / "nsenter").chmod(0o755)
    monkeypatch.setenv("PATH", "{}:{}".format(bin_dir, os.environ["PATH"]))
    monkeypatch.setattr(vlab.Vlab, "holder", property(lambda self: HOLDER))

    def calls():
        lines = record.read_text().splitlines() if record.exists() else []
        record.unlink(missing_ok=True)
        return [json.loads(line) for line in lines]

    return calls


@pytest.fixture
def machine(monkeypatch):
    """Commands ``up``/``down`` would run on this machine, recorded; ``rm`` (of the
    lab directory, under tmp_path) is really run."""
    calls = []

    def sh(cmd, check=True, **kw):
        calls.append({"cmd": [str(c) for c in cmd], "input": kw.get("input")})
        if cmd[0] == "rm":
            return subprocess.run([str(c) for c in cmd], check=True, capture_output=True,
                                  text=True)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(vlab, "_sh", sh)
    monkeypatch.setattr(vlab, "forwarding_acquire", lambda: False)
    monkeypatch.setattr(vlab, "forwarding_release", lambda *a, **kw: False)
    return calls


def _in_lab(base, tool, *args):
    """What a command against the lab's master runs: nsenter's arguments."""
    return ["-t", str(HOLDER), "-m", "-n", "--",
            os.path.join(os.path.dirname(sys.executable), tool),
            "-c", os.path.join(str(base), "master", "etc")] + list(args)


def test_salt_commands_run_against_the_labs_master_inside_its_namespace(
        tmp_path, nsenter, capsys):
    base = tmp_path / "lab"
    assert vlab.main(["--dir", str(base), "salt-run", "netlab.reimage", "nodes=cmp1"]) == 0
    assert vlab.main(["--dir", str(base), "salt", "cmp1", "cmd.run",
                      "cat /opt/stack/devstack/local.conf"]) == 0
    # every argument after the tool is the tool's, even one that looks like vlab's
    assert vlab.main(["--dir", str(base), "salt-run", "--dir", "x", "jobs.list_jobs"]) == 0
    assert vlab.main(["--dir", str(base), "salt-key", "-L"]) == 3  # its exit status
    assert nsenter() == [
        _in_lab(base, "salt-run", "netlab.reimage", "nodes=cmp1"),
        _in_lab(base, "salt", "cmp1", "cmd.run", "cat /opt/stack/devstack/local.conf"),
        _in_lab(base, "salt-run", "--dir", "x", "jobs.list_jobs"),
        _in_lab(base, "salt-key", "-L")]
    capsys.readouterr()


def test_status_prints_every_nodes_state_and_events_follows_netlabs_events(
        tmp_path, nsenter, capsys, monkeypatch):
    base = tmp_path / "lab"
    monkeypatch.setenv("NETLAB_VLAB_DIR", str(base))
    assert vlab.main(["status"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["node", "state", "since", "last"]
    assert out[1].split() == ["ctl", "ready", "-", "stacked"]
    assert out[2].split() == ["cmp1", "failed", "-", "stack.sh", "failed"]
    assert vlab.main(["events"]) == 0
    assert nsenter() == [
        _in_lab(base, "salt-run", "-l", "quiet", "--out=json", "netlab.status",
                "as_table=False"),
        _in_lab(base, "salt-run", "state.event", "netlab/*", "pretty=True")]


def test_uplink_routes_the_lab_nodes_out_only_when_asked(tmp_path, machine, monkeypatch):
    seen = []
    monkeypatch.setattr(vlab.Vlab, "up", lambda self, **kw: seen.append(kw["uplink"]) or 0)
    for argv in (["up", "--uplink"], ["up"]):
        assert vlab.main(["--dir", str(tmp_path / "lab")] + argv) == 0
    assert seen == [True, False]
    monkeypatch.setattr(vlab, "_resolvers", lambda: ["192.0.2.53"])
    monkeypatch.setattr(vlab, "resolve", lambda hosts: {h: ["198.51.100.7"] for h in hosts})
    monkeypatch.setattr(vlab.Vlab, "_start_holder", lambda self, resolvers: None)
    for uplink in (True, False):
        base = tmp_path / "lab-{}".format(uplink)
        lab = vlab.Vlab(str(base))
        monkeypatch.setattr(vlab.Vlab, "holder", property(lambda self: None))
        machine.clear()
        lab._namespace(None, uplink, ["deb.debian.org"])  # pylint: disable=protected-access
        n = lab.names
        assert ["ip", "netns", "exec", n["ns"], "sysctl", "-qw",
                "net.ipv4.ip_forward={}".format(int(uplink))] in [c["cmd"] for c in machine]
        nft = next(c["input"] for c in machine if c["cmd"] == ["nft", "-f", "-"])
        masquerade = "ip saddr {} oifname != \"{}\" masquerade".format(vlab.CIDR,
                                                                       n["veth_host"])
        assert (masquerade in nft) is uplink
        # the nodes' default route is the networking node only with an uplink
        network = vlab.lab_pillar(str(base), uplink=uplink)["network"]
        assert network.get("gateway") == (vlab.NETNODE_IP if uplink else None)
        # DevStack's repository: tried from inside the lab with an uplink only
        monkeypatch.setattr(vlab.Vlab, "holder", property(lambda self: HOLDER))
        machine.clear()
        reachable = lab._devstack_reachable(vlab.DEVSTACK_REPO, uplink)  # pylint: disable=protected-access
        assert reachable is uplink
        assert [c["cmd"] for c in machine] == (
            [["nsenter", "-t", str(HOLDER), "-m", "-n", "--", "timeout", "30", "git",
              "ls-remote", "--heads", vlab.DEVSTACK_REPO]] if uplink else [])
        # a running lab keeps what it was made with
        with pytest.raises(vlab.VlabError, match="the lab runs {} --uplink; ./vlab down "
                           "first".format("with" if uplink else "without")):
            lab._namespace(None, not uplink, ["deb.debian.org"])  # pylint: disable=protected-access


HOLD_LOCK = """
import sys
import vlab
with vlab.Vlab(sys.argv[1]).locked("up"):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_second_up_or_down_on_the_same_lab_is_refused_while_one_runs(
        tmp_path, monkeypatch, nsenter, capsys):
    base = tmp_path / "lab"
    ups = []
    monkeypatch.setattr(vlab.Vlab, "up", lambda self, **kw: ups.append(kw) or 0)
    monkeypatch.setattr(vlab.Vlab, "down", lambda self, keep=False: 0)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(vlab.__file__))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(base)], env=env,  # pylint: disable=consider-using-with
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        for verb in ("up", "down"):
            assert vlab.main(["--dir", str(base), verb]) == 2
            err = capsys.readouterr().err
            assert "vlab: error: the lab in {} is busy: ./vlab up (pid {}, since ".format(
                base, holder.pid) in err and "; wait for it to end" in err
        # what only reads or talks to the master runs beside it (events in another
        # terminal while up runs)
        assert vlab.main(["--dir", str(base), "status"]) == 0
        assert vlab.main(["--dir", str(base), "events"]) == 0
        assert len(nsenter()) == 2
        # another lab is not held up
        assert vlab.main(["--dir", str(tmp_path / "other"), "up"]) == 0
        assert len(ups) == 1
        # the kernel drops a killed holder's lock
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
        assert vlab.main(["--dir", str(base), "up"]) == 0
        assert len(ups) == 2
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(30)
        holder.stdout.close()
        holder.stdin.close()


def test_down_keep_keeps_the_lab_directory_and_forgets_the_lab(tmp_path, machine):
    base = tmp_path / "lab"
    (base / "logs").mkdir(parents=True)
    (base / "logs" / "deploy-1.log").write_text("the deploy's output\n")
    (base / "vlab.json").write_text(json.dumps({"computes": 1, "uplink": False}))
    assert vlab.main(["--dir", str(base), "down", "--keep"]) == 0
    n = vlab.names(str(base))
    cmds = [c["cmd"] for c in machine]
    assert cmds == [["nft", "delete", "table", "ip", n["table"]],
                    ["ip", "link", "delete", n["veth_host"]],
                    ["ip", "netns", "delete", n["ns"]]]
    assert (base / "logs" / "deploy-1.log").read_text() == "the deploy's output\n"
    assert json.loads((base / "vlab.json").read_text()) == {}
    # without --keep the directory goes, and its lock file with it
    machine.clear()
    assert vlab.main(["--dir", str(base), "down"]) == 0
    assert machine[-1]["cmd"] == ["rm", "-rf", "--one-file-system", str(base)]
    assert not base.exists() and not os.path.exists(str(base) + ".lock")
