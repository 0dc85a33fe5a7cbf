"""
The node image's stateless root mode, booted for real.

A diskless qemu VM boots the test image's kernel and initrd directly (no PXE:
that path is covered by test_vms.py) with ``root=/dev/nfs ... ip=dhcp
netlab.root=stateless netlab.seed=<server>:<seed dir>``. Inside a network
namespace the test creates: a bridge, dnsmasq (DHCP only), rpcbind and
nfs-ganesha exporting the image rootfs **read-only** and a per-node seed tree
(hostname, machine-id and a probe unit). The probe unit, run by the booted
systemd, reports on the serial console what the node sees.

Shown: the initramfs mounts the shared image over NFSv3, the netlab script
layers a tmpfs overlay over it, copies the seed over it (nfsmount), systemd
boots on that root, the node has the seed's hostname and machine-id, can write
to its root, and nothing reaches the image.
"""

import os
import re
import shutil
import time

import pytest

import netlab_power
from lib.daemons import Daemons, port_open
from lib.image import ensure_test_image
from lib.netns import Segment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CIDR = "10.98.0.0/24"
SERVER_IP = "10.98.0.2"
VM_MAC = "52:54:00:98:00:21"
HOSTNAME = "stateless-probe"
MACHINE_ID = "5e1f0c0de0000000000000000000abcd"
BOOT_TIMEOUT = 600  # TCG on a busy 2-core host
PROBE_RE = re.compile(r"NETLAB-PROBE (.*?) END")

PROBE_UNIT = """\
[Unit]
Description=netlab test probe: what the stateless node sees
After=multi-user.target netlab-netconf.service

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo written > /var/lib/netlab-probe; \
for i in $(seq 60); do systemctl is-active -q ssh && break; sleep 1; done; \
echo "NETLAB-PROBE fstype=$(findmnt -n -o FSTYPE /) \
ssh=$(systemctl is-active ssh) hostkeys=$(ls /etc/ssh/ssh_host_*_key | wc -l) \
lower=$(findmnt -n -o FSTYPE /run/netlab/lower) \
mode=$(cat /run/netlab/root-mode) host=$(hostname) \
machineid=$(cat /etc/machine-id) write=$(cat /var/lib/netlab-probe) \
minion=$(test -x /opt/salt/bin/salt-minion && echo yes) END" > /dev/console'

[Install]
WantedBy=multi-user.target
"""


def ganesha_conf(run_dir, exports):
    blocks = []
    for i, (path, access) in enumerate(exports, start=1):
        blocks.append(
            "EXPORT {{ Export_Id = {i}; Path = \"{p}\"; Pseudo = \"{p}\"; "
            "Access_Type = None; Squash = No_Root_Squash; SecType = sys; "
            "Protocols = 3; FSAL {{ Name = VFS; }} "
            "CLIENT {{ Clients = {c}; Access_Type = {a}; }} }}".format(
                i=i, p=path, c=CIDR, a=access))
    return (
        "NFS_CORE_PARAM {{ Protocols = 3, 4; NFS_Port = 2049; MNT_Port = 20048; "
        "Enable_NLM = false; Enable_RQUOTA = false; Mount_Path_Pseudo = true; }}\n"
        "NFSV4 {{ Graceless = true; RecoveryRoot = {}/ganesha-recov; }}\n"
        "EXPORT_DEFAULTS {{ Access_Type = None; }}\n{}\n").format(run_dir, "\n".join(blocks))


def make_seed(seed):
    """The node's identity tree, as netlab's lifecycle would write it (subset)."""
    etc = seed / "etc"
    wants = etc / "systemd" / "system" / "multi-user.target.wants"
    wants.mkdir(parents=True)
    (etc / "hostname").write_text(HOSTNAME + "\n")
    (etc / "machine-id").write_text(MACHINE_ID + "\n")
    unit = etc / "systemd" / "system" / "netlab-probe.service"
    unit.write_text(PROBE_UNIT)
    (wants / "netlab-probe.service").symlink_to("/etc/systemd/system/netlab-probe.service")
    for path in [seed] + [p for p in seed.rglob("*") if not p.is_symlink()]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


@pytest.fixture
def stateless_vm(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, NFS server, qemu)")
    for tool in ("ganesha.nfsd", "rpcbind", "dnsmasq", "qemu-system-x86_64"):
        if not shutil.which(tool) and not os.path.exists("/usr/sbin/" + tool):
            pytest.skip("{} is not installed".format(tool))
    image = ensure_test_image()
    rootfs = os.path.realpath(image["rootfs"])
    base = tmp_path / "stateless"
    run_dir = base / "run"
    seed = base / "seed"
    vm_dir = base / "vm"
    for d in (run_dir, vm_dir):
        d.mkdir(parents=True)
    make_seed(seed)
    before = set(os.listdir(os.path.join(rootfs, "var", "lib")))
    seg = Segment(cidr=CIDR, server_ip=SERVER_IP, bridge="br0")
    daemons = Daemons()
    pidfile = vm_dir / "qemu.pid"
    try:
        ns = seg.server
        dns = base / "dnsmasq.conf"
        dns.write_text("\n".join([
            "interface=br0", "bind-interfaces", "port=0", "log-dhcp",
            "dhcp-range=10.98.0.100,10.98.0.150,255.255.255.0,1h",
            "dhcp-leasefile={}/dnsmasq.leases".format(run_dir), "dhcp-authoritative",
            "dhcp-option=option:dns-server,{}".format(SERVER_IP),
            "domain=lab.test", ""]))
        daemons.start(ns, "dnsmasq", ["dnsmasq", "-k", "-C", str(dns)],
                      log=str(base / "dnsmasq.log"), ready=lambda: port_open(ns, 67, "udp"))
        daemons.start(ns, "rpcbind", ["rpcbind", "-f", "-w"], log=str(base / "rpcbind.log"),
                      ready=lambda: port_open(ns, 111))
        conf = base / "ganesha.conf"
        conf.write_text(ganesha_conf(run_dir, [(rootfs, "RO"), (str(seed), "RO")]))
        (run_dir / "ganesha-recov").mkdir()
        daemons.start(ns, "ganesha", ["ganesha.nfsd", "-F", "-f", str(conf),
                                      "-L", str(base / "ganesha.log"),
                                      "-p", str(run_dir / "ganesha.pid")],
                      ready=lambda: port_open(ns, 2049) and port_open(ns, 20048),
                      timeout=60)
        tap = seg.add_tap("nlsl0")
        cmdline = ("root=/dev/nfs nfsroot={ip}:{root},vers=3,tcp ip=dhcp rw "
                   "console=ttyS0,115200 panic=10 netlab.node=probe netlab.root=stateless "
                   "netlab.seed={ip}:{seed}").format(ip=SERVER_IP, root=rootfs, seed=seed)
        cmd = ["qemu-system-x86_64", "-name", "netlab-stateless-probe", "-machine", "pc",
               "-m", "768", "-smp", "1"] + netlab_power.accel_args() + [
            "-nodefaults", "-display", "none", "-vga", "none", "-no-reboot",
            "-serial", "file:" + str(vm_dir / "serial.log"),
            "-pidfile", str(pidfile), "-daemonize",
            "-kernel", image["kernel"], "-initrd", image["initrd"], "-append", cmdline,
            "-netdev", "tap,id=n0,ifname={},script=no,downscript=no".format(tap),
            "-device", "virtio-net-pci,netdev=n0,mac={}".format(VM_MAC)]
        ns.run(cmd)
        yield {"serial": vm_dir / "serial.log", "rootfs": rootfs, "before": before,
               "base": base, "image": image}
    finally:
        _stop_qemu(pidfile)
        daemons.stop_all()
        seg.destroy()


def _stop_qemu(pidfile):
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, 15)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


def _serial(path):
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def test_stateless_node_boots_on_a_tmpfs_overlay_of_the_read_only_image(stateless_vm):
    serial = stateless_vm["serial"]
    t0 = time.monotonic()
    found = None
    while time.monotonic() - t0 < BOOT_TIMEOUT:
        text = _serial(serial)
        found = PROBE_RE.search(text)
        if found or "Kernel panic" in text or "netlab: cannot" in text:
            break
        time.sleep(2)
    text = _serial(serial)
    took = time.monotonic() - t0
    print("stateless boot to probe: {:.0f} s".format(took))
    assert found, "no probe report after {:.0f} s; serial tail:\n{}".format(took, text[-5000:])
    facts = dict(kv.split("=", 1) for kv in found.group(1).split())
    rootfs = stateless_vm["rootfs"]
    assert facts["fstype"] == "overlay", facts
    assert facts["lower"] == "nfs", facts  # the shared image, read-only over NFSv3
    assert facts["mode"] == "stateless", facts
    assert facts["host"] == HOSTNAME, facts            # from the seed (nfsmount + cp)
    assert facts["machineid"] == MACHINE_ID, facts     # from the seed
    assert facts["write"] == "written", facts          # the root is writable
    assert facts["minion"] == "yes", facts             # the image is underneath
    # the seed had no SSH host keys: the image's ssh unit made them (in the overlay)
    assert facts["ssh"] == "active" and int(facts["hostkeys"]) >= 3, facts
    assert not [n for n in os.listdir(os.path.join(rootfs, "etc", "ssh"))
                if n.startswith("ssh_host_")]
    # nothing reached the shared image
    assert not os.path.exists(os.path.join(rootfs, "var", "lib", "netlab-probe"))
    assert set(os.listdir(os.path.join(rootfs, "var", "lib"))) == stateless_vm["before"]
    with open(os.path.join(rootfs, "etc", "machine-id"), encoding="utf-8") as fh:
        assert fh.read() == ""
    assert not os.path.exists(os.path.join(rootfs, "etc", "hostname"))
    # the serial console got a login prompt for the seed's hostname (getty works)
    deadline = time.monotonic() + 120
    while "{} login:".format(HOSTNAME) not in _serial(serial) and time.monotonic() < deadline:
        time.sleep(2)
    assert "{} login:".format(HOSTNAME) in _serial(serial), _serial(serial)[-3000:]
