"""
A lab node's DevStack lifecycle with ``salt-call --local`` (no daemons).

A real ``salt-call`` with file_roots = this checkout and a pillar holding the
node's slice (``netlab_node``, as netlab's ext_pillar builds it) applies
``netlab.node`` (check, prepare: packages, stack user, sudo, DevStack checkout;
local.conf) and runs ``devstack.stack`` / ``unstack`` / ``discover`` against the
stand-in DevStack repository (test/lib/fake_devstack.py). The stack user is a
real system user created and removed by the fixture.
"""

import copy
import json
import os
import pathlib
import pwd
import shutil
import stat
import subprocess
import sys
import uuid

import pytest
import yaml

import netlab_lab
import netlab_localconf
import netlab_slice
from lib import fake_devstack, testusers

REPO = pathlib.Path(__file__).resolve().parents[2]
# the salt-call of the Salt line under test (test/run-tests runs pytest from that venv)
SALT_CALL = os.path.join(os.path.dirname(sys.executable), "salt-call")
NODE = "nuc2"


@pytest.fixture(scope="module")
def stack_user():
    name = testusers.create("nlh5")  # swept by the next run if this one is killed
    try:
        yield name
    finally:
        testusers.remove(name)  # with its home and its sudoers file


@pytest.fixture(scope="module")
def base():
    path = pathlib.Path("/tmp") / "netlab-h5-{}".format(uuid.uuid4().hex[:8])
    path.mkdir(mode=0o755)
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def fake(base, stack_user):
    repo = fake_devstack.create(base / "fake", sleep=0.3, owner=stack_user)
    repo.add_branch("stable/2025.1", version="stable-2025.1")
    return repo


class Node:
    """One lab node driven by ``salt-call --local`` with its slice as pillar."""

    def __init__(self, base, example, user, fake):
        self.base = base
        self.raw = copy.deepcopy(example)
        self.raw["devstack"]["user"] = user
        self.raw["devstack"]["repo"] = fake.url
        # no git mirror here: with it on, prepare checks DevStack's projects out of it
        self.raw["cache"]["git"]["enabled"] = False
        for node_id, node in self.raw["nodes"].items():
            node.setdefault("devstack", {})["dest"] = str(base / node_id / "opt" / "stack")
        self.user = user
        self.conf = base / "salt"
        (self.conf / "pillar").mkdir(parents=True, exist_ok=True)
        (self.conf / "pillar" / "top.sls").write_text("base:\n  '*':\n    - node\n")
        config = {
            "id": NODE, "file_client": "local",
            "file_roots": {"base": [str(REPO)]},
            "pillar_roots": {"base": [str(self.conf / "pillar")]},
            "root_dir": str(self.conf / "root"),
            "log_file": str(self.conf / "minion.log"), "log_level_logfile": "info",
        }
        (self.conf / "minion").write_text(yaml.safe_dump(config))
        self.write_pillar()
        self.call("saltutil.sync_all")

    @property
    def dest(self):
        return pathlib.Path(self.raw["nodes"][NODE]["devstack"]["dest"])

    def write_pillar(self):
        lab = netlab_lab.load(self.raw)
        text = netlab_localconf.render(lab, NODE, generation=0)
        node_slice = netlab_slice.node_slice(lab, NODE, generation=0, local_conf=text)
        (self.conf / "pillar" / "node.sls").write_text(
            yaml.safe_dump({"netlab_node": node_slice}))
        return lab

    def call(self, *args, check=True):
        proc = subprocess.run(
            [SALT_CALL, "-c", str(self.conf), "--local", "--out=json",
             "--retcode-passthrough"] + list(args),
            capture_output=True, text=True, timeout=300, check=False)
        self.stderr = proc.stderr
        if check:
            assert proc.returncode == 0, (proc.stdout, proc.stderr)
        try:
            data = json.loads(proc.stdout)["local"]
        except (ValueError, KeyError):
            data = proc.stdout
        return proc.returncode, data


@pytest.fixture(scope="module")
def node(base, example_pillar, stack_user, fake):
    return Node(base, example_pillar, stack_user, fake)


def _git(path, *args):
    return subprocess.run(["git", "-c", "safe.directory=*", "-C", str(path)] + list(args),
                          capture_output=True, text=True, check=True).stdout.strip()


def _failed(states):
    return {k: v["comment"] for k, v in states.items() if v["result"] is not True}


@pytest.fixture(scope="module")
def prepared(node):
    """The first ``state.apply netlab.node``, whichever test asks first (every test
    here needs a prepared node; none depends on the file's order)."""
    return node.call("state.apply", "netlab.node", check=False)


def test_node_sls_prepares_the_node_and_checks_out_devstack(node, fake, prepared):
    rc, states = prepared
    assert rc == 0 and not _failed(states), _failed(states)
    checkout = node.dest / "devstack"
    assert _git(checkout, "rev-parse", "HEAD") == fake.head("master")
    assert _git(checkout, "remote", "get-url", "origin") == fake.url
    user = pwd.getpwnam(node.user)
    for path in (node.dest, checkout, checkout / "stack.sh", node.dest / "logs"):
        assert path.stat().st_uid == user.pw_uid, path
    conf = checkout / "local.conf"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert "HOST_IP=" in conf.read_text()
    sudoers = pathlib.Path("/etc/sudoers.d/50_netlab_" + node.user)
    assert stat.S_IMODE(sudoers.stat().st_mode) == 0o440
    subprocess.run(["/usr/sbin/visudo", "-cf", str(sudoers)], check=True, capture_output=True)
    # passwordless sudo works for the stack user (DevStack needs it)
    subprocess.run(["su", node.user, "-c", "sudo -n true"], check=True, capture_output=True)


def test_second_apply_changes_nothing(node, prepared):
    rc, states = node.call("state.apply", "netlab.node")
    assert rc == 0
    changed = {k: v["changes"] for k, v in states.items() if v["changes"]}
    assert changed == {}


def test_stack_runs_stack_sh_as_the_stack_user_with_this_nodes_local_conf(node, prepared):
    lab = netlab_lab.load(node.raw)
    before = len(fake_devstack.records(node.dest, "stack"))
    rc, out = node.call("devstack.stack")
    assert rc == 0, out
    assert out["result"] is True and out["retcode"] == 0
    assert out["node"] == NODE and out["duration"] > 0
    assert out["log"] == str(node.dest / "logs" / "netlab-stack.log")
    assert "fake stack.sh: completed" in out["log_tail"]
    assert "fake stack.sh: completed" in pathlib.Path(out["log"]).read_text()
    recs = fake_devstack.records(node.dest, "stack")
    assert len(recs) == before + 1
    rec = recs[-1]
    assert rec["user"] == node.user and rec["uid"] != 0
    assert rec["host_ip"] == lab.node(NODE).ip
    assert rec["service_host"] == lab.controller.ip
    assert rec["sections"][0] == "local|localrc"
    assert rec["top_dir"] == str(node.dest / "devstack")
    # bash sourced localrc: the node's own values arrive byte for byte
    assert rec["localrc"]["HOST_IP"] == lab.node(NODE).ip
    assert rec["localrc"]["DATABASE_PASSWORD"] == rec["localrc"]["ADMIN_PASSWORD"]
    # salt-call --local has no master to send events to: each lost event is named
    # in the return (the master turns them into warnings of the run), none silent
    assert out["events_lost"] == [
        "event netlab/node/{}/stack/{} was not fired: the minion could not send it to "
        "the master".format(NODE, what) for what in ("started", "finished")]
    # the outcome is kept on the node
    rc, last = node.call("devstack.last_stack")
    assert last["result"] is True and last["duration"] == out["duration"]


def test_a_failing_stack_sh_returns_its_log_tail_and_fails_the_job(node, prepared):
    node.call("devstack.stack")  # a good run first: its log is the one kept as .1
    marker = node.dest / "fake-devstack" / "fail"
    marker.write_text("1")
    try:
        rc, out = node.call("devstack.stack", check=False)
    finally:
        marker.unlink()
    assert rc != 0
    assert out["result"] is False and out["retcode"] == 1
    assert "ERROR: fake failure requested" in out["log_tail"]
    # the previous (good) log is kept as .1
    assert "completed" in (node.dest / "logs" / "netlab-stack.log.1").read_text()
    rc, tail = node.call("devstack.log_tail", "3")
    assert "fake failure requested" in tail


def test_unstack_and_discover_run_their_scripts_as_the_stack_user(node, prepared):
    rc, out = node.call("devstack.unstack")
    assert out["result"] is True
    assert [t.split()[1] for t in out["events_lost"]] == [
        "netlab/node/{}/unstack/{}".format(NODE, w) for w in ("started", "finished")]
    rc, out = node.call("devstack.discover")
    assert out["result"] is True
    unstack = fake_devstack.records(node.dest, "unstack")
    discover = fake_devstack.records(node.dest, "discover")
    assert len(unstack) == 1 and len(discover) == 1
    assert discover[0]["user"] == node.user
    assert unstack[0]["start"] < discover[0]["start"]


def test_checkout_follows_devstack_branch_and_repo_from_pillar(node, fake, base, stack_user,
                                                               prepared):
    checkout = node.dest / "devstack"
    node.raw["devstack"]["branch"] = "stable/2025.1"
    node.write_pillar()
    rc, states = node.call("state.apply", "netlab.node.prepare")
    assert rc == 0 and not _failed(states)
    assert (checkout / "VERSION").read_text().strip() == "stable-2025.1"
    assert _git(checkout, "rev-parse", "HEAD") == fake.head("stable/2025.1")
    assert (checkout / "local.conf").exists(), "the node's local.conf survives a branch switch"
    # a mirror of DevStack elsewhere: the origin moves there
    other = fake_devstack.create(base / "mirror", sleep=0.3, owner=stack_user,
                                 version="mirror")
    node.raw["devstack"]["repo"] = other.url
    node.raw["devstack"]["branch"] = "master"
    node.write_pillar()
    rc, states = node.call("state.apply", "netlab.node.prepare")
    assert rc == 0 and not _failed(states), _failed(states)
    assert _git(checkout, "remote", "get-url", "origin") == other.url
    assert (checkout / "VERSION").read_text().strip() == "mirror"
    # and back
    node.raw["devstack"]["repo"] = fake.url
    node.write_pillar()
    rc, states = node.call("state.apply", "netlab.node.prepare")
    assert rc == 0 and not _failed(states)
    assert _git(checkout, "rev-parse", "HEAD") == fake.head("master")


def test_stack_without_a_slice_is_a_clear_error(node):
    saved = (node.conf / "pillar" / "node.sls").read_text()
    (node.conf / "pillar" / "node.sls").write_text("{}\n")
    try:
        rc, out = node.call("devstack.stack", check=False)
    finally:
        (node.conf / "pillar" / "node.sls").write_text(saved)
    assert rc != 0
    assert "netlab_node" in str(out) + node.stderr


def test_unstack_on_a_fresh_root_is_a_skipped_success(tmp_path, example_pillar, stack_user,
                                                      fake):
    """A node just reimaged has no DevStack checkout: the restack's unstack step
    has nothing to stop and succeeds (the daily reimage -> restack loop); stack
    there still fails, naming what is missing."""
    fresh = Node(tmp_path, example_pillar, stack_user, fake)
    rc, out = fresh.call("devstack.unstack")
    assert rc == 0 and out["result"] is True and out["skipped"] is True, out
    assert "nothing to unstack: no DevStack checkout in {}".format(
        fresh.dest / "devstack") in out["comment"]
    assert not fake_devstack.records(fresh.dest, "unstack")
    rc, out = fresh.call("devstack.stack", check=False)
    assert rc != 0 and "{} is missing: apply netlab.node".format(
        fresh.dest / "devstack" / "local.conf") in str(out) + fresh.stderr, (out, fresh.stderr)
