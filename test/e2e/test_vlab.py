"""
``./vlab up`` end to end against the stand-in DevStack repository, then ``down``.

The real command (repository root) on this machine: namespace, bridge, master
that is the networking node, netnode services as processes, qemu VMs (power
driver ``virtual``) that netboot, become minions, get their local.conf and are
stacked by the stand-in DevStack (test/lib/fake_devstack.py), which the
networking node serves to them over HTTP. The image is the cached test image
(with git and sudo, as the lab's pillar asks), passed with ``--image`` so the
run does not spend minutes in mmdebstrap.
"""

import os
import pathlib
import subprocess
import sys
import tempfile

import pytest

from lib import fake_devstack
from lib.image import ensure_test_image

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = pathlib.Path(__file__).resolve().parents[2]
NS = "netlab-vlab"


def _ns_exists():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         check=False).stdout
    return any(line.split()[0] == NS for line in out.splitlines() if line.strip())


@pytest.fixture(scope="module")
def vlab_run():
    if _ns_exists():
        pytest.fail("namespace {} exists already: another virtual lab runs here".format(NS))
    img = ensure_test_image(image={"packages": ["git", "sudo"]})
    base = pathlib.Path(tempfile.mkdtemp(prefix="netlab-vlab-", dir="/tmp"))
    os.chmod(base, 0o755)
    labdir = base / "lab"
    fake = fake_devstack.create(base / "fake", sleep=2.0)
    # the venv running the tests has Salt: the command uses it
    env = dict(os.environ, NETLAB_VENV=os.path.dirname(os.path.dirname(sys.executable)))
    cmd = [str(REPO / "vlab"), "up", "--no-install", "--computes", "1", "--memory", "1024",
           "--devstack-repo", str(fake.bare), "--image", img["dir"]]
    try:
        proc = subprocess.run(cmd, env=dict(env, NETLAB_VLAB_DIR=str(labdir)),
                              capture_output=True, text=True, timeout=45 * 60, check=False)
        print(proc.stdout[-20000:])
        print(proc.stderr[-5000:])
        yield {"proc": proc, "dir": labdir, "fake": fake, "env": env, "image": img["dir"]}
    finally:
        down = subprocess.run([str(REPO / "vlab"), "down"],
                              env=dict(env, NETLAB_VLAB_DIR=str(labdir)),
                              capture_output=True, text=True, timeout=300, check=False)
        print(down.stdout, down.stderr)
        subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False)


def _records(run, node, event="stack"):
    dest = run["dir"] / "srv" / "roots" / node / "opt" / "stack"
    return fake_devstack.records(dest, event)


def test_vlab_up_deploys_the_lab(vlab_run):
    proc = vlab_run["proc"]
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-3000:]
    ctl, cmp1 = _records(vlab_run, "ctl"), _records(vlab_run, "cmp1")
    assert len(ctl) == 1 and ctl[0]["rc"] == 0
    assert len(cmp1) == 1 and cmp1[0]["rc"] == 0
    assert ctl[0]["host_ip"] == "10.98.0.11" and cmp1[0]["host_ip"] == "10.98.0.12"
    assert cmp1[0]["service_host"] == "10.98.0.11"
    assert ctl[0]["hostname"] == "ctl" and cmp1[0]["hostname"] == "cmp1"
    assert ctl[0]["user"] == "stack"
    assert ctl[0]["end"] < cmp1[0]["start"]
    discover = _records(vlab_run, "ctl", "discover")
    assert len(discover) == 1 and discover[0]["start"] > cmp1[0]["end"]
    # the run ends with the status table: both ready
    tail = proc.stdout[proc.stdout.rfind("netlab.status"):]
    for node in ("ctl", "cmp1"):
        assert any(line.split()[:1] == [node] and "ready" in line.split()
                   for line in tail.splitlines()), tail


def test_unreachable_devstack_stops_after_local_conf_with_advice(vlab_run):
    """``up`` again on the running lab, DevStack's real repository this time: the
    namespace has no uplink, so it cannot be reached (nothing leaves the
    namespace); the deploy ends with the nodes up and their local.conf, not
    stacked again, and the output says how to point devstack:repo at a mirror."""
    assert vlab_run["proc"].returncode == 0
    env = dict(vlab_run["env"], NETLAB_VLAB_DIR=str(vlab_run["dir"]))
    before = {n: len(_records(vlab_run, n)) for n in ("ctl", "cmp1")}
    proc = subprocess.run(
        [str(REPO / "vlab"), "up", "--no-install", "--computes", "1", "--memory", "1024",
         "--image", vlab_run["image"]], env=env, capture_output=True, text=True,
        timeout=30 * 60, check=False)
    print(proc.stdout[-10000:], proc.stderr[-3000:])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "https://opendev.org/openstack/devstack cannot be reached" in proc.stdout
    assert "Point devstack:repo at a mirror" in proc.stdout
    assert {n: len(_records(vlab_run, n)) for n in ("ctl", "cmp1")} == before
    for node in ("ctl", "cmp1"):
        conf = vlab_run["dir"] / "srv" / "roots" / node / "opt" / "stack" / "devstack" / \
            "local.conf"
        assert "HOST_IP=" in conf.read_text()


def test_vlab_down_removes_everything(vlab_run):
    env = dict(vlab_run["env"], NETLAB_VLAB_DIR=str(vlab_run["dir"]))
    proc = subprocess.run([str(REPO / "vlab"), "down"], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not _ns_exists()
    assert not vlab_run["dir"].exists()
    leftovers = subprocess.run(["pgrep", "-f", "netlab-{}".format("ctl")],
                               capture_output=True, text=True, check=False).stdout
    assert not leftovers.strip(), "qemu of ctl still runs"
