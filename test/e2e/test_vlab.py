"""
``./vlab up`` as README.rst writes it, from a clean copy of the repository, then
the stacked path, the failure path and ``./vlab down``.

Nothing is handed in: the networking node builds the node image inside the lab's
namespace, reaching the Debian mirror and the Python package index through the
lab's filtered NAT (the only outside addresses used); the VMs netboot, become
minions and get their local.conf. DevStack's real repository cannot be reached
from the lab nodes (they have no way out), so the first ``up`` ends with the
nodes up and their local.conf. The second ``up`` on the running lab points at
netlab's stand-in DevStack (test/lib/fake_devstack.py), which the networking node
serves to the nodes over HTTP: controller first, then the compute, then host
discovery. The third asks for a mirror inside the lab where nothing listens: the
image step fails, no node is touched, and the output names the image build and
its log. Then the lab is reshaped in its pillar and deployed again with
``salt-run state.orchestrate netlab.deploy`` (the whole orchestration, on the
VMs): cmp1's role changes and a second compute is added; the deploy reimages
cmp1 and the new node (not the controller) and stacks both computes at the same
time. ``down`` leaves no namespace, link, nftables table, process or mount.

The order of steps is asserted from the master's event stamps (host clock),
never by comparing two guests' clocks.

The lab directory comes from ``NETLAB_VLAB_DIR`` so the command line stays the
README's; its namespace and links are named after it, so a user's own lab on the
same machine is never touched.
"""

import datetime
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from lib import fake_devstack, testdirs
from lib.events import EventWatcher

# One lab, driven through its life in steps: each test is the next step (the
# module fixture holds the lab), so pytest-random-order keeps this file's order.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.guests,
              pytest.mark.random_order(disabled=True)]

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
import vlab as vlab_tool  # noqa: E402  pylint: disable=wrong-import-position,wrong-import-order


def _clean_copy(dest):
    """The repository's files as a fresh clone has them (tracked and new files,
    nothing ignored, nothing built)."""
    files = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "-co",
                            "--exclude-standard"], capture_output=True, check=True
                           ).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def _ns_list():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _run(lab, *args, timeout=45 * 60, env=None):
    proc = subprocess.run(["./vlab"] + list(args), cwd=str(lab["clone"]),
                          env=dict(lab["env"], **(env or {})), capture_output=True,
                          text=True, timeout=timeout, check=False)
    print("$ ./vlab", " ".join(args), "->", proc.returncode)
    print(proc.stdout[-20000:])
    print(proc.stderr[-5000:])
    return proc


@pytest.fixture(scope="module")
def lab():
    base = testdirs.make("netlab-vlab-")
    clone = _clean_copy(base / "netlab")
    labdir = base / "lab"
    env = dict(os.environ, NETLAB_VLAB_DIR=str(labdir))
    names = vlab_tool.names(str(labdir))
    assert names["ns"] not in _ns_list()
    state = {"clone": clone, "dir": labdir, "env": env, "names": names, "base": base}
    try:
        state["up"] = _run(state, "up")
        yield state
    finally:
        _run(state, "down", timeout=300)
        subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False)


def _status(lab):
    proc = _run(lab, "salt-run", "--out=json", "-l", "quiet", "netlab.status",
                "as_table=False", timeout=300)
    assert proc.returncode == 0, proc.stderr
    return {row["node"]: row for row in json.loads(proc.stdout)}


def _local_conf(lab, node):
    return lab["dir"] / "srv" / "roots" / node / "opt" / "stack" / "devstack" / "local.conf"


def _dest(lab, node):
    return lab["dir"] / "srv" / "roots" / node / "opt" / "stack"


def _watch(lab):
    """netlab's events on the lab's master, subscribed before the run (a probe
    event proves it, no sleep); each event carries the master's ``_stamp``."""
    vl = vlab_tool.Vlab(str(lab["dir"]))

    def send(tag):
        subprocess.run(vl.salt_cmd("salt-run", "event.send", tag), capture_output=True,
                       timeout=120, check=False)

    return EventWatcher(vl.salt_cmd("salt-run"), "netlab/*", send).start_live()


def _stamps(events):
    """tag -> the master's time (host clock, seconds) of its first firing."""
    out = {}
    for tag, data in events:
        stamp = data.get("_stamp") if isinstance(data, dict) else None
        if stamp and tag not in out:
            out[tag] = datetime.datetime.fromisoformat(stamp).timestamp()
    return out


def _guest(lab, node, command):
    proc = _run(lab, "salt", "--out=json", "--static", "-t", "120", node, "cmd.run", command,
                timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)[node]


def _durations(proc):
    """The deploy log's per-step durations (printed with -s, to see where time goes)."""
    try:
        log = pathlib.Path(proc.stdout.split("(full output: ", 1)[1].split(")", 1)[0])
        text = log.read_text()
    except (IndexError, OSError):
        return
    ident = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("ID: "):
            ident = line[4:]
        elif line.startswith("Duration: ") and ident:
            print("  step {}: {}".format(ident, line[10:]))


def test_up_as_the_readme_writes_it(lab):
    proc = lab["up"]
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    # the image was built by the networking node, in the lab's namespace
    images = lab["dir"] / "srv" / "images"
    build = os.readlink(images / "current")
    manifest = json.loads((images / build / "manifest.json").read_text())
    assert manifest["recipe"]["mirror"].startswith("http://deb.debian.org/")
    assert "networking node: netlab.image: 1 states, all ok" in proc.stdout
    # progress lines, the log of the whole output, the final table
    assert "vlab: event netlab/node/ctl/up" in proc.stdout
    log = proc.stdout.split("(full output: ", 1)[1].split(")", 1)[0]
    assert "netlab-orch-deploy-salt-runner-summary" in pathlib.Path(log).read_text()
    assert "vlab: done: every node up" in proc.stdout
    rows = _status(lab)
    assert {n: r["state"] for n, r in rows.items()} == {"ctl": "up", "cmp1": "up"}
    for node, ip in (("ctl", "10.98.0.11"), ("cmp1", "10.98.0.12")):
        assert "HOST_IP={}".format(ip) in _local_conf(lab, node).read_text()
    # DevStack's real repository was not tried (the lab nodes have no way out)
    assert "cannot be reached from the lab nodes" in proc.stdout
    # the lab's own salt, from the command, inside the namespace
    conf = _run(lab, "salt", "--out=json", "--static", "cmp1", "cmd.run",
                "grep -c HOST_IP= /opt/stack/devstack/local.conf", timeout=300)
    assert conf.returncode == 0 and json.loads(conf.stdout) == {"cmp1": "1"}


def test_another_lab_is_never_touched(lab):
    """A second lab directory: its names differ; a namespace of its name that it
    did not start is refused, not deleted; its down stops nothing of the first."""
    other = lab["base"] / "other"
    names = vlab_tool.names(str(other))
    assert names["ns"] != lab["names"]["ns"]
    subprocess.run(["ip", "netns", "add", names["ns"]], check=True)
    squatter = subprocess.Popen(["ip", "netns", "exec", names["ns"], "sleep", "600"])  # pylint: disable=consider-using-with
    try:
        proc = _run(lab, "up", "--no-install", env={"NETLAB_VLAB_DIR": str(other)},
                    timeout=300)
        assert proc.returncode == 2
        assert "namespace {} exists and runs processes".format(names["ns"]) in proc.stderr
        assert "Traceback" not in proc.stderr
        assert squatter.poll() is None and names["ns"] in _ns_list()
        down = _run(lab, "down", env={"NETLAB_VLAB_DIR": str(other)}, timeout=300)
        assert down.returncode == 0
    finally:
        squatter.kill()
        squatter.wait()
        subprocess.run(["ip", "netns", "delete", names["ns"]], check=False)
    assert lab["names"]["ns"] in _ns_list()
    assert {r["state"] for r in _status(lab).values()} == {"up"}


def test_up_again_with_a_reachable_devstack_stacks_the_lab(lab):
    # stack.sh takes long enough on each node that two computes started by one
    # job overlap by many seconds even when one guest is slow to start it
    fake = fake_devstack.create(lab["base"] / "fake", sleep=9.0)
    lab["fake"] = fake
    with _watch(lab) as watch:
        proc = _run(lab, "up", "--devstack-repo", str(fake.bare))
        events = watch.events(settle_tag="netlab/deploy/summary")
    _durations(proc)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-3000:]
    dest = {n: _dest(lab, n) for n in ("ctl", "cmp1")}
    ctl, cmp1 = (fake_devstack.records(dest[n], "stack") for n in ("ctl", "cmp1"))
    assert len(ctl) == 1 and ctl[0]["rc"] == 0 and len(cmp1) == 1 and cmp1[0]["rc"] == 0
    assert ctl[0]["host_ip"] == "10.98.0.11" and cmp1[0]["service_host"] == "10.98.0.11"
    discover = fake_devstack.records(dest["ctl"], "discover")
    assert len(discover) == 1
    # controller, then the compute, then discovery: by the master's clock
    at = _stamps(events)
    assert at["netlab/node/ctl/stack/finished"] < at["netlab/node/cmp1/stack/started"], at
    assert at["netlab/node/cmp1/stack/finished"] < at["netlab/node/ctl/discover/started"], at
    assert "vlab: done: every node ready" in proc.stdout
    assert {r["state"] for r in _status(lab).values()} == {"ready"}


def test_an_unreachable_mirror_stops_the_deploy_after_the_image_step(lab):
    """A mirror inside the lab where nothing listens: the image build fails, no node
    step runs, the nodes keep their state, one summary names the image build and
    its log, the exit status is not 0."""
    before = _status(lab)
    dest = {n: lab["dir"] / "srv" / "roots" / n / "opt" / "stack" for n in ("ctl", "cmp1")}
    stacks = {n: len(fake_devstack.records(dest[n], "stack")) for n in dest}
    current = os.readlink(lab["dir"] / "srv" / "images" / "current")
    proc = _run(lab, "up", "--devstack-repo", str(lab["fake"].bare),
                "--mirror", "http://10.98.0.2:9/debian")
    assert proc.returncode == 1, proc.stdout[-8000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    out = proc.stdout
    assert "vlab: FAILED: image build failed on the networking node:" in out
    log = lab["dir"] / "srv" / "images" / "last-failure.log"
    assert "vlab:   log: {}".format(log) in out
    assert "10.98.0.2" in log.read_text()
    # no node step ran: no node event, same states, nothing stacked again
    assert "event netlab/node/" not in out
    after = _status(lab)
    assert {n: (r["state"], r["since"]) for n, r in after.items()} == {
        n: (r["state"], r["since"]) for n, r in before.items()}
    assert {n: len(fake_devstack.records(dest[n], "stack")) for n in dest} == stacks
    # the last good image stays current
    assert os.readlink(lab["dir"] / "srv" / "images" / "current") == current


def test_a_reshaped_lab_deploys_a_role_change_and_a_new_node(lab):
    """Pillar edited, then the whole ``salt-run state.orchestrate netlab.deploy``
    on the VMs: cmp1's role changes (compute -> storage, a role declared for it)
    and a second compute cmp2 is added. The deploy reimages cmp1 (role changed
    since it was stacked) and cmp2 (new), leaves the controller alone (no
    reimage, no reboot, no second stack.sh), prepares the three, stacks cmp1 and
    cmp2 at the same time (their stack.sh runs overlap by the master's event
    stamps), then host discovery.

    (A known node that is switched off is booted by the deploy's bring-up:
    test_vms. Not here: the lab's master waits its 300 s ``timeout``, which its
    TCG guests need, for the switched-off node's ping.)"""
    labdir = lab["dir"]
    pillar_file = labdir / "master" / "pillar" / "netlab" / "lab.sls"
    current = yaml.safe_load(pillar_file.read_text())["netlab"]
    # what `./vlab up --computes 2 --devstack-repo ...` writes (no unreachable
    # mirror: the current image stays), plus the new role for cmp1
    raw = vlab_tool.lab_pillar(str(labdir), computes=2,
                               devstack_repo=current["devstack"]["repo"])
    raw["roles"] = {"storage": {"description": "block storage (cinder-volume)",
                                "devstack": {"localrc": {"NETLAB_VLAB_ROLE": "storage"}}}}
    raw["nodes"]["cmp1"]["role"] = "storage"
    before = _status(lab)
    assert {n: r["state"] for n, r in before.items()} == {"ctl": "ready", "cmp1": "ready"}
    ctl_before = _guest(lab, "ctl", "cat /proc/sys/kernel/random/boot_id /etc/machine-id")
    cmp1_id = _guest(lab, "cmp1", "cat /etc/machine-id")
    stacks = len(fake_devstack.records(_dest(lab, "ctl"), "stack"))
    pillar_file.write_text(yaml.safe_dump({"netlab": raw}, default_flow_style=False))
    t0 = time.monotonic()
    with _watch(lab) as watch:
        proc = _run(lab, "salt-run", "state.orchestrate", "netlab.deploy",
                    "pillar=" + json.dumps({"netlab_deploy": {"boot_timeout": 1500}}))
        events = watch.events(settle_tag="netlab/deploy/summary")
    print("reshaped deploy: {:.0f} s".format(time.monotonic() - t0))
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    # why cmp1 was reimaged: in the deploy's output (bring-up's plan) or its log
    master_log = (labdir / "master" / "master.log").read_text(errors="replace")
    assert "role changed from compute to storage" in proc.stdout + master_log
    tags = [t for t, _ in events]
    print("events:", tags)
    # cmp1 and cmp2 reimaged; ctl left alone (prepared, discovery: no power, no stack)
    for node in ("cmp1", "cmp2"):
        mine = [t for t in tags if t.startswith("netlab/node/{}/".format(node))]
        assert mine[:3] == ["netlab/node/{}/{}".format(node, s)
                            for s in ("reimaging", "booting", "up")], mine
    ctl_tags = [t for t in tags if t.startswith("netlab/node/ctl/")]
    assert not {"netlab/node/ctl/{}".format(s) for s in (
        "reimaging", "booting", "stacking", "stack/started")} & set(ctl_tags), ctl_tags
    rows = _status(lab)
    assert {n: r["state"] for n, r in rows.items()} == {
        "ctl": "ready", "cmp1": "ready", "cmp2": "ready"}, rows
    assert rows["cmp1"]["role"] == "storage"
    assert rows["ctl"]["generation"] == before["ctl"]["generation"] == 1
    assert rows["cmp1"]["generation"] == 2 and rows["cmp2"]["generation"] == 1
    # ctl: the same boot of the same root; cmp1: a fresh root (new identity)
    assert _guest(lab, "ctl", "cat /proc/sys/kernel/random/boot_id /etc/machine-id") == \
        ctl_before
    assert _guest(lab, "cmp1", "cat /etc/machine-id") != cmp1_id
    # stacked in its new role: the role's localrc reached stack.sh; ctl not again
    recs = {n: fake_devstack.records(_dest(lab, n), "stack") for n in ("ctl", "cmp1", "cmp2")}
    assert len(recs["ctl"]) == stacks
    assert len(recs["cmp1"]) == 1 and recs["cmp1"][0]["rc"] == 0  # the new root's only run
    assert recs["cmp1"][0]["localrc"].get("NETLAB_VLAB_ROLE") == "storage"
    assert len(recs["cmp2"]) == 1 and recs["cmp2"][0]["rc"] == 0
    assert "NETLAB_VLAB_ROLE" not in recs["cmp2"][0]["localrc"]
    assert recs["cmp2"][0]["host_ip"] == "10.98.0.13"
    assert recs["cmp2"][0]["service_host"] == "10.98.0.11"
    # by the master's clock: the two computes at the same time, discovery last
    at = _stamps(events)
    started = [at["netlab/node/{}/stack/started".format(n)] for n in ("cmp1", "cmp2")]
    finished = [at["netlab/node/{}/stack/finished".format(n)] for n in ("cmp1", "cmp2")]
    assert max(started) < min(finished), at  # both ran at once
    assert max(finished) < at["netlab/node/ctl/discover/started"], at
    print("computes' stack.sh overlap: {:.1f} s".format(min(finished) - max(started)))


def test_down_leaves_nothing(lab):
    names = lab["names"]
    proc = _run(lab, "down", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert names["ns"] not in _ns_list()
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                           check=False).stdout
    assert names["veth_host"] not in links
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                            check=False).stdout
    assert names["table"] not in tables
    assert not lab["dir"].exists()
    assert not pathlib.Path(str(lab["dir"]) + ".lock").exists()
    mounts = pathlib.Path("/proc/self/mounts").read_text()
    assert str(lab["dir"]) not in mounts
    leftovers = subprocess.run(["pgrep", "-af", str(lab["dir"])], capture_output=True,
                               text=True, check=False).stdout
    assert not leftovers.strip(), leftovers
