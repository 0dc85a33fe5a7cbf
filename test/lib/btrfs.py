"""A loop-mounted btrfs filesystem for tests of copy-on-write node roots."""

import contextlib
import os
import shutil
import subprocess

import pytest


@contextlib.contextmanager
def loop_btrfs(tmp_path, size=256 * 1024 * 1024):
    """Mount a fresh btrfs (a sparse file on a loop device) at ``tmp_path/mnt``;
    unmounted and its loop device freed again, also on failure."""
    if os.geteuid() != 0 or not shutil.which("mkfs.btrfs"):
        pytest.fail("this test needs root and btrfs-progs (mkfs.btrfs)")
    img = tmp_path / "btrfs.img"
    with open(img, "wb") as fh:
        fh.truncate(size)
    subprocess.run(["mkfs.btrfs", "-q", str(img)], check=True, capture_output=True)
    loop = subprocess.run(["losetup", "--find", "--show", str(img)], check=True,
                          capture_output=True, text=True).stdout.strip()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "btrfs", loop, str(mnt)], check=True,
                       capture_output=True)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)], check=False, capture_output=True)
    finally:
        subprocess.run(["losetup", "-d", loop], check=False, capture_output=True)
