#!/opt/netlab-venv/bin/python
"""
Lifecycle benchmark (a script, not a test): prints tables, asserts nothing.

1. root reset: ``netlab_roots.reset_root`` for two image sizes, with the
   copy-on-write paths (btrfs subvolume snapshot, reflink copy; on a loop-mounted
   btrfs) and the plain-copy fallback (the host's filesystem), and taking a
   spare root made before it (netlab_roots_spare) on reflink and copy storage;
2. kernel + initrd transfer to a client namespace: HTTP (nginx) vs TFTP (dnsmasq);
3. power-on -> ``salt/minion/<id>/start`` for 1 VM and 2 VMs at once (real netboot
   through the formula's netnode services, as in test/e2e/test_vms.py).

Run as root: ``/opt/netlab-venv/bin/python bench/bench_lifecycle.py [--skip-vms]
[--runs N]``. Needs the test image (built on first use by test/lib/image.py).
Everything it creates (loop device, mounts, namespaces, daemons, VMs) is removed.
"""

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "_utils"))
sys.path.insert(0, str(REPO / "test"))
sys.path.insert(0, str(REPO / "test" / "e2e"))

import netlab_lab  # noqa: E402
import netlab_roots  # noqa: E402
import netlab_roots_keys  # noqa: E402
import netlab_slice  # noqa: E402


def table(title, head, rows):
    print("\n" + title)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for i, row in enumerate([head] + rows):
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))


def du_mb(path):
    out = subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True,
                         check=False).stdout.split()
    return int(out[0]) if out else 0


def bench_lab(storage, nfs_server="kernel"):
    raw = {"network": {"interface": "br0", "cidr": "10.98.0.0/24"},
           "netnode": {"ip": "10.98.0.2", "storage": str(storage),
                       "nfs": {"server": nfs_server}},
           "nodes": {"n1": {"mac": "52:54:00:98:00:01", "ip": "10.98.0.11",
                            "role": "controller"}}}
    return netlab_lab.load(raw)


class LoopBtrfs:
    def __init__(self, size_gb, where):
        self.img = os.path.join(where, "bench-btrfs.img")
        self.mnt = os.path.join(where, "bench-btrfs")
        self.loop = None
        with open(self.img, "wb") as fh:
            fh.truncate(size_gb * 1024 ** 3)
        subprocess.run(["mkfs.btrfs", "-q", self.img], check=True, capture_output=True)
        self.loop = subprocess.run(["losetup", "--find", "--show", self.img], check=True,
                                   capture_output=True, text=True).stdout.strip()
        os.makedirs(self.mnt)
        subprocess.run(["mount", self.loop, self.mnt], check=True)

    def close(self):
        subprocess.run(["umount", self.mnt], check=False)
        if self.loop:
            subprocess.run(["losetup", "-d", self.loop], check=False)
        try:
            os.rmdir(self.mnt)
        except OSError:
            pass
        for p in (self.img,):
            if os.path.exists(p):
                os.unlink(p)


def make_image(storage, src, subvolume):
    """``<storage>/images/b1/rootfs`` = a copy of ``src`` (subvolume if asked)."""
    build = os.path.join(storage, "images", "b1")
    os.makedirs(build, exist_ok=True)
    rootfs = os.path.join(build, "rootfs")
    if subvolume:
        subprocess.run(["btrfs", "subvolume", "create", rootfs], check=True,
                       capture_output=True)
        subprocess.run(["cp", "-a", "-T", src, rootfs], check=True)
    else:
        subprocess.run(["cp", "-a", "-T", src, rootfs], check=True)
    os.symlink("b1", os.path.join(storage, "images", "current"))


def small_tree(where, mb):
    """A synthetic rootfs-like tree: many small files plus some big ones."""
    root = os.path.join(where, "small-image")
    for i in range(40):
        d = os.path.join(root, "usr", "lib", "d{}".format(i))
        os.makedirs(d)
        for j in range(50):
            with open(os.path.join(d, "f{}".format(j)), "wb") as fh:
                fh.write(os.urandom(4096))
    os.makedirs(os.path.join(root, "etc", "ssh"))
    big = max(1, mb - 8)
    with open(os.path.join(root, "usr", "lib", "big.bin"), "wb") as fh:
        for _ in range(big):
            fh.write(os.urandom(1024 * 1024))
    return root


def bench_roots(runs, work):
    sizes = []
    tmp = tempfile.mkdtemp(prefix="bench-img-", dir=work)
    sizes.append(("synthetic", small_tree(tmp, 100)))
    try:
        from lib.image import ensure_test_image  # pylint: disable=import-outside-toplevel

        img = ensure_test_image()
        sizes.append(("test image", img["rootfs"]))
    except Exception as exc:  # pylint: disable=broad-except
        print("(test image not available: {}; only the synthetic tree)".format(exc))
    rows = []
    key = netlab_roots_keys.gen_minion_keys()
    btrfs = None
    try:
        btrfs = LoopBtrfs(8, work)
        for label, src in sizes:
            mb = du_mb(src)
            # "+ spare": the reset takes a spare root made before it and leaves
            # the old root for later, as the reimage pipeline does (the spare is
            # made and the old root deleted while the previous reimage's nodes boot)
            for method, fs, spare in (("copy", "host", False), ("reflink", "btrfs", False),
                                      ("snapshot", "btrfs", False), ("copy", "host", True),
                                      ("reflink", "btrfs", True)):
                base = tempfile.mkdtemp(prefix="bench-", dir=btrfs.mnt if fs == "btrfs"
                                        else work)
                try:
                    make_image(base, src, subvolume=(method == "snapshot"))
                    lab = bench_lab(base, nfs_server="ganesha" if spare else "kernel")
                    times, clone = [], []
                    for gen in range(1, runs + 1):
                        if spare:  # what the reimage does while the last nodes boot
                            netlab_roots.remove_old_roots(lab)
                            netlab_roots.prepare_spare(lab)
                        res = netlab_roots.reset_root(
                            lab, "n1", netlab_slice.identity(lab, "n1", gen), key,
                            defer_delete=spare)
                        assert res["method"] == method, (res["method"], method)
                        assert res["spare"] == spare
                        times.append(res["total_seconds"])
                        clone.append(res["clone_seconds"])
                    rows.append([label, "{} MB".format(mb),
                                 method + (" + spare" if spare else ""),
                                 netlab_roots.fs_type(base),
                                 "{:.2f}".format(min(clone)), "{:.2f}".format(min(times)),
                                 "{:.2f}".format(max(times))])
                finally:
                    netlab_roots.remove_tree(base)
    finally:
        if btrfs is not None:
            btrfs.close()
        shutil.rmtree(tmp, ignore_errors=True)
    table("Root reset (netlab_roots.reset_root; clone + identity + swap + delete old), "
          "{} runs".format(runs),
          ["image", "size", "method", "fs", "clone s (min)", "reset s (min)",
           "reset s (max)"], rows)


def bench_transfer(runs, work):
    from lib.netns import Segment  # pylint: disable=import-outside-toplevel

    try:
        from lib.image import ensure_test_image  # pylint: disable=import-outside-toplevel

        img = ensure_test_image()
        files = [img["kernel"], img["initrd"]]
    except Exception as exc:  # pylint: disable=broad-except
        print("(test image not available: {}; transfer bench skipped)".format(exc))
        return
    base = tempfile.mkdtemp(prefix="bench-xfer-", dir=work)
    os.chmod(base, 0o755)
    served = os.path.join(base, "srv")
    os.makedirs(served)
    os.chmod(served, 0o755)
    for f in files:
        shutil.copy(f, served)
        os.chmod(os.path.join(served, os.path.basename(f)), 0o644)
    seg = Segment(cidr="10.97.0.0/24", server_ip="10.97.0.2")
    try:
        cli = seg.add_client("c", mac="52:54:00:97:00:11", ip="10.97.0.11",
                             private_mounts=True)
        conf = os.path.join(base, "nginx.conf")
        with open(conf, "w", encoding="utf-8") as fh:
            fh.write("user www-data; worker_processes 1; pid {0}/nginx.pid;\n"
                     "error_log {0}/nginx-error.log;\nevents {{}}\nhttp {{ sendfile on;"
                     " access_log off; server {{ listen 10.97.0.2:80; root {1}; }} }}\n"
                     .format(base, served))
        seg.server.popen(["nginx", "-c", conf, "-g", "daemon off;"])
        seg.server.popen(["dnsmasq", "-k", "--port=0", "--enable-tftp",
                          "--tftp-root=" + served, "--interface=br0", "--bind-interfaces",
                          "--pid-file=" + os.path.join(base, "dnsmasq.pid"),
                          "--log-facility=" + os.path.join(base, "dnsmasq.log")])
        time.sleep(2)
        rows = []
        total_mb = sum(os.path.getsize(f) for f in files) / 1e6
        for proto in ("http", "tftp"):
            times = []
            for _ in range(runs):
                t0 = time.monotonic()
                for f in files:
                    name = os.path.basename(f)
                    if proto == "http":
                        cli.run(["curl", "-sf", "-o", "/dev/null",
                                 "http://10.97.0.2/" + name])
                    else:
                        cli.run(["tftp", "-m", "binary", "10.97.0.2", "-c", "get", name,
                                 "/run/" + name])
                        cli.run(["rm", "-f", "/run/" + name])
                times.append(time.monotonic() - t0)
            rows.append([proto, "{:.1f} MB".format(total_mb), "{:.2f}".format(min(times)),
                         "{:.2f}".format(max(times)),
                         "{:.0f}".format(total_mb / min(times))])
        table("kernel + initrd to a client namespace over a veth/bridge ({} runs)".format(
            runs), ["protocol", "size", "s (min)", "s (max)", "MB/s (best)"], rows)
        print("  (in qemu the guest NIC and iPXE's TCP/TFTP stacks dominate; "
              "TFTP's lock-step 512-byte blocks make the gap wider there)")
    finally:
        seg.destroy()
        shutil.rmtree(base, ignore_errors=True)


def bench_vms(runs):
    import test_vms as T  # pylint: disable=import-outside-toplevel
    from lib.image import ensure_test_image  # pylint: disable=import-outside-toplevel
    from lib.netns import Segment  # pylint: disable=import-outside-toplevel
    from lib.vm import Master, stop_lab_vms  # pylint: disable=import-outside-toplevel

    img = ensure_test_image()
    base = pathlib.Path(tempfile.mkdtemp(prefix="bench-vms-", dir="/tmp"))
    os.chmod(base, 0o755)
    seg = Segment(cidr=T.CIDR, server_ip=T.NETNODE_IP, bridge="br0", ipv6=True)
    lab = master = None
    rows = []
    try:
        raw = T.lab_pillar(base, seg.server.name)
        lab = netlab_lab.load(raw)
        T.link_image(lab, img)
        # a reimage's exports refresh reloads ganesha (no stop command)
        master = Master(seg.server, base / "master", T.REPO, raw)
        master.start()
        T.start_netnode_minion(seg, base, master)
        master.run("salt", "-t", "600", "netnode", "saltutil.sync_all")
        master.run("salt", "-t", "900", "netnode", "state.apply", "netlab.netnode",
                   timeout=1200)
        vml = T.VmLab(base, seg, lab, raw, master)
        for _ in range(runs):
            for nodes in (["vma"], ["vma", "vmb"]):
                data, _, took = vml.reimage(nodes)
                for n in nodes:
                    r = data["nodes"][n]
                    rows.append(["{} at once".format(len(nodes)), n,
                                 lab.node(n).power["firmware"], r["method"],
                                 "{:.1f}".format(r["reset_seconds"]),
                                 "{:.0f}".format(r["boot_seconds"]),
                                 "{:.0f}".format(took)])
    finally:
        if lab is not None:
            stop_lab_vms(lab)
        if master is not None:
            master.stop()
        seg.destroy()
        subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False)
    accel = " ".join(__import__("netlab_power").accel_args("auto"))
    table("salt-run netlab.reimage: power-on -> salt/minion/<id>/start ({})".format(accel),
          ["VMs", "node", "firmware", "root", "reset s", "power-on -> start s",
           "whole reimage s"], rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-vms", action="store_true")
    ap.add_argument("--only", choices=("roots", "transfer", "vms"))
    ap.add_argument("--work", default="/var/tmp",
                    help="scratch dir on the host filesystem (copy fallback)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (loop devices, namespaces, qemu)")
    if args.only in (None, "roots"):
        bench_roots(args.runs, args.work)
    if args.only in (None, "transfer"):
        bench_transfer(args.runs, args.work)
    if args.only == "vms" or (args.only is None and not args.skip_vms):
        bench_vms(1)


if __name__ == "__main__":
    main()
