"""The spare root (netlab_roots_spare): made ahead of a reset, taken by the next
persistent node's reset with a rename, used once, never of another build."""

import copy
import os

import pytest

import netlab_lab
import netlab_roots
import netlab_roots_keys
import netlab_roots_spare
import netlab_slice


@pytest.fixture
def lab(tmp_path, example_pillar):
    raw = copy.deepcopy(example_pillar)
    raw["netnode"]["storage"] = str(tmp_path / "srv")
    return netlab_lab.load(raw)


def publish(lab, build):
    """A small image build made current (rootfs with a file and an SSH dir)."""
    rootfs = os.path.join(lab.netnode.images_dir, build, "rootfs")
    os.makedirs(os.path.join(rootfs, "etc", "ssh"))
    os.makedirs(os.path.join(rootfs, "usr", "bin"))
    with open(os.path.join(rootfs, "usr", "bin", "tool"), "wb") as fh:
        fh.write(os.urandom(4096))
    cur = os.path.join(lab.netnode.images_dir, "current")
    if os.path.lexists(cur):
        os.unlink(cur)
    os.symlink(build, cur)
    return rootfs


def reset(lab, node="nuc1", gen=1, **kw):
    return netlab_roots.reset_root(lab, node, netlab_slice.identity(lab, node, gen),
                                   netlab_roots_keys.gen_minion_keys(2048), **kw)


def host_key(root):
    with open(os.path.join(root, "etc", "ssh", "ssh_host_ed25519_key.pub"),
              encoding="utf-8") as fh:
        return fh.read()


def spares(lab):
    return sorted(n for n in os.listdir(lab.netnode.roots_dir) if n.startswith(".spare-"))


def test_a_reset_takes_the_spare_once_with_its_fresh_host_keys(lab):
    publish(lab, "b1")
    made = netlab_roots.prepare_spare(lab)
    assert made["made"] and made["method"] == "copy"
    assert spares(lab) == [".spare-copy-b1"]
    spare_key = host_key(made["path"])
    assert oct(os.stat(lab.netnode.roots_dir).st_mode & 0o777) == "0o700"
    # a second prepare finds it: nothing is cloned twice
    assert netlab_roots.prepare_spare(lab) == dict(made, made=False, seconds=0.0)

    first = reset(lab, "nuc1")
    assert first["spare"] is True and first["method"] == "copy"
    assert first["clone_seconds"] == 0.0 and first["build"] == "b1"
    assert host_key(first["path"]) == spare_key      # the spare's keys, not regenerated
    with open(os.path.join(first["path"], "etc", "hostname"), encoding="utf-8") as fh:
        assert fh.read() == lab.node("nuc1").hostname + "\n"
    assert spares(lab) == []                          # taken: gone

    second = reset(lab, "nuc3")                       # no spare left: clones
    assert second["spare"] is False and second["method"] == "copy"
    assert host_key(second["path"]) != spare_key

    netlab_roots.prepare_spare(lab)
    assert host_key(netlab_roots_spare.find(lab.netnode.roots_dir, "b1")[0]) not in (
        spare_key, host_key(second["path"]))         # every spare has keys of its own


def test_a_spare_of_another_build_is_never_used_and_goes_at_the_next_prepare(lab):
    publish(lab, "b1")
    netlab_roots.prepare_spare(lab)
    publish(lab, "b2")
    res = reset(lab)
    assert res["spare"] is False and res["build"] == "b2"
    assert spares(lab) == [".spare-copy-b1"]
    netlab_roots.prepare_spare(lab)
    assert spares(lab) == [".spare-copy-b2"]


def test_an_explicit_method_clones_and_leaves_the_spare(lab):
    publish(lab, "b1")
    netlab_roots.prepare_spare(lab)
    res = reset(lab, method="copy")
    assert res["spare"] is False and spares(lab) == [".spare-copy-b1"]


def test_half_made_spares_of_dead_processes_are_removed(lab):
    publish(lab, "b1")
    roots = lab.netnode.roots_dir
    os.makedirs(roots)
    dead = os.path.join(roots, ".spare-b1.new-999999999")   # no such pid
    mine = os.path.join(roots, ".spare-b1.new-{}".format(os.getppid()))  # alive
    os.makedirs(dead)
    os.makedirs(mine)
    netlab_roots.prepare_spare(lab)
    assert not os.path.exists(dead) and os.path.isdir(mine)
    assert ".spare-copy-b1" in spares(lab)


def test_of_two_takers_one_gets_the_spare(lab):
    publish(lab, "b1")
    netlab_roots.prepare_spare(lab)
    roots = lab.netnode.roots_dir
    assert netlab_roots_spare.take(roots, "b1", os.path.join(roots, "x")) == "copy"
    assert netlab_roots_spare.take(roots, "b1", os.path.join(roots, "y")) is None
    assert not os.path.exists(os.path.join(roots, "y"))


def test_no_spare_without_an_image_or_without_persistent_nodes(lab, example_pillar, tmp_path):
    assert netlab_roots.prepare_spare(lab) is None           # no image yet
    raw = copy.deepcopy(example_pillar)
    raw["netnode"]["storage"] = str(tmp_path / "srv2")
    for node in raw["nodes"].values():
        node["root"] = {"mode": "stateless"}
    stateless = netlab_lab.load(raw)
    publish(stateless, "b1")
    assert netlab_roots.prepare_spare(stateless) is None
    assert not os.path.exists(stateless.netnode.roots_dir) or spares(stateless) == []


def test_a_failed_clone_leaves_nothing_behind(lab, monkeypatch):
    publish(lab, "b1")

    def broken(src, dst, method="auto", snapshots=True):
        os.makedirs(dst)
        raise netlab_roots.RootError("disk full")

    monkeypatch.setattr(netlab_roots, "clone_tree", broken)
    with pytest.raises(netlab_roots.RootError, match="spare root of build b1: disk full"):
        netlab_roots.prepare_spare(lab)
    assert spares(lab) == []


def test_a_deferred_delete_leaves_the_old_root_until_remove_old_roots(lab):
    publish(lab, "b1")
    first = reset(lab, "nuc1")
    with open(os.path.join(first["path"], "etc", "mark"), "w", encoding="utf-8") as fh:
        fh.write("old life")
    second = reset(lab, "nuc1", gen=2, defer_delete=True)
    roots = lab.netnode.roots_dir
    old = ".nuc1.old-{}".format(os.getpid())
    assert second["replaced"] and old in os.listdir(roots)
    assert not os.path.exists(os.path.join(second["path"], "etc", "mark"))
    # a running reimage's old roots (its process is alive) are left to it
    other = ".nuc3.old-{}".format(os.getppid())
    os.makedirs(os.path.join(roots, other))
    assert netlab_roots.remove_old_roots(lab) == [old]
    assert sorted(os.listdir(roots)) == sorted([other, "nuc1"])
