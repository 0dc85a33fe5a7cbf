"""Power drivers with fake commands, a fake minion and a fake socket."""

import contextlib
import copy
import os
import signal
import socket
import sys

import pytest

import netlab_lab
import netlab_power
import netlab_power_base


def lab_with(example_pillar, tmp_path, **powers):
    raw = copy.deepcopy(example_pillar)
    raw["netnode"]["storage"] = str(tmp_path / "srv")
    for node, power in powers.items():
        raw["nodes"][node]["power"] = power
    return netlab_lab.load(raw)


class FakeRun:
    """Records commands; answers from a list of (rc, out, err)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    def __call__(self, cmd, env=None, timeout=30):
        self.calls.append({"cmd": cmd, "env": env})
        return self.answers.pop(0) if self.answers else (0, "", "")


# --------------------------------------------------------------------------- wol
def test_magic_packet():
    pkt = netlab_power.magic_packet("94-C6-91-AA-00-01")
    assert pkt[:6] == b"\xff" * 6
    assert pkt[6:12] == bytes.fromhex("94c691aa0001")
    assert len(pkt) == 6 + 16 * 6
    with pytest.raises(ValueError):
        netlab_power.magic_packet("nope")


def test_wol_on_goes_to_lab_broadcast(example_pillar, tmp_path):
    lab = lab_with(example_pillar, tmp_path)
    sent = []
    res = netlab_power.power(lab, "nuc1", "on", sender=lambda p, a: sent.append((p, a)))
    assert sent == [(netlab_power.magic_packet("94:c6:91:aa:00:01"), ("192.168.42.255", 9))]
    assert res["done"] and res["node"] == "nuc1" and "192.168.42.255:9" in res["message"]


def test_wol_real_socket_on_loopback(example_pillar, tmp_path):
    """The default sender really sends the packet (to a loopback listener here)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as srv:
        # a port of the kernel's choosing: the other Salt line's tiers run this
        # test at the same time on the same loopback
        srv.bind(("127.0.0.1", 0))
        srv.settimeout(5)
        lab = lab_with(example_pillar, tmp_path, nuc1={
            "driver": "wol", "broadcast": "127.0.0.1", "port": srv.getsockname()[1]})
        netlab_power.power(lab, "nuc1", "on")
        data, _ = srv.recvfrom(200)
    assert data == netlab_power.magic_packet("94:c6:91:aa:00:01")


def test_wol_off_and_cycle_through_minion(example_pillar, tmp_path, monkeypatch):
    lab = lab_with(example_pillar, tmp_path)
    calls = []
    run = FakeRun((0, "", ""), (1, "", ""))   # ping answers once, then not
    drv = netlab_power.driver(lab, "nuc2", run=run, arp=lambda ip: False,
                              minion_call=lambda n, f: calls.append((n, f)))
    monkeypatch.setattr(netlab_power.time, "sleep", lambda s: None)
    res = drv.off()
    assert "192.168.42.12 no longer answers ping" in res["message"]
    assert [c["cmd"][:3] for c in run.calls] == [["ping", "-c", "1"]] * 2
    drv.cycle()
    assert calls == [("nuc2", "system.poweroff"), ("nuc2", "system.reboot")]
    still = netlab_power.driver(lab, "nuc2", run=FakeRun(*[(0, "", "")] * 100000),
                                minion_call=lambda n, f: None)
    with pytest.raises(netlab_power.PowerError, match="still answers ping"):
        still.off(wait=0.01)
    # no minion answers, but the IP does: the node is up and cannot be switched off
    with pytest.raises(netlab_power.PowerError, match="node nuc2: wol power off failed"):
        netlab_power.power(lab, "nuc2", "off", run=FakeRun((0, "", "")))

    def dead(n, f):
        raise RuntimeError("minion nuc2 did not answer test.ping within 30 s")

    # neither the minion nor the IP answers: already off
    res = netlab_power.power(lab, "nuc2", "off", minion_call=dead, run=FakeRun((1, "", "")),
                             arp=lambda ip: False)
    assert res["done"] and "already off" in res["message"]


def test_wol_off_a_node_that_drops_icmp_is_on_not_off(example_pillar, tmp_path,
                                                      monkeypatch):
    lab = lab_with(example_pillar, tmp_path)
    monkeypatch.setattr(netlab_power.time, "sleep", lambda s: None)

    def dead(n, f):
        raise RuntimeError("minion nuc2 did not answer test.ping within 30 s")

    asked = []

    def arp(ip):
        asked.append(ip)
        return True  # the machine answers ARP: it is on, its firewall drops ping

    # no minion, no ping answer, but ARP: on, and the root must not be reset under it
    with pytest.raises(netlab_power.PowerError, match="answers ARP but not ping"):
        netlab_power.power(lab, "nuc2", "off", minion_call=dead, run=FakeRun((1, "", "")),
                           arp=arp)
    assert asked == ["192.168.42.12"]
    # after system.poweroff, silence on ping is "off" only once ARP is silent too
    answers = iter([True, True, False])
    drv = netlab_power.driver(lab, "nuc2", run=FakeRun(*[(1, "", "")] * 10),
                              minion_call=lambda n, f: None, arp=lambda ip: next(answers))
    assert "no longer answers" in drv.off()["message"]
    still = netlab_power.driver(lab, "nuc2", run=FakeRun(*[(1, "", "")] * 100000),
                                minion_call=lambda n, f: None, arp=lambda ip: True)
    with pytest.raises(netlab_power.PowerError, match="still answers"):
        still.off(wait=0.01)

    def broken(ip):
        raise OSError(1, "Operation not permitted")

    # an ARP probe that cannot run is an error, never "off"
    with pytest.raises(netlab_power.PowerError, match="cannot tell whether 192.168.42.12 "
                       "is off.*ARP probe failed"):
        netlab_power.power(lab, "nuc2", "off", minion_call=dead, run=FakeRun((1, "", "")),
                           arp=broken)


def test_wol_send_error_names_node(example_pillar, tmp_path):
    lab = lab_with(example_pillar, tmp_path)

    def boom(p, a):
        raise OSError(101, "Network is unreachable")

    with pytest.raises(netlab_power.PowerError,
                       match="node nuc1: wol power on failed.*unreachable"):
        netlab_power.power(lab, "nuc1", "on", sender=boom)


# --------------------------------------------------------------------------- ipmi
def test_ipmi_password_not_on_command_line(example_pillar, tmp_path):
    lab = lab_with(example_pillar, tmp_path)
    run = FakeRun((0, "Set Boot Device to pxe\n", ""), (0, "Chassis Power Control: Up/On\n", ""))
    res = netlab_power.power(lab, "nuc3", "on", run=run)
    prefix = ["ipmitool", "-I", "lanplus", "-H", "192.168.43.13", "-U", "admin", "-E", "-v"]
    # the next boot goes to the network first, then the power on
    assert [c["cmd"] for c in run.calls] == [prefix + ["chassis", "bootdev", "pxe"],
                                             prefix + ["chassis", "power", "on"]]
    for call in run.calls:
        assert "ipmi-secret" not in " ".join(call["cmd"])
        assert call["env"]["IPMI_PASSWORD"] == "ipmi-secret"
    assert res["done"] and "Up/On" in res["message"]


def test_ipmi_bootdev_none_leaves_the_boot_order_alone(example_pillar, tmp_path):
    lab = lab_with(example_pillar, tmp_path, nuc3={
        "driver": "ipmi", "address": "192.168.43.13", "username": "admin",
        "password": "ipmi-secret", "bootdev": "none"})
    run = FakeRun((0, "Chassis Power Control: Up/On\n", ""))
    netlab_power.power(lab, "nuc3", "on", run=run)
    assert [c["cmd"][-3:] for c in run.calls] == [["chassis", "power", "on"]]


@pytest.mark.parametrize("given, sent", [(True, "on"), (False, "off")])
def test_yaml_on_off_from_the_cli_are_actions(example_pillar, tmp_path, given, sent):
    """`salt-run netlab.power nuc3 on`: Salt's CLI parses `on` as YAML True."""
    lab = lab_with(example_pillar, tmp_path)
    run = FakeRun()
    res = netlab_power.power(lab, "nuc3", given, run=run)
    assert res["action"] == sent and run.calls[-1]["cmd"][-1] == sent


def test_ipmi_status_and_cycle_when_off(example_pillar, tmp_path):
    lab = lab_with(example_pillar, tmp_path)
    run = FakeRun((0, "Chassis Power is off\n", ""), (0, "Set Boot Device to pxe\n", ""),
                  (0, "Chassis Power is off\n", ""), (0, "Chassis Power Control: Up/On\n", ""))
    drv = netlab_power.driver(lab, "nuc3", run=run)
    assert drv.status() == "off"
    drv.cycle()
    assert [c["cmd"][-1] for c in run.calls] == ["status", "pxe", "status", "on"]


def test_ipmi_error_names_node_not_the_bmc_address(example_pillar, tmp_path):
    lab = lab_with(example_pillar, tmp_path)
    run = FakeRun((1, "", "Error: Unable to establish IPMI v2 / RMCP+ session\n"))
    with pytest.raises(netlab_power.PowerError) as exc:
        netlab_power.power(lab, "nuc3", "off", run=run)
    text = str(exc.value)
    # the BMC's address stays on the networking node (errors reach events)
    assert "node nuc3" in text and "192.168.43.13" not in text and "RMCP+" in text
    assert "ipmi-secret" not in text


def test_ipmi_with_the_real_ipmitool_fails_clearly(example_pillar, tmp_path):
    """The real binary against a closed loopback port: a clear, named error."""
    lab = lab_with(example_pillar, tmp_path, nuc3={
        "driver": "ipmi", "address": "127.0.0.1", "username": "u", "password": "p",
        "port": 40998})
    drv = netlab_power.driver(lab, "nuc3")
    drv._run = lambda cmd, env=None, timeout=30: netlab_power._run_cmd(
        cmd[:1] + ["-R", "1", "-N", "1"] + cmd[1:], env=env, timeout=timeout)
    with pytest.raises(netlab_power.PowerError, match="node nuc3: ipmi power status failed"):
        drv.status()


# --------------------------------------------------------------------------- reboot / manual
def test_reboot_driver(example_pillar, tmp_path):
    lab = lab_with(example_pillar, tmp_path, nuc2={"driver": "reboot"})
    calls = []
    drv = netlab_power.driver(lab, "nuc2", minion_call=lambda n, f: calls.append(f))
    assert not drv.can_off_on
    drv.cycle()
    assert calls == ["system.reboot"]
    with pytest.raises(netlab_power.PowerError, match="node nuc2: reboot power on failed"):
        drv.on()

    def dead(n, f):
        raise RuntimeError("Minion did not return. [No response]")

    with pytest.raises(netlab_power.PowerError, match="nuc2.*No response"):
        netlab_power.power(lab, "nuc2", "cycle", minion_call=dead)


def test_manual_driver_tells_what_to_press(example_pillar, tmp_path):
    lab = lab_with(example_pillar, tmp_path,
                   nuc2={"driver": "manual", "instructions": "under the desk, left"})
    res = netlab_power.power(lab, "nuc2", "cycle")
    assert res["done"] is False
    assert "nuc2" in res["message"] and "94:c6:91:aa:00:02" in res["message"]
    assert "reset" in res["message"] and "under the desk" in res["message"]
    assert netlab_power.power(lab, "nuc2", "status")["status"] == "unknown"


def test_unknown_action(example_pillar, tmp_path):
    lab = lab_with(example_pillar, tmp_path)
    with pytest.raises(netlab_power.PowerError, match="node nuc1: unknown power action"):
        netlab_power.power(lab, "nuc1", "explode")


# --------------------------------------------------------------------------- virtual
def test_virtual_command_bios(example_pillar, tmp_path):
    lab = lab_with(example_pillar, tmp_path, nuc1={
        "driver": "virtual", "memory": 768, "cpus": 2, "netns": "labns",
        "bridge": "br0", "accel": "tcg"})
    drv = netlab_power.driver(lab, "nuc1")
    cmd = drv.command()
    assert cmd[0] == "qemu-system-x86_64"
    assert cmd[cmd.index("-m") + 1] == "768" and cmd[cmd.index("-smp") + 1] == "2"
    assert ["-accel", "tcg", "-cpu", "qemu64"] == cmd[cmd.index("-accel"):
                                                      cmd.index("-accel") + 4]
    assert "virtio-net-pci,netdev=n0,mac=94:c6:91:aa:00:01,bootindex=1" in cmd
    assert "tap,id=n0,ifname=nl-nuc1,script=no,downscript=no" in cmd
    assert not any("pflash" in c for c in cmd)
    assert not any(c.startswith("file=") or "if=virtio" in c for c in cmd)  # no disk
    assert drv.dir == os.path.join(lab.netnode.state_dir, "vms", "nuc1")
    assert drv._ns(["x"]) == ["ip", "netns", "exec", "labns", "x"]


def test_virtual_command_uefi(example_pillar, tmp_path):
    lab = lab_with(example_pillar, tmp_path, nuc1={"driver": "virtual", "firmware": "uefi",
                                                   "accel": "tcg"})
    drv = netlab_power.driver(lab, "nuc1")
    os.makedirs(drv.dir)
    cmd = drv.command()
    flash = [c for c in cmd if "pflash" in c]
    assert len(flash) == 2 and "readonly=on" in flash[0]
    assert os.path.exists(os.path.join(drv.dir, "OVMF_VARS.fd"))
    assert cmd[cmd.index("-machine") + 1] == "q35"


def test_virtual_firmware_from_node_boot(example_pillar, tmp_path):
    raw = copy.deepcopy(example_pillar)
    raw["netnode"]["storage"] = str(tmp_path)
    raw["nodes"]["nuc2"]["power"] = {"driver": "virtual"}
    raw["nodes"]["nuc2"]["boot"] = {"firmware": "uefi"}
    lab = netlab_lab.load(raw)
    assert netlab_power.driver(lab, "nuc2").firmware == "uefi"


@pytest.mark.parametrize("field,value,match", [
    ("memory", "lots", "netlab:nodes:nuc1:power:memory: 'lots' is not a positive integer"),
    ("cpus", 0, "netlab:nodes:nuc1:power:cpus"),
    ("firmware", "coreboot", "netlab:nodes:nuc1:power:firmware: 'coreboot'"),
    ("accel", "hvf", "netlab:nodes:nuc1:power:accel"),
    ("disk", "10G", "netlab:nodes:nuc1:power:disk: virtual nodes are diskless"),
])
def test_virtual_bad_fields_name_pillar_key(example_pillar, tmp_path, field, value, match):
    # refused when the lab is loaded, before any driver is built
    raw = copy.deepcopy(example_pillar)
    raw["nodes"]["nuc1"]["power"] = {"driver": "virtual", field: value}
    errors = netlab_lab.validate(raw)
    assert len(errors) == 1 and errors[0].startswith(match), errors


def test_virtual_pillar_fields_validated_by_model(example_pillar, tmp_path):
    raw = copy.deepcopy(example_pillar)
    raw["nodes"]["nuc1"]["power"] = {"driver": "virtual", "colour": "red"}
    assert any("netlab:nodes:nuc1:power:colour" in e for e in netlab_lab.validate(raw))


def test_virtual_status_ignores_reused_pid(example_pillar, tmp_path):
    lab = lab_with(example_pillar, tmp_path, nuc1={"driver": "virtual"})
    drv = netlab_power.driver(lab, "nuc1")
    os.makedirs(drv.dir)
    with open(drv.pidfile, "w") as fh:
        fh.write(str(os.getpid()))  # this pytest process, not a qemu of nuc1
    assert drv.status() == "off"
    assert drv.off()["message"] == "not running"


def test_accel_args_follow_the_choice():
    # auto with a /dev/kvm that cannot run a guest: test/functional/test_kvm_detection.py
    assert netlab_power.accel_args("tcg") == ["-accel", "tcg", "-cpu", "qemu64"]
    assert netlab_power.accel_args("kvm") == ["-accel", "kvm", "-cpu", "host"]


@pytest.mark.parametrize("accel, cpus, smp", [("tcg", 1, "1,maxcpus=2"), ("tcg", 2, "2"),
                                              ("kvm", 1, "1"), ("kvm", 4, "4")])
def test_a_one_vcpu_tcg_guest_may_have_two(tmp_path, accel, cpus, smp):
    """Under TCG a one-vCPU machine is declared able to have two, so that qemu 7.2
    keeps the guest's memory barriers (see smp_arg; the barriers themselves are
    checked against the real qemu in test/functional/test_kvm_detection.py)."""
    cmd = netlab_power.qemu_command("n", "52:54:00:00:00:01", "tap0", str(tmp_path),
                                    cpus=cpus, accel=accel)
    assert cmd[cmd.index("-smp") + 1] == smp


@pytest.mark.parametrize("rc, err", [(127, "ping is not installed"),
                                     (2, "ping: socket: Operation not permitted")])
def test_wol_off_a_ping_that_cannot_run_is_an_error_not_off(example_pillar, tmp_path,
                                                            rc, err):
    lab = lab_with(example_pillar, tmp_path)

    def dead(n, f):
        raise RuntimeError("minion nuc2 did not answer test.ping within 30 s")

    with pytest.raises(netlab_power.PowerError, match="cannot tell whether 192.168.42.12 "
                       "is off: ping exit {}".format(rc)):
        netlab_power.power(lab, "nuc2", "off", minion_call=dead, run=FakeRun((rc, "", err)))


@pytest.mark.parametrize("stderr, meaning", [
    ("Loading IANA PEN Registry...\n> RAKP 2 HMAC is invalid\n"
     "Error: Unable to establish IPMI v2 / RMCP+ session\n",
     "(the BMC refused the user name or password in netlab:nodes:nuc3:power)"),
    ("> RAKP 2 message indicates an error : unauthorized name\n"
     "Error: Unable to establish IPMI v2 / RMCP+ session\n",
     "(the BMC refused the user name or password in netlab:nodes:nuc3:power)"),
    ("> Error: no response from RAKP 1 message\nError: Unable to establish IPMI v2 / "
     "RMCP+ session\n", "an unknown user name in netlab:nodes:nuc3:power"),
    ("Get Auth Capabilities error\nError issuing Get Channel Authentication "
     "Capabilities request\nError: Unable to establish IPMI v2 / RMCP+ session\n",
     "(no answer from the BMC: check netlab:nodes:nuc3:power:address"),
])
def test_ipmi_session_failures_say_what_they_mean(example_pillar, tmp_path, stderr, meaning):
    lab = lab_with(example_pillar, tmp_path)
    with pytest.raises(netlab_power.PowerError) as exc:
        netlab_power.power(lab, "nuc3", "status", run=FakeRun((1, "", stderr)))
    text = str(exc.value)
    assert text.startswith("node nuc3: ipmi power status failed: BMC: Error: Unable to "
                           "establish IPMI v2 / RMCP+ session ("), text
    assert meaning in text and "IANA" not in text


def test_ipmi_error_text_has_no_bmc_address(example_pillar, tmp_path):
    lab = lab_with(example_pillar, tmp_path)
    run = FakeRun((1, "", "Error: Unable to establish IPMI v2 / RMCP+ session to "
                   "192.168.43.13"))
    with pytest.raises(netlab_power.PowerError) as exc:
        netlab_power.power(lab, "nuc3", "status", run=run)
    assert "192.168.43.13" not in str(exc.value)
    assert "ipmi-secret" not in str([c["cmd"] for c in run.calls])


def test_console_tail_of_a_virtual_node_that_did_not_come_back(example_pillar, tmp_path):
    lab = lab_with(example_pillar, tmp_path, nuc1={"driver": "virtual"})
    vm_dir = os.path.join(lab.netnode.state_dir, "vms", "nuc1")
    assert netlab_power.console_tail(lab, "nuc1") is None  # no log yet
    os.makedirs(vm_dir)
    with open(os.path.join(vm_dir, "serial.log"), "wb") as fh:
        fh.write(b"\x1b[2J\x1b[1;1HSeaBIOS\r\n" + b"".join(
            "line {}\r\n".format(i).encode() for i in range(30))
            + b"Kernel panic - not syncing: VFS: Unable to mount root fs\r\n\x00\x07")
    tail = netlab_power.console_tail(lab, "nuc1", lines=3)
    assert tail == "line 28\nline 29\nKernel panic - not syncing: VFS: Unable to mount root fs"
    assert netlab_power.console_tail(lab, "nuc3") is None  # ipmi: no console here


# Stands in for qemu-system-x86_64 -daemonize: writes its console line to the
# ``-serial file:`` (truncating it, as qemu does) and its pid to ``-pidfile``, then
# returns while the VM process stays alive until it is signalled.
FAKE_QEMU = """#!{python}
import os, signal, sys
args = sys.argv[1:]
serial = args[args.index("-serial") + 1][len("file:"):]
pidfile = args[args.index("-pidfile") + 1]
ready_r, ready_w = os.pipe()
if os.fork():
    os.close(ready_w)
    sys.exit(0 if os.read(ready_r, 1) == b"1" else 1)
os.setsid()
with open(serial, "w") as fh:
    fh.write("SeaBIOS: boot of pid {{}}\\n".format(os.getpid()))
with open(pidfile, "w") as fh:
    fh.write(str(os.getpid()))
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
os.write(ready_w, b"1")
while True:
    signal.pause()
"""


def test_virtual_on_keeps_the_previous_boots_console_and_off_stops_the_vm(
        example_pillar, tmp_path):
    """docs/lifecycle.rst, ``virtual``: serial console log ``serial.log``, the
    previous boot's in ``serial.log.prev``. qemu is a stand-in that daemonizes like
    qemu; the tap's ``ip`` commands are recorded, not run."""
    qemu = tmp_path / "qemu-system-x86_64"
    qemu.write_text(FAKE_QEMU.format(python=sys.executable))
    qemu.chmod(0o755)
    ip_calls = []

    def run(cmd, env=None, timeout=30):
        if cmd[0] == "ip":
            ip_calls.append(cmd)
            return 0, "", ""
        return netlab_power_base._run_cmd(cmd, env=env, timeout=timeout)  # pylint: disable=protected-access

    lab = lab_with(example_pillar, tmp_path, nuc1={"driver": "virtual", "accel": "tcg",
                                                   "bridge": "br0"})
    drv = netlab_power.driver(lab, "nuc1", run=run, qemu=str(qemu))
    serial, prev = os.path.join(drv.dir, "serial.log"), os.path.join(drv.dir, "serial.log.prev")
    pids = []
    try:
        assert drv.on()["done"] is True
        pids.append(drv.pid())
        assert drv.status() == "on" and not os.path.exists(prev)
        assert ["ip", "link", "set", "nl-nuc1", "master", "br0"] in ip_calls
        first = open(serial, encoding="utf-8").read()
        assert first == "SeaBIOS: boot of pid {}\n".format(pids[0])
        assert "already running" in drv.on()["message"]  # no second VM, no rotation
        assert not os.path.exists(prev)
        assert drv.off()["message"] == "qemu pid {} stopped".format(pids[0])
        assert drv.status() == "off" and not os.path.exists(drv.pidfile)
        drv.on()
        pids.append(drv.pid())
        assert pids[1] != pids[0]
        assert open(prev, encoding="utf-8").read() == first
        assert open(serial, encoding="utf-8").read() == \
            "SeaBIOS: boot of pid {}\n".format(pids[1])
        drv.off()
        assert drv.status() == "off"
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
