"""
Writes into a node's root never follow a symlink the node planted.

A node owns its root. Each test plants a symlink at one level of a path that the
networking node writes (identity, minion key, SSH host keys; enrolment is
``write_minion_key``) pointing to a directory or file outside the root, then
checks that the write is refused (a directory on the way) or replaces the
symlink (the file itself), and that nothing outside changed.
"""

import copy
import os
import stat

import pytest

import netlab_lab
import netlab_roots
import netlab_roots_keys
import netlab_safefs
import netlab_slice

FAKE_KEY = ("-----BEGIN RSA PRIVATE KEY-----\nnot a key\n", "-----BEGIN PUBLIC KEY-----\n")

# every directory the networking node writes into, inside a root
WRITTEN_DIRS = ["etc", "etc/salt", "etc/salt/pki", "etc/salt/pki/minion",
                "etc/salt/minion.d", "etc/ssh", "etc/openvswitch", "var", "var/lib",
                "var/lib/dbus"]
# every file it writes there
WRITTEN_FILES = ["etc/hostname", "etc/hosts", "etc/machine-id",
                 "etc/openvswitch/system-id.conf", "etc/salt/minion_id",
                 "etc/salt/minion.d/netlab.conf", "etc/salt/pki/minion/minion.pem",
                 "etc/salt/pki/minion/minion.pub", "etc/netlab-identity",
                 "etc/ssh/ssh_host_ed25519_key", "etc/ssh/ssh_host_rsa_key.pub",
                 "var/lib/dbus/machine-id"]


@pytest.fixture
def lab(example_pillar, tmp_path):
    raw = copy.deepcopy(example_pillar)
    raw["netnode"]["storage"] = str(tmp_path / "srv")
    return netlab_lab.load(raw)


@pytest.fixture
def root(tmp_path):
    """A node root as the image leaves it (every directory present)."""
    r = tmp_path / "srv" / "roots" / "nuc1"
    for d in WRITTEN_DIRS:
        (r / d).mkdir(parents=True, exist_ok=True)
    (r / "var/lib/dbus/machine-id").write_text("")
    return r


@pytest.fixture
def outside(tmp_path):
    """A directory of the networking node the node should never reach."""
    o = tmp_path / "netnode-private"
    o.mkdir(mode=0o755)
    (o / "keep").write_text("networking node data\n")
    os.chmod(o, 0o755)
    return o


def snapshot(d):
    return sorted((str(p.relative_to(d)), p.read_bytes() if p.is_file() else None,
                   stat.S_IMODE(p.lstat().st_mode)) for p in [d] + list(d.rglob("*")))


def plant_dir_symlink(root, rel, outside):
    target = root / rel
    if target.is_dir():
        for p in sorted(target.rglob("*"), reverse=True):
            p.unlink() if not p.is_dir() or p.is_symlink() else p.rmdir()
        target.rmdir()
    target.symlink_to(outside)


@pytest.mark.parametrize("rel", WRITTEN_DIRS)
def test_identity_refuses_a_symlinked_directory(lab, root, outside, rel):
    before = snapshot(outside)
    plant_dir_symlink(root, rel, outside)
    ident = netlab_slice.identity(lab, "nuc1", 1)
    with pytest.raises(netlab_roots.RootError) as exc:
        netlab_roots.write_identity(lab, "nuc1", str(root), ident, FAKE_KEY)
    assert "symlink" in str(exc.value)
    assert snapshot(outside) == before


@pytest.mark.parametrize("rel", ["etc", "etc/salt", "etc/salt/pki", "etc/salt/pki/minion"])
def test_enrol_key_write_refuses_a_symlinked_directory(root, outside, rel):
    """The reproduced case: etc/salt/pki replaced by a symlink; salt-run netlab.enrol
    wrote minion.pem/minion.pub there and chmodded it 0700."""
    before = snapshot(outside)
    plant_dir_symlink(root, rel, outside)
    with pytest.raises(netlab_roots.RootError) as exc:
        netlab_roots_keys.write_minion_key(str(root), FAKE_KEY)
    assert "symlink" in str(exc.value)
    assert snapshot(outside) == before


@pytest.mark.parametrize("rel", WRITTEN_FILES)
def test_a_symlinked_file_is_replaced_not_written_through(lab, root, outside, rel):
    victim = outside / "victim"
    victim.write_text("untouched\n")
    os.chmod(victim, 0o640)
    link = root / rel
    if link.exists():
        link.unlink()
    link.symlink_to(victim)
    ident = netlab_slice.identity(lab, "nuc1", 1)
    netlab_roots.write_identity(lab, "nuc1", str(root), ident, FAKE_KEY)
    assert victim.read_text() == "untouched\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o640
    if rel == "var/lib/dbus/machine-id":
        # the image's own symlink there is left as it is (it is not ours to write)
        assert link.is_symlink()
    else:
        assert not link.is_symlink() and link.is_file()


def test_a_dangling_symlinked_directory_is_not_created_through(lab, root, tmp_path):
    """A symlink to a directory that does not exist yet: mkdir must not create it."""
    target = tmp_path / "would-be-created"
    plant_dir_symlink(root, "etc/salt/pki", target)
    with pytest.raises(netlab_roots.RootError):
        netlab_roots_keys.write_minion_key(str(root), FAKE_KEY)
    assert not target.exists()


def test_pki_dir_made_0700_only_inside_the_root(root):
    netlab_roots_keys.write_minion_key(str(root), FAKE_KEY)
    pki = root / "etc/salt/pki/minion"
    assert stat.S_IMODE(pki.stat().st_mode) == 0o700
    assert (pki / "minion.pem").read_text() == FAKE_KEY[0]
    assert stat.S_IMODE((pki / "minion.pem").stat().st_mode) == 0o400


def test_read_identity_does_not_follow_a_symlink(root, outside):
    (outside / "secret").write_text("node=nuc9\ngeneration=99\n")
    (root / "etc/netlab-identity").symlink_to(outside / "secret")
    assert netlab_roots.read_identity(str(root)) == {}


def test_safefs_refuses_dot_dot(root):
    with pytest.raises(netlab_safefs.UnsafePath):
        netlab_safefs.write_file(str(root), "etc/../../escape", "x")
    assert not (root.parent / "escape").exists()
