"""
A node pins its master, start events count only when the node answers, and a node
keeps the image build its root came from until it is reimaged.

- the master's public key and its fingerprint go into every root a reset or an
  enrolment writes (a reimaged node refuses any other master);
- a ``salt/minion/<id>/start`` event is a hint: a node counts as started only when
  the event's data names that node and a direct ``test.ping`` to it is answered;
- each node's iPXE script and pxelinux config use the kernel and initrd of its
  recorded build, stateless nodes mount that build's rootfs, every build a node
  uses is exported and never pruned, and the status marks nodes on an older build.
"""

import copy
import json
import os

import pytest

import netlab_netnode
import netlab_image
import netlab_image_store
import netlab_lab
import netlab_lifecycle as lc
import netlab_roots
import netlab_roots_keys
import netlab_slice

B1 = "20260101T000000Z-aaaaaaaaaaaa"
B2 = "20260201T000000Z-bbbbbbbbbbbb"
B3 = "20260301T000000Z-cccccccccccc"


@pytest.fixture
def lab(example_pillar, tmp_path):
    raw = copy.deepcopy(example_pillar)
    raw["netnode"]["storage"] = str(tmp_path / "srv")
    raw["nodes"]["nuc3"]["root"] = {"mode": "stateless"}
    raw["nodes"]["nuc2"]["boot"] = {"loader": "pxelinux", "firmware": "bios"}
    return netlab_lab.load(raw)


def make_build(lab, build_id, current=True):
    """A finished build as netlab_image lays it out (rootfs, kernel, initrd, manifest,
    boot files staged under http/tftp images/<build>)."""
    bdir = os.path.join(lab.netnode.images_dir, build_id)
    os.makedirs(os.path.join(bdir, "rootfs", "etc"))
    for name in ("vmlinuz", "initrd.img"):
        with open(os.path.join(bdir, name), "w") as fh:
            fh.write(build_id)
    with open(os.path.join(bdir, "manifest.json"), "w") as fh:
        json.dump({"build_id": build_id, "input_hash": build_id[-12:] * 5}, fh)
    if current:
        cur = os.path.join(lab.netnode.images_dir, "current")
        if os.path.lexists(cur):
            os.unlink(cur)
        os.symlink(build_id, cur)
        netlab_image.publish(lab, build_id)
    else:
        netlab_image_store._stage_boot_files(lab, build_id)  # pylint: disable=protected-access
    return bdir


def master_key():
    return netlab_roots_keys.gen_minion_keys()[1]


# --------------------------------------------------------------------------- pinned master
def test_master_finger_is_what_salt_compares(tmp_path):
    import salt.utils.crypt  # pylint: disable=import-outside-toplevel

    pub = master_key()
    path = tmp_path / "master.pub"
    path.write_text(pub)
    assert netlab_roots_keys.master_finger(pub) == salt.utils.crypt.pem_finger(
        str(path), sum_type="sha256")


def test_reset_pins_the_master_in_a_persistent_root(lab):
    make_build(lab, B1)
    mpub = master_key()
    res = netlab_roots.reset_root(lab, "nuc1", netlab_slice.identity(lab, "nuc1", 1),
                                  netlab_roots_keys.gen_minion_keys(), master_pub=mpub)
    pki = os.path.join(res["path"], "etc/salt/pki/minion")
    # the minion compares the key a master presents with this cached one
    assert open(os.path.join(pki, "minion_master.pub")).read() == mpub
    conf = open(os.path.join(res["path"], "etc/salt/minion.d/netlab.conf")).read()
    assert "master_finger: '{}'".format(netlab_roots_keys.master_finger(mpub)) in conf
    assert res["build"] == B1
    assert netlab_roots.read_identity(res["path"])["build"] == B1


def test_reset_pins_the_master_in_a_stateless_identity_tree(lab):
    make_build(lab, B1)
    mpub = master_key()
    res = netlab_roots.reset_root(lab, "nuc3", netlab_slice.identity(lab, "nuc3", 1),
                                  netlab_roots_keys.gen_minion_keys(), master_pub=mpub)
    assert res["method"] == "identity" and res["build"] == B1
    assert open(os.path.join(res["path"], "etc/salt/pki/minion/minion_master.pub")
                ).read() == mpub


def test_enrolment_key_write_pins_the_master(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    mpub = master_key()
    written = netlab_roots_keys.write_minion_key(str(root), netlab_roots_keys.gen_minion_keys(), mpub)
    assert "etc/salt/pki/minion/minion_master.pub" in written
    assert (root / "etc/salt/pki/minion/minion_master.pub").read_text() == mpub


# --------------------------------------------------------------------------- start events
class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def feed(events, clock):
    """next_event over a list of (time, event): the clock jumps to each event."""
    queue = list(events)

    def next_event(wait):
        if queue and queue[0][0] <= clock.t + wait:
            at, ev = queue.pop(0)
            clock.t = max(clock.t, at)
            return lc.start_event_node(ev)
        clock.t += wait
        return None

    return next_event


def start(node, sender=None):
    return {"tag": "salt/minion/{}/start".format(node),
            "data": {"id": sender or node, "cmd": "_minion_event",
                     "data": "Minion {} started".format(node)}}


def test_start_fired_by_another_minion_does_not_count():
    clock = Clock()
    asked = []

    def confirm(node):
        asked.append(node)
        return False  # nuc2's minion is not there

    # nuc1 runs `salt-call event.fire_master '{}' salt/minion/nuc2/start`: the master
    # puts nuc1's (authenticated) id in the data
    got = lc.wait_for_starts(feed([(1, start("nuc2", sender="nuc1"))], clock), ["nuc2"],
                             {"nuc2": 30}, confirm, clock=clock)
    assert got == {}
    assert asked == []  # not even worth a ping


def test_a_crafted_start_naming_the_node_needs_the_node_to_answer():
    clock = Clock()
    asked = []

    def confirm(node):
        asked.append((node, clock.t))
        return False

    # a crafted event list can carry any data, the node's own id included
    got = lc.wait_for_starts(feed([(1, start("nuc2"))], clock), ["nuc2"], {"nuc2": 30},
                             confirm, clock=clock, retry=5)
    assert got == {}
    assert asked and all(n == "nuc2" for n, _ in asked)
    assert all(t <= 30 for _, t in asked)


def test_a_real_start_counts_once_the_node_answers():
    clock = Clock()
    answers = iter([False, True])  # the first ping races the minion's start

    got = lc.wait_for_starts(feed([(4, start("nuc1", sender="nuc3")), (7, start("nuc1")),
                                   (9, start("nuc3"))], clock),
                             ["nuc1", "nuc3"], {"nuc1": 60, "nuc3": 60},
                             lambda n: n == "nuc3" or next(answers), clock=clock, retry=5)
    assert set(got) == {"nuc1", "nuc3"}
    assert got["nuc3"] == 9
    assert got["nuc1"] == 12  # 7 (event, no answer) + 5 (asked again, answered)


def test_a_start_after_the_deadline_does_not_count():
    clock = Clock()
    got = lc.wait_for_starts(feed([(50, start("nuc1"))], clock), ["nuc1"], {"nuc1": 40},
                             lambda n: True, clock=clock)
    assert got == {}


def test_other_events_are_not_starts():
    assert lc.start_event_node({"tag": "salt/minion/nuc1/start", "data": "text"}) is None
    assert lc.start_event_node({"tag": "salt/job/1/ret/nuc1", "data": {"id": "nuc1"}}) \
        is None
    assert lc.start_event_node(None) is None
    assert lc.start_event_node(start("nuc1")) == "nuc1"


# --------------------------------------------------------------------------- builds
def test_a_node_boots_the_build_its_root_came_from(lab):
    make_build(lab, B1)
    lc.set_state(lab, "nuc1", "reimaging", generation=1, build=B1)
    lc.set_state(lab, "nuc2", "reimaging", generation=1, build=B1)
    lc.set_state(lab, "nuc3", "reimaging", generation=1, build=B1)
    make_build(lab, B2)  # a rebuild while they run
    data = netlab_netnode.prepare(lab)
    s1 = data["scripts"]["nuc1.ipxe"]
    assert s1["kernel"].endswith("/images/{}/vmlinuz".format(B1))
    assert s1["initrd"].endswith("/images/{}/initrd.img".format(B1))
    s3 = data["scripts"]["nuc3.ipxe"]
    b1_rootfs = os.path.join(lab.netnode.images_dir, B1, "rootfs")
    assert "nfsroot={}:{},".format(lab.netnode.ip, b1_rootfs) in s3["cmdline"]
    pxe = list(data["pxelinux"].values())[0]
    assert pxe["kernel"] == "images/{}/vmlinuz".format(B1)
    # the boot files the script names are there, over HTTP and TFTP
    for base in (lab.netnode.http_root, lab.netnode.tftp_root):
        assert os.path.isfile(os.path.join(base, "images", B1, "vmlinuz"))


def test_reimage_moves_a_node_to_the_new_build_others_stay(lab):
    make_build(lab, B1)
    for n in ("nuc1", "nuc3"):
        lc.set_state(lab, n, "reimaging", generation=1, build=B1)
    make_build(lab, B2)
    lc.set_state(lab, "nuc1", "reimaging", generation=2, build=B2)
    data = netlab_netnode.prepare(lab)
    assert "/images/{}/".format(B2) in data["scripts"]["nuc1.ipxe"]["kernel"]
    assert "/images/{}/".format(B1) in data["scripts"]["nuc3.ipxe"]["kernel"]


def test_a_node_never_reimaged_or_on_a_vanished_build_boots_current(lab):
    make_build(lab, B2)
    lc.set_state(lab, "nuc1", "reimaging", generation=1, build=B1)  # B1 is gone
    data = netlab_netnode.prepare(lab)
    for n in ("nuc1", "nuc2"):
        assert "/images/current/vmlinuz" in data["scripts"]["{}.ipxe".format(n)]["kernel"]


def test_every_build_a_stateless_node_uses_stays_exported(lab, example_pillar):
    raw = copy.deepcopy(example_pillar)
    raw["netnode"]["storage"] = lab.netnode.storage
    raw["nodes"]["nuc2"]["root"] = {"mode": "stateless"}
    raw["nodes"]["nuc3"]["root"] = {"mode": "stateless"}
    lab2 = netlab_lab.load(raw)
    make_build(lab2, B1)
    lc.set_state(lab2, "nuc3", "reimaging", generation=1, build=B1)
    make_build(lab2, B2)
    lc.set_state(lab2, "nuc2", "reimaging", generation=1, build=B2)
    ex = netlab_netnode.prepare(lab2)["exports"]
    images = {e["path"]: e for e in ex if e["key"].startswith("image:")}
    assert set(images) == {os.path.join(lab2.netnode.images_dir, b, "rootfs")
                           for b in (B1, B2)}
    assert all(e["clients"] == [{"client": lab2.network.cidr, "access": "ro"}]
               for e in images.values())
    assert len({e["id"] for e in ex}) == len(ex)
    # the root export of the persistent node is still there
    assert [e for e in ex if e["key"] == "root:nuc1"]


def test_prune_never_deletes_a_build_in_use(lab):
    make_build(lab, B1)
    lc.set_state(lab, "nuc1", "reimaging", generation=1, build=B1)
    make_build(lab, B2)
    make_build(lab, B3)
    deleted = netlab_image.prune(lab, keep=1)
    assert deleted == [B2]
    for b in (B1, B3):
        assert os.path.isdir(os.path.join(lab.netnode.images_dir, b, "rootfs"))
        assert os.path.isfile(os.path.join(lab.netnode.http_root, "images", b, "vmlinuz"))
    # once nuc1 is reimaged onto B3, B1 is no longer in use
    lc.set_state(lab, "nuc1", "reimaging", generation=2, build=B3)
    assert netlab_image.prune(lab, keep=1) == [B1]


def test_status_shows_each_nodes_build_and_marks_stale(lab):
    make_build(lab, B1)
    lc.set_state(lab, "nuc1", "reimaging", generation=1, build=B1)
    lc.set_state(lab, "nuc3", "reimaging", generation=1, build=B1)
    rows = {r["node"]: r for r in lc.status(lab)}
    assert rows["nuc1"]["build"] == B1 and not rows["nuc1"]["stale"]
    make_build(lab, B2)
    lc.set_state(lab, "nuc3", "reimaging", generation=2, build=B2)
    rows = {r["node"]: r for r in lc.status(lab)}
    assert rows["nuc1"]["stale"] and not rows["nuc3"]["stale"]
    assert rows["nuc2"]["build"] is None and not rows["nuc2"]["stale"]
    table = lc.status_table(lab).splitlines()
    line1 = [ln for ln in table if ln.startswith("nuc1")][0]
    assert B1 + " (stale)" in line1
    line3 = [ln for ln in table if ln.startswith("nuc3")][0]
    assert B2 in line3 and "(stale)" not in line3
