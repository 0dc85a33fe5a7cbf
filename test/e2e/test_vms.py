"""
Diskless VMs that really netboot, and the reimage lifecycle on them.

One namespace (the networking node) holds a bridge, the formula's netnode
services (dnsmasq, nginx, nfs-ganesha, rpcbind: applied with
``state.apply netlab.netnode`` by the networking node's own minion), a
salt-master and that minion. netlab's runner (``salt-run netlab.reimage``)
powers the lab VMs (driver ``virtual``: qemu without a disk, on taps in the
bridge), resets their roots from the test image and waits for their minions.

Shown here:

* two VMs (vma: BIOS/SeaBIOS, vmb: UEFI/OVMF) PXE-boot through iPXE, load
  kernel + initrd over HTTP, mount their own root over NFS and join the master
  with their own id, hostname and machine-id (asserted from the master); a
  third (vmc) is stateless: the shared read-only image over NFS under a tmpfs
  overlay, its identity, SSH host keys and minion key from its identity tree,
  writes that never reach the image, sshd and a console login;
* a VM whose MAC is not in pillar does not boot from netlab; minions whose key
  was not pre-seeded (a stranger, an impostor of vmb) are not accepted;
* the image is rebuilt while the VMs run: each stays on its build (``stale``
  in ``netlab.status``), answers, reads its root and loads kernel modules;
* one reimage of vma and ``gone`` (manual power: nobody presses the button):
  its exports refresh reloads nfs-ganesha (the same process) under vmb (a
  write/read loop on its root sees no error) and vmc (still reads the old
  build's export); vma comes
  up on the new build with a fresh root (its file is gone, new machine-id)
  while vmb keeps its file and was not rebooted; ``gone`` fails at its
  deadline with the reason (runner and orchestration); pruning keeps the old
  build; in the time left to ``gone``'s deadline the ``reboot`` power driver
  restarts vma through its minion;
* the networking node restarts dnsmasq, nginx and nfs-ganesha in one state run
  (an upgrade's changed configs) under vmb's write/read loop and vmc: a pause,
  no error or stale handle, minions answer, boot answers are served;
* the deploy's bring-up step boots the known nodes that do not answer: vmc
  (powered off) comes up through the restarted daemons; ``gone`` (its root
  has no init) never does, and fails at the deadline with the tail of its
  serial console naming the cause.

Timings are printed (``-s``), never asserted; bench/bench_lifecycle.py has them.
"""

import concurrent.futures
import json
import os
import pathlib
import subprocess
import time

import pytest
import yaml

import netlab_image
import netlab_lab
import netlab_lifecycle
import netlab_power
import netlab_proc
import netlab_roots
import netlab_roots_keys
import netlab_slice
from lib.events import EventWatcher
from lib import image as image_lib
from lib import testdirs
from lib.image import test_image  # noqa: F401  pylint: disable=unused-import
from lib import netnode_restarts as restarts
from lib.netns import Segment
from lib.nodeio import IoLoop, loads_module, reads_root
from lib.vm import VENV_BIN, Master, copy_logs, serial_text, stop_lab_vms, stray_vm, wait_for

# One set of VMs driven through its life: the first tests check the first boot
# (e.g. ``gone`` still registered) before the reimage test changes it, so
# pytest-random-order keeps this file's order.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.guests,
              pytest.mark.random_order(disabled=True)]

REPO = pathlib.Path(__file__).resolve().parents[2]
CIDR = "10.99.0.0/24"
NETNODE_IP = "10.99.0.2"
BOOT_TIMEOUT = 900          # generous: 2 TCG guests + a stray on 2 cores
STRAY_MAC = "52:54:00:99:00:66"


def lab_pillar(base, netns):
    run = str(base / "run")
    # no `netns`: the master (and so the runner that starts qemu) already runs in
    # the lab namespace, like a virtual lab's networking node
    del netns
    virtual = {"driver": "virtual", "bridge": "br0", "memory": 1024, "cpus": 1}
    return {
        "network": {"interface": "br0", "cidr": CIDR, "domain": "lab.test",
                    "dhcp": {"mode": "full", "lease_time": "1h"},
                    "dns": {"enabled": True, "upstream": []}},
        "netnode": {"id": "netnode", "ip": NETNODE_IP, "storage": str(base / "srv"),
                    "nfs": {"server": "ganesha"}, "http": {"port": 80}},
        "devstack": {"user": "stack"},
        "nodes": {
            "vma": {"mac": "52:54:00:99:00:11", "ip": "10.99.0.11", "role": "controller",
                    "power": dict(virtual, firmware="bios")},
            "vmb": {"mac": "52:54:00:99:00:12", "ip": "10.99.0.12", "role": "compute",
                    "boot": {"firmware": "uefi"}, "power": dict(virtual, firmware="uefi")},
            "vmc": {"mac": "52:54:00:99:00:14", "ip": "10.99.0.14", "role": "compute",
                    "root": {"mode": "stateless"}, "power": dict(virtual, firmware="bios")},
            "gone": {"mac": "52:54:00:99:00:13", "ip": "10.99.0.13", "role": "compute",
                     "power": {"driver": "manual",
                               "instructions": "nobody is there: it never comes back"}},
        },
        "lookup": {
            "service_control": "process", "run_dir": run, "install_packages": False,
            "dnsmasq": {"conf": str(base / "etc" / "dnsmasq.conf"),
                        "leasefile": run + "/dnsmasq.leases", "ra": True},
            "nginx": {"conf": str(base / "etc" / "nginx-netlab.conf")},
            "nfs": {"ganesha_conf": str(base / "etc" / "ganesha.conf")},
        },
    }


def link_image(lab, img):
    """Make the cached test image this lab's current image (and publish its boot files)."""
    images = lab.netnode.images_dir
    os.makedirs(images, exist_ok=True)
    os.symlink(img["dir"], os.path.join(images, img["build_id"]))
    os.symlink(img["build_id"], os.path.join(images, "current"))
    netlab_image.publish(lab, img["build_id"])


class VmLab:
    def __init__(self, base, seg, lab, raw, master):
        self.base, self.seg, self.lab, self.raw, self.master = base, seg, lab, raw, master
        self.run_dir = base / "run"

    def reimage(self, nodes, timeout=BOOT_TIMEOUT, check=True):
        t0 = time.monotonic()
        data, proc = self.master.run_json(
            "salt-run", "netlab.reimage", ",".join(nodes), "timeout={}".format(timeout),
            check=False, timeout=timeout + 600)
        took = time.monotonic() - t0
        print("reimage {}: {:.0f} s -> {}".format(nodes, took, json.dumps(data)))
        if check and proc.returncode != 0:
            self.dump(nodes)
            raise AssertionError("reimage {} failed ({}): {}\n{}".format(
                nodes, proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:]))
        return data, proc, took

    def status(self):
        data, _ = self.master.run_json("salt-run", "netlab.status", "as_table=False")
        return {r["node"]: r for r in data}

    def serial(self, node):
        return serial_text(os.path.join(self.lab.netnode.state_dir, "vms", node,
                                        "serial.log"))

    def dump(self, nodes):
        for n in nodes:
            print("==== serial log of {} (tail) ====\n{}".format(n, self.serial(n)[-4000:]))


@pytest.fixture(scope="module")
def vmlab(test_image, request):  # noqa: F811  pylint: disable=redefined-outer-name
    base = testdirs.make("netlab-vms-")  # 0755: nginx (www-data) reads the http tree under it
    seg = Segment(cidr=CIDR, server_ip=NETNODE_IP, bridge="br0", ipv6=True)
    lab = master = None
    failed_before = request.session.testsfailed
    try:
        raw = lab_pillar(base, seg.server.name)
        lab = netlab_lab.load(raw)
        link_image(lab, test_image)
        # reimage: the networking node's nfs state renders the exports again and
        # nfs-ganesha reloads them (no stop command: netlab_exports_refresh unset)
        master = Master(seg.server, base / "master", REPO, raw)
        master.start()
        start_netnode_minion(seg, base, master)
        ret = master.run("salt", "-t", "600", "netnode", "saltutil.sync_all")
        data, proc = master.run_json("salt", "-t", "900", "netnode", "state.apply",
                                     "netlab.netnode", check=False, timeout=1200)
        states = (data or {}).get("netnode")
        assert isinstance(states, dict), proc.stdout[-4000:] + proc.stderr[-2000:]
        bad = ["{}: {}".format(k.split("_|-")[1], str(v.get("comment"))[:300])
               for k, v in states.items() if not v.get("result")]
        assert not bad, "netlab.netnode failed ({} states):\n{}".format(
            len(bad), "\n".join(bad[:5]))
        del ret
        yield VmLab(base, seg, lab, raw, master)
    finally:
        try:
            if request.session.testsfailed > failed_before:
                dest = "/tmp/netlab-e2e-logs/{}".format(int(time.time()))
                copy_logs([str(base / "run"), str(base / "master"),
                           os.path.join(str(base / "srv"), "state", "vms")], dest)
                print("logs kept in", dest)
        finally:
            try:
                if lab is not None:
                    stop_lab_vms(lab)
                if master is not None:
                    master.stop()
            finally:
                seg.destroy()
                subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False)


def start_netnode_minion(seg, base, master):
    """The networking node's own minion (enrolled the netlab way: key made and
    pre-accepted by the master's side, no autosign)."""
    root = base / "netnode-minion"
    pki = root / "pki"
    pki.mkdir(parents=True)
    priv, pub = netlab_roots_keys.gen_minion_keys()
    (pki / "minion.pem").write_text(priv)
    os.chmod(pki / "minion.pem", 0o400)
    (pki / "minion.pub").write_text(pub)
    netlab_roots_keys.preaccept_key(master.pki_dir, "netnode", pub)
    conf = {"id": "netnode", "master": "127.0.0.1", "root_dir": str(root),
            "pki_dir": str(pki), "cachedir": str(root / "cache"),
            "sock_dir": str(root / "sock"), "pidfile": str(root / "minion.pid"),
            "log_file": str(root / "minion.log"), "log_level_logfile": "info",
            "user": "root", "grains_cache": False, "enable_fqdns_grains": False}
    (root / "etc").mkdir()
    (root / "etc" / "minion").write_text(yaml.safe_dump(conf))
    seg.server.popen([os.path.join(VENV_BIN, "salt-minion"), "-c", str(root / "etc"),
                      "-l", "warning"], stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: "netnode" in (master.run_json("salt", "-t", "10", "netnode",
                                                   "test.ping", check=False)[0] or {}),
             120, "the networking node's minion")


def node_facts(master, node):
    text = master.cmd(node, "cat /etc/machine-id; hostname; cat /proc/sys/kernel/random/boot_id;"
                      " findmnt -n -o FSTYPE,SOURCE /; test -d /sys/firmware/efi && echo uefi"
                      " || echo bios; cat /proc/cmdline", timeout=120)
    lines = text.splitlines()
    return {"machine_id": lines[0], "hostname": lines[1], "boot_id": lines[2],
            "root": lines[3], "firmware": lines[4], "cmdline": lines[5]}


@pytest.fixture(scope="module")
def booted(vmlab):
    """First reimage of vma, vmb and vmc (stateless), with a stray VM (MAC not in
    pillar) booting too. Not asserted here: each test checks its own node."""
    stray_dir = str(vmlab.base / "stray")
    build = netlab_lifecycle.current_build_id(vmlab.lab)
    with stray_vm(vmlab.seg.server.name, "br0", STRAY_MAC, stray_dir) as stray_log:
        data, proc, took = vmlab.reimage(["vma", "vmb", "vmc"], check=False)
        # the stray had the whole reimage time to try
        stray_text = serial_text(stray_log)
    assert isinstance(data, dict) and "nodes" in data, proc.stdout[-3000:] + proc.stderr[-3000:]
    facts = {}
    for n, res in data["nodes"].items():
        if res.get("state") == "up":
            facts[n] = node_facts(vmlab.master, n)
        else:
            vmlab.dump([n])
    print("first boot of vma+vmb+vmc: {:.0f} s; facts {}".format(took, facts))
    return {"reimage": data, "facts": facts, "stray": stray_text, "build": build}


# --------------------------------------------------------------------------- tests
def test_vms_netboot_and_join_with_their_own_identity(vmlab, booted):
    lab = vmlab.lab
    for node in ("vma", "vmb"):
        res = booted["reimage"]["nodes"][node]
        assert res["state"] == "up", res
        assert res["generation"] == 1
        f = booted["facts"][node]
        ident = netlab_slice.identity(lab, node, 1)
        assert f["hostname"] == node
        assert f["machine_id"] == ident["machine_id"]
        # its own root over NFS from the networking node
        assert f["root"].split()[0].startswith("nfs")
        assert f["root"].split()[1] == "{}:{}".format(NETNODE_IP,
                                                      netlab_roots.root_path(lab, node))
        assert "netlab.node={}".format(node) in f["cmdline"]
        # the node's minion uses the key the master generated for it
        with open(os.path.join(netlab_roots.root_path(lab, node),
                               "etc/salt/pki/minion/minion.pub")) as fh:
            assert netlab_roots_keys.accepted_key(vmlab.master.pki_dir, node) == fh.read()
    assert booted["facts"]["vma"]["machine_id"] != booted["facts"]["vmb"]["machine_id"]
    # BIOS for vma, UEFI (OVMF) for vmb
    assert booted["facts"]["vma"]["firmware"] == "bios"
    assert booted["facts"]["vmb"]["firmware"] == "uefi"
    # through iPXE (its script, then kernel + initrd over HTTP; the firmware itself
    # prints to the VGA console, which these VMs do not have)
    access = serial_text(str(vmlab.run_dir / "nginx-access.log"))
    for node, ip in (("vma", "10.99.0.11"), ("vmb", "10.99.0.12")):
        got = [line for line in access.splitlines() if line.startswith(ip + " ")]
        # a reimaged node boots the kernel of the build its root came from (the
        # first reimage took the current build; a later rebuild does not move it)
        build = booted["build"]
        assert build and netlab_lifecycle.node_builds(lab)[node] in (
            build, netlab_lifecycle.current_build_id(lab)), build
        for path in ("/boot/{}.ipxe".format(node), "/images/{}/vmlinuz".format(build),
                     "/images/{}/initrd.img".format(build)):
            assert any('"GET {} '.format(path) in line and '" 200 ' in line
                       and "iPXE/" in line for line in got), (path, got)
        assert "initrd=initrd.img" in booted["facts"][node]["cmdline"]  # iPXE's line
        assert "Linux version" in vmlab.serial(node)
    st = vmlab.status()
    assert st["vma"]["state"] == st["vmb"]["state"] == "up"
    assert st["gone"]["state"] == "registered"


def test_stateless_node_gets_its_identity_from_its_seed(vmlab, booted):
    """vmc: shared read-only image + tmpfs overlay; identity from roots/vmc.identity."""
    lab, master = vmlab.lab, vmlab.master
    res = booted["reimage"]["nodes"]["vmc"]
    assert res["state"] == "up" and res["method"] == "identity", res
    f = booted["facts"]["vmc"]
    assert f["hostname"] == "vmc"
    assert f["machine_id"] == netlab_slice.identity(lab, "vmc", 1)["machine_id"]
    assert f["root"].split()[0] == "overlay"
    assert "netlab.root=stateless" in f["cmdline"] and "netlab.seed=" in f["cmdline"]
    tree = netlab_roots.identity_path(lab, "vmc")
    with open(os.path.join(tree, "etc/salt/pki/minion/minion.pub")) as fh:
        assert netlab_roots_keys.accepted_key(master.pki_dir, "vmc") == fh.read()
    assert not os.path.exists(netlab_roots.root_path(lab, "vmc"))
    # writes stay in the node's RAM: the shared image is untouched
    master.cmd("vmc", "echo x > /etc/written-on-vmc && sync")
    assert master.cmd("vmc", "cat /etc/written-on-vmc") == "x"
    image = os.path.join(lab.netnode.images_dir, booted["build"], "rootfs")
    assert not os.path.exists(os.path.join(image, "etc/written-on-vmc"))
    assert open(os.path.join(image, "etc/machine-id")).read().strip() == ""
    # the overlay's lower layer is the shared image over NFS; the initramfs wrote
    # the mode; sshd runs with the identity tree's host keys; getty on the console
    facts = master.cmd("vmc", "findmnt -n -o FSTYPE /run/netlab/lower; "
                       "cat /run/netlab/root-mode; systemctl is-active ssh; "
                       "ls /etc/ssh/ssh_host_*_key | wc -l").split()
    assert facts[0].startswith("nfs") and facts[1:3] == ["stateless", "active"], facts
    assert int(facts[3]) >= 3, facts
    with open(os.path.join(tree, "etc/ssh/ssh_host_ed25519_key.pub")) as fh:
        assert master.cmd("vmc", "cat /etc/ssh/ssh_host_ed25519_key.pub") == fh.read().strip()
    assert not [n for n in os.listdir(os.path.join(image, "etc", "ssh"))
                if n.startswith("ssh_host_")]
    wait_for(lambda: "vmc login:" in vmlab.serial("vmc"), 120, "a login prompt on vmc")


def test_unknown_mac_does_not_boot_from_netlab(vmlab, booted):
    dhcp_log = serial_text(str(vmlab.run_dir / "dnsmasq.log"))
    stray = [line for line in dhcp_log.splitlines() if STRAY_MAC in line]
    # it did ask (its PXE ROM ran during the whole first reimage) ...
    assert any("DHCPDISCOVER" in line and "ignored" in line for line in stray), stray
    # ... and got no offer, no lease, no boot file, no kernel
    assert not any(("DHCPOFFER" in line or "DHCPACK" in line) for line in stray), stray
    assert STRAY_MAC not in serial_text(str(vmlab.run_dir / "dnsmasq.leases"))
    access = serial_text(str(vmlab.run_dir / "nginx-access.log"))
    assert all(line.startswith(("10.99.0.11 ", "10.99.0.12 ", "10.99.0.14 "))
               for line in access.splitlines()), access
    assert "Linux version" not in booted["stray"]


def test_minion_without_preseeded_key_is_not_accepted(vmlab, booted):
    """A stranger and an impostor of vmb (own fresh key) try to join."""
    seg, master = vmlab.seg, vmlab.master
    started = []
    for name, ip, mid in (("rogue1", "10.99.0.51", "stranger"),
                          ("rogue2", "10.99.0.52", "vmb")):
        ns = seg.add_client(name, mac="52:54:00:99:01:{}".format(ip[-2:]), ip=ip)
        root = vmlab.base / name
        (root / "etc").mkdir(parents=True)
        conf = {"id": mid, "master": NETNODE_IP, "root_dir": str(root),
                "pki_dir": str(root / "pki"), "cachedir": str(root / "cache"),
                "sock_dir": str(root / "sock"), "pidfile": str(root / "minion.pid"),
                "log_file": str(root / "minion.log"), "user": "root",
                "acceptance_wait_time": 2, "grains_cache": False,
                "enable_fqdns_grains": False}
        (root / "etc" / "minion").write_text(yaml.safe_dump(conf))
        started.append(ns.popen([os.path.join(VENV_BIN, "salt-minion"), "-c",
                                 str(root / "etc"), "-l", "warning"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True))
    try:
        keys = wait_for(lambda: (lambda k: k if "stranger" in k.get("minions_pre", [])
                                 and "vmb" in k.get("minions_denied", []) else None)(
            master.key_lists()), 180, "the master to see both rogue keys")
        assert "stranger" not in keys["minions"]
        ping = master.run("salt", "-t", "10", "stranger", "test.ping", check=False)
        assert ping.returncode != 0
        assert "No minions matched the target" in ping.stdout + ping.stderr
        # the real vmb is still the accepted one and answers
        assert netlab_roots_keys.accepted_key(master.pki_dir, "vmb") == open(os.path.join(
            netlab_roots.root_path(vmlab.lab, "vmb"), "etc/salt/pki/minion/minion.pub")).read()
        assert master.cmd("vmb", "hostname") == "vmb"
        rep, _ = master.run_json("salt-run", "netlab.keys")
        assert rep["not_in_lab"] == ["stranger"]
    finally:
        for proc in started:
            proc.terminate()
        for name in ("rogue1", "rogue2"):
            seg.clients.pop(name).delete()


def _watch(master):
    watcher = EventWatcher(master.ns.prefix + [os.path.join(VENV_BIN, "salt-run"), "-c",
                                               master.conf_dir], "netlab/*",
                           lambda tag: master.run("salt-run", "event.send", tag))
    watcher.start()  # the `with` that uses it keeps this one (and stops it)
    try:
        watcher.wait_live()  # subscribed: proven by a probe event, not by a sleep
    except Exception:
        watcher.stop()
        raise
    return watcher


def _ganesha_pid(vmlab):
    try:
        pid = int((vmlab.run_dir / "ganesha.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if os.path.exists("/proc/{}".format(pid)) else None


def _answers(master, node):
    data, _ = master.run_json("salt", "-t", "10", node, "test.ping", check=False)
    return (data or {}).get(node) is True


def _two_node_timeout(booted):
    """gone's deadline in the two-node reimage: vma must be up before it. Its
    first boot (three VMs and a stray at once) is the yardstick, with margin."""
    first = booted["reimage"]["nodes"]["vma"].get("boot_seconds") or BOOT_TIMEOUT
    return int(min(BOOT_TIMEOUT, max(150, 1.5 * first)))


def _reboot_through_minion(vmlab):
    """Power driver ``reboot`` on its real path: the runner's minion call
    (``test.ping``, then ``system.reboot`` sent with ``cmd_async``) to vma's real
    minion; vma comes back on the same root (a file survives), with the same
    identity and a new boot, from the kernel of its own build."""
    master, lab = vmlab.master, vmlab.lab
    master.cmd("vma", "echo kept > /root/reboot-marker && sync")
    before = node_facts(master, "vma")
    generation = netlab_lifecycle.generation(lab, "vma")
    kernel = '"GET /images/{}/vmlinuz '.format(netlab_lifecycle.node_builds(lab)["vma"])

    def kernel_fetches():
        return sum(1 for line in serial_text(str(vmlab.run_dir / "nginx-access.log")
                                             ).splitlines()
                   if line.startswith("10.99.0.11 ") and kernel in line and '" 200 ' in line)

    fetched = kernel_fetches()
    raw = json.loads(json.dumps(vmlab.raw))
    raw["nodes"]["vma"]["power"] = {"driver": "reboot"}
    t0 = time.monotonic()
    data, proc = master.run_json("salt-run", "netlab.power", "vma", "cycle",
                                 "pillar=" + json.dumps(raw), check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert data["done"] and data["message"] == "system.reboot sent to the node's minion"
    after = wait_for(lambda: (lambda f: f if f["boot_id"] != before["boot_id"] else None)(
        node_facts(master, "vma")), BOOT_TIMEOUT, "vma to come back after system.reboot",
        interval=5)
    print("reboot through the minion: back after {:.0f} s".format(time.monotonic() - t0))
    assert after["machine_id"] == before["machine_id"] and after["hostname"] == "vma"
    assert master.cmd("vma", "cat /root/reboot-marker") == "kept"
    assert netlab_lifecycle.generation(lab, "vma") == generation  # no reimage
    # a plain reboot boots the kernel of the build the node's root came from again
    assert kernel_fetches() == fetched + 1, kernel
    # the reboot driver cannot switch a machine on: a clear error, no traceback
    data, proc = master.run_json("salt-run", "netlab.power", "vma", "on",
                                 "pillar=" + json.dumps(raw), check=False)
    assert proc.returncode == 1 and "reboot driver can only restart a running node" in \
        data["Error"], data


def test_rebuild_under_running_nodes_then_two_node_reimage(vmlab, booted):
    """The image is rebuilt while vma, vmb (persistent) and vmc (stateless) run:
    they stay on their build (stale) and keep working; then one reimage of vma and
    gone (manual power, nobody presses the button): its NFS exports refresh
    reloads nfs-ganesha (no restart: the same pid) under vmb and vmc, whose roots
    keep working (vmb runs a write/read loop through it); vma comes up on its new
    root (reset while ganesha served the old one) from the new build and, while gone's
    deadline still runs, is rebooted by the ``reboot`` power driver; gone fails
    at its deadline with the reason; the old build stays (vmc and vmb use it)."""
    master, lab = vmlab.master, vmlab.lab
    for node in ("vma", "vmb"):
        master.cmd(node, "echo precious > /root/{}-file && sync".format(node))
    before = {n: node_facts(master, n) for n in ("vma", "vmb", "vmc")}
    old = netlab_lifecycle.current_build_id(lab)
    rebuilt = image_lib.clone_rebuild(lab)
    new = rebuilt["build_id"]
    assert rebuilt["changed"] and new != old and rebuilt["pruned"] == [], rebuilt
    assert netlab_lifecycle.current_build_id(lab) == new
    st = vmlab.status()
    for node in ("vma", "vmb", "vmc"):
        assert st[node]["build"] == old and st[node]["stale"], st[node]
    assert "{} (stale)".format(old) in master.run("salt-run", "netlab.status").stdout
    for node in ("vma", "vmc"):  # still on the old build, both keep working
        reads_root(master, node)
        loads_module(master, node, "dummy")
    loop = IoLoop(master, "vmb", netlab_roots.root_path(lab, "vmb")).start()
    pid = _ganesha_pid(vmlab)
    assert pid is not None
    ganesha_log = vmlab.run_dir / "ganesha.log"
    rereads = ganesha_log.read_text().count("Reread exports complete")
    timeout = _two_node_timeout(booted)
    with _watch(master) as watcher, \
            concurrent.futures.ThreadPoolExecutor(1) as pool:
        run = pool.submit(vmlab.reimage, ["vma", "gone"], timeout=timeout, check=False)
        # the reimage's exports refresh reloads nfs-ganesha under vmb and vmc: vma's
        # reset root is unexported in one reread, exported anew in a second one
        wait_for(lambda: run.done() or ganesha_log.read_text().count(
            "Reread exports complete") >= rereads + 2, 600,
                 "nfs-ganesha to reread its exports twice in the reimage")
        assert ganesha_log.read_text().count("Reread exports complete") >= rereads + 2, \
            run.result()
        assert _ganesha_pid(vmlab) == pid   # reloaded, not restarted
        loop.wait_rounds(3)
        reads_root(master, "vmc")
        loads_module(master, "vmc", "openvswitch")  # vmc's modules: the old build's export
        assert master.cmd("vmb", "echo after > /root/after-reload && sync && "
                          "cat /root/after-reload") == "after"
        loads_module(master, "vmb", "openvswitch")
        # vma comes up (on the new build) while gone's deadline still runs
        wait_for(lambda: _answers(master, "vma") or run.done(), timeout + 60,
                 "vma to come up from the two-node reimage", interval=5)
        assert master.cmd("vma", "cat /etc/netlab-test-build") == new
        loads_module(master, "vma", "openvswitch")
        # while gone's deadline runs: the reboot driver on vma. The runner asks a
        # node that started (its start event) at once, and vma has answered our
        # own calls for many seconds by now; it records the outcome at the end
        run_rebooted = not run.done()
        if run_rebooted:
            _reboot_through_minion(vmlab)
        data, proc, took = run.result()
        events = watcher.events(settle_tag="netlab/node/gone/failed")
    io = loop.stop()
    print("two-node reimage (gone's timeout {} s): {:.0f} s; vma up {} s after power on; "
          "vmb's I/O loop through the nfs-ganesha reloads: {}".format(
              timeout, took, data["nodes"]["vma"].get("boot_seconds"), io))
    assert io["errors"] == 0 and not io["error_text"].strip(), io
    # the whole reimage (vma's reset, boot and up; gone's deadline) ran on one
    # nfs-ganesha process: no reload fell back to a restart
    assert _ganesha_pid(vmlab) == pid
    # one failed, the other up, in one run
    assert proc.returncode != 0 and data["failed"] == ["gone"] and data["retcode"] == 1, data
    vma, gone = data["nodes"]["vma"], data["nodes"]["gone"]
    assert vma["state"] == "up" and vma["generation"] == 2, vma
    assert gone["state"] == "failed" and gone["seconds"] >= timeout, gone
    assert "no salt/minion/gone/start event within {} s after power on".format(
        timeout) in gone["reason"]
    assert "press the power button" in gone["power"] or "press reset" in gone["power"]
    assert gone["console_tail"] is None  # manual power: netlab has no console of it
    tags = [t for t, _ in events]
    assert [t for t in tags if t.startswith("netlab/node/gone/")] == [
        "netlab/node/gone/reimaging", "netlab/node/gone/booting",
        "netlab/node/gone/action-needed", "netlab/node/gone/failed"], tags
    assert [t for t in tags if t.startswith("netlab/node/vma/")] == [
        "netlab/node/vma/reimaging", "netlab/node/vma/booting", "netlab/node/vma/up"], tags
    assert "press" in dict(events)["netlab/node/gone/action-needed"]["message"]
    # vma: fresh root from the new build, new identity, booted the new build's kernel
    after = {n: node_facts(master, n) for n in ("vma", "vmb", "vmc")}
    assert master.cmd("vma", "ls /root/vma-file 2>&1 || echo missing").endswith("missing")
    assert after["vma"]["machine_id"] == netlab_slice.identity(lab, "vma", 2)["machine_id"]
    assert after["vma"]["machine_id"] != before["vma"]["machine_id"]
    assert after["vma"]["boot_id"] != before["vma"]["boot_id"]
    access = serial_text(str(vmlab.run_dir / "nginx-access.log"))
    assert any(line.startswith("10.99.0.11 ") and '"GET /images/{}/vmlinuz '.format(new)
               in line and '" 200 ' in line for line in access.splitlines()), access[-2000:]
    # vmb and vmc: untouched, not rebooted, still on the old build
    assert master.cmd("vmb", "cat /root/vmb-file") == "precious"
    for node in ("vmb", "vmc"):
        assert after[node]["boot_id"] == before[node]["boot_id"], node
        assert after[node]["machine_id"] == before[node]["machine_id"], node
    st = vmlab.status()
    assert st["vma"]["generation"] == 2 and st["vmb"]["generation"] == 1
    assert st["vma"]["build"] == new and not st["vma"]["stale"], st["vma"]
    assert st["vmc"]["build"] == old and st["vmc"]["stale"], st["vmc"]
    assert st["gone"]["state"] == "failed" and "within {} s".format(timeout) in \
        st["gone"]["result"]
    # each node's boot script names its build; the old build stays exported and kept
    boot_dir = pathlib.Path(lab.netnode.http_root) / "boot"
    assert "/images/{}/vmlinuz".format(new) in (boot_dir / "vma.ipxe").read_text()
    old_rootfs = os.path.realpath(os.path.join(lab.netnode.images_dir, old, "rootfs"))
    assert old_rootfs in (boot_dir / "vmc.ipxe").read_text()
    assert old_rootfs in (vmlab.base / "etc" / "ganesha.conf").read_text()
    assert netlab_image.prune(lab, keep=1) == []
    assert {b["build_id"] for b in netlab_image.builds(lab)} >= {old, new}
    if not run_rebooted:
        _reboot_through_minion(vmlab)  # the reimage ended first (vma was slow)
    # the orchestration says the same of a node that never comes back, and fails
    orch = master.run("salt-run", "state.orchestrate", "netlab.reimage",
                      'pillar={"nodes": ["gone"], "timeout": 5}', check=False, timeout=900)
    assert orch.returncode != 0
    assert "no salt/minion/gone/start event within 5 s" in orch.stdout
    st = vmlab.status()
    assert st["vma"]["state"] == "up" and st["vmb"]["state"] == "up"


def test_status_table_says_when_resets_are_copies(vmlab, booted):  # noqa: F811
    """The test's storage is a plain directory: resets copy the image, and the
    status table says so (with the image's size); on btrfs/XFS it says nothing."""
    del booted
    cost = netlab_roots.reset_cost(vmlab.lab)
    table = vmlab.master.run("salt-run", "netlab.status").stdout
    assert "vma" in table and "vmb" in table
    if cost["method"] == "copy":
        assert "NOTE: node root resets are full copies of the image" in table, table
        assert "netnode:storage on btrfs" in table
    else:
        assert "NOTE" not in table, table


def test_daemons_restart_at_once_under_running_nodes(vmlab, booted):
    """The networking node restarts dnsmasq, nginx and nfs-ganesha in one
    ``state.apply netlab.netnode`` (its configs are an older netlab's, as after
    an upgrade: lib.netnode_restarts) while vmb (persistent root) runs its
    write/read loop and vmc (stateless) runs: vmb sees a pause (printed) but no
    I/O error and no stale file handle, both minions keep answering and both
    kinds of root are read again; the three daemons run with new pids, and a
    node that boots now gets its DHCP answer and its iPXE script over HTTP (the
    next test boots vmc through them, and pings vma and vmb)."""
    del booted
    t0 = time.monotonic()
    master, lab = vmlab.master, vmlab.lab
    loop = IoLoop(master, "vmb", netlab_roots.root_path(lab, "vmb"),
                  name="ioloop-restarts").start()
    mark = loop.rounds()
    done = restarts.restart(master, vmlab.raw)
    loop.wait_rounds(3)
    window = loop.window(mark)
    for node in ("vmb", "vmc"):
        # test.ping, then the root read with no page cache: from the new ganesha
        reads_root(master, node)
    # and what the node's kernel made of it: its root's mount options, and its
    # messages about the server ("not responding, still trying", "OK")
    out = master.cmd("vmb", "echo after > /root/after-restarts && sync && "
                     "cat /root/after-restarts; awk '$2 == \"/\" {print $4}' /proc/mounts; "
                     "dmesg | grep -iE 'nfs: server|stale' | tail -n 5").splitlines()
    io = loop.stop()
    assert out[:1] == ["after"], out
    # an I/O error or a stale file handle fails a round and shows in its stderr
    assert io["errors"] == 0 and not io["error_text"].strip(), io
    assert all(done["after"][d] and done["after"][d] != done["before"][d]
               for d in restarts.DAEMONS), done
    # gone never runs: its MAC asks for a boot as the node would
    gone = lab.node("gone")
    offers, url, script = restarts.boot_answer(vmlab.seg, gone.mac, gone.ip)
    assert url == "http://{}:80/boot/gone.ipxe".format(NETNODE_IP), offers
    served = pathlib.Path(lab.netnode.http_root) / "boot" / "gone.ipxe"
    assert script.startswith("#!ipxe") and script == served.read_text(), script[:500]
    print("daemons restarted at once under running nodes: state run {} s (restart states "
          "{}); vmb's longest pause {} s over the restart ({} rounds), {} s over the whole "
          "loop; vmb's root mounted {}, its kernel's NFS server messages {}; this test "
          "{:.0f} s".format(
              done["seconds"], done["states"], window["longest_pause"], window["rounds"],
              io["longest_pause"], out[1:2], out[2:], time.monotonic() - t0))


def _last_json(text):
    """The last JSON document of a runner's output: devstack runners print their
    progress events (one document each) before their return."""
    docs, pos, decoder = [], 0, json.JSONDecoder()
    while True:
        while pos < len(text) and text[pos] not in "{[":
            pos += 1
        if pos >= len(text):
            return docs[-1] if docs else None
        try:
            doc, pos = decoder.raw_decode(text, pos)
        except ValueError:
            pos += 1
            continue
        docs.append(doc)


def test_deploy_bring_up_boots_known_nodes_one_never_comes_back(vmlab, booted):
    """The deploy's bring-up step (``devstack.bring_up``, as ``netlab.deploy``
    runs it) on VMs: vmc is known and powered off, vma and vmb answer, and
    ``gone`` (powered by the ``virtual`` driver for this run) is known with a
    broken root -- its ``/sbin/init`` removed, as a user's experiment might. Both
    are booted, not reimaged. vmc comes up (same generation and identity, a new
    boot); ``gone`` never does: it fails at the deadline, and its failure carries
    the last lines of its serial console, which name what went wrong (the
    initramfs finds no init), as a person at its screen would read them."""
    master, lab = vmlab.master, vmlab.lab
    before = node_facts(master, "vmc")
    generation = netlab_lifecycle.generation(lab, "vmc")
    off, _ = master.run_json("salt-run", "netlab.power", "vmc", "off")
    assert off["done"], off
    wait_for(lambda: not _answers(master, "vmc"), 120, "vmc to stop answering")
    raw = json.loads(json.dumps(vmlab.raw))
    raw["nodes"]["gone"]["power"] = dict(raw["nodes"]["vmc"]["power"])  # a BIOS VM like vmc
    init = os.path.join(netlab_roots.root_path(lab, "gone"), "usr", "sbin", "init")
    assert os.path.islink(init), init  # gone's root: reset by the two-node reimage
    timeout = 150  # vmc's boot beside one other booting VM: 59-84 s on TCG here
    os.rename(init, init + ".netlab-test")
    master.write_pillar(raw)
    try:
        t0 = time.monotonic()
        proc = master.run("salt-run", "--out=json", "devstack.bring_up",
                          "timeout={}".format(timeout), "ping_timeout=15",
                          check=False, timeout=timeout + 600)
        data = _last_json(proc.stdout)
        took = time.monotonic() - t0
        serial = vmlab.serial("gone")
    finally:
        master.run("salt-run", "netlab.power", "gone", "off", check=False)
        master.write_pillar(vmlab.raw)
        os.rename(init + ".netlab-test", init)
    print("deploy bring-up booting vmc and gone (no init): {:.0f} s -> {}".format(
        took, json.dumps(data)))
    assert isinstance(data, dict) and "plan" in data, proc.stdout[-3000:] + proc.stderr[-3000:]
    if data["boot"]["nodes"].get("vmc", {}).get("state") != "up":
        vmlab.dump(["vmc"])
    assert proc.returncode != 0  # gone did not come up
    plan = data["plan"]
    assert sorted(plan["boot"]) == ["gone", "vmc"] and plan["reimage"] == [], plan
    assert sorted(plan["up"]) == ["vma", "vmb"], plan
    assert "minion does not answer" in plan["reasons"]["vmc"]
    assert data["boot"]["failed"] == ["gone"], data["boot"]
    assert data["boot"]["nodes"]["vmc"]["state"] == "up", data["boot"]
    after = node_facts(master, "vmc")
    assert after["boot_id"] != before["boot_id"]
    assert after["machine_id"] == before["machine_id"] and after["hostname"] == "vmc"
    assert netlab_lifecycle.generation(lab, "vmc") == generation
    # gone: failed at the deadline, with what its console showed
    gone = data["boot"]["nodes"]["gone"]
    assert gone["state"] == "failed", gone
    assert "no salt/minion/gone/start event within {} s".format(timeout) in gone["reason"]
    tail = gone["console_tail"]
    assert "Target filesystem doesn't have requested /sbin/init." in tail, (tail, serial[-3000:])
    # the console's last lines, cleaned of control characters, read from its serial log
    lines = tail.splitlines()
    assert 1 < len(lines) <= 15 and all(line.strip() for line in lines), tail
    assert all(c == "\n" or c.isprintable() for c in tail), repr(tail)
    assert lines[-1].strip() in serial, (tail, serial[-3000:])
    st = vmlab.status()
    assert st["vmc"]["state"] == "up" and st["gone"]["state"] == "failed", st


def test_wol_off_shuts_a_running_node_down_through_its_minion(vmlab, booted):
    """The ``wol`` driver's ``off`` on a running VM (vmc, powered by ``wol`` for
    this call): ``system.poweroff`` through its minion, then the driver waits
    until vmc's address answers neither ping nor ARP. The guest really shut
    itself down: its qemu exited."""
    del booted
    master = vmlab.master
    assert _answers(master, "vmc")
    qemu = netlab_power.driver(vmlab.lab, "vmc").pid()
    assert qemu and netlab_proc.alive(qemu)
    raw = json.loads(json.dumps(vmlab.raw))
    raw["nodes"]["vmc"]["power"] = {"driver": "wol"}
    t0 = time.monotonic()
    data, proc = master.run_json("salt-run", "netlab.power", "vmc", "off",
                                 "pillar=" + json.dumps(raw), check=False, timeout=300)
    print("wol off of vmc through its minion: {:.0f} s -> {}".format(
        time.monotonic() - t0, data))
    assert proc.returncode == 0 and data["done"], proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "system.poweroff" in data["message"], data
    assert "10.99.0.14 no longer answers ping" in data["message"], data
    assert not _answers(master, "vmc")
    wait_for(lambda: not netlab_proc.alive(qemu), 120, "vmc's qemu to exit after its poweroff")
