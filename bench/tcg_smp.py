#!/opt/netlab-venv/bin/python
"""
What keeping a TCG guest's memory barriers costs (a script, not a test): prints a
table, asserts nothing.

netlab starts a one-vCPU TCG guest with ``-smp 1,maxcpus=2`` (see
``netlab_power_virtual.smp_arg``): qemu 7.2 then keeps the guest's barriers and
runs its locked instructions as real atomic ones. This boots the test image's
kernel and initramfs under TCG, alternately with ``-smp 1`` and with netlab's
value, and times power-on to the kernel starting ``/init`` and to the initramfs
giving up (no network here: ``ip=off``, ``root=/dev/nfs``), read from the serial
console.

Run as root: ``/opt/netlab-venv/bin/python bench/tcg_smp.py [--runs N]
[--kernel K --initrd I]``. Without ``--kernel`` it takes the newest build in
``$NETLAB_TEST_CACHE`` (default /var/cache/netlab-test).
"""

import argparse
import glob
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "_utils"))

import netlab_power_virtual  # noqa: E402  pylint: disable=wrong-import-position

MARKS = (("kernel runs /init", "Run /init as init process"),
         ("initramfs looks for the root", "Begin: Mounting root file system"))


def _image(cache):
    kernels = sorted(glob.glob(os.path.join(cache, "image-*", "images", "*", "vmlinuz")),
                     key=os.path.getmtime)
    if not kernels:
        sys.exit("no test image in {} (run the e2e tier once, or give --kernel)".format(cache))
    return kernels[-1], os.path.join(os.path.dirname(kernels[-1]), "initrd.img")


def boot(kernel, initrd, smp, workdir, timeout=600):
    serial = os.path.join(workdir, "serial-{}.log".format(smp.replace(",", "-")))
    if os.path.exists(serial):
        os.unlink(serial)
    cmd = ["qemu-system-x86_64", "-machine", "pc", "-m", "1024", "-smp", smp,
           "-accel", "tcg", "-cpu", "qemu64", "-nodefaults", "-display", "none",
           "-vga", "none", "-serial", "file:" + serial, "-kernel", kernel,
           "-initrd", initrd, "-append",
           "console=ttyS0 root=/dev/nfs ip=off panic=-1 rootdelay=0"]
    start = time.monotonic()
    got = {}
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        try:
            while len(got) < len(MARKS) and time.monotonic() - start < timeout:
                text = pathlib.Path(serial).read_text(errors="replace") \
                    if os.path.exists(serial) else ""
                for name, mark in MARKS:
                    if name not in got and mark in text:
                        got[name] = time.monotonic() - start
                time.sleep(0.1)
        finally:
            proc.kill()
            proc.wait()
    return got


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--kernel")
    ap.add_argument("--initrd")
    args = ap.parse_args()
    kernel, initrd = (args.kernel, args.initrd) if args.kernel else _image(
        os.environ.get("NETLAB_TEST_CACHE", "/var/cache/netlab-test"))
    ours = netlab_power_virtual.smp_arg(1, tcg=True)
    rows = {"1": [], ours: []}
    with tempfile.TemporaryDirectory(prefix="netlab-bench-tcg-") as workdir:
        for _ in range(args.runs):
            for smp in ("1", ours):  # alternate, so a change in load hits both
                rows[smp].append(boot(kernel, initrd, smp, workdir))
    print("\nkernel {}\nload average at the end: {}".format(kernel, os.getloadavg()[0]))
    print("{:<16} {:<32} {}".format("-smp", "mark", "seconds per run"))
    for smp, runs in rows.items():
        for name, _ in MARKS:
            print("{:<16} {:<32} {}".format(smp, name, "  ".join(
                "{:6.1f}".format(r[name]) if name in r else "   n/a" for r in runs)))


if __name__ == "__main__":
    main()
