"""
The networking node's boot services, as data: Lab -> what dnsmasq, nginx, the NFS
server and the boot files must contain.

Pure Python, no Salt. The ``netlab.netnode`` states call :func:`prepare` (through
``netlab.boot_data``) and render the Jinja templates in ``netlab/files/netnode/``
from its result; unit tests check the data and the rendered text.

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

import netlab_cache
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
PXE_CSAS = ("x86PC", "X86-64_EFI", "BC_EFI")   # pxe-service system types: BIOS, UEFI
NOT_A_NODE = "netlab-not-a-lab-node"   # proxy mode: no such file, never sent
SERVICE_CONTROLS = ("service", "process", "none")


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


def kernel_cmdline(lab, node, realpath=os.path.realpath, build=None):
    """The kernel command line a node boots with (see docs/lifecycle.rst)."""
    parts = [
        "root=/dev/nfs",
        "nfsroot={}:{},vers=3,tcp".format(lab.netnode.ip,
                                          node_root(lab, node, realpath, build)),
        "ip=dhcp", "rw", "console=ttyS0,115200", "panic=10",
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


# --------------------------------------------------------------------------- dnsmasq
def _boot_files(node):
    """(BIOS file, UEFI file) the firmware's PXE ROM gets for ``node`` (None: no answer)."""
    if node.boot_loader == "pxelinux":
        return PXELINUX, None
    bios = IPXE_BIOS if node.firmware in ("auto", "bios") else None
    efi = IPXE_EFI if node.firmware in ("auto", "uefi") else None
    if node.firmware == "bios":
        efi = IPXE_BIOS  # forced BIOS: whatever option 93 says
    if node.firmware == "uefi":
        bios = IPXE_EFI
    return bios, efi


def dnsmasq(lab, params=None):
    """Everything ``dnsmasq.conf.jinja`` renders, as prepared values.

    ``params``: ``leasefile``, ``ra`` (IPv6 router advertisements on the interface,
    only for test bridges/VMs: saves iPXE's IPv6 wait), ``log_dhcp``, ``user``
    (dnsmasq drops privileges to it), ``log_facility`` (a log file).
    Each entry of the list keys is the value of one ``key=value`` line.
    """
    params = params or {}
    net, nn = lab.network, lab.netnode
    mode = net.dhcp_mode
    ip = nn.ip
    out = {
        "mode": mode,
        "interface": net.interface,
        "listen_address": ip,
        "domain": net.domain,
        "dns_port": 53 if net.dns_enabled else 0,
        "dns_servers": list(net.dns_upstream),
        "host_records": [],
        "tftp_root": nn.tftp_root,
        "leasefile": params.get("leasefile") or "/var/lib/misc/netlab-dnsmasq.leases",
        "log_dhcp": bool(params.get("log_dhcp", True)),
        "ra": bool(params.get("ra", False)),
        "user": params.get("user") or "",
        "log_facility": params.get("log_facility") or "",
        "dhcp_ranges": [],
        "dhcp_options": [],
        "dhcp_hosts": [],
        "dhcp_boot": [],
        "pxe_services": [],
        "dhcp_matches": ["set:efi,option:client-arch,{}".format(a) for a in EFI_ARCHES],
        # full mode with a pool serves other machines an address (never a boot answer)
        "ignore_unknown": not (mode == "full" and net.pool),
        "nodes": [],
    }
    # DNS: every node and the networking node, under network:domain
    out["host_records"].append("{},{},{}".format(nn.fqdn, nn.hostname, ip))
    for node in lab.nodes.values():
        out["host_records"].append("{},{},{}".format(node.fqdn, node.hostname, node.ip))
    if mode == "off":
        return out
    if mode == "full":
        if net.pool:
            out["dhcp_ranges"].append("{},{},{},{}".format(
                net.pool["start"], net.pool["end"], net.netmask, net.lease_time))
        else:
            out["dhcp_ranges"].append("{},static,{},{}".format(
                _network_address(net.cidr), net.netmask, net.lease_time))
        if net.gateway:
            out["dhcp_options"].append("option:router,{}".format(net.gateway))
        else:  # dnsmasq would name itself the router; the netnode does not route
            out["dhcp_options"].append("option:router")
        dns = [ip] if net.dns_enabled else list(net.dns_upstream)
        if dns:
            out["dhcp_options"].append("option:dns-server,{}".format(",".join(dns)))
        out["dhcp_options"].append("option:domain-name,{}".format(net.domain))
    else:  # proxy
        out["dhcp_ranges"].append("{},proxy,{}".format(_network_address(net.cidr),
                                                       net.netmask))
        # dnsmasq's proxyDHCP logs a PXE request only when a boot service matches the
        # client; without one, a machine that is not a node leaves no trace and
        # netlab.discover cannot list it (a fresh lab has no node, so no service at
        # all). These match only machines that are not nodes, which dhcp-ignore
        # never answers ("proxy-ignored" in the log); their file does not exist.
        for csa in PXE_CSAS:
            out["pxe_services"].append('tag:!known,{},"netlab: not a lab node",{}'.format(
                csa, NOT_A_NODE))
    script_base = "{}/{}".format(http_base(lab), BOOT_DIR)
    for node in lab.nodes.values():
        t = tag(node)
        if mode == "full":
            out["dhcp_hosts"].append("{},set:known,set:{},{},{},{}".format(
                node.mac, t, node.ip, node.hostname, net.lease_time))
        else:
            out["dhcp_hosts"].append("{},set:known,set:{}".format(node.mac, t))
        bios, efi = _boot_files(node)
        boot = []
        if node.boot_loader == "ipxe":
            # the server address (siaddr) too: a proxyDHCP offer counts for iPXE only
            # with a boot file AND a next-server (or a PXE menu, which iPXE's requests
            # do not get); without it iPXE asks port 4011, gets nothing and stops
            boot.append("tag:{},tag:ipxe,{}/{}.ipxe,,{}".format(t, script_base, node.id, ip))
            if bios == efi:
                boot.append("tag:{},tag:!ipxe,{},,{}".format(t, bios, ip))
            else:
                boot.append("tag:{},tag:!ipxe,tag:efi,{},,{}".format(t, efi, ip))
                boot.append("tag:{},tag:!ipxe,tag:!efi,{},,{}".format(t, bios, ip))
        else:  # pxelinux: BIOS only, kernel and initrd over TFTP
            boot.append("tag:{},tag:!efi,{},,{}".format(t, PXELINUX, ip))
        out["dhcp_boot"].extend(boot)
        if mode == "proxy":
            # proxyDHCP answers only clients with a PXE menu entry for their system
            # type; with one entry and no prompt the client boots it at once. The
            # menu is for the firmware only: iPXE follows a PXE menu in preference to
            # the boot file, and the menu's entry is iPXE itself (a loop), so iPXE's
            # requests get no menu and take their script from dhcp-boot.
            label = '"netlab {}"'.format(node.id)
            fw = "tag:{},tag:!ipxe".format(t)
            out["pxe_services"].append("{},x86PC,{},{}".format(fw, label, bios))
            if efi:
                for csa in PXE_CSAS[1:]:
                    out["pxe_services"].append("{},{},{},{}".format(fw, csa, label, efi))
        out["nodes"].append({"id": node.id, "mac": node.mac, "tag": t,
                             "boot_loader": node.boot_loader})
    return out


def _network_address(cidr):
    return cidr.split("/")[0]


def off_mode_snippets(lab):
    """What to add to an existing DHCP server when ``network:dhcp:mode`` is ``off``.

    Returns ``{'isc_dhcpd': text, 'dnsmasq': text}``: per MAC, the netnode as TFTP
    server and the boot file (iPXE binaries by architecture, then the node's
    HTTP script), so unknown machines still get nothing from it.
    """
    ip = lab.netnode.ip
    base = "{}/{}".format(http_base(lab), BOOT_DIR)
    isc = [
        "# netlab: boot answers for the lab nodes only (network:dhcp:mode off)",
        "option arch code 93 = unsigned integer 16;",
        "",
    ]
    dm = ["# netlab: boot answers for the lab nodes only (network:dhcp:mode off)",
          "dhcp-userclass=set:ipxe,iPXE"]
    dm += ["dhcp-match=set:efi,option:client-arch,{}".format(a) for a in EFI_ARCHES]
    for node in lab.nodes.values():
        bios, efi = _boot_files(node)
        isc.append("host netlab-{} {{".format(node.id))
        isc.append("  hardware ethernet {};".format(node.mac))
        isc.append("  fixed-address {};".format(node.ip))
        isc.append('  option host-name "{}";'.format(node.hostname))
        isc.append("  next-server {};".format(ip))
        if node.boot_loader == "ipxe":
            isc.append('  if exists user-class and option user-class = "iPXE" {')
            isc.append('    filename "{}/{}.ipxe";'.format(base, node.id))
            if bios == efi:
                isc.append('  }} else {{\n    filename "{}";'.format(bios))
            else:
                isc.append("  } elsif option arch = 00:07 or option arch = 00:09 {")
                isc.append('    filename "{}";'.format(efi))
                isc.append('  }} else {{\n    filename "{}";'.format(bios))
            isc.append("  }")
        else:
            isc.append('  filename "{}";'.format(PXELINUX))
        isc.append("}")
        t = tag(node)
        dm.append("dhcp-host={},set:{},{},{}".format(node.mac, t, node.ip, node.hostname))
        if node.boot_loader == "ipxe":
            dm.append("dhcp-boot=tag:{},tag:ipxe,{}/{}.ipxe".format(t, base, node.id))
            if bios == efi:
                dm.append("dhcp-boot=tag:{},tag:!ipxe,{},,{}".format(t, bios, ip))
            else:
                dm.append("dhcp-boot=tag:{},tag:!ipxe,tag:efi,{},,{}".format(t, efi, ip))
                dm.append("dhcp-boot=tag:{},tag:!ipxe,tag:!efi,{},,{}".format(t, bios, ip))
        else:
            dm.append("dhcp-boot=tag:{},{},,{}".format(t, PXELINUX, ip))
    return {"isc_dhcpd": "\n".join(isc) + "\n", "dnsmasq": "\n".join(dm) + "\n"}


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
            "cmdline": kernel_cmdline(lab, node, realpath, build),
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
        "locations": netlab_cache.nginx_locations(lab),
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


# --------------------------------------------------------------------------- leases
def prune_leases(text, lab):
    """dnsmasq lease file text -> (kept text, removed lines).

    Removes leases of machines that are no longer nodes (a removed node's static
    address), keeping current nodes' leases at their own IP and pool leases.
    """
    macs = {n.mac: n.ip for n in lab.nodes.values()}
    pool = lab.network.pool
    import ipaddress  # pylint: disable=import-outside-toplevel

    def in_pool(ip):
        if not pool or lab.network.dhcp_mode != "full":
            return False
        try:
            a = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return ipaddress.ip_address(pool["start"]) <= a <= ipaddress.ip_address(pool["end"])

    kept, removed = [], []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not line.startswith("duid"):
            mac, ip = fields[1].lower(), fields[2]
            if (macs.get(mac) == ip and lab.network.dhcp_mode == "full") or in_pool(ip):
                kept.append(line)
            else:
                removed.append(line)
        else:
            kept.append(line)
    return "".join(k + "\n" for k in kept), removed


# --------------------------------------------------------------------------- all of it
def prepare(lab, params=None, realpath=os.path.realpath, exists=os.path.isdir, builds=None):
    """All netnode data for the states, from the lab and the platform ``params``
    (``mapdata`` of map.jinja). ``builds``: ``{node id: build id}`` (default: as the
    lifecycle records on this machine say, netlab_lifecycle.node_builds).
    Raises :class:`BootError` on boot problems."""
    params = params or {}
    if builds is None:
        import netlab_lifecycle  # pylint: disable=import-outside-toplevel

        try:
            builds = netlab_lifecycle.node_builds(lab)
        except netlab_lifecycle.LifecycleError:
            builds = {}  # unreadable records: every node boots the current build
    errors = check(lab)
    if errors:
        raise BootError("netlab cannot boot this lab ({} problem{}):\n  {}".format(
            len(errors), "" if len(errors) == 1 else "s", "\n  ".join(errors)))
    control = params.get("service_control", "service")
    if control not in SERVICE_CONTROLS:
        raise BootError("netlab:lookup:service_control: {!r} is not one of: {}".format(
            control, ", ".join(SERVICE_CONTROLS)))
    dm = dict(params.get("dnsmasq", {}) or {})
    run_dir = params.get("run_dir") or "/run/netlab"
    nn = lab.netnode
    scripts = ipxe_scripts(lab, realpath, builds, exists)
    pxe = pxelinux_configs(lab, realpath, builds, exists)
    return {
        "service_control": control,
        "nfs_server": nn.nfs_server,
        "dhcp_mode": lab.network.dhcp_mode,
        "allow_other_servers": lab.network.allow_other_servers,
        "probe_timeout": lab.network.probe_timeout,
        "interface": lab.network.interface,
        "netnode_ip": nn.ip,
        "dnsmasq": dnsmasq(lab, dict(dm, log_facility=(
            os.path.join(run_dir, "dnsmasq.log") if control == "process" else ""))),
        "run_dir": run_dir,
        "nginx": nginx(lab),
        "exports": exports(lab, exists=exists, realpath=realpath, builds=builds),
        "dirs": {
            "storage": nn.storage, "http_root": nn.http_root, "tftp_root": nn.tftp_root,
            "roots_dir": nn.roots_dir, "images_dir": nn.images_dir,
            "boot_dir": os.path.join(nn.http_root, BOOT_DIR),
            "pxelinux_cfg": os.path.join(nn.tftp_root, PXELINUX_CFG),
            "http_images": os.path.join(nn.http_root, "images"),
        },
        "scripts": {"{}.ipxe".format(k): v for k, v in scripts.items()},
        "menu": menu(lab),
        "pxelinux": pxe,
        "needs_pxelinux": bool(pxe),
        "tftp_files": {IPXE_BIOS: "bios", IPXE_EFI: "uefi"},
        "off_mode": off_mode_snippets(lab) if lab.network.dhcp_mode == "off" else None,
    }
