"""
./netlab-bootstrap on a fresh networking node played by a network namespace.

The namespace has its own mount namespace: /etc and /var are overlays (writes
land in the test's temp dir, the host's stay untouched) and /srv is a temp dir,
so Salt's real default paths (/etc/salt, /var/cache/salt, /srv/pillar) are the
node's own. The segment has a home router (a dnsmasq handing out addresses, the
default route points at it). From a clean copy of the checkout, with the
already-installed venv (no pip install), in process mode:

* the first run ends with master and minion running, the networking node's key
  accepted, netlab.validate passing and lab.sls filled from the namespace's
  interface (DHCP proxy: the router answers); ``salt-run netlab.preflight``
  passes (all but the outside check: the segment has no uplink);
* a second run changes nothing (same daemons, same files);
* a master config it did not write is left alone and named in a refusal.
"""

import json
import os
import shutil
import subprocess

import pytest
import yaml

from lib import clients
from lib import daemons as daemons_lib

REPO = clients.REPO
VENV = os.environ.get("NETLAB_VENV", "/opt/netlab-venv")
pytestmark = pytest.mark.slow


def _clean_copy(dest):
    """The checkout's files as a fresh clone has them (tracked and new, not ignored)."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _private_root(ns, tmp_path):
    """Overlays on /etc and /var, a temp dir on /srv, inside the node's mount ns."""
    for d in ("etc", "var"):
        upper, work = tmp_path / "ov" / d / "upper", tmp_path / "ov" / d / "work"
        upper.mkdir(parents=True)
        work.mkdir(parents=True)
        ns.run(["mount", "-t", "overlay", "netlab-" + d, "-o", "lowerdir=/{},upperdir={},"
                "workdir={}".format(d, upper, work), "/" + d])
    srv = tmp_path / "srv"
    srv.mkdir()
    ns.run(["mount", "--bind", str(srv), "/srv"])
    return srv


def _pids(ns):
    out = {}
    for daemon in ("salt-master", "salt-minion"):
        res = ns.run(["cat", "/run/{}.pid".format(daemon)], check=False)
        pid = int(res.stdout.split()[0]) if res.returncode == 0 else None
        out[daemon] = pid if pid and daemons_lib.alive(pid) else None
    return out


def _bootstrap(ns, checkout):
    return ns.run([checkout / "netlab-bootstrap", "--id", "netnode", "--venv", VENV,
                   "--service-control", "process", "--probe-timeout", "4"],
                  check=False, timeout=600)


def test_bootstrap_fresh_node_then_idempotent_then_refuses_foreign_master_config(
        segment_factory, daemons, tmp_path):
    seg = segment_factory(cidr="10.78.2.0/24", server_ip="10.78.2.2")
    node = seg.server
    router = seg.add_client("router", mac="52:54:00:78:02:01", ip="10.78.2.1")
    conf = daemons_lib.router_dnsmasq_conf(tmp_path / "router.conf", "eth0", "10.78.2.100",
                                           "10.78.2.150", router="10.78.2.1")
    daemons.start(router, "router-dnsmasq", ["dnsmasq", "-k", "-C", conf],
                  log=tmp_path / "router.log",
                  ready=lambda: daemons_lib.port_open(router, 67, "udp"))
    node.run(["ip", "route", "add", "default", "via", "10.78.2.1"])
    srv = _private_root(node, tmp_path)
    checkout = _clean_copy(tmp_path / "netlab")
    assert not (tmp_path / "ov" / "etc" / "upper" / "salt").exists()

    # ---- first run: a fresh node
    first = _bootstrap(node, checkout)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "accepted the key of minion netnode" in first.stdout
    pids = _pids(node)
    assert all(pids.values()), (pids, first.stdout)
    keys = json.loads(node.run([VENV + "/bin/salt-key", "--out=json", "-L"]).stdout)
    assert keys["minions"] == ["netnode"] and not keys["minions_pre"]
    lab = yaml.safe_load((srv / "pillar" / "netlab" / "lab.sls").read_text())["netlab"]
    assert lab["network"]["interface"] == seg.bridge
    assert lab["network"]["cidr"] == "10.78.2.0/24"
    assert lab["network"]["gateway"] == "10.78.2.1"
    assert lab["network"]["dhcp"]["mode"] == "proxy"  # the router answers
    assert lab["netnode"]["ip"] == "10.78.2.2"
    assert lab["nodes"] == {}
    assert oct((srv / "pillar" / "netlab" / "lab.sls").stat().st_mode & 0o777) == "0o600"
    valid = json.loads(node.run([VENV + "/bin/salt", "--out=json", "--static", "netnode",
                                 "netlab.validate"]).stdout)
    assert valid["netnode"]["valid"] is True, valid
    master_conf = tmp_path / "ov" / "etc" / "upper" / "salt" / "master.d" / "netlab.conf"
    assert str(checkout) in master_conf.read_text()

    # the runner face of preflight on the bootstrapped node (no uplink: no outside check)
    pre = node.run([VENV + "/bin/salt-run", "--out=json", "netlab.preflight",
                    "checks=salt,modules,pillar,interface,ports,storage,dhcp"],
                   check=False, timeout=300)
    report = json.loads(pre.stdout)
    assert pre.returncode == 0 and report["retcode"] == 0, pre.stdout + pre.stderr
    assert report["passed"] == ["salt", "modules", "pillar", "interface", "ports", "storage",
                                "dhcp"]

    # ---- second run: nothing changes
    before = {p: p.read_text() for p in (srv / "pillar").rglob("*.sls")}
    second = _bootstrap(node, checkout)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "nothing changed (already bootstrapped)" in second.stdout, second.stdout
    assert _pids(node) == pids
    assert {p: p.read_text() for p in (srv / "pillar").rglob("*.sls")} == before

    # ---- a master config someone else wrote: left alone, named, nothing changed
    foreign = "# the site's own master\nfile_roots:\n  base: [/srv/site]\n"
    node.run(["sh", "-c", "printf '%s' \"$1\" > /etc/salt/master", "sh", foreign])
    ours = master_conf.read_text()
    third = _bootstrap(node, checkout)
    assert third.returncode == 2, third.stdout + third.stderr
    assert "/etc/salt/master sets file_roots" in third.stdout
    assert "netlab-bootstrap leaves Salt config it did not write alone" in third.stdout
    assert node.run(["cat", "/etc/salt/master"]).stdout == foreign
    assert master_conf.read_text() == ours
    assert _pids(node) == pids
