"""The virtual lab's storage: a loop-mounted btrfs, so node root resets are
reflink copies (an image handed in with --image is imported into it as a plain
directory: the lab's nfs-ganesha cannot export subvolumes)."""

import os
import shutil
import subprocess
import sys

import pytest

import netlab_image
import netlab_lab
import netlab_roots
import netlab_roots_keys
import netlab_slice

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import vlab  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture
def lab_dir(tmp_path):
    if os.geteuid() != 0 or not shutil.which("mkfs.btrfs"):
        pytest.fail("this test needs root and btrfs-progs (mkfs.btrfs)")
    base = tmp_path / "vlab"
    try:
        yield base
    finally:
        for mnt in reversed(vlab._mounts_under(str(base))):  # pylint: disable=protected-access
            subprocess.run(["umount", mnt], check=False)


def fake_image(where):
    """A finished build directory as the image cache holds it."""
    build = where / "20261130T000000Z-0123456789ab"
    (build / "rootfs" / "etc").mkdir(parents=True)
    (build / "rootfs" / "etc" / "os-release").write_text("ID=debian\n")
    (build / "rootfs" / "usr" / "bin").mkdir(parents=True)
    (build / "rootfs" / "usr" / "bin" / "tool").write_bytes(os.urandom(65536))
    for name in ("vmlinuz", "initrd.img"):
        (build / name).write_bytes(b"boot file")
    (build / "manifest.json").write_text('{"input_hash": "0123456789ab"}')
    return build


def test_storage_is_a_loop_btrfs_and_resets_are_reflinks(lab_dir, tmp_path, capsys):
    lab_tool = vlab.Vlab(base=str(lab_dir))
    lab = netlab_lab.load(vlab.lab_pillar(str(lab_dir)))
    lab_tool._storage(lab)  # pylint: disable=protected-access
    storage = lab.netnode.storage
    assert netlab_roots.fs_type(storage) == "btrfs"
    assert os.path.isfile(lab_dir / vlab.STORAGE_IMAGE)
    # sparse: the file takes what the filesystem wrote, not its size
    assert os.stat(lab_dir / vlab.STORAGE_IMAGE).st_blocks * 512 < 512 * 2**20
    assert lab_dir.as_posix() + "/srv" in vlab._mounts_under(str(lab_dir))  # pylint: disable=protected-access
    # a second up on the same directory mounts nothing twice
    lab_tool._storage(lab)  # pylint: disable=protected-access
    assert len(vlab._mounts_under(str(lab_dir))) == 1  # pylint: disable=protected-access

    build = fake_image(tmp_path / "cache")
    lab_tool._link_image(lab, str(build), netlab_image)  # pylint: disable=protected-access
    assert "importing the image" in capsys.readouterr().out
    rootfs = netlab_roots.image_rootfs(lab)
    assert rootfs.startswith(storage) and not netlab_roots.is_subvolume(rootfs)
    assert lab.netnode.nfs_server == "ganesha"
    key = netlab_roots_keys.gen_minion_keys(2048)
    res = netlab_roots.reset_root(lab, "ctl", netlab_slice.identity(lab, "ctl", 1), key)
    assert res["method"] == "reflink"
    assert netlab_roots.reset_cost(lab)["note"] is None


def test_storage_refuses_a_filled_directory_on_another_filesystem(lab_dir):
    (lab_dir / "srv" / "roots").mkdir(parents=True)
    lab = netlab_lab.load(vlab.lab_pillar(str(lab_dir)))
    with pytest.raises(vlab.VlabError, match="not empty and not on btrfs"):
        vlab.Vlab(base=str(lab_dir))._storage(lab)  # pylint: disable=protected-access
