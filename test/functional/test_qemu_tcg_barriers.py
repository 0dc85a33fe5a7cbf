"""
The ``-smp`` value netlab gives a TCG guest keeps the guest's memory barriers
(``netlab_power_virtual.smp_arg``), against the real qemu of this machine.

A boot sector that runs ``mfence`` in a loop boots under SeaBIOS; qemu logs the
operations it translates the guest's code into (``-d op``). Where qemu drops the
barriers of a guest that can only have one vCPU (qemu before 8.1, Debian 12's
7.2), the log has no ``mb`` operation for plain ``-smp 1``; with netlab's value
it must have them. A guest whose barriers are dropped loses virtio notifications
now and then, and its network stops for good.
"""

import subprocess

import netlab_power_virtual

from lib.vm import wait_for

# 16-bit real mode at 0x7c00: mfence; mov ax, 0x4e4c (a mark to find in the log,
# logged after the mfence's operations: one translation block); jmp back
BOOT_SECTOR = bytes([0x0F, 0xAE, 0xF0, 0xB8, 0x4C, 0x4E, 0xEB, 0xF8]) + bytes(502) + \
    b"\x55\xaa"
MARK = "$0x4e4c"


def _barrier_ops(tmp_path, smp):
    disk = tmp_path / "boot.img"
    disk.write_bytes(BOOT_SECTOR)
    log = tmp_path / "ops-{}.log".format(smp.replace(",", "-"))
    cmd = ["qemu-system-x86_64", "-machine", "pc", "-m", "32", "-smp", smp,
           "-accel", "tcg", "-cpu", "qemu64", "-nodefaults", "-display", "none",
           "-vga", "none", "-drive", "file={},format=raw,if=ide".format(disk),
           "-boot", "order=c", "-d", "op,nochain", "-D", str(log)]
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        try:
            # the boot sector's block is in the log once its mark is
            wait_for(lambda: log.exists() and MARK in log.read_text(errors="replace"), 60,
                     "qemu to run the boot sector (log {})".format(log), interval=0.2)
        finally:
            proc.kill()
            proc.wait()
    return sum(1 for line in log.read_text(errors="replace").splitlines()
               if line.strip().startswith("mb "))


def test_netlab_keeps_the_barriers_of_a_one_vcpu_tcg_guest(tmp_path):
    ours = netlab_power_virtual.smp_arg(1, tcg=True)
    assert _barrier_ops(tmp_path, ours) > 0, ours
    # what the guest got before: on this qemu, no barrier at all (on a qemu that
    # keeps them, 8.1 or later, this count is not 0 either and only ours matters)
    print("\nmb operations: -smp 1: {}, -smp {}: kept".format(
        _barrier_ops(tmp_path, "1"), ours))
