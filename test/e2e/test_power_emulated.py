"""
netlab's power drivers against emulated hardware on a lab segment.

One powered-off qemu VM (diskless, network boot, its power driven over QMP) sits
on the lab bridge. Emulated power hardware stands in front of it, each in its
own namespace on the bridge, with its own address (lib/bmc_emulators.py):

* an IPMI BMC (pyghmi's BMC server class) that the real ``ipmitool -I lanplus``
  reaches through netlab's ``ipmi`` driver;
* a Redfish service over HTTPS (certificate signed by a CA made here; pillar
  ``verify`` names that CA) for netlab's ``redfish`` driver;
* a Wake-on-LAN receiver that powers the VM on only for a magic packet naming
  its MAC, for netlab's ``wol`` driver.

Every power action goes through Salt's real CLI (``salt-run netlab.power ...
pillar=...``) run inside the networking node's namespace. "On" is proven from
the bridge: the VM's firmware sends a DHCP request with its MAC (it network-
boots). Wrong credentials give a clear error and the hardware records no power
action. The VM is never booted into an OS (that is test_vms.py's job): the
whole module costs about a minute of TCG time.
"""

import json
import os
import pathlib
import shutil
import subprocess

import pytest

from lib import qmpvm, testdirs
from lib.netns import Segment
from lib.saltrunner import master_conf
from lib.vm import VENV_BIN, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600, method="signal")]

REPO = pathlib.Path(__file__).resolve().parents[2]
EMU = str(REPO / "test" / "lib" / "bmc_emulators.py")
CIDR = "10.97.0.0/24"
NETNODE_IP = "10.97.0.2"
BMC_IP, REDFISH_IP, WOLNIC_IP = "10.97.0.250", "10.97.0.251", "10.97.0.252"
VM_MAC = "52:54:00:97:00:21"
OTHER_MAC = "52:54:00:97:00:22"
USER, PASSWORD = "netlab-op", "s3cret-bmc-pw"
DHCP_WAIT = 180  # SeaBIOS + iPXE ROM on TCG on a loaded 2-core machine: ~10 s


def pillar(base, power):
    return {
        "network": {"interface": "br0", "cidr": CIDR, "domain": "lab.test"},
        "netnode": {"id": "netnode", "ip": NETNODE_IP, "storage": str(base / "srv")},
        "nodes": {
            "n1": {"mac": VM_MAC, "ip": "10.97.0.21", "role": "compute", "power": power},
            "other": {"mac": OTHER_MAC, "ip": "10.97.0.22", "role": "controller",
                      "power": {"driver": "wol"}},
        },
    }


class Rig:
    def __init__(self, base, seg, vm, logs):
        self.base, self.seg, self.vm, self.logs = base, seg, vm, logs
        self.conf = master_conf(base / "runner").parent

    def salt_power(self, node, action, power):
        """``salt-run netlab.power <node> <action> pillar=...`` in the lab namespace."""
        proc = self.seg.server.run(
            [os.path.join(VENV_BIN, "salt-run"), "-c", str(self.conf), "--out=json",
             "netlab.power", node, action,
             "pillar=" + json.dumps(pillar(self.base, power))],
            check=False, timeout=180)
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError("salt-run printed no JSON ({}): {}\n{}".format(
                proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])) from None
        return data, proc

    def seen(self, kind):
        try:
            with open(self.logs[kind], encoding="utf-8") as fh:
                return [json.loads(line) for line in fh]
        except FileNotFoundError:
            return []

    def force_off(self):
        self.vm.power.off()
        assert not self.vm.power.is_on()

    def dhcp_watch(self):
        return qmpvm.watch_dhcp(self.seg.server, "br0", VM_MAC, EMU)


def _start(ns, args):
    proc = ns.popen([os.path.join(VENV_BIN, "python"), EMU] + args, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True, start_new_session=True)
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        raise RuntimeError("emulator {} did not start: {!r} {}".format(
            args[0], line, proc.stderr.read()[-2000:]))
    return proc


def _ca_and_cert(d):
    """A CA and a server certificate for the Redfish emulator's address."""
    def ssl_cmd(*a):
        subprocess.run(["openssl"] + list(a), check=True, capture_output=True, cwd=d)

    ssl_cmd("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "2", "-subj", "/CN=netlab test BMC CA")
    ssl_cmd("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "bmc.key", "-out", "bmc.csr",
            "-subj", "/CN={}".format(REDFISH_IP))
    (d / "ext.cnf").write_text("subjectAltName=IP:{}\n".format(REDFISH_IP))
    ssl_cmd("x509", "-req", "-in", "bmc.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "bmc.pem", "-days", "2", "-extfile", "ext.cnf")
    return str(d / "ca.pem"), str(d / "bmc.pem"), str(d / "bmc.key")


@pytest.fixture(scope="module")
def rig(e2e_ready):  # pylint: disable=unused-argument
    base = testdirs.make("netlab-power-", mode=0o700)
    seg = Segment(cidr=CIDR, server_ip=NETNODE_IP, bridge="br0")
    vm = None
    try:
        vm = qmpvm.QmpVm(seg.server, "br0", VM_MAC, base / "vm",
                         tap="nlq{}".format(seg.tag[-6:]))
        logs = {k: str(base / "{}.log".format(k)) for k in ("ipmi", "redfish", "wol")}
        bmc = seg.add_client("bmc", mac="52:54:00:97:00:fa", ip=BMC_IP)
        _start(bmc, ["ipmi", "--qmp", vm.qmp_sock, "--log", logs["ipmi"], "--address",
                     BMC_IP, "--user", USER, "--password", PASSWORD])
        ca, cert, key = _ca_and_cert(base)
        rf = seg.add_client("redfish", mac="52:54:00:97:00:fb", ip=REDFISH_IP)
        _start(rf, ["redfish", "--qmp", vm.qmp_sock, "--log", logs["redfish"], "--address",
                    REDFISH_IP, "--user", USER, "--password", PASSWORD, "--cert", cert,
                    "--key", key, "--system", "n1-system"])
        # the node's NIC, listening for magic packets on the segment
        nic = seg.add_client("wolnic", mac="52:54:00:97:00:fc", ip=WOLNIC_IP)
        _start(nic, ["wol", "--qmp", vm.qmp_sock, "--log", logs["wol"], "--mac", VM_MAC])
        r = Rig(base, seg, vm, logs)
        r.ca = ca
        yield r
    finally:
        if vm is not None:
            vm.stop()
        seg.destroy()  # stops the emulators with their namespaces
        shutil.rmtree(base, ignore_errors=True)


def _ipmi(password=PASSWORD):
    return {"driver": "ipmi", "address": BMC_IP, "username": USER, "password": password}


def _redfish(rig_, password=PASSWORD):
    return {"driver": "redfish", "address": REDFISH_IP, "username": USER,
            "password": password, "verify": rig_.ca}


def _assert_netboots(watcher):
    try:
        out, _ = watcher.communicate(timeout=DHCP_WAIT)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert "dhcp request from {}".format(VM_MAC) in out


def _status(rig_, power):
    data, proc = rig_.salt_power("n1", "status", power)
    assert proc.returncode == 0, (data, proc.stderr[-2000:])
    return data["status"]


# --------------------------------------------------------------------------- ipmi
def test_ipmi_driver_powers_the_vm_through_ipmitool_lanplus(rig):
    rig.force_off()
    before = len(rig.seen("ipmi"))
    assert _status(rig, _ipmi()) == "off"
    watcher = rig.dhcp_watch()
    data, proc = rig.salt_power("n1", "on", _ipmi())
    assert proc.returncode == 0 and data["done"] and data["driver"] == "ipmi", data
    assert "Up/On" in data["message"]
    # the BMC was told "next boot from the network" before the power on
    acts = [(e["action"], e.get("device") or e.get("bootdev")) for e in rig.seen("ipmi")[before:]]
    assert acts == [("bootdev", "network"), ("on", "network")], acts
    assert rig.vm.power.is_on()
    _assert_netboots(watcher)  # the VM's PXE firmware asks for an address
    assert _status(rig, _ipmi()) == "on"
    # cycle of a running machine: bootdev again, then a real power cycle
    data, proc = rig.salt_power("n1", "cycle", _ipmi())
    assert proc.returncode == 0, data
    assert [e["action"] for e in rig.seen("ipmi")[before:]][-2:] == ["bootdev", "cycle"]
    data, proc = rig.salt_power("n1", "off", _ipmi())
    assert proc.returncode == 0 and "Down/Off" in data["message"], data
    assert not rig.vm.power.is_on()
    assert _status(rig, _ipmi()) == "off"


def test_ipmi_wrong_password_is_a_clear_error_and_resets_nothing(rig):
    rig.vm.power.on()
    before = len(rig.seen("ipmi"))
    data, proc = rig.salt_power("n1", "cycle", _ipmi(password="wrong-password"))
    assert proc.returncode == 1, data
    err = data["Error"]
    assert err.startswith("node n1: ipmi power"), err
    assert "refused the user name or password in netlab:nodes:n1:power" in err, err
    assert "wrong-password" not in proc.stdout + proc.stderr
    assert BMC_IP not in err  # the BMC's address stays on the networking node
    assert "Traceback" not in proc.stdout + proc.stderr
    assert rig.seen("ipmi")[before:] == []  # no power action reached the "hardware"
    assert rig.vm.power.is_on()
    rig.force_off()


# --------------------------------------------------------------------------- redfish
def test_redfish_driver_powers_the_vm_over_https(rig):
    rig.force_off()
    before = len(rig.seen("redfish"))
    power = _redfish(rig)
    assert _status(rig, power) == "off"
    watcher = rig.dhcp_watch()
    data, proc = rig.salt_power("n1", "on", power)
    assert proc.returncode == 0 and data["done"] and data["driver"] == "redfish", data
    acts = [(e["action"], e.get("device") or e.get("bootdev")) for e in
            rig.seen("redfish")[before:]]
    assert acts == [("bootdev", "Pxe"), ("on", "Pxe")], acts
    _assert_netboots(watcher)
    assert _status(rig, power) == "on"
    data, proc = rig.salt_power("n1", "on", power)  # already on: nothing is reset
    assert proc.returncode == 0 and data["message"] == "already on", data
    data, proc = rig.salt_power("n1", "cycle", power)
    assert proc.returncode == 0, data
    assert [e["action"] for e in rig.seen("redfish")[before:]][-2:] == ["bootdev", "cycle"]
    data, proc = rig.salt_power("n1", "off", power)
    assert proc.returncode == 0, data
    assert not rig.vm.power.is_on() and _status(rig, power) == "off"


def test_redfish_wrong_password_and_unknown_ca_are_clear_errors(rig):
    rig.vm.power.on()
    before = len(rig.seen("redfish"))
    data, proc = rig.salt_power("n1", "cycle", _redfish(rig, password="wrong-password"))
    assert proc.returncode == 1, data
    assert data["Error"] == ("node n1: redfish power status failed: the BMC refused the "
                             "user name or password in netlab:nodes:n1:power (HTTP 401)")
    assert "wrong-password" not in proc.stdout + proc.stderr
    assert [e["action"] for e in rig.seen("redfish")[before:]] == ["refused"]
    # a certificate that the configured CAs did not sign is refused, not ignored
    data, proc = rig.salt_power("n1", "off", dict(_redfish(rig), verify=True))
    assert proc.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in data["Error"], data
    assert REDFISH_IP not in data["Error"]
    assert rig.vm.power.is_on()  # nothing was reset or switched off
    assert [e["action"] for e in rig.seen("redfish")[before:]] == ["refused"]
    rig.force_off()


# --------------------------------------------------------------------------- wol
def test_wol_magic_packet_powers_on_only_the_named_machine(rig):
    rig.force_off()
    before = len(rig.seen("wol"))
    # a packet for another node reaches the NIC, which stays off
    data, proc = rig.salt_power("other", "on", {"driver": "wol"})
    assert proc.returncode == 0 and "10.97.0.255:9" in data["message"], data
    got = wait_for(lambda: rig.seen("wol")[before:], 60, "the NIC to see the packet",
                   interval=0.2)
    assert [(e["action"], e["mac"]) for e in got] == [("ignored", OTHER_MAC)]
    assert not rig.vm.power.is_on()
    # its own MAC wakes it, and it network-boots
    watcher = rig.dhcp_watch()
    data, proc = rig.salt_power("n1", "on", {"driver": "wol"})
    assert proc.returncode == 0, data
    got = wait_for(lambda: rig.seen("wol")[before + 1:], 60, "the NIC to see the packet",
                   interval=0.2)
    assert [(e["action"], e["mac"], e["sender"]) for e in got] == [
        ("on", VM_MAC, NETNODE_IP)]
    _assert_netboots(watcher)
    assert rig.vm.power.is_on()
    rig.force_off()
