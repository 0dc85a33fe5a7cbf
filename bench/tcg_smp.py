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

With ``--userspace`` it times the guest's userspace instead, where a node spends
most of its boot (systemd, Python, Salt): the image's root is shared read-only
into the guest (virtio-9p), and a script from an extra initramfs runs in a chroot
of it, each step timed by the guest's clock: 200 fork/execs of ``/bin/true``, gzip
of 20 MB, three Python starts importing json/asyncio/ssl/email, four Python threads
passing 80,000 items through a queue (locks), and ``salt-call --local test.ping``.

Run as root: ``/opt/netlab-venv/bin/python bench/tcg_smp.py [--runs N]
[--userspace] [--image DIR]``. Without ``--image`` it takes the newest build in
``$NETLAB_TEST_CACHE`` (default /var/cache/netlab-test); DIR holds ``vmlinuz``,
``initrd.img`` and, for ``--userspace``, ``rootfs``.
"""

import argparse
import gzip
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


# the guest's side of --userspace: steps in a chroot of the image's root, each
# printed as "BENCH <step> <rc> <start> <end>" (the guest's uptime, seconds)
STEPS = (
    ("fork/exec x200", "for i in $(seq 200); do /bin/true; done"),
    ("gzip 20 MB", "head -c 20000000 /dev/zero | gzip -c | wc -c"),
    ("python imports x3",
     "for i in 1 2 3; do python3 -c 'import json, asyncio, ssl, email.mime.text'; done"),
    ("python threads+queue",
     "python3 -c 'import threading, queue\nq = queue.Queue()\n"
     "def w():\n    [q.put(i) for i in range(20000)]\n"
     "ts = [threading.Thread(target=w) for _ in range(4)]\n"
     "[t.start() for t in ts]; [t.join() for t in ts]'"),
    ("salt-call test.ping", "/opt/salt/bin/salt-call --local --log-level=quiet test.ping"),
)
NINEP_MODULES = ("drivers/virtio/virtio.ko", "drivers/virtio/virtio_ring.ko",
                 "drivers/virtio/virtio_pci_modern_dev.ko",
                 "drivers/virtio/virtio_pci_legacy_dev.ko", "drivers/virtio/virtio_pci.ko",
                 "fs/netfs/netfs.ko", "fs/fscache/fscache.ko", "net/9p/9pnet.ko",
                 "net/9p/9pnet_virtio.ko", "fs/9p/9p.ko")


def _image(cache):
    kernels = sorted(glob.glob(os.path.join(cache, "image-*", "images", "*", "vmlinuz")),
                     key=os.path.getmtime)
    if not kernels:
        sys.exit("no test image in {} (run the e2e tier once, or give --image)".format(cache))
    return os.path.dirname(kernels[-1])


def _newc(files):
    """A gzip'd cpio (newc) archive of ``{path: (mode, bytes)}``; no cpio tool needed."""
    out, ino = bytearray(), 1000
    for name, (mode, data) in list(files.items()) + [("TRAILER!!!", (0, b""))]:
        ino += 1
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0)
        out += ("070701" + "".join("%08X" % v for v in fields)).encode() + name.encode()
        out += b"\0" * (1 + (-(110 + len(name) + 1)) % 4) + data + b"\0" * (-len(data) % 4)
    return gzip.compress(bytes(out))


def userspace_initrd(image, workdir):
    """The image's initrd plus an archive with the bench script and the 9p modules."""
    rootfs = os.path.join(image, "rootfs")
    kdirs = glob.glob(os.path.join(rootfs, "lib", "modules", "*", "kernel"))
    if not kdirs:
        sys.exit("no kernel modules under {}".format(rootfs))
    files = {"bench-mods": (0o40755, b"")}
    for i, rel in enumerate(NINEP_MODULES):
        with open(os.path.join(kdirs[0], rel), "rb") as fh:
            files["bench-mods/{:02d}.ko".format(i)] = (0o100644, fh.read())
    lines = ["#!/bin/sh", "export PATH=/usr/sbin:/usr/bin:/sbin:/bin",
             "mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev",
             "for m in /bench-mods/*.ko; do insmod $m 2>/dev/null; done",
             "mkdir -p /r; mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 root /r",
             "mount -t proc proc /r/proc; mount -t devtmpfs dev /r/dev",
             "for d in tmp run var/cache var/log; do mount -t tmpfs tmp /r/$d; done"]
    for name, cmd in STEPS:
        script = ("s=$(cut -d' ' -f1 /proc/uptime); ( {} ) >/dev/null 2>&1; rc=$?; "
                  "echo \"BENCH {} $rc $s $(cut -d' ' -f1 /proc/uptime)\"").format(
                      cmd, name.replace(" ", "_"))
        lines.append("chroot /r /bin/sh -c {}".format(_shq(script)))
    lines += ["echo BENCH-END", "echo o > /proc/sysrq-trigger", "sleep 60"]
    files["netlab-bench"] = (0o100755, ("\n".join(lines) + "\n").encode())
    path = os.path.join(workdir, "initrd-userspace.img")
    with open(os.path.join(image, "initrd.img"), "rb") as src, open(path, "wb") as dst:
        dst.write(src.read())
        dst.write(_newc(files))
    return path


def _shq(text):
    return "'" + text.replace("'", "'\\''") + "'"


def _qemu(smp, serial, kernel, initrd, append):
    """The TCG guest both modes boot: one vCPU, the serial console to a file."""
    return ["qemu-system-x86_64", "-machine", "pc", "-m", "1024", "-smp", smp,
            "-accel", "tcg", "-cpu", "qemu64", "-nodefaults", "-display", "none",
            "-vga", "none", "-serial", "file:" + serial, "-kernel", kernel,
            "-initrd", initrd, "-append", append]


def run_userspace(image, initrd, smp, workdir, timeout=1200):
    """``{step: seconds}`` by the guest's clock (a step that failed: None)."""
    serial = os.path.join(workdir, "serial-user-{}.log".format(smp.replace(",", "-")))
    cmd = _qemu(smp, serial, os.path.join(image, "vmlinuz"), initrd,
                "console=ttyS0 rdinit=/netlab-bench panic=-1 quiet") + [
           "-no-reboot", "-fsdev", "local,id=r,path={},security_model=none,readonly=on".format(
               os.path.join(image, "rootfs")),
           "-device", "virtio-9p-pci,fsdev=r,mount_tag=root"]
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=timeout, check=False)
    got = {}
    for line in pathlib.Path(serial).read_text(errors="replace").splitlines():
        parts = line.strip().split()
        if len(parts) == 5 and parts[0] == "BENCH":
            got[parts[1].replace("_", " ")] = (
                float(parts[4]) - float(parts[3]) if parts[2] == "0" else None)
    return got


def boot(kernel, initrd, smp, workdir, timeout=600):
    serial = os.path.join(workdir, "serial-{}.log".format(smp.replace(",", "-")))
    if os.path.exists(serial):
        os.unlink(serial)
    cmd = _qemu(smp, serial, kernel, initrd,
                "console=ttyS0 root=/dev/nfs ip=off panic=-1 rootdelay=0")
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
    ap.add_argument("--image")
    ap.add_argument("--userspace", action="store_true")
    args = ap.parse_args()
    image = args.image or _image(os.environ.get("NETLAB_TEST_CACHE", "/var/cache/netlab-test"))
    kernel, initrd = os.path.join(image, "vmlinuz"), os.path.join(image, "initrd.img")
    ours = netlab_power_virtual.smp_arg(1, tcg=True)
    rows = {"1": [], ours: []}
    with tempfile.TemporaryDirectory(prefix="netlab-bench-tcg-") as workdir:
        if args.userspace:
            initrd = userspace_initrd(image, workdir)
            names, title = [name for name, _ in STEPS], "step (guest clock)"
        else:
            names, title = [name for name, _ in MARKS], "mark"
        for _ in range(args.runs):
            for smp in ("1", ours):  # alternate, so a change in load hits both
                rows[smp].append(run_userspace(image, initrd, smp, workdir)
                                 if args.userspace else boot(kernel, initrd, smp, workdir))
    print("\nimage {}\nload average at the end: {}".format(image, os.getloadavg()[0]))
    print("{:<16} {:<32} {}".format("-smp", title, "seconds per run"))
    for smp, runs in rows.items():
        for name in names:
            print("{:<16} {:<32} {}".format(smp, name, "  ".join(
                "{:6.1f}".format(r[name]) if r.get(name) is not None else "   n/a"
                for r in runs)))


if __name__ == "__main__":
    main()
