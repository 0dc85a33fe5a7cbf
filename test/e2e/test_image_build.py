"""
The real node image: mmdebstrap build of the test image (Debian bookworm,
minbase, salt-minion in /opt/salt), through ``netlab_image.build``.

The image is built once per machine and input hash into ``$NETLAB_TEST_CACHE``
(test/lib/image.py), so the first run takes ~4-5 minutes and later runs reuse
it. Everything run inside the image runs in a private mount namespace on a
read-only bind of the rootfs: the cached image is never modified.
"""

import os
import subprocess

import pytest

import netlab_image
from lib.image import ensure_test_image

pytestmark = [pytest.mark.e2e, pytest.mark.slow]



@pytest.fixture(scope="module")
def image():
    if os.geteuid() != 0:
        pytest.skip("image builds need root")
    return ensure_test_image()


@pytest.fixture(scope="module")
def in_image(image, tmp_path_factory):
    """``run(cmd)`` -> CompletedProcess: ``cmd`` (shell) in the image, read-only,
    with /proc, in a throw-away mount namespace (mounts vanish with it)."""
    mnt = tmp_path_factory.mktemp("image-ro")

    def run(cmd, check=True):
        script = (
            'set -e; mount --bind "$1" "$2"; mount -o remount,bind,ro "$2"; '
            'mount -t proc proc "$2/proc"; mount -t tmpfs tmpfs "$2/tmp"; '
            'exec chroot "$2" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin '
            'PYTHONDONTWRITEBYTECODE=1 /bin/sh -c "$3"')
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script,
             "sh", image["rootfs"], str(mnt), cmd],
            capture_output=True, text=True, timeout=300, check=False)
        if check:
            assert proc.returncode == 0, "{}\n{}\n{}".format(cmd, proc.stdout, proc.stderr)
        return proc

    yield run
    # the bind mounts lived only in the unshared namespaces
    assert not netlab_image._mounts_under(str(mnt))


def _root(image, *parts):
    return os.path.join(image["rootfs"], *parts)


def test_build_published_kernel_and_initrd(image):
    rootfs = image["rootfs"]
    version = image["kernel_version"]
    assert os.path.isfile(_root(image, "boot", "vmlinuz-" + version))
    assert os.path.isfile(_root(image, "boot", "initrd.img-" + version))
    with open(image["kernel"], "rb") as a, open(
            os.path.join(rootfs, "boot", "vmlinuz-" + version), "rb") as b:
        assert a.read() == b.read()
    assert os.path.getsize(image["initrd"]) > 5 * 2**20
    lab = image["lab"]
    p = netlab_image.paths(lab)
    for base in (p["http_images"], p["tftp_images"]):
        assert os.readlink(os.path.join(base, "current")) == image["build_id"]
        assert os.path.samefile(os.path.join(base, "current", "vmlinuz"), image["kernel"])
        assert os.path.samefile(os.path.join(base, "current", "initrd.img"), image["initrd"])


def test_unchanged_inputs_do_not_rebuild(image):
    assert image["input_hash"] == netlab_image.input_hash(image["lab"])
    again = ensure_test_image()
    assert again["result"]["action"] == "none"
    assert again["result"]["changed"] is False
    assert again["build_id"] == image["build_id"]


def test_initramfs_mounts_nfs_root_and_has_the_stateless_script(image, in_image):
    listing = in_image("lsinitramfs /boot/initrd.img-{}".format(
        image["kernel_version"])).stdout.split()
    for path in ("scripts/nfs", "scripts/init-bottom/netlab-stateless",
                 "conf/conf.d/netlab", "usr/bin/nfsmount", "usr/bin/busybox"):
        assert path in listing, path
    for module in ("virtio_net.ko", "e1000.ko", "e1000e.ko", "igb.ko", "r8169.ko",
                   "r8152.ko", "overlay.ko", "nfs.ko", "nfsv3.ko"):
        assert any(p.endswith("/" + module) for p in listing), module
    # only what an NFS root needs (MODULES=list): no storage, wireless or the
    # long tail of network drivers that MODULES=netboot brings
    modules = [p for p in listing if p.endswith(".ko")]
    for absent in ("/ath9k.ko", "/iwlwifi.ko", "/ahci.ko", "/usb-storage.ko", "/ppp_generic.ko"):
        assert not any(p.endswith(absent) for p in modules), absent
    assert len(modules) < 250, len(modules)
    conf = in_image(
        "d=$(mktemp -d); cd $d; unmkinitramfs /boot/initrd.img-{} . >/dev/null; "
        "r=$(ls -d main 2>/dev/null || echo .); cat $r/conf/conf.d/netlab; "
        "echo ---; cat $r/scripts/init-bottom/netlab-stateless".format(
            image["kernel_version"])).stdout
    netlab_conf, script = conf.split("---\n")
    assert "BOOT=nfs" in netlab_conf.split()
    assert "MODULES=list" in netlab_conf.split()
    assert "COMPRESS=zstd" in netlab_conf.split()
    assert "netlab.root=stateless" in script
    assert "lowerdir=" in script and "upperdir=" in script


def test_salt_minion_runs_in_the_image(in_image):
    out = in_image("/opt/salt/bin/salt-minion --version").stdout
    assert out.startswith("salt-minion ")
    assert "3008.3" in out
    in_image("/opt/salt/bin/python -c 'import netaddr, salt.config'")
    assert in_image("readlink /usr/local/bin/salt-call").stdout.strip() == \
        "/opt/salt/bin/salt-call"


def test_salt_minion_service_enabled(image):
    wants = _root(image, "etc", "systemd", "system", "multi-user.target.wants")
    assert os.readlink(os.path.join(wants, "salt-minion.service")) == \
        "/etc/systemd/system/salt-minion.service"
    assert os.path.lexists(os.path.join(wants, "netlab-netconf.service"))
    assert os.path.lexists(os.path.join(wants, "ssh.service"))
    with open(_root(image, "etc", "systemd", "system", "salt-minion.service"),
              encoding="utf-8") as fh:
        assert "ExecStart=/opt/salt/bin/salt-minion -c /etc/salt" in fh.read()


def test_boot_path_is_lean(image):
    """What a node does not need before its minion is masked; the minion starts
    early, without the grains that ask the network."""
    for unit in ("e2scrub_reap.service", "e2scrub_all.timer", "fstrim.timer",
                 "systemd-pstore.service", "modprobe@dm_mod.service",
                 "modprobe@loop.service", "modprobe@drm.service"):
        assert os.readlink(_root(image, "etc", "systemd", "system", unit)) == "/dev/null", unit
    with open(_root(image, "etc", "systemd", "system", "salt-minion.service"),
              encoding="utf-8") as fh:
        unit = fh.read()
    assert "DefaultDependencies=no" in unit and "Conflicts=shutdown.target" in unit
    assert "After=netlab-netconf.service" in unit
    with open(_root(image, "etc", "systemd", "system", "netlab-netconf.service"),
              encoding="utf-8") as fh:
        netconf = fh.read()
    # the resolver helper the minion waits for needs only the remounted root
    directives = [ln for ln in netconf.splitlines() if not ln.startswith("#")]
    assert "After=systemd-remount-fs.service" in directives
    assert not [ln for ln in directives if "local-fs" in ln], directives
    import yaml  # pylint: disable=import-outside-toplevel
    with open(_root(image, "etc", "salt", "minion"), encoding="utf-8") as fh:
        minion = yaml.safe_load(fh)
    assert minion["enable_fqdns_grains"] is False and minion["enable_gpu_grains"] is False
    # no mine.update job at start; the second grains load at start is a cache read
    assert minion["mine_enabled"] is False and minion["grains_cache"] is True
    # grain modules a lab node does not use are never imported; the ones whose
    # grains netlab and Salt's cmd states read stay on
    off = set(minion["disable_grains"])
    assert {"disks", "lvm", "mdadm", "truststore", "pending_reboot"} <= off
    assert not off & {"core", "extra", "minion_process"}


def test_slim_root(image):
    """No build tools, docs, manual pages, translations or modules for hardware a
    diskless lab node does not have; copyright files stay."""
    with open(image["manifest"], encoding="utf-8") as fh:
        import json  # pylint: disable=import-outside-toplevel
        pkgs = json.load(fh)["packages"]
    for pkg in ("binutils", "binutils-x86-64-linux-gnu", "libbinutils"):
        assert pkg not in pkgs, pkg
    assert os.path.isfile(_root(image, "usr", "share", "doc", "bash", "copyright"))
    assert not os.path.exists(_root(image, "usr", "share", "man", "man1", "bash.1.gz"))
    assert not os.path.exists(_root(image, "usr", "share", "doc", "bash", "changelog.Debian.gz"))
    kernel = _root(image, "usr", "lib", "modules", image["kernel_version"], "kernel")
    for gone in (("sound",), ("drivers", "media"), ("drivers", "net", "wireless")):
        assert [f for _, _, files in os.walk(os.path.join(kernel, *gone))
                for f in files] == [], gone
    assert os.path.isdir(os.path.join(kernel, "drivers", "net", "ethernet"))
    assert os.path.isdir(os.path.join(kernel, "fs", "nfs"))


def test_stack_user_with_passwordless_sudo(image, in_image):
    entry = in_image("getent passwd stack").stdout.strip().split(":")
    assert entry[0] == "stack" and entry[6] == "/bin/bash"
    assert os.path.isdir(_root(image, entry[5].lstrip("/")))
    sudoers = _root(image, "etc", "sudoers.d", "netlab-stack")
    assert oct(os.stat(sudoers).st_mode & 0o777) == "0o440"
    with open(sudoers, encoding="utf-8") as fh:
        assert "stack ALL=(ALL) NOPASSWD:ALL" in fh.read().splitlines()
    in_image("visudo -c")
    # sudo's own view of the rule
    out = in_image("sudo -l -U stack").stdout
    assert "NOPASSWD: ALL" in out


def test_no_per_node_identity_in_the_image(image):
    with open(_root(image, "etc", "machine-id"), encoding="utf-8") as fh:
        assert fh.read() == ""
    assert not os.path.exists(_root(image, "etc", "hostname"))
    assert not os.path.exists(_root(image, "etc", "resolv.conf"))
    assert not os.path.exists(_root(image, "var", "lib", "dbus", "machine-id"))
    keys = [n for n in os.listdir(_root(image, "etc", "ssh")) if n.startswith("ssh_host_")]
    assert keys == []
    assert not os.path.exists(_root(image, "etc", "salt", "minion_id"))
    assert os.listdir(_root(image, "etc", "salt", "pki", "minion")) == []
    assert os.listdir(_root(image, "etc", "salt", "minion.d")) == []


def test_fstab_leaves_the_nfs_root_alone(image):
    with open(_root(image, "etc", "fstab"), encoding="utf-8") as fh:
        entries = [ln.split() for ln in fh if ln.strip() and not ln.startswith("#")]
    assert not [e for e in entries if len(e) > 1 and e[1] == "/"]


def test_build_only_packages_and_apt_caches_are_gone(image):
    with open(image["manifest"], encoding="utf-8") as fh:
        import json  # pylint: disable=import-outside-toplevel
        manifest = json.load(fh)
    pkgs = manifest["packages"]
    for pkg in ("gcc", "gcc-12", "libc6-dev", "python3-dev"):
        assert pkg not in pkgs, pkg
    for pkg in ("linux-image-amd64", "openssh-server", "sudo", "python3-venv",
                "initramfs-tools", "busybox", "systemd-sysv"):
        assert pkg in pkgs, pkg
    assert not [n for n in os.listdir(_root(image, "var", "cache", "apt", "archives"))
                if n.endswith(".deb")]
    lists = _root(image, "var", "lib", "apt", "lists")
    assert not [n for n in os.listdir(lists) if n not in ("partial", "lock", "auxfiles")]
    assert not os.path.exists(_root(image, "tmp", "netlab-build"))


def test_netconf_writes_resolver_from_the_initramfs_lease(image, tmp_path):
    """The boot-time helper, run against a fake /run/net-eth0.conf and /etc."""
    script = _root(image, "usr", "local", "sbin", "netlab-netconf")
    run = tmp_path / "run"
    etc = tmp_path / "etc"
    run.mkdir()
    etc.mkdir()
    (run / "net-eth0.conf").write_text(
        "DEVICE='eth0'\nIPV4ADDR='10.99.0.101'\nIPV4DNS0='10.99.0.1'\nIPV4DNS1='0.0.0.0'\n"
        "DNSDOMAIN='lab.example'\nHOSTNAME='node01'\n")
    with open(script, encoding="utf-8") as fh:
        text = fh.read().replace("/run/", str(run) + "/").replace("/etc/", str(etc) + "/")
    text = text.replace('hostname "$HOSTNAME"', 'echo "$HOSTNAME" > {}/set-hostname'.format(
        tmp_path))
    (tmp_path / "netconf").write_text(text)
    subprocess.run(["sh", str(tmp_path / "netconf")], check=True)
    resolv = (etc / "resolv.conf").read_text().splitlines()
    assert resolv == ["# written by netlab-netconf", "search lab.example",
                      "nameserver 10.99.0.1"]
    assert (tmp_path / "set-hostname").read_text().strip() == "node01"
    # a resolv.conf written by someone else (the node's own root) is left alone
    (etc / "resolv.conf").write_text("nameserver 192.0.2.53\n")
    (etc / "hostname").write_text("nuc1\n")
    (tmp_path / "set-hostname").unlink()
    subprocess.run(["sh", str(tmp_path / "netconf")], check=True)
    assert (etc / "resolv.conf").read_text() == "nameserver 192.0.2.53\n"
    assert not (tmp_path / "set-hostname").exists()


# --------------------------------------------------------------------------- stateless
STATELESS_RUN = r'''
set -eu
D=$1; IMG=$2; CMDLINE=$3
mount -t tmpfs initramfs-run "$D/run"
mount --bind "$IMG" "$D/root"                 # stands in for the NFS root
mount -o remount,bind,ro "$D/root"
mount -t proc proc "$D/proc"
printf '%s\n' "$CMDLINE" > "$D/run/fake-cmdline"
mount --bind "$D/run/fake-cmdline" "$D/proc/cmdline"
# the variables initramfs-tools' init exports to its scripts
chroot "$D" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin rootmnt=/root quiet=n panic= \
    /bin/sh /scripts/init-bottom/netlab-stateless
echo "fstype=$(findmnt -n -o FSTYPE "$D/root")"
echo "lower=$(findmnt -n -o OPTIONS "$D/run/netlab/lower" 2>/dev/null || echo none)"
echo "mode=$(cat "$D/run/netlab/root-mode" 2>/dev/null || echo none)"
if [ -x "$D/root/opt/salt/bin/salt-minion" ]; then echo image=visible; fi
if echo written > "$D/root/etc/netlab-stateless-probe" 2>/dev/null; then
    echo write=ok
    if [ -f "$D/run/netlab/rw/upper/etc/netlab-stateless-probe" ]; then echo upper=yes; fi
fi
if [ -e "$IMG/etc/netlab-stateless-probe" ]; then echo image=modified; fi
'''


@pytest.fixture(scope="module")
def initramfs_tree(image, tmp_path_factory):
    """The image's initramfs unpacked (zstd cpio), to run its netlab script."""
    dest = tmp_path_factory.mktemp("initramfs")
    with open(image["initrd"], "rb") as fh:
        magic = fh.read(4)
    assert magic == b"\x28\xb5\x2f\xfd", "expected a single zstd-compressed cpio"
    zstd = subprocess.Popen(["zstd", "-dc", image["initrd"]], stdout=subprocess.PIPE)
    subprocess.run(["busybox", "cpio", "-idm"], stdin=zstd.stdout, cwd=dest, check=True,
                   capture_output=True)
    assert zstd.wait() == 0
    for d in ("run", "root", "proc"):
        (dest / d).mkdir(exist_ok=True)
    return dest


def _stateless(image, tree, cmdline):
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", STATELESS_RUN,
         "sh", str(tree), image["rootfs"], cmdline],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not netlab_image._mounts_under(str(tree))
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


def test_stateless_script_puts_a_tmpfs_overlay_on_the_read_only_root(image, initramfs_tree):
    """The real init-bottom script from the built initramfs, run by the initramfs'
    own busybox against the image as (read-only) root, like at boot."""
    out = _stateless(image, initramfs_tree,
                     "root=/dev/nfs ip=dhcp rw console=ttyS0,115200 netlab.node=node01 "
                     "netlab.root=stateless")
    assert out["fstype"] == "overlay"
    assert "ro" in out["lower"].split(",")
    assert out["mode"] == "stateless"
    assert out.get("image") == "visible"
    assert out.get("write") == "ok" and out.get("upper") == "yes"
    assert not os.path.exists(os.path.join(image["rootfs"], "etc", "netlab-stateless-probe"))


def test_stateless_script_is_a_no_op_for_persistent_roots(image, initramfs_tree):
    out = _stateless(image, initramfs_tree,
                     "root=/dev/nfs ip=dhcp rw console=ttyS0,115200 netlab.node=node01")
    assert out["fstype"] != "overlay"
    assert out["mode"] == "none" and out["lower"] == "none"
    assert out.get("image") == "visible"
    assert "write" not in out  # the stand-in root is read-only: nothing was layered
