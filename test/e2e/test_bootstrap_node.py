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
* from there to a netbooted node, the way docs/hardware.rst tells a user: the
  lab moves to a segment of its own (the router goes, ``dhcp: full``), storage
  and the NFS server are set in lab.sls, ``netlab.netnode`` is applied, a qemu VM
  whose MAC is in no pillar PXE-boots and gets no answer, ``salt-run
  netlab.discover`` lists it (MAC, BIOS) and prints pillar lines; those lines go
  into lab.sls (power driver switched to ``virtual``, what a user adjusts), the
  networking node is applied again and ``salt-run netlab.reimage`` boots the VM
  from the network (the deploy's boot step; the image is the cached test image,
  the image build and DevStack have tests of their own) until its minion answers;
* a master config it did not write is left alone and named in a refusal.
"""

import json
import os
import shutil
import subprocess
import time

import pytest
import yaml

import netlab_image
import netlab_lab
from lib import clients
from lib import daemons as daemons_lib
from lib.image import test_image  # noqa: F401  pylint: disable=unused-import
from lib.vm import serial_text, stop_lab_vms, stray_vm, wait_for

REPO = clients.REPO
VENV = os.environ.get("NETLAB_VENV", "/opt/netlab-venv")
pytestmark = pytest.mark.slow
STRAY_MAC = "52:54:00:78:02:42"


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


def _apply_netnode(ns):
    data, res = _salt(ns, "salt", "-t", "600", "netnode", "state.apply", "netlab.netnode")
    states = (data or {}).get("netnode")
    assert isinstance(states, dict), res.stdout[-3000:] + res.stderr[-2000:]
    bad = ["{}: {}".format(k.split("_|-")[1], str(v.get("comment"))[:300])
           for k, v in states.items() if not v.get("result")]
    assert not bad, "netlab.netnode failed:\n" + "\n".join(bad[:5])


def _edit_lab(srv, edit):
    path = srv / "pillar" / "netlab" / "lab.sls"
    doc = yaml.safe_load(path.read_text())
    edit(doc["netlab"])
    path.write_text(yaml.safe_dump(doc, default_flow_style=False))
    return doc["netlab"]


def _netboot_a_discovered_machine(node, seg, srv, tmp_path, image):
    """From the bootstrapped node to a VM netbooted as a lab node (see the module
    doc). Returns the seconds each step took."""
    took = {}
    storage = tmp_path / "storage"  # same path inside the node's namespace and here
    storage.mkdir()
    for p in [storage] + list(storage.parents):
        if str(p).startswith("/tmp/"):
            os.chmod(p, 0o755)  # nginx (www-data) serves the boot files under it

    def own_segment(lab):
        lab["network"]["dhcp"]["mode"] = "full"
        lab["netnode"]["storage"] = str(storage)
        lab["netnode"]["nfs"] = {"server": "ganesha"}
        lab.pop("image", None)  # the cached test image's defaults
        lab["lookup"].update({"install_packages": False,  # the test machine has them
                              "dnsmasq": {"ra": True}})   # iPXE: no 13 s IPv6 wait

    raw = _edit_lab(srv, own_segment)
    assert raw["lookup"]["service_control"] == "process"  # written by the bootstrap
    lab = netlab_lab.load(raw)
    os.makedirs(lab.netnode.images_dir)
    os.symlink(image["dir"], os.path.join(lab.netnode.images_dir, image["build_id"]))
    os.symlink(image["build_id"], os.path.join(lab.netnode.images_dir, "current"))
    netlab_image.publish(lab, image["build_id"])
    t0 = time.monotonic()
    _apply_netnode(node)
    took["netlab.netnode"] = time.monotonic() - t0

    # a spare computer switched on: netlab does not answer it, but logs it
    t0 = time.monotonic()
    with stray_vm(node.name, seg.bridge, STRAY_MAC, str(tmp_path / "stray")) as serial:
        found = wait_for(lambda: (lambda d: d if d and any(
            m["mac"] == STRAY_MAC for m in d.get("unknown", [])) else None)(
                _salt(node, "salt-run", "netlab.discover")[0]), 180,
            "netlab.discover to list the PXE-booting VM", interval=3)
        stray_serial = serial_text(serial)
    took["PXE request seen by netlab.discover"] = time.monotonic() - t0
    assert found["retcode"] == 0, found
    [machine] = [m for m in found["unknown"] if m["mac"] == STRAY_MAC]
    assert machine["firmware"] == "bios", machine
    assert "Linux version" not in stray_serial  # no boot answer while unknown
    added = yaml.safe_load(found["pillar"])["nodes"]
    [(new_id, new)] = added.items()
    assert new["mac"] == STRAY_MAC and new["role"] == "controller"
    assert new["power"] == {"driver": "wol"}
    # the user pastes the lines and picks the power driver that fits the machine
    new["power"] = {"driver": "virtual", "bridge": seg.bridge, "memory": 1024, "cpus": 1,
                    "firmware": "bios"}
    raw = _edit_lab(srv, lambda lab: lab.update(nodes=dict(lab.get("nodes") or {}, **added)))
    lab = netlab_lab.load(raw)
    try:
        t0 = time.monotonic()
        _apply_netnode(node)  # its boot answer (the deploy's networking node step)
        data, res = _salt(node, "salt-run", "netlab.reimage", new_id, "timeout=600",
                          timeout=1200)
        took["netlab.netnode + reimage (VM boot)"] = time.monotonic() - t0
        print("reimage {}: {}".format(new_id, json.dumps((data or {}).get("nodes"))))
        vm_serial = serial_text(os.path.join(lab.netnode.state_dir, "vms", new_id,
                                             "serial.log"))
        assert res.returncode == 0 and data["nodes"][new_id]["state"] == "up", (
            res.stdout[-3000:] + res.stderr[-2000:] + vm_serial[-3000:])
        ping, _ = _salt(node, "salt", "-t", "60", new_id, "cmd.run",
                        "hostname; findmnt -n -o FSTYPE,SOURCE /")
        host, root = ping[new_id].splitlines()
        assert host == new_id
        assert root.split()[0].startswith("nfs") and root.split()[1].startswith(
            raw["netnode"]["ip"] + ":")
        leases = node.run(["cat", "/var/lib/misc/netlab-dnsmasq.leases"]).stdout
        assert STRAY_MAC in leases and new["ip"] in leases
    finally:
        stop_lab_vms(lab)
        # the node's root (a copy of the image, ~1 GB); the image is a symlink
        subprocess.run(["rm", "-rf", "--one-file-system", str(storage)], check=False)
    return took


def test_bootstrap_fresh_node_to_a_netbooted_node_idempotent_refuses_foreign_config(
        segment_factory, daemons, tmp_path, test_image):  # noqa: F811  pylint: disable=redefined-outer-name
    # IPv6 on the bridge: netlab's router advertisements spare iPXE its ~13 s IPv6 wait
    seg = segment_factory(cidr="10.78.2.0/24", server_ip="10.78.2.2", ipv6=True)
    node = seg.server
    router = seg.add_client("router", mac="52:54:00:78:02:01", ip="10.78.2.1")
    conf = daemons_lib.router_dnsmasq_conf(tmp_path / "router.conf", "eth0", "10.78.2.100",
                                           "10.78.2.150", router="10.78.2.1")
    home_router = daemons.start(router, "router-dnsmasq", ["dnsmasq", "-k", "-C", conf],
                                log=tmp_path / "router.log",
                                ready=lambda: daemons_lib.port_open(router, 67, "udp"))
    node.run(["ip", "route", "add", "default", "via", "10.78.2.1"])
    t_start = time.monotonic()
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
    assert lab["lookup"] == {"service_control": "process"}  # no systemd here
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
    took = {"bootstrap, preflight, second run": time.monotonic() - t_start}

    # ---- a discovered machine added and netbooted (its own segment: no router)
    home_router.stop()
    took.update(_netboot_a_discovered_machine(node, seg, srv, tmp_path, test_image))
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
