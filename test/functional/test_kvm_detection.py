"""
KVM detection (``netlab_power.kvm_works``) against a ``/dev/kvm`` that cannot run a
guest, with the real qemu.

Each case runs in a private mount namespace (``unshare -m``) where a plain file is
bind-mounted over ``/dev/kvm`` (it opens read-write like the real device, but
every KVM ioctl fails) and a ``/proc/cpuinfo`` that shows ``vmx`` is bind-mounted
over the real one, so the check reaches its last step: qemu trying to create a
KVM machine. Nothing changes outside that namespace.
"""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
PROBE = ("import sys; sys.path.insert(0, {utils!r}); import netlab_power as p; "
         "print(p.kvm_works(qemu=sys.argv[1]), p.accel_args('auto', qemu=sys.argv[1]))")


def _probe(tmp_path, qemu, dev_kvm=True):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare (a private mount namespace)")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu vme de pse tsc msr vmx ssse3\n\n")
    fake = tmp_path / "kvm"
    fake.write_text("")
    mounts = "mount --bind {} /proc/cpuinfo && ".format(cpuinfo)
    if dev_kvm:
        if not os.path.exists("/dev/kvm"):
            mounts += "mount -t tmpfs -o size=1m,mode=755 none /dev && "
            mounts += "touch /dev/kvm && "
        mounts += "mount --bind {} /dev/kvm && ".format(fake)
    else:
        mounts += "mount -t tmpfs -o size=1m,mode=755 none /dev && "
    script = mounts + 'exec "$0" -c "$1" "$2"'
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                           sys.executable, PROBE.format(utils=str(REPO / "_utils")), qemu],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_dev_kvm_that_cannot_run_a_guest_means_tcg(tmp_path):
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        pytest.skip("qemu-system-x86 is not installed")
    out = _probe(tmp_path, qemu)
    assert out == "False ['-accel', 'tcg', '-cpu', 'qemu64']", out


def test_qemu_starting_a_kvm_machine_is_what_decides(tmp_path):
    """Same fake device and flags, a qemu that succeeds: KVM is taken (so the
    False above came from qemu failing on the fake device, not from the flags)."""
    ok = tmp_path / "qemu-ok"
    ok.write_text("#!/bin/sh\ncat >/dev/null\nexit 0\n")
    ok.chmod(0o755)
    assert _probe(tmp_path, str(ok)) == "True ['-accel', 'kvm', '-cpu', 'host']"


def test_no_dev_kvm_means_tcg(tmp_path):
    ok = tmp_path / "qemu-ok"
    ok.write_text("#!/bin/sh\nexit 0\n")
    ok.chmod(0o755)
    assert _probe(tmp_path, str(ok), dev_kvm=False) == \
        "False ['-accel', 'tcg', '-cpu', 'qemu64']"
