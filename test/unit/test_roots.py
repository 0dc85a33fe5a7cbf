"""Per-node roots: clone methods (btrfs snapshot, reflink, copy), identity, keys."""

import copy
import os
import stat
import subprocess

import pytest

import netlab_lab
import netlab_roots
import netlab_roots_keys
import netlab_slice
from lib.btrfs import loop_btrfs


def make_lab(example_pillar, storage, nfs_server="kernel"):
    raw = copy.deepcopy(example_pillar)
    raw["netnode"]["storage"] = str(storage)
    raw["netnode"]["nfs"] = {"server": nfs_server}
    raw["nodes"]["nuc2"]["root"] = {"mode": "stateless"}
    return netlab_lab.load(raw)


def fill_image(rootfs):
    """A small fake image rootfs (a few dirs, files, a symlink, a setuid file)."""
    for d in ("etc/ssh", "etc/salt/pki/minion", "usr/bin", "var/lib/dbus", "tmp"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    with open(os.path.join(rootfs, "etc/os-release"), "w") as fh:
        fh.write("ID=debian\n")
    with open(os.path.join(rootfs, "etc/machine-id"), "w") as fh:
        fh.write("")
    with open(os.path.join(rootfs, "usr/bin/tool"), "wb") as fh:
        fh.write(os.urandom(256 * 1024))
    os.chmod(os.path.join(rootfs, "usr/bin/tool"), 0o4755)
    os.symlink("/etc/machine-id", os.path.join(rootfs, "var/lib/dbus/machine-id"))
    with open(os.path.join(rootfs, "etc/ssh/ssh_host_ed25519_key"), "w") as fh:
        fh.write("IMAGE KEY must not survive\n")
    os.chmod(os.path.join(rootfs, "tmp"), 0o1777)


def publish_image(images_dir, build, subvolume=False):
    os.makedirs(os.path.join(images_dir, build), exist_ok=True)
    rootfs = os.path.join(images_dir, build, "rootfs")
    if subvolume:
        subprocess.run(["btrfs", "subvolume", "create", rootfs], check=True,
                       capture_output=True)
    else:
        os.makedirs(rootfs)
    fill_image(rootfs)
    cur = os.path.join(images_dir, "current")
    if os.path.lexists(cur):
        os.unlink(cur)
    os.symlink(build, cur)
    return rootfs


@pytest.fixture
def btrfs_mount(tmp_path):
    """A loop-mounted btrfs filesystem (removed again, also on failure)."""
    with loop_btrfs(tmp_path) as mnt:
        yield mnt


def key():
    return netlab_roots_keys.gen_minion_keys(2048)


# --------------------------------------------------------------------------- methods
def test_copy_fallback_on_non_cow_fs(tmp_path, example_pillar):
    lab = make_lab(example_pillar, tmp_path / "srv")
    src = publish_image(lab.netnode.images_dir, "b1")
    if netlab_roots.fs_type(src) in ("btrfs", "xfs"):
        pytest.fail("this test needs a non-CoW tmp dir; got " + netlab_roots.fs_type(src))
    assert netlab_roots.detect_method(src, str(tmp_path)) == "copy"
    out = netlab_roots.clone_tree(src, tmp_path / "clone")
    assert out["method"] == "copy"
    st = os.stat(tmp_path / "clone/usr/bin/tool")
    assert st.st_mode & stat.S_ISUID  # cp -a keeps modes
    assert os.readlink(tmp_path / "clone/var/lib/dbus/machine-id") == "/etc/machine-id"
    assert os.stat(tmp_path / "clone/tmp").st_mode & 0o7777 == 0o1777


def test_explicit_reflink_on_ext4_fails_clearly(tmp_path, example_pillar):
    lab = make_lab(example_pillar, tmp_path / "srv")
    src = publish_image(lab.netnode.images_dir, "b1")
    with pytest.raises(netlab_roots.RootError, match="reflink"):
        netlab_roots.clone_tree(src, tmp_path / "clone", method="reflink")
    assert not os.path.exists(tmp_path / "clone")  # nothing half-copied left behind


def test_snapshot_when_image_is_a_subvolume(btrfs_mount, example_pillar):
    lab = make_lab(example_pillar, btrfs_mount / "srv")
    src = publish_image(lab.netnode.images_dir, "b1", subvolume=True)
    assert netlab_roots.is_subvolume(src)
    res = netlab_roots.reset_root(lab, "nuc1", netlab_slice.identity(lab, "nuc1", 1), key())
    assert res["method"] == "snapshot"
    assert netlab_roots.is_subvolume(res["path"])
    # reset again: the old subvolume is deleted, the new one in place
    res2 = netlab_roots.reset_root(lab, "nuc1", netlab_slice.identity(lab, "nuc1", 2), key())
    assert res2["replaced"] and res2["method"] == "snapshot"
    leftovers = [n for n in os.listdir(lab.netnode.roots_dir) if n.startswith(".")]
    assert leftovers == []
    out = subprocess.run(["btrfs", "subvolume", "list", str(btrfs_mount)],
                         capture_output=True, text=True, check=True).stdout
    assert out.count("roots/nuc1") == 1


def test_reflink_when_image_is_a_plain_dir_on_btrfs(btrfs_mount, example_pillar):
    lab = make_lab(example_pillar, btrfs_mount / "srv")
    src = publish_image(lab.netnode.images_dir, "b1", subvolume=False)
    assert not netlab_roots.is_subvolume(src)
    res = netlab_roots.reset_root(lab, "nuc1", netlab_slice.identity(lab, "nuc1", 1), key())
    assert res["method"] == "reflink"
    assert not netlab_roots.is_subvolume(res["path"])
    with open(os.path.join(res["path"], "usr/bin/tool"), "rb") as a, \
            open(os.path.join(src, "usr/bin/tool"), "rb") as b:
        assert a.read() == b.read()


def test_under_ganesha_a_subvolume_image_is_reflinked_never_snapshotted(
        btrfs_mount, example_pillar):
    """nfs-ganesha (Debian's build) refuses a client's mount of a btrfs subvolume:
    under it a root reset makes a plain directory, by reflink, even from an image
    that is a subvolume, and an explicit snapshot is refused with the reason."""
    lab = make_lab(example_pillar, btrfs_mount / "srv", nfs_server="ganesha")
    src = publish_image(lab.netnode.images_dir, "b1", subvolume=True)
    with pytest.raises(netlab_roots.RootError, match="nfs-ganesha.*cannot export"):
        netlab_roots.reset_root(lab, "nuc1", netlab_slice.identity(lab, "nuc1", 1), key(),
                                method="snapshot")
    assert not os.path.lexists(netlab_roots.root_path(lab, "nuc1"))
    res = netlab_roots.reset_root(lab, "nuc1", netlab_slice.identity(lab, "nuc1", 1), key())
    assert res["method"] == "reflink"
    assert not netlab_roots.is_subvolume(res["path"])
    assert os.stat(res["path"]).st_dev == os.stat(str(btrfs_mount)).st_dev
    cost = netlab_roots.reset_cost(lab)
    assert cost["method"] == "reflink" and cost["note"] is None
    # the same storage with the kernel NFS server: snapshots
    lab_k = make_lab(example_pillar, btrfs_mount / "srv", nfs_server="kernel")
    assert netlab_roots.reset_cost(lab_k)["method"] == "snapshot"


def test_snapshot_not_used_across_filesystems(btrfs_mount, tmp_path, example_pillar):
    """Image subvolume on btrfs, roots on ext4: falls back to a copy."""
    lab = make_lab(example_pillar, btrfs_mount / "srv")
    src = publish_image(lab.netnode.images_dir, "b1", subvolume=True)
    other = tmp_path / "ext4-roots"
    other.mkdir()
    assert netlab_roots.detect_method(src, str(other)) == "copy"


def test_remove_tree_deletes_nested_subvolumes(btrfs_mount):
    top = btrfs_mount / "top"
    subprocess.run(["btrfs", "subvolume", "create", str(top)], check=True,
                   capture_output=True)
    (top / "var/lib").mkdir(parents=True)
    subprocess.run(["btrfs", "subvolume", "create", str(top / "var/lib/machines")],
                   check=True, capture_output=True)
    (top / "var/lib/machines/f").write_text("x")
    netlab_roots.remove_tree(top)
    assert not top.exists()


# --------------------------------------------------------------------------- identity
def test_identity_written_into_root(tmp_path, example_pillar):
    lab = make_lab(example_pillar, tmp_path / "srv")
    publish_image(lab.netnode.images_dir, "b1")
    ident = netlab_slice.identity(lab, "nuc1", 3)
    priv, pub = key()
    res = netlab_roots.reset_root(lab, "nuc1", ident, (priv, pub))
    root = res["path"]
    assert root == os.path.join(lab.netnode.roots_dir, "nuc1")

    def read(rel):
        with open(os.path.join(root, rel)) as fh:
            return fh.read()

    assert read("etc/hostname") == "nuc1\n"
    assert "192.168.42.11\tnuc1.lab.example nuc1" in read("etc/hosts")
    assert read("etc/machine-id") == ident["machine_id"] + "\n"
    assert len(ident["machine_id"]) == 32
    # the image's symlink dbus machine-id still points at /etc/machine-id
    assert os.readlink(os.path.join(root, "var/lib/dbus/machine-id")) == "/etc/machine-id"
    assert read("etc/openvswitch/system-id.conf") == ident["ovn_uuid"] + "\n"
    assert read("etc/salt/minion_id") == "nuc1\n"
    conf = read("etc/salt/minion.d/netlab.conf")
    assert "id: nuc1" in conf and "master: 192.168.42.2" in conf
    assert read("etc/salt/pki/minion/minion.pem") == priv
    assert read("etc/salt/pki/minion/minion.pub") == pub
    assert stat.S_IMODE(os.stat(os.path.join(root, "etc/salt/pki/minion/minion.pem"))
                        .st_mode) == 0o400
    assert netlab_roots.read_identity(root)["generation"] == "3"
    # fresh SSH host keys: the image's key is gone, new ones per type exist
    for kt in netlab_roots.SSH_KEY_TYPES:
        keyf = os.path.join(root, "etc/ssh/ssh_host_{}_key".format(kt))
        assert os.path.exists(keyf) and os.path.exists(keyf + ".pub")
        assert "IMAGE KEY" not in read("etc/ssh/ssh_host_{}_key".format(kt))
    # the image itself is untouched
    src = netlab_roots.image_rootfs(lab)
    assert open(os.path.join(src, "etc/machine-id")).read() == ""
    assert not os.path.exists(os.path.join(src, "etc/hostname"))


def test_nodes_get_distinct_identities_and_keys(tmp_path, example_pillar):
    lab = make_lab(example_pillar, tmp_path / "srv")
    publish_image(lab.netnode.images_dir, "b1")
    a = netlab_roots.reset_root(lab, "nuc1", netlab_slice.identity(lab, "nuc1", 1), key())
    b = netlab_roots.reset_root(lab, "nuc3", netlab_slice.identity(lab, "nuc3", 1), key())
    files = ("etc/machine-id", "etc/openvswitch/system-id.conf",
             "etc/ssh/ssh_host_ed25519_key.pub", "etc/salt/pki/minion/minion.pub",
             "etc/hostname")
    for rel in files:
        assert open(os.path.join(a["path"], rel)).read() != \
            open(os.path.join(b["path"], rel)).read(), rel


def test_reset_replaces_writes_and_changes_identity(tmp_path, example_pillar):
    lab = make_lab(example_pillar, tmp_path / "srv")
    publish_image(lab.netnode.images_dir, "b1")
    first = netlab_roots.reset_root(lab, "nuc1", netlab_slice.identity(lab, "nuc1", 1), key())
    root = first["path"]
    with open(os.path.join(root, "etc/written-by-node"), "w") as fh:
        fh.write("x")
    mid1 = open(os.path.join(root, "etc/machine-id")).read()
    ssh1 = open(os.path.join(root, "etc/ssh/ssh_host_ed25519_key.pub")).read()
    second = netlab_roots.reset_root(lab, "nuc1", netlab_slice.identity(lab, "nuc1", 2),
                                     key())
    assert second["replaced"] and second["path"] == root
    assert not os.path.exists(os.path.join(root, "etc/written-by-node"))
    assert open(os.path.join(root, "etc/machine-id")).read() != mid1
    assert open(os.path.join(root, "etc/ssh/ssh_host_ed25519_key.pub")).read() != ssh1
    assert sorted(os.listdir(lab.netnode.roots_dir)) == ["nuc1"]


def test_failed_reset_keeps_old_root(tmp_path, example_pillar, monkeypatch):
    lab = make_lab(example_pillar, tmp_path / "srv")
    publish_image(lab.netnode.images_dir, "b1")
    netlab_roots.reset_root(lab, "nuc1", netlab_slice.identity(lab, "nuc1", 1), key())
    root = os.path.join(lab.netnode.roots_dir, "nuc1")
    open(os.path.join(root, "keep"), "w").close()

    def broken(*a, **k):
        raise netlab_roots.RootError("ssh-keygen exploded")

    monkeypatch.setattr(netlab_roots, "gen_ssh_host_keys", broken)
    with pytest.raises(netlab_roots.RootError, match="node nuc1: reset of .* exploded"):
        netlab_roots.reset_root(lab, "nuc1", netlab_slice.identity(lab, "nuc1", 2), key())
    assert os.path.exists(os.path.join(root, "keep"))
    assert sorted(os.listdir(lab.netnode.roots_dir)) == ["nuc1"]


def test_missing_image_is_a_clear_error(tmp_path, example_pillar):
    lab = make_lab(example_pillar, tmp_path / "srv")
    with pytest.raises(netlab_roots.RootError, match="no current image.*netlab.image"):
        netlab_roots.reset_root(lab, "nuc1", netlab_slice.identity(lab, "nuc1", 1), key())
    assert not os.path.exists(os.path.join(lab.netnode.roots_dir, "nuc1"))


def test_stateless_node_gets_identity_tree_only(tmp_path, example_pillar):
    lab = make_lab(example_pillar, tmp_path / "srv")
    publish_image(lab.netnode.images_dir, "b1")
    res = netlab_roots.reset_root(lab, "nuc2", netlab_slice.identity(lab, "nuc2", 1), key())
    assert res["method"] == "identity"
    assert res["path"].endswith("/nuc2.identity")
    assert not os.path.exists(os.path.join(lab.netnode.roots_dir, "nuc2"))
    assert not os.path.exists(os.path.join(res["path"], "usr/bin/tool"))
    assert open(os.path.join(res["path"], "etc/salt/minion_id")).read() == "nuc2\n"


# --------------------------------------------------------------------------- enrolment
def test_preaccept_replaces_key_and_clears_other_lists(tmp_path, example_pillar):
    lab = make_lab(example_pillar, tmp_path / "srv")
    pki = tmp_path / "pki"
    for sub in ("minions_pre", "minions_rejected", "minions_denied"):
        (pki / sub).mkdir(parents=True)
        (pki / sub / "nuc1").write_text("old")
    (pki / "minions_pre" / "intruder").write_text("pub")
    _, pub1 = key()
    netlab_roots_keys.preaccept_key(str(pki), "nuc1", pub1)
    assert netlab_roots_keys.accepted_key(str(pki), "nuc1") == pub1
    for sub in ("minions_pre", "minions_rejected", "minions_denied"):
        assert not (pki / sub / "nuc1").exists()
    _, pub2 = key()
    netlab_roots_keys.preaccept_key(str(pki), "nuc1", pub2)
    assert netlab_roots_keys.accepted_key(str(pki), "nuc1") == pub2
    rep = netlab_roots_keys.key_report(str(pki), lab)
    assert rep["accepted"] == ["nuc1"]
    assert rep["not_in_lab"] == ["intruder"]
    assert rep["lab_nodes_without_key"] == ["nuc2", "nuc3"]


def test_minion_keys_are_salt_format():
    priv, pub = key()
    assert priv.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert pub.startswith("-----BEGIN PUBLIC KEY-----")
    assert key()[1] != pub


def test_write_minion_key_only_touches_the_key(tmp_path, example_pillar):
    """What ``salt-run netlab.enrol`` does: a new key, nothing else changes."""
    lab = make_lab(example_pillar, tmp_path / "srv")
    publish_image(lab.netnode.images_dir, "b1")
    res = netlab_roots.reset_root(lab, "nuc1", netlab_slice.identity(lab, "nuc1", 1), key())
    root = res["path"]
    ssh = open(os.path.join(root, "etc/ssh/ssh_host_ed25519_key.pub")).read()
    mid = open(os.path.join(root, "etc/machine-id")).read()
    open(os.path.join(root, "etc/salt/pki/minion/minion_master.pub"), "w").close()
    priv, pub = key()
    netlab_roots_keys.write_minion_key(root, (priv, pub))
    assert open(os.path.join(root, "etc/salt/pki/minion/minion.pub")).read() == pub
    assert not os.path.exists(os.path.join(root, "etc/salt/pki/minion/minion_master.pub"))
    assert open(os.path.join(root, "etc/ssh/ssh_host_ed25519_key.pub")).read() == ssh
    assert open(os.path.join(root, "etc/machine-id")).read() == mid


def test_reset_cleans_orphans_of_interrupted_resets_and_keeps_roots_private(
        tmp_path, example_pillar):
    lab = make_lab(example_pillar, tmp_path / "srv")
    publish_image(lab.netnode.images_dir, "b1")
    roots = lab.netnode.roots_dir
    # what a reset killed half-way leaves behind (other pids), for nuc1 and others
    orphans = [".nuc1.new-4242", ".nuc1.old-4243", ".nuc2.identity.new-17"]
    keep = [".nuc10.new-1", "nuc3"]
    for name in orphans + keep:
        os.makedirs(os.path.join(roots, name, "etc"))
    os.chmod(roots, 0o755)
    netlab_roots.reset_root(lab, "nuc1", netlab_slice.identity(lab, "nuc1", 1),
                            ("PRIV", "PUB"), method="copy")
    netlab_roots.reset_root(lab, "nuc2", netlab_slice.identity(lab, "nuc2", 1),
                            ("PRIV", "PUB"))
    left = sorted(os.listdir(roots))
    assert left == sorted(keep + ["nuc1", "nuc2.identity"])
    assert stat.S_IMODE(os.stat(roots).st_mode) == 0o700


class _St:
    def __init__(self, dev):
        self.st_dev = dev


def test_storage_layout_warns_when_roots_share_a_filesystem(tmp_path, example_pillar):
    lab = make_lab(example_pillar, "/srv/netlab")
    devs = {"/": 1, "/srv": 1, "/srv/netlab": 1, "/srv/netlab/roots": 1}

    def fake_stat(path):
        if path not in devs:
            raise FileNotFoundError(path)
        return _St(devs[path])

    shared = netlab_roots.storage_layout(lab, stat_fn=fake_stat)
    assert not shared["own_filesystem"]
    assert "/srv/netlab/roots" in shared["warning"] and "same filesystem" in shared["warning"]
    devs.update({"/srv/netlab": 2, "/srv/netlab/roots": 2})   # storage mounted
    assert netlab_roots.storage_layout(lab, stat_fn=fake_stat) == {
        "own_filesystem": True, "warning": None}
    del devs["/srv/netlab/roots"]                               # not made yet
    assert netlab_roots.storage_layout(lab, stat_fn=fake_stat)["own_filesystem"]


# --------------------------------------------------------------------------- reset cost
def test_reset_cost_notes_copies_with_the_image_size(tmp_path, example_pillar):
    lab = make_lab(example_pillar, tmp_path / "srv")
    assert netlab_roots.reset_cost(lab)["method"] is None  # no image yet: nothing said
    src = publish_image(lab.netnode.images_dir, "b1")
    with open(os.path.join(os.path.dirname(src), "manifest.json"), "w") as fh:
        fh.write('{"sizes": {"rootfs_mb": 742}}')
    cost = netlab_roots.reset_cost(lab)
    assert cost["method"] == "copy" and cost["image_mb"] == 742
    assert "full copies of the image (742 MB)" in cost["note"]
    assert "netnode:storage on btrfs" in cost["note"]
    assert str(tmp_path / "srv") in cost["note"]  # where: the roots' parent that exists


def test_reset_cost_is_quiet_for_snapshots(btrfs_mount, example_pillar):
    lab = make_lab(example_pillar, btrfs_mount / "srv")
    publish_image(lab.netnode.images_dir, "b1", subvolume=True)
    cost = netlab_roots.reset_cost(lab)
    assert cost["method"] == "snapshot" and cost["note"] is None


def test_reset_cost_is_quiet_without_persistent_nodes(tmp_path, example_pillar):
    raw = copy.deepcopy(example_pillar)
    raw["netnode"]["storage"] = str(tmp_path / "srv")
    for node in raw["nodes"].values():
        node["root"] = {"mode": "stateless"}
    lab = netlab_lab.load(raw)
    publish_image(lab.netnode.images_dir, "b1")
    assert netlab_roots.reset_cost(lab) == {"method": None, "image_mb": None, "note": None}
