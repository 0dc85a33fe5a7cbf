"""The image build on btrfs storage: the rootfs is a subvolume (so node root
resets are snapshots), and pruning deletes it as one; plus what the slim
image recipe asks of mmdebstrap. A fake builder stands in for mmdebstrap."""

import copy
import os
import subprocess

import pytest

import netlab_image
import netlab_lab
import netlab_roots
import netlab_roots_keys
import netlab_slice
from lib.btrfs import loop_btrfs


@pytest.fixture
def btrfs_storage(tmp_path):
    """A loop-mounted btrfs filesystem (removed again, also on failure)."""
    with loop_btrfs(tmp_path) as mnt:
        yield mnt


def fake_builder(rec, rootfs, stage_dir, links, logfile):  # pylint: disable=unused-argument
    """What mmdebstrap leaves: a root with a kernel and an initramfs."""
    # mmdebstrap makes the directory, or fills an empty one (the subvolume)
    assert not os.path.exists(rootfs) or not os.listdir(rootfs)
    os.makedirs(os.path.join(rootfs, "boot"))
    os.makedirs(os.path.join(rootfs, "etc"))
    for name in ("vmlinuz-6.1.0-1-amd64", "initrd.img-6.1.0-1-amd64"):
        with open(os.path.join(rootfs, "boot", name), "wb") as fh:
            fh.write(os.urandom(4096))
    with open(os.path.join(rootfs, "etc", "os-release"), "w", encoding="utf-8") as fh:
        fh.write("ID=debian\n")


fake_builder.host_problems = lambda rec: []


def lab_on(example_pillar, storage, packages=(), nfs_server="kernel"):
    raw = copy.deepcopy(example_pillar)
    raw["netnode"]["storage"] = str(storage)
    raw["netnode"]["nfs"] = {"server": nfs_server}
    raw.setdefault("image", {})["packages"] = list(packages)
    return netlab_lab.load(raw)


def test_build_on_btrfs_makes_the_rootfs_a_subvolume_and_resets_snapshot(
        btrfs_storage, example_pillar):
    lab = lab_on(example_pillar, btrfs_storage / "srv")
    res = netlab_image.build(lab, builder=fake_builder, pip_settings={})
    rootfs = res["current"]["rootfs"]
    assert netlab_roots.is_subvolume(rootfs)
    with open(res["current"]["manifest"], encoding="utf-8") as fh:
        assert '"rootfs_mb"' in fh.read()
    # a persistent node's reset is then a snapshot
    key = netlab_roots_keys.gen_minion_keys(2048)
    reset = netlab_roots.reset_root(lab, "nuc1", netlab_slice.identity(lab, "nuc1", 1), key)
    assert reset["method"] == "snapshot"
    assert netlab_roots.reset_cost(lab)["note"] is None
    # a second build (new inputs), keep=1: the first build's subvolume goes
    lab2 = lab_on(example_pillar, btrfs_storage / "srv", packages=["htop"])
    res2 = netlab_image.build(lab2, builder=fake_builder, pip_settings={}, keep=1)
    assert res2["pruned"] == [res["build_id"]]
    assert not os.path.exists(os.path.dirname(rootfs))
    out = subprocess.run(["btrfs", "subvolume", "list", str(btrfs_storage)],
                         capture_output=True, text=True, check=True).stdout
    assert res["build_id"] not in out and res2["build_id"] in out
    assert netlab_image.remove_all(lab2)
    out = subprocess.run(["btrfs", "subvolume", "list", str(btrfs_storage)],
                         capture_output=True, text=True, check=True).stdout
    assert "images/" not in out


def test_build_on_btrfs_under_ganesha_keeps_a_plain_directory_and_reflinks(
        btrfs_storage, example_pillar):
    """nfs-ganesha cannot export subvolumes (stateless nodes mount the image
    rootfs itself): the image stays a plain directory, resets are reflinks."""
    lab = lab_on(example_pillar, btrfs_storage / "srv", nfs_server="ganesha")
    res = netlab_image.build(lab, builder=fake_builder, pip_settings={})
    rootfs = res["current"]["rootfs"]
    assert os.path.isdir(os.path.join(rootfs, "boot"))
    assert not netlab_roots.is_subvolume(rootfs)
    key = netlab_roots_keys.gen_minion_keys(2048)
    reset = netlab_roots.reset_root(lab, "nuc1", netlab_slice.identity(lab, "nuc1", 1), key)
    assert reset["method"] == "reflink"
    assert netlab_roots.reset_cost(lab)["note"] is None
    out = subprocess.run(["btrfs", "subvolume", "list", str(btrfs_storage)],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_build_on_a_plain_filesystem_keeps_a_plain_directory(tmp_path, example_pillar):
    if netlab_roots.fs_type(tmp_path) == "btrfs":
        pytest.fail("this test needs a non-btrfs tmp dir")
    lab = lab_on(example_pillar, tmp_path / "srv")
    res = netlab_image.build(lab, builder=fake_builder, pip_settings={})
    assert not netlab_roots.is_subvolume(res["current"]["rootfs"])
    assert "full copies of the image" in netlab_roots.reset_cost(lab)["note"]


def test_slim_image_recipe_reaches_mmdebstrap(example_pillar, tmp_path):
    rec = netlab_image.recipe(lab_on(example_pillar, tmp_path))
    cmd = netlab_image.mmdebstrap_command(rec, "/x/rootfs", "/x/inputs", {})
    excludes = [c.split("=", 2)[2] for c in cmd if c.startswith("--dpkgopt=path-exclude=")]
    includes = [c.split("=", 2)[2] for c in cmd if c.startswith("--dpkgopt=path-include=")]
    assert "/usr/share/doc/*" in excludes and "/usr/share/man/*" in excludes
    assert "/lib/modules/*/kernel/sound/*" in excludes
    # dpkg applies them in order: the copyright files come back after the exclude
    assert "/usr/share/doc/*/copyright" in includes
    assert cmd.index("--dpkgopt=path-include=/usr/share/doc/*/copyright") > cmd.index(
        "--dpkgopt=path-exclude=/usr/share/doc/*")
    # and they are image inputs: changing them changes the hash
    assert rec["path_excludes"] == netlab_image.PATH_EXCLUDES
