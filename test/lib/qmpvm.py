"""
A diskless qemu VM on a lab bridge whose "power" is driven over QMP, for the
emulated BMCs (``lib.bmc_emulators``): the hardware behind netlab's ``ipmi``,
``redfish`` and ``wol`` drivers in the e2e tier.

Power model (what a real machine's BMC sees):

* **off**: qemu runs with its vCPUs stopped and the machine reset (started with
  ``-S``, or ``stop`` + ``system_reset``): nothing runs, no packet leaves the NIC;
* **on**: ``system_reset`` + ``cont``: the firmware starts from scratch and
  network-boots (the NIC is the only boot device);
* **status**: ``query-status`` ``running`` -> on, anything else -> off.

Every QMP command opens its own connection (the BMC emulator and the test can
both talk to the same VM). :func:`watch_dhcp` tells, from the bridge, that the
VM's firmware really sent a DHCPDISCOVER (PXE) after a power on.
"""

import json
import os
import socket
import subprocess
import sys
import time


def qmp(sock_path, command, arguments=None, timeout=10):
    """Run one QMP ``command`` on the VM's socket; returns its ``return`` value."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(sock_path)
        reader = sock.makefile("r", encoding="utf-8")

        def reply():
            while True:
                msg = json.loads(reader.readline())
                if "event" in msg:  # asynchronous events interleave: skip them
                    continue
                return msg

        reply()  # greeting
        sock.sendall(b'{"execute": "qmp_capabilities"}\n')
        reply()
        req = {"execute": command}
        if arguments:
            req["arguments"] = arguments
        sock.sendall(json.dumps(req).encode() + b"\n")
        msg = reply()
        if "error" in msg:
            raise RuntimeError("QMP {}: {}".format(command, msg["error"]))
        return msg.get("return")


class QmpPower:
    """Power actions on a VM through its QMP socket (used inside the emulators)."""

    def __init__(self, sock_path):
        self.sock = sock_path

    def is_on(self):
        return qmp(self.sock, "query-status")["status"] == "running"

    def on(self):
        if not self.is_on():
            qmp(self.sock, "system_reset")
            qmp(self.sock, "cont")

    def off(self):
        if self.is_on():
            qmp(self.sock, "stop")
            qmp(self.sock, "system_reset")

    def reset(self):
        """Hard reset: on when off, else restart from the firmware."""
        if self.is_on():
            qmp(self.sock, "system_reset")
        else:
            self.on()


class QmpVm:
    """A powered-off diskless VM with ``mac`` on a new tap in ``bridge`` of
    namespace ``ns`` (a :class:`lib.netns.Namespace`); ``stop()`` removes both."""

    def __init__(self, ns, bridge, mac, vm_dir, tap, memory=256, unplugged_macs=(),
                 serial_console=False):
        """``unplugged_macs``: NICs on no network, in the PCI slots before the boot
        NIC, so the firmware numbers them first (net0, ...) like the onboard port of
        a machine that is cabled on another one. ``serial_console``: SeaBIOS
        copies the text console (the boot ROM's messages) to the serial log."""
        self.ns, self.mac, self.dir, self.tap = ns, mac.lower(), str(vm_dir), tap
        os.makedirs(self.dir, exist_ok=True)
        self.qmp_sock = os.path.join(self.dir, "qmp.sock")
        self.pidfile = os.path.join(self.dir, "qemu.pid")
        ns.run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"])
        ns.run(["ip", "link", "set", tap, "master", bridge])
        ns.run(["ip", "link", "set", tap, "up"])
        extra = []
        for i, other in enumerate(unplugged_macs):
            extra += ["-netdev", "hubport,id=u{0},hubid={0}".format(i),
                     "-device", "virtio-net-pci,netdev=u{},mac={},addr={:#x}".format(
                         i, other, 3 + i)]
        boot_nic = "virtio-net-pci,netdev=n0,mac={},bootindex=1".format(mac)
        if unplugged_macs:
            boot_nic += ",addr={:#x}".format(3 + len(unplugged_macs))
        # graphics=off: SeaBIOS writes the text console (its own and the boot ROM's
        # messages; there is no VGA) to the first serial port
        machine = "pc,graphics=off" if serial_console else "pc"
        ns.run(["qemu-system-x86_64", "-name", "netlab-qmpvm", "-machine", machine,
                "-m", str(memory), "-accel", "tcg", "-cpu", "qemu64", "-nodefaults",
                "-display", "none", "-vga", "none", "-S",
                "-serial", "file:" + os.path.join(self.dir, "serial.log"),
                "-qmp", "unix:{},server=on,wait=off".format(self.qmp_sock),
                "-pidfile", self.pidfile, "-daemonize",
                "-netdev", "tap,id=n0,ifname={},script=no,downscript=no".format(tap),
                "-device", boot_nic, "-boot", "order=n"] + extra)
        self.power = QmpPower(self.qmp_sock)

    def stop(self):
        try:
            qmp(self.qmp_sock, "quit")
        except (OSError, RuntimeError, ValueError):
            pass
        try:
            with open(self.pidfile, encoding="utf-8") as fh:
                pid = int(fh.read())
            deadline = time.monotonic() + 10
            while os.path.exists("/proc/{}".format(pid)) and time.monotonic() < deadline:
                time.sleep(0.1)
            if os.path.exists("/proc/{}".format(pid)):
                os.kill(pid, 9)
        except (OSError, ValueError):
            pass
        self.ns.run(["ip", "link", "del", self.tap], check=False)


def watch_dhcp(ns, iface, mac, helper):
    """Start a watcher (``helper`` = path of lib/bmc_emulators.py) in ``ns`` that
    exits 0 with a line once a DHCPDISCOVER/REQUEST from ``mac`` crosses ``iface``.
    It is listening when this returns (it says so on stdout)."""
    proc = ns.popen([sys.executable, helper, "dhcpwatch", "--iface", iface, "--mac", mac],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    start_new_session=True)
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        raise RuntimeError("dhcp watcher did not start: {} {}".format(line,
                                                                      proc.stderr.read()))
    return proc
