"""
The networking node's boot services, as data: Lab -> what dnsmasq, nginx, the NFS
server and the boot files must contain.

Pure Python, no Salt. This module holds the boot chain's names, the per-node
boot data, the boot scripts, nginx's locations and the NFS exports;
:mod:`netlab_boot_dhcp` the dnsmasq configuration (and what to add to another
DHCP server); :mod:`netlab_netnode` puts both together for the ``netlab.netnode``
states (through ``netlab.boot_report``), which render the Jinja templates in
``netlab/files/netnode/``; unit tests check the data and the rendered text.

Boot chain (docs/networking.rst has the picture)::

    firmware PXE --DHCP(opt 93)--> undionly.kpxe (BIOS) | ipxe.efi (UEFI)  [TFTP]
    iPXE --DHCP(user class iPXE)--> http://<netnode>:<port>/boot/<node>.ipxe [HTTP]
    script --> kernel + initrd over HTTP, root over NFS (per-node export)
    legacy (node boot:loader pxelinux): pxelinux.0 + pxelinux.cfg/01-<mac> [TFTP]

Rules kept here (and tested in test/unit/test_boot.py):

* one ``dhcp-host`` line per MAC (two lines for one MAC silently drop tags), each
  with ``set:known`` and a per-node tag; every boot answer (``dhcp-boot``,
  ``pxe-service``) needs a node's tag, so a machine that is not in pillar never
  gets one; ``dhcp-ignore=tag:!known`` (no answer at all) in every mode but full
  mode with a ``pool``, where other machines get a pool address (and still no
  boot answer);
* dnsmasq binds to ``network:interface`` only;
* each persistent root is exported to its node's IP only (rw, no_root_squash); the
  shared stateless image read-only to the lab subnet.
"""

import os
import re
import zlib

import netlab_cache_config
import netlab_lab

BOOT_DIR = "boot"               # under http_root: boot.ipxe, <node>.ipxe
IPXE_BIOS = "undionly.kpxe"     # tftp_root names
IPXE_EFI = "ipxe.efi"
PXELINUX = "pxelinux.0"
LDLINUX = "ldlinux.c32"
PXELINUX_CFG = "pxelinux.cfg"
IMAGE_LINK = "images/current"   # under http_root (and tftp_root, a symlink): the image build's boot files
KERNEL = "vmlinuz"
INITRD = "initrd.img"
# option 93 client architectures: 6 IA32 EFI, 7 x86-64 EFI (BC), 9 x86-64 EFI
EFI_ARCHES = (7, 9)


class BootError(ValueError):
    """The lab cannot be booted as configured; the message names the pillar key."""


def tag(node):
    """The dnsmasq tag of a node (``nl-<id>``)."""
    return "nl-" + node.id


def http_base(lab):
    return "http://{}:{}".format(lab.netnode.ip, lab.netnode.http_port)


def image_root(lab, realpath=os.path.realpath, build=None):
    """The shared image rootfs of ``build``, or the current one, resolved (the
    ``current`` symlink names a build)."""
    return realpath(os.path.join(lab.netnode.images_dir, build or "current", "rootfs"))


def boot_build(lab, node, builds=None, exists=os.path.isdir):
    """The image build ``node`` boots: the build its root came from (``builds``:
    ``{node id: build id}`` as its last reimage recorded, netlab_lifecycle.node_builds)
    while that build is there; otherwise None, meaning the current build.

    A node keeps booting the kernel and initrd of its root's build after a newer
    image is built (a persistent root has that kernel's /lib/modules only); a
    reimage moves it to the new build."""
    build = (builds or {}).get(node.id)
    if build and exists(os.path.join(lab.netnode.images_dir, build, "rootfs")):
        return build
    return None


def node_root(lab, node, realpath=os.path.realpath, build=None):
    """The NFS root a node mounts: its own root, or the shared image of its build
    (stateless)."""
    if node.root_mode == "stateless":
        return image_root(lab, realpath, build)
    return os.path.join(lab.netnode.roots_dir, node.id)


# The address iPXE already leased, handed to the initramfs as a static configuration
# (klibc ipconfig's ip=<client>::<gateway>:<netmask>:<hostname>:<device>:off:<dns0>).
# iPXE expands the ${netX/...} settings of the interface it booted from when it runs
# the kernel line. A second DHCP exchange in the initramfs cost about 11 s per boot
# (its first DISCOVERs are lost while the NIC comes up, and klibc retries slowly);
# the lease is the same one either way, and nothing in the node renews it.
# BOOTIF names the interface by MAC, as pxelinux does, so a machine with several
# NICs configures the one it booted from. The DHCP domain, which a static ip= cannot
# carry, goes to netlab-netconf as netlab.domain.
IPXE_IP = ("ip=${netX/ip}::${netX/gateway}:${netX/netmask}:{hostname}::off:${netX/dns}",
           "BOOTIF=01-{mac}", "netlab.domain=${netX/domain}")


def _ip_params(node, loader):
    """How the initramfs configures the boot interface: the lease iPXE holds
    (loader ``ipxe``) or a DHCP exchange of its own (pxelinux, which has no
    settings to expand)."""
    if loader != "ipxe":
        return ["ip=dhcp"]
    return [p.replace("{hostname}", node.hostname).replace("{mac}", node.mac.replace(":", "-"))
            for p in IPXE_IP]


def kernel_cmdline(lab, node, realpath=os.path.realpath, build=None, loader="pxelinux"):
    """The kernel command line a node boots with (see docs/lifecycle.rst).
    ``loader``: ``ipxe`` for an iPXE script (see IPXE_IP), anything else gives the
    plain ``ip=dhcp`` line."""
    parts = [
        "root=/dev/nfs",
        "nfsroot={}:{},vers=3,tcp".format(lab.netnode.ip,
                                          node_root(lab, node, realpath, build)),
    ] + _ip_params(node, loader) + [
        "rw", "console=ttyS0,115200", "panic=10",
        "netlab.node={}".format(node.id),
    ]
    if node.root_mode == "stateless":
        # the image's initramfs copies the node's identity tree (exported ro to
        # the node, see exports()) over the tmpfs overlay: docs/image.rst
        parts += ["netlab.root=stateless", "netlab.seed={}:{}".format(
            lab.netnode.ip, os.path.join(lab.netnode.roots_dir, node.id + ".identity"))]
    if lab.image.kernel_cmdline:
        parts.append(lab.image.kernel_cmdline.strip())
    return " ".join(parts)


def check(lab):
    """Boot-specific problems of a valid lab, as ``netlab:...: message`` strings."""
    errors = []
    for node in lab.nodes.values():
        if node.boot_loader == "pxelinux" and node.firmware == "uefi":
            errors.append("{}: pxelinux boots BIOS machines only; use loader ipxe for "
                          "firmware uefi".format(netlab_lab.path("nodes", node.id, "boot",
                                                                 "loader")))
    if lab.network.interface is None or lab.netnode.ip is None:
        errors.append("{}: the networking node needs network:interface and netnode:ip"
                      .format(netlab_lab.path("netnode")))
    return errors




# --------------------------------------------------------------------------- boot files
def _image_dir(build):
    """``images/<build>`` (a node pinned to a build) or ``images/current``."""
    return "images/" + build if build else IMAGE_LINK


def ipxe_scripts(lab, realpath=os.path.realpath, builds=None, exists=os.path.isdir):
    """Per-node iPXE script data: ``{node id: {...}}`` for ``node.ipxe.jinja``.
    ``builds``: see :func:`boot_build`."""
    base = http_base(lab)
    out = {}
    for node in lab.nodes.values():
        build = boot_build(lab, node, builds, exists)
        out[node.id] = {
            "id": node.id,
            "hostname": node.hostname,
            "fqdn": node.fqdn,
            "mac": node.mac,
            "build": build or "current",
            "kernel": "{}/{}/{}".format(base, _image_dir(build), KERNEL),
            "initrd": "{}/{}/{}".format(base, _image_dir(build), INITRD),
            "nfs_root": "{}:{}".format(lab.netnode.ip, node_root(lab, node, realpath, build)),
            "cmdline": kernel_cmdline(lab, node, realpath, build, loader="ipxe"),
            "loader": node.boot_loader,
        }
    return out


def menu(lab):
    """``boot.ipxe`` data: MAC -> script, for DHCP servers that hand every node
    the same file (``off`` mode with a generic configuration)."""
    base = "{}/{}".format(http_base(lab), BOOT_DIR)
    return {"entries": [{"mac": n.mac, "id": n.id, "url": "{}/{}.ipxe".format(base, n.id)}
                        for n in lab.nodes.values()]}


def pxelinux_configs(lab, realpath=os.path.realpath, builds=None, exists=os.path.isdir):
    """Legacy path: ``{file name: {...}}`` for nodes with ``boot:loader: pxelinux``.

    File names are pxelinux's per-MAC names (``01-aa-bb-cc-dd-ee-ff``); kernel and
    initrd are fetched over TFTP through the ``images`` link in tftp_root.
    """
    out = {}
    for node in lab.nodes.values():
        if node.boot_loader != "pxelinux":
            continue
        name = "01-" + node.mac.replace(":", "-")
        build = boot_build(lab, node, builds, exists)
        out[name] = {
            "id": node.id,
            "kernel": "{}/{}".format(_image_dir(build), KERNEL),
            "initrd": "{}/{}".format(_image_dir(build), INITRD),
            "cmdline": kernel_cmdline(lab, node, realpath, build),
        }
    return out


# --------------------------------------------------------------------------- nginx
def nginx(lab, params=None):
    """Server block data: listen on the netnode's lab IP only, root http_root."""
    return {
        "listen": "{}:{}".format(lab.netnode.ip, lab.netnode.http_port),
        "server_name": lab.netnode.fqdn,
        "root": lab.netnode.http_root,
        # the LAN cache's git mirrors and cached downloads
        "locations": netlab_cache_config.nginx_locations(lab),
    }


# --------------------------------------------------------------------------- NFS
def export_id(key, taken):
    """A stable ganesha Export_Id for ``key`` (same key -> same id across runs)."""
    eid = 100 + zlib.crc32(key.encode()) % 60000
    while eid in taken:
        eid += 1
    taken.add(eid)
    return eid


def exports(lab, exists=os.path.isdir, realpath=os.path.realpath, builds=None):
    """NFS exports: one per persistent node (its IP only, rw) and, when a node is
    stateless, the shared image of every build a stateless node boots (lab subnet,
    ro; ``builds``: see :func:`boot_build`) plus that node's identity tree.

    Each export: ``path`` (real path), ``clients`` ``[{'client', 'access'}]``,
    ``id`` (ganesha Export_Id), ``fsid`` (kernel exports, stable per path),
    ``for`` (what it is), ``exists`` (a missing directory is rendered commented
    out; the next run after it appears exports it, and the config change restarts
    the server).
    """
    out = []
    taken = set()
    for node in lab.nodes.values():
        if node.root_mode != "persistent":
            continue
        p = os.path.join(lab.netnode.roots_dir, node.id)
        out.append({"path": p, "for": "node {} root".format(node.id),
                    "clients": [{"client": node.ip, "access": "rw"}], "key": "root:" + node.id})
    stateless = [n for n in lab.nodes.values() if n.root_mode == "stateless"]
    images = {}  # real path of a shared image -> its stateless nodes
    for node in stateless:
        build = boot_build(lab, node, builds, exists)
        images.setdefault(image_root(lab, realpath, build), []).append(node.id)
    for path, ids in sorted(images.items()):
        # keyed by the real path: a build keeps its Export_Id and fsid while in use
        out.append({"path": path, "for": "shared image {} (stateless nodes: {})".format(
            os.path.basename(os.path.dirname(path)), ", ".join(ids)),
                    "clients": [{"client": lab.network.cidr, "access": "ro"}],
                    "key": "image:" + path})
    if stateless:
        for node in stateless:
            p = os.path.join(lab.netnode.roots_dir, node.id + ".identity")
            out.append({"path": p, "for": "node {} identity".format(node.id),
                        "clients": [{"client": node.ip, "access": "ro"}],
                        "key": "identity:" + node.id})
    for ex in out:
        ex["id"] = export_id(ex["key"], taken)
        ex["fsid"] = netlab_lab.derived_uuid("nfs-fsid", ex["key"])
        ex["exists"] = bool(exists(ex["path"]))
        # a reset root is a new directory at the same path: its inode in the config
        # makes the config change, so the NFS server restarts and exports the new one
        ex["inode"] = _inode(ex["path"]) if ex["exists"] else None
        ex["kernel_line"] = "{} {}".format(_exports_quote(ex["path"]), " ".join(
            "{}({},sync,no_subtree_check,no_root_squash,fsid={})".format(
                c["client"], c["access"], ex["fsid"]) for c in ex["clients"]))
    return out


def _inode(p):
    try:
        return os.stat(p).st_ino
    except OSError:
        return None


def _exports_quote(p):
    return '"{}"'.format(p) if re.search(r"\s", p) else p
