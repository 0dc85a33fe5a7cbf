"""
The netlab.netnode states after an image rebuild, with salt-call --local: a node
keeps booting the build its root came from (its iPXE script names that build's
kernel and initrd), every build a stateless node uses stays exported, and a
reimage (recorded build) moves a node to the new build.
"""

import copy
import json
import os
import pathlib
import secrets

import netlab_image
import netlab_lab
import netlab_lifecycle
import netlab_saltcompat
from lib.saltlocal import SaltLocal, failed

REPO = pathlib.Path(__file__).resolve().parents[2]
B1 = "20260101T000000Z-aaaaaaaaaaaa"
B2 = "20260201T000000Z-bbbbbbbbbbbb"


def pillar_for(root):
    root = pathlib.Path(root)
    return {
        "network": {"interface": "nlfunc0", "cidr": "127.78.0.0/24", "domain": "lab.test",
                    "dhcp": {"mode": "proxy"}, "dns": {"upstream": []}},
        "netnode": {"ip": "127.78.0.2", "storage": str(root / "srv"),
                    "nfs": {"server": "kernel"},
                    "http": {"port": 20000 + secrets.randbelow(20000)}},
        "nodes": {
            "nuc1": {"mac": "52:54:00:79:00:11", "ip": "127.78.0.11", "role": "controller"},
            "nuc2": {"mac": "52:54:00:79:00:12", "ip": "127.78.0.12", "role": "compute"},
            "nuc3": {"mac": "52:54:00:79:00:13", "ip": "127.78.0.13", "role": "compute",
                     "root": {"mode": "stateless"}},
        },
        "image": {"salt_version": netlab_saltcompat.salt_version()},
        "lookup": {
            "service_control": "none", "install_packages": False,
            "run_dir": str(root / "run"),
            "dnsmasq": {"conf": str(root / "etc" / "dnsmasq.conf"),
                        "leasefile": str(root / "leases")},
            "nginx": {"conf": str(root / "etc" / "nginx-netlab.conf"), "user": "root"},
            "nfs": {"exports": str(root / "etc" / "netlab.exports")},
        },
    }


def build(lab, build_id):
    """A finished build made current, as netlab_image lays it out and publishes it."""
    bdir = os.path.join(lab.netnode.images_dir, build_id)
    os.makedirs(os.path.join(bdir, "rootfs", "etc"))
    for name in ("vmlinuz", "initrd.img"):
        with open(os.path.join(bdir, name), "w", encoding="utf-8") as fh:
            fh.write(build_id)
    with open(os.path.join(bdir, "manifest.json"), "w", encoding="utf-8") as fh:
        json.dump({"build_id": build_id}, fh)
    cur = os.path.join(lab.netnode.images_dir, "current")
    if os.path.lexists(cur):
        os.unlink(cur)
    os.symlink(build_id, cur)
    netlab_image.publish(lab, build_id)


def test_rebuild_keeps_each_node_on_its_build_until_reimaged(tmp_path):
    raw = pillar_for(tmp_path)
    lab = netlab_lab.load(copy.deepcopy(raw))
    (tmp_path / "srv" / "roots" / "nuc1").mkdir(parents=True)
    (tmp_path / "srv" / "roots" / "nuc3.identity").mkdir(parents=True)
    build(lab, B1)
    # nuc1 and nuc3 were reimaged from B1; nuc2 never was
    for n in ("nuc1", "nuc3"):
        netlab_lifecycle.set_state(lab, n, "reimaging", generation=1, build=B1)
    build(lab, B2)  # the rebuild, while they run
    salt = SaltLocal(tmp_path / "salt", REPO, {"netlab": raw})
    salt.sync()
    ret = salt.apply("netlab.netnode")
    assert not failed(ret), failed(ret)
    boot = tmp_path / "srv" / "http" / "boot"
    nuc1 = (boot / "nuc1.ipxe").read_text()
    assert "/images/{}/vmlinuz".format(B1) in nuc1
    assert "/images/{}/initrd.img".format(B1) in nuc1
    assert "/images/current/vmlinuz" in (boot / "nuc2.ipxe").read_text()
    b1_rootfs = os.path.join(lab.netnode.images_dir, B1, "rootfs")
    b2_rootfs = os.path.join(lab.netnode.images_dir, B2, "rootfs")
    assert "nfsroot=127.78.0.2:{},".format(b1_rootfs) in (boot / "nuc3.ipxe").read_text()
    exports = (tmp_path / "etc" / "netlab.exports").read_text().splitlines()
    assert [ln for ln in exports if ln.startswith(b1_rootfs + " ")]
    # the boot files the scripts name are published over HTTP
    assert (tmp_path / "srv" / "http" / "images" / B1 / "vmlinuz").read_text() == B1

    # a reimage of nuc3 records B2: its script and the exports follow, B1 is no
    # longer exported (nuc1's persistent root does not need the image export)
    netlab_lifecycle.set_state(lab, "nuc3", "reimaging", generation=2, build=B2)
    ret = salt.apply("netlab.netnode")
    assert not failed(ret), failed(ret)
    assert "nfsroot=127.78.0.2:{},".format(b2_rootfs) in (boot / "nuc3.ipxe").read_text()
    exports = (tmp_path / "etc" / "netlab.exports").read_text().splitlines()
    assert [ln for ln in exports if ln.startswith(b2_rootfs + " ")]
    assert not [ln for ln in exports if ln.startswith(b1_rootfs + " ")]
    # nuc1 still boots B1, which stays (a build in use is never pruned)
    assert "/images/{}/vmlinuz".format(B1) in (boot / "nuc1.ipxe").read_text()
    assert netlab_image.prune(lab, keep=1) == []
