"""
The ``virtual`` power driver: a qemu VM netlab starts itself, with no disk, one
NIC with the node's MAC on a tap in ``bridge`` (optionally inside network
namespace ``netns``), network boot, BIOS (SeaBIOS) or UEFI (OVMF). KVM when it
works, else TCG. Pid file, serial log and monitor socket in
``<state_dir>/vms/<node>/``.
"""

import os
import shutil
import signal
import socket
import subprocess
import time

from netlab_power_base import Driver, PowerError, _pillar


OVMF_CODE = ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_CODE.fd",
             "/usr/share/qemu/OVMF.fd")

OVMF_VARS = ("/usr/share/OVMF/OVMF_VARS_4M.fd", "/usr/share/OVMF/OVMF_VARS.fd")

_KVM_CACHE = {}

def kvm_works(qemu="qemu-system-x86_64", timeout=20):
    """True when KVM can really run guests here (checked once per process).

    /dev/kvm must open read-write, the CPU must show vmx/svm (nested "PVM"
    hypervisors expose /dev/kvm without them and then fail on real firmware), and
    qemu must start a KVM machine.
    """
    if qemu in _KVM_CACHE:
        return _KVM_CACHE[qemu]
    ok = False
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = fh.read()
        if " vmx" in flags or " svm" in flags:
            # a KVM machine that is created, then quit from its monitor at once
            rc = subprocess.run([qemu, "-accel", "kvm", "-machine", "pc", "-nodefaults",
                                 "-display", "none", "-S", "-no-user-config",
                                 "-serial", "none", "-monitor", "stdio"],
                                input=b"quit\n", capture_output=True, timeout=timeout,
                                check=False)
            ok = rc.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    _KVM_CACHE[qemu] = ok
    return ok

def accel_args(accel="auto", qemu="qemu-system-x86_64"):
    """qemu arguments for ``accel`` (auto | kvm | tcg)."""
    if accel == "kvm" or (accel == "auto" and kvm_works(qemu)):
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg", "-cpu", "qemu64"]

def smp_arg(cpus, tcg):
    """qemu's ``-smp`` value for ``cpus`` vCPUs.

    Under TCG a machine that can only ever have one vCPU gets a second, absent one
    (``maxcpus=2``). qemu before 8.1 then drops the guest's memory barriers and
    runs its locked instructions as plain ones, although qemu's I/O thread reads
    the virtio rings at the same time. Now and then a virtio-net queue misses a
    notification and the guest's network stops for good: its console shows
    ``nfs: server ... not responding`` and later ``NETDEV WATCHDOG ... transmit
    queue 0 timed out``. A machine that may have two vCPUs gets the barriers.
    Upstream qemu fixed this in 8.1 ("tcg: Do not elide memory barriers for
    !CF_PARALLEL in system mode"); Debian 12 has 7.2. KVM runs the guest's own
    instructions and needs nothing."""
    if tcg and cpus < 2:
        return "{},maxcpus=2".format(cpus)
    return str(cpus)


def _ifname(text):
    return text[:15]

class Virtual(Driver):
    name = "virtual"

    def __init__(self, lab, node_id, minion_call=None, run=None, vm_dir=None,
                 qemu="qemu-system-x86_64"):
        super().__init__(lab, node_id, minion_call, run)
        p = self.power
        self.memory = p.get("memory", 1024)
        self.cpus = p.get("cpus", 1)
        for key, val in (("memory", self.memory), ("cpus", self.cpus)):
            if not isinstance(val, int) or isinstance(val, bool) or val <= 0:
                raise PowerError("{}: {!r} is not a positive integer".format(
                    _pillar(node_id, key), val))
        fw = p.get("firmware") or (self.node.firmware if self.node.firmware != "auto"
                                   else "bios")
        if fw not in ("bios", "uefi"):
            raise PowerError("{}: {!r} is not bios or uefi".format(
                _pillar(node_id, "firmware"), fw))
        self.firmware = fw
        self.accel = p.get("accel", "auto")
        if self.accel not in ("auto", "kvm", "tcg"):
            raise PowerError("{}: {!r} is not auto, kvm or tcg".format(
                _pillar(node_id, "accel"), self.accel))
        if p.get("disk"):
            raise PowerError("{}: virtual nodes are diskless (they boot from the "
                             "network); remove the key".format(_pillar(node_id, "disk")))
        self.netns = p.get("netns")
        self.bridge = p.get("bridge")
        self.tap = _ifname(str(p.get("tap") or "nl-" + node_id))
        self.qemu = qemu
        self.dir = vm_dir or os.path.join(lab.netnode.state_dir, "vms", node_id)
        self.pidfile = os.path.join(self.dir, "qemu.pid")
        self.serial = os.path.join(self.dir, "serial.log")
        self.monitor = os.path.join(self.dir, "monitor.sock")

    # -- helpers
    def _ns(self, cmd):
        return (["ip", "netns", "exec", self.netns] + cmd) if self.netns else cmd

    def _ip(self, *args, check=True):
        rc, out, err = self._run(self._ns(["ip"] + list(args)))
        if check and rc != 0:
            raise self.error("on", "`ip {}` failed: {}".format(" ".join(args), err.strip()))
        return rc, out

    def ensure_tap(self):
        rc, _ = self._ip("link", "show", self.tap, check=False)
        if rc != 0:
            self._ip("tuntap", "add", "dev", self.tap, "mode", "tap")
        if self.bridge:
            self._ip("link", "set", self.tap, "master", self.bridge)
        self._ip("link", "set", self.tap, "up")

    def delete_tap(self):
        self._ip("link", "del", self.tap, check=False)

    def pid(self):
        try:
            with open(self.pidfile, encoding="utf-8") as fh:
                pid = int(fh.read().strip())
        except (OSError, ValueError):
            return None
        try:
            with open("/proc/{}/cmdline".format(pid), "rb") as fh:
                cmdline = fh.read().split(b"\0")
        except OSError:
            return None
        if "netlab-{}".format(self.node.id).encode() not in cmdline:
            return None  # a reused pid
        return pid

    def command(self):
        """The qemu command line (without the netns wrapper)."""
        try:
            return qemu_command("netlab-{}".format(self.node.id), self.node.mac, self.tap,
                                self.dir, memory=self.memory, cpus=self.cpus,
                                firmware=self.firmware, accel=self.accel, qemu=self.qemu)
        except RuntimeError as exc:
            raise self.error("on", str(exc)) from exc

    # -- interface
    def on(self):
        if self.pid():
            return self._ret("on", message="already running (pid {})".format(self.pid()))
        os.makedirs(self.dir, exist_ok=True)
        for stale in (self.pidfile, self.monitor):
            if os.path.lexists(stale):
                os.unlink(stale)
        # keep the previous boot's console output for post-mortems
        if os.path.exists(self.serial):
            os.replace(self.serial, self.serial + ".prev")
        self.ensure_tap()
        cmd = self._ns(self.command())
        rc, out, err = self._run(cmd, timeout=60)
        if rc != 0:
            raise self.error("on", "qemu did not start: {}".format((err or out).strip()))
        pid = self.pid()
        if not pid:
            raise self.error("on", "qemu exited at once; see {}".format(self.serial))
        return self._ret("on", message="qemu pid {}, serial log {}".format(pid, self.serial))

    def off(self, timeout=10):
        pid = self.pid()
        if not pid:
            return self._ret("off", message="not running")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pid():
            time.sleep(0.1)
        if self.pid():
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.pid():
                time.sleep(0.1)
        if self.pid():
            raise self.error("off", "qemu pid {} does not stop".format(pid))
        for stale in (self.pidfile, self.monitor):
            if os.path.lexists(stale):
                os.unlink(stale)
        return self._ret("off", message="qemu pid {} stopped".format(pid))

    def cycle(self):
        if not self.pid():
            return dict(self.on(), action="cycle")
        try:
            self.monitor_cmd("system_reset")
        except OSError as exc:
            raise self.error("cycle", "monitor {}: {}".format(self.monitor, exc)) from exc
        return self._ret("cycle", message="system_reset sent")

    def status(self):
        return "on" if self.pid() else "off"

    def monitor_cmd(self, text, timeout=5):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self.monitor)
            sock.recv(4096)  # banner
            sock.sendall(text.encode() + b"\n")
            time.sleep(0.2)
            try:
                return sock.recv(4096).decode(errors="replace")
            except socket.timeout:
                return ""

    def destroy(self):
        """Stop the VM and remove its tap (the virtual lab's clean-up)."""
        self.off()
        self.delete_tap()

def qemu_command(name, mac, tap, vm_dir, memory=1024, cpus=1, firmware="bios",
                 accel="auto", qemu="qemu-system-x86_64"):
    """A diskless, network-booting qemu VM: one virtio NIC with ``mac`` on ``tap``.

    Writes ``qemu.pid``, ``serial.log``, ``monitor.sock`` (and a private copy of the
    OVMF variables for UEFI) in ``vm_dir``; daemonizes.
    """
    acc = accel_args(accel, qemu)
    cmd = [qemu, "-name", name, "-machine", "q35" if firmware == "uefi" else "pc",
           "-m", str(memory), "-smp", smp_arg(cpus, tcg="tcg" in acc)] + acc
    cmd += ["-nodefaults", "-display", "none", "-vga", "none",
            "-serial", "file:" + os.path.join(vm_dir, "serial.log"),
            "-monitor", "unix:{},server,nowait".format(os.path.join(vm_dir, "monitor.sock")),
            "-pidfile", os.path.join(vm_dir, "qemu.pid"), "-daemonize",
            "-netdev", "tap,id=n0,ifname={},script=no,downscript=no".format(tap),
            "-device", "virtio-net-pci,netdev=n0,mac={},bootindex=1".format(mac),
            "-boot", "order=n"]
    if firmware == "uefi":
        code = next((f for f in OVMF_CODE if os.path.exists(f)), None)
        vars_src = next((f for f in OVMF_VARS if os.path.exists(f)), None)
        if code is None or vars_src is None:
            raise RuntimeError("UEFI firmware (OVMF) is not installed (apt-get install ovmf)")
        if ("_4M" in code) != ("_4M" in vars_src):  # sizes must match
            raise RuntimeError("OVMF code {} and vars {} do not match".format(code, vars_src))
        vars_copy = os.path.join(vm_dir, "OVMF_VARS.fd")
        if not os.path.exists(vars_copy):
            os.makedirs(vm_dir, exist_ok=True)
            shutil.copyfile(vars_src, vars_copy)
        cmd += ["-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + code,
                "-drive", "if=pflash,format=raw,unit=1,file=" + vars_copy]
    return cmd
