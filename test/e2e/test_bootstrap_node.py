"""
README.rst's real-hardware path on a fresh networking node played by a network
namespace, beside a home router: clone, ``./netlab-bootstrap``, switch a spare
computer on, ``salt-run netlab.discover``, paste the lines, ``salt-run
netlab.preflight``, ``salt-run state.orchestrate netlab.deploy``.

The namespace has its own mount namespace: /etc and /var are overlays (writes
land in the test's temp dir, the host's stay untouched) and /srv is a temp dir,
so Salt's real default paths (/etc/salt, /var/cache/salt, /srv/pillar) are the
node's own. The segment has a home router: a plain dnsmasq handing out addresses
only (no PXE), the default route, and the way out (NAT to Debian's mirror and
PyPI only, lib.uplink). From a clean copy of the checkout, with the installed
venv (no pip install), in process mode, the commands as README.rst writes them
(Salt's commands from the venv on PATH):

* the first bootstrap ends with master and minion running, the networking node's
  key accepted, netlab.validate passing and lab.sls filled from the namespace's
  interface, ``dhcp: proxy`` among it (the router answered the probe); a second
  run changes nothing (same daemons, same files);
* ``salt-call state.apply netlab.netnode`` starts netlab's proxyDHCP; a qemu VM
  whose MAC is in no pillar PXE-boots, gets an address from the router and no
  boot answer from netlab; ``salt-run netlab.discover`` lists it (MAC, BIOS) and
  prints pillar lines;
* those lines go into lab.sls with what a user adjusts (the power driver, here
  ``virtual``; a stateless root) and the router reserves the node's address;
  ``salt-run netlab.preflight`` passes every check, the outside one included;
* ``salt-run state.orchestrate netlab.deploy`` runs every step: networking node,
  LAN cache (off in this lab), image (the cached test image is current: nothing
  to build), the node netboots through proxyDHCP (router address, netlab's iPXE
  script, NFS root) until its minion answers, prepare (DevStack's checkout from
  the stand-in repository, test/lib/fake_devstack.py, served by the networking
  node), stack.sh, host discovery: the node ends ``ready``;
* the same master switched to gitfs (``--gitfs`` with a local git remote that
  has one commit more than the checkout): the networking node and the lab node
  sync modules from the remote;
* a master config it did not write is left alone and named in a refusal.
"""

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest
import yaml

import netlab_image
import netlab_lab
from lib import clients, fake_devstack
from lib import daemons as daemons_lib
from lib import image as image_lib
from lib.image import test_image  # noqa: F401  pylint: disable=unused-import
from lib.uplink import Uplink
from lib.vm import serial_text, stop_lab_vms, stray_vm, wait_for

REPO = clients.REPO
VENV = os.environ.get("NETLAB_VENV", "/opt/netlab-venv")
# one guest: CI runs it beside the fast tiers (test/run-tests), not in the phase
# where the tests with several guests run alone
pytestmark = [pytest.mark.slow, pytest.mark.guests, pytest.mark.one_guest]
STRAY_MAC = "52:54:00:78:02:42"
CIDR, ROUTER_IP, NETNODE_IP = "10.78.2.0/24", "10.78.2.1", "10.78.2.2"
# what the networking node may reach through the router (the outside check)
PACKAGE_HOSTS = ("deb.debian.org", "pypi.org", "files.pythonhosted.org")


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


def _private_root(ns, tmp_path, keep=()):
    """Overlays on /etc and /var, a temp dir on /srv, inside the node's mount ns.

    ``keep``: host directories under /etc or /var that stay the real ones (bind
    mounts over the overlay): the cached test image lives under /var/cache, and
    nfs-ganesha cannot export a directory of an overlayfs (no file handles), so
    the stateless node's mount of the image would be refused."""
    held = []
    for i, path in enumerate(keep):  # the real directories, before the overlays hide them
        hold = tmp_path / "keep" / str(i)
        hold.mkdir(parents=True)
        ns.run(["mount", "--bind", str(path), str(hold)])
        held.append((hold, path))
    for d in ("etc", "var"):
        upper, work = tmp_path / "ov" / d / "upper", tmp_path / "ov" / d / "work"
        upper.mkdir(parents=True)
        work.mkdir(parents=True)
        ns.run(["mount", "-t", "overlay", "netlab-" + d, "-o", "lowerdir=/{},upperdir={},"
                "workdir={}".format(d, upper, work), "/" + d])
    for hold, path in held:
        ns.run(["mount", "--bind", str(hold), str(path)])
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


def _root_path():
    """root's PATH on a fresh machine: the venv is not on it."""
    return ":".join(p for p in os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(
        ":") if os.path.realpath(p) != os.path.realpath(VENV + "/bin"))


def _bootstrap(ns, checkout, *extra):
    return ns.run([checkout / "netlab-bootstrap", "--id", "netnode", "--venv", VENV,
                   "--service-control", "process", "--probe-timeout", "4"] + list(extra),
                  check=False, timeout=600, env=dict(os.environ, PATH=_root_path()))


def _salt(ns, *args, timeout=900):
    """salt/salt-run on the node's own master (its default config, /etc/salt)."""
    tool, rest = args[0], [str(a) for a in args[1:]]
    extra = ["--static"] if tool == "salt" else []
    res = ns.run([VENV + "/bin/" + tool, "--out=json"] + extra + rest, check=False,
                 timeout=timeout)
    try:
        return json.loads(res.stdout) if res.stdout.strip() else None, res
    except ValueError:
        return None, res




def _cmd(ns, line, timeout=900):
    """A command line as README.rst writes it, run by a root shell on the node with
    Salt's commands (the venv's) on PATH, as the bootstrap's last line says."""
    env = dict(os.environ, PATH=VENV + "/bin:" + _root_path())
    return ns.run(["sh", "-c", line], check=False, timeout=timeout, env=env)


def _json(res):
    try:
        return json.loads(res.stdout) if res.stdout.strip() else None
    except ValueError:
        return None


def _orch_failures(res):
    """The orchestration's failed steps: one line each (its id and what its
    runner said), then each one's return cut to its last 1500 characters. The
    summary step's return repeats the whole run, so a cut of one dump of
    everything would keep only that and hide the step that failed first. The
    steps are found at any depth: salt-run's JSON nests the orchestration's
    return differently from one Salt release to the next."""
    failed = {}

    def walk(value):
        if isinstance(value, dict):
            if value.get("result") is False and "__id__" in value:
                failed.setdefault(value["__id__"], value)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(_json(res))
    lines, details = [], []
    for step, ret in failed.items():
        back = (ret.get("changes") or {}).get("return")
        said = back.get("comment") if isinstance(back, dict) else None
        lines.append("{}: {}".format(step, said or ret.get("comment")))
        details.append("{}: {}".format(step, json.dumps(back, default=str)[-1500:]))
    return "\n".join(lines + [""] + details)


def _edit_lab(srv, edit):
    path = srv / "pillar" / "netlab" / "lab.sls"
    doc = yaml.safe_load(path.read_text())
    edit(doc["netlab"])
    path.write_text(yaml.safe_dump(doc, default_flow_style=False))
    return doc["netlab"]


def _home_router(seg, daemons, tmp_path):
    """The router: DHCP for everyone (no PXE), reservations from a hosts file, the
    segment's default route and its way out (NAT to the package hosts only)."""
    router = seg.add_client("router", mac="52:54:00:78:02:01", ip=ROUTER_IP)
    hosts = tmp_path / "router.hosts"
    hosts.write_text("")
    conf = daemons_lib.router_dnsmasq_conf(tmp_path / "router.conf", "eth0", "10.78.2.100",
                                           "10.78.2.150", router=ROUTER_IP, hostsfile=hosts)
    dhcp = daemons.start(router, "router-dnsmasq", ["dnsmasq", "-k", "-C", conf],
                         log=tmp_path / "router.log",
                         ready=lambda: daemons_lib.port_open(router, 67, "udp"))
    uplink = Uplink(router, PACKAGE_HOSTS)
    try:
        uplink.share(CIDR)
    except Exception:
        uplink.remove()
        raise
    return {"ns": router, "dhcp": dhcp, "hosts": hosts, "uplink": uplink,
            "leases": str(conf) + ".leases"}


def _first_bootstrap(node, seg, srv, checkout, tmp_path):
    first = _bootstrap(node, checkout)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "accepted the key of minion netnode" in first.stdout
    pids = _pids(node)
    assert all(pids.values()), (pids, first.stdout)
    keys = json.loads(node.run([VENV + "/bin/salt-key", "--out=json", "-L"]).stdout)
    assert keys["minions"] == ["netnode"] and not keys["minions_pre"]
    lab = yaml.safe_load((srv / "pillar" / "netlab" / "lab.sls").read_text())["netlab"]
    assert lab["network"]["interface"] == seg.bridge
    assert lab["network"]["cidr"] == CIDR
    assert lab["network"]["gateway"] == ROUTER_IP
    assert lab["network"]["dhcp"]["mode"] == "proxy"  # the router answered the probe
    assert lab["netnode"]["ip"] == NETNODE_IP
    assert lab["nodes"] == {}
    assert lab["lookup"] == {"service_control": "process"}  # no systemd here
    assert oct((srv / "pillar" / "netlab" / "lab.sls").stat().st_mode & 0o777) == "0o600"
    valid = json.loads(node.run([VENV + "/bin/salt", "--out=json", "--static", "netnode",
                                 "netlab.validate"]).stdout)
    assert valid["netnode"]["valid"] is True, valid
    master_conf = tmp_path / "ov" / "etc" / "upper" / "salt" / "master.d" / "netlab.conf"
    assert str(checkout) in master_conf.read_text()
    assert "export PATH={}/bin:$PATH".format(VENV) in first.stdout  # not on PATH yet
    return pids, master_conf


def _test_lab(srv, tmp_path, image):
    """What this test machine needs in lab.sls (a user keeps pillar.example's values):
    storage in the temp dir, nfs-ganesha (no kernel NFS here), packages installed
    already, router advertisements (iPXE skips its IPv6 wait), the LAN cache off
    (test_cache_e2e has it), the image = the cached test image."""
    storage = tmp_path / "storage"  # same path inside the node's namespace and here
    storage.mkdir()
    for p in [storage] + list(storage.parents):
        if str(p).startswith("/tmp/"):
            os.chmod(p, 0o755)  # nginx (www-data) serves the boot files under it

    def adjust(lab):
        lab["netnode"]["storage"] = str(storage)
        lab["netnode"]["nfs"] = {"server": "ganesha"}
        lab["image"] = copy.deepcopy(image_lib.TEST_LAB["image"])
        lab["cache"] = {part: {"enabled": False} for part in ("apt", "pip", "git", "files")}
        lab["lookup"].update({"install_packages": False, "dnsmasq": {"ra": True}})

    raw = _edit_lab(srv, adjust)
    assert raw["lookup"]["service_control"] == "process"  # written by the bootstrap
    lab = netlab_lab.load(raw)
    os.makedirs(lab.netnode.images_dir)
    os.symlink(image["dir"], os.path.join(lab.netnode.images_dir, image["build_id"]))
    os.symlink(image["build_id"], os.path.join(lab.netnode.images_dir, "current"))
    netlab_image.publish(lab, image["build_id"])
    # the image step of the deploy finds it current (nothing to build)
    plan = netlab_image.plan(lab)
    assert plan["action"] == "none", plan["reason"]
    # DevStack's stand-in, served by the networking node's nginx like any file there
    fake_devstack.create(os.path.join(lab.netnode.http_root, "git"), sleep=0.5)
    url = "http://{}/git/devstack.git".format(NETNODE_IP)
    _edit_lab(srv, lambda lab: lab["devstack"].update(repo=url))


def _discover(node, seg, tmp_path):
    """A spare computer switched on: the router gives it an address, netlab no boot
    answer, but netlab.discover lists it."""
    with stray_vm(node.name, seg.bridge, STRAY_MAC, str(tmp_path / "stray")) as serial:
        found = wait_for(lambda: (lambda d: d if d and any(
            m["mac"] == STRAY_MAC for m in d.get("unknown", [])) else None)(
                _json(_cmd(node, "salt-run --out=json netlab.discover"))), 180,
            "netlab.discover to list the PXE-booting VM", interval=3)
        stray_serial = serial_text(serial)
    assert found["retcode"] == 0, found
    [machine] = [m for m in found["unknown"] if m["mac"] == STRAY_MAC]
    assert machine["firmware"] == "bios", machine
    assert "Linux version" not in stray_serial  # no boot answer while unknown
    pxe = [line for line in node.run(["cat", "/run/netlab/dnsmasq.log"]).stdout.splitlines()
           if "PXE(" in line and STRAY_MAC in line]
    assert pxe and all(line.endswith(" proxy-ignored") for line in pxe), pxe
    return found


def _add_discovered(srv, router, found, seg):
    added = yaml.safe_load(found["pillar"])["nodes"]
    [(new_id, new)] = added.items()
    assert new["mac"] == STRAY_MAC and new["role"] == "controller"
    assert new["power"] == {"driver": "wol"}
    # the user picks the power driver that fits the machine (a VM here) and, for a
    # short test, a stateless root (nothing copied: the image plus a RAM overlay)
    new["power"] = {"driver": "virtual", "bridge": seg.bridge, "memory": 1024, "cpus": 1,
                    "firmware": "bios"}
    new["root"] = {"mode": "stateless"}
    raw = _edit_lab(srv, lambda lab: lab.update(nodes=dict(lab.get("nodes") or {}, **added)))
    # proxy mode: the router hands out the addresses, so it reserves the node's
    router["hosts"].write_text("{},{}\n".format(new["mac"], new["ip"]))
    os.kill(router["dhcp"].pid, signal.SIGHUP)
    return new_id, new, raw


def _node_records(node, new_id):
    out = _salt(node, "salt", "-t", "60", new_id, "cmd.run",
                "for f in /opt/stack/fake-devstack/*.json; do cat $f; echo; done")[0]
    return sorted((json.loads(line) for line in out[new_id].splitlines() if line.strip()),
                  key=lambda r: r["start"])


def _deploy(node, new_id, new, raw, took):
    t0 = time.monotonic()
    pre = _cmd(node, "salt-run --out=json netlab.preflight", timeout=300)
    report = _json(pre) or {}
    assert pre.returncode == 0 and report.get("retcode") == 0, pre.stdout + pre.stderr
    assert report["passed"] == ["salt", "modules", "pillar", "interface", "ports", "storage",
                                "dhcp", "outside"]
    took["salt-run netlab.preflight"] = time.monotonic() - t0
    lab = netlab_lab.load(raw)
    t0 = time.monotonic()
    try:
        res = _cmd(node, "salt-run --out=json state.orchestrate netlab.deploy", timeout=2400)
        took["salt-run state.orchestrate netlab.deploy"] = time.monotonic() - t0
        vm_serial = serial_text(os.path.join(lab.netnode.state_dir, "vms", new_id,
                                             "serial.log"))
        assert res.returncode == 0, ("failed steps: " + _orch_failures(res) + "\n" +
                                     res.stderr[-2000:] + vm_serial[-3000:])
        status = {r["node"]: r for r in _json(_cmd(
            node, "salt-run --out=json netlab.status as_table=False"))}
        assert status[new_id]["state"] == "ready", status
        ping, _ = _salt(node, "salt", "-t", "60", new_id, "cmd.run",
                        "hostname; findmnt -n -o FSTYPE /; ip -4 -o route show default")
        host, root, route = ping[new_id].splitlines()
        assert host == new_id and root == "overlay"  # stateless: RAM over the NFS image
        assert "via " + ROUTER_IP in route
        records = _node_records(node, new_id)
        stack = [r for r in records if r["event"] == "stack"]
        assert len(stack) == 1 and stack[0]["rc"] == 0, records
        assert stack[0]["host_ip"] == new["ip"]
        assert [r["event"] for r in records] == ["stack", "discover"], records
    except Exception:
        stop_lab_vms(lab)
        raise
    return lab


def _switch_to_gitfs(node, checkout, tmp_path, new_id):
    """The same master serving netlab from a git remote (one commit ahead of the
    checkout: a module only the remote has), both minions syncing from it."""
    work, bare = tmp_path / "gitsrc", tmp_path / "netlab.git"
    shutil.copytree(checkout, work)
    (work / "_modules" / "netlab_gitfs_probe.py").write_text(
        '"""Only in the git remote (test_bootstrap_node)."""\n\n\n'
        'def where():\n    """CLI Example: salt \'*\' netlab_gitfs_probe.where"""\n'
        '    return "gitfs"\n')
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "netlab"]):
        subprocess.run(git + args, cwd=work, check=True, capture_output=True)
    subprocess.run(git + ["clone", "-q", "--bare", str(work), str(bare)], check=True,
                   capture_output=True)
    res = _bootstrap(node, checkout, "--gitfs", "file://" + str(bare))
    assert res.returncode == 0, res.stdout + res.stderr
    conf = (tmp_path / "ov" / "etc" / "upper" / "salt" / "master.d" / "netlab.conf")
    text = conf.read_text()
    assert "gitfs_remotes" in text and "file://" + str(bare) in text, text
    assert "# the netlab checkout" not in text, text  # file_roots: only /srv/salt
    for minion in ("netnode", new_id):
        synced = wait_for(lambda m=minion: (lambda d: d if d and isinstance(
            d.get(m), list) else None)(_salt(node, "salt", "-t", "30", m,
                                             "saltutil.sync_modules")[0]),
            180, "{} to sync from gitfs".format(minion), interval=3)
        assert "modules.netlab_gitfs_probe" in synced[minion] or minion == "netnode", synced
        where, _ = _salt(node, "salt", "-t", "30", minion, "netlab_gitfs_probe.where")
        assert where == {minion: "gitfs"}, where
    return _pids(node)


def test_readme_path_from_a_fresh_node_to_a_stacked_node_beside_a_home_router(
        segment_factory, daemons, tmp_path, test_image):  # noqa: F811  pylint: disable=redefined-outer-name
    # IPv6 on the bridge: netlab's router advertisements spare iPXE its ~13 s IPv6 wait
    seg = segment_factory(cidr=CIDR, server_ip=NETNODE_IP, ipv6=True)
    node = seg.server
    router = _home_router(seg, daemons, tmp_path)
    lab = None
    try:
        node.run(["ip", "route", "add", "default", "via", ROUTER_IP])
        took = {}
        t0 = time.monotonic()
        srv = _private_root(node, tmp_path, keep=[test_image["dir"]])
        checkout = _clean_copy(tmp_path / "netlab")
        assert not (tmp_path / "ov" / "etc" / "upper" / "salt").exists()

        # ---- first run: a fresh node
        pids, master_conf = _first_bootstrap(node, seg, srv, checkout, tmp_path)
        took["netlab-bootstrap (first run)"] = time.monotonic() - t0

        # ---- second run: nothing changes
        t0 = time.monotonic()
        before = {p: p.read_text() for p in (srv / "pillar").rglob("*.sls")}
        second = _bootstrap(node, checkout)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "nothing changed (already bootstrapped)" in second.stdout, second.stdout
        assert _pids(node) == pids
        assert {p: p.read_text() for p in (srv / "pillar").rglob("*.sls")} == before
        took["netlab-bootstrap (second run)"] = time.monotonic() - t0

        # ---- netlab's proxyDHCP up, a spare computer discovered
        _test_lab(srv, tmp_path, test_image)
        t0 = time.monotonic()
        res = _cmd(node, "salt-call --out=json state.apply netlab.netnode", timeout=600)
        bad = [k for k, v in ((_json(res) or {}).get("local") or {"?": {}}).items()
               if not v.get("result")]
        assert res.returncode == 0 and not bad, res.stdout[-4000:] + res.stderr[-2000:]
        took["salt-call state.apply netlab.netnode"] = time.monotonic() - t0
        t0 = time.monotonic()
        found = _discover(node, seg, tmp_path)
        took["PXE request seen by netlab.discover"] = time.monotonic() - t0
        new_id, new, raw = _add_discovered(srv, router, found, seg)
        lab = netlab_lab.load(raw)

        # ---- preflight, then the deploy as README.rst writes it
        _deploy(node, new_id, new, raw, took)
        # its address came from the router (the reservation), its boot answer from
        # netlab's proxyDHCP (no address of netlab's), its iPXE script over HTTP
        leases = serial_text(router["leases"])
        assert STRAY_MAC in leases and new["ip"] in leases
        run_log = node.run(["cat", "/run/netlab/dnsmasq.log"]).stdout
        answered = re.compile(r"PXE\(br0\) (\S+ )?{} proxy$".format(STRAY_MAC))
        assert any(answered.search(line) for line in run_log.splitlines()), run_log[-3000:]
        assert STRAY_MAC not in node.run(["cat", "/var/lib/misc/netlab-dnsmasq.leases"],
                                         check=False).stdout
        access = node.run(["cat", "/run/netlab/nginx-access.log"]).stdout
        assert any(line.startswith(new["ip"] + " ") and "/boot/{}.ipxe".format(new_id)
                   in line for line in access.splitlines()), access[-3000:]

        # ---- the formula from a git remote instead of the checkout
        t0 = time.monotonic()
        pids = _switch_to_gitfs(node, checkout, tmp_path, new_id)
        took["--gitfs bootstrap + both minions synced"] = time.monotonic() - t0
        print("timings: " + ", ".join("{} {:.0f} s".format(k, v) for k, v in took.items()))

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
    finally:
        if lab is not None:
            stop_lab_vms(lab)
        router["uplink"].remove()
        subprocess.run(["rm", "-rf", "--one-file-system", str(tmp_path / "storage")],
                       check=False)
