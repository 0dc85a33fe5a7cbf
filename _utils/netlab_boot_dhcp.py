"""
dnsmasq on the networking node, as data: the ``dhcp-host``/``dhcp-boot``/
``pxe-service`` lines of each node for the DHCP mode (full, proxy, off), the
snippets for another DHCP server when netlab's DHCP is ``off``, and the pruning
of leases of machines that left the pillar. The boot chain's names and the
per-node tags come from :mod:`netlab_boot`. Pure Python.
"""

import netlab_params
from netlab_boot import BOOT_DIR, EFI_ARCHES, IPXE_BIOS, IPXE_EFI, PXELINUX, http_base, tag

PXE_CSAS = ("x86PC", "X86-64_EFI", "BC_EFI")   # pxe-service system types: BIOS, UEFI
NOT_A_NODE = "netlab-not-a-lab-node"   # proxy mode: no such file, never sent


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
        "leasefile": netlab_params.leasefile(params),
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
        if node.boot_loader == "ipxe":
            out["dhcp_boot"].extend(_ipxe_boot(node, t, script_base, ip))
        else:  # pxelinux: BIOS only, kernel and initrd over TFTP
            out["dhcp_boot"].append("tag:{},tag:!efi,{},,{}".format(t, PXELINUX, ip))
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


def _ipxe_boot(node, t, script_base, ip):
    """The ``dhcp-boot`` values of an iPXE node (tag ``t``): its script once iPXE
    runs, before that the iPXE binary for the firmware's architecture."""
    bios, efi = _boot_files(node)
    # the server address (siaddr) too: a proxyDHCP offer counts for iPXE only with a
    # boot file AND a next-server (or a PXE menu, which iPXE's requests do not get);
    # without it iPXE asks port 4011, gets nothing and stops
    out = ["tag:{},tag:ipxe,{}/{}.ipxe,,{}".format(t, script_base, node.id, ip)]
    if bios == efi:
        out.append("tag:{},tag:!ipxe,{},,{}".format(t, bios, ip))
    else:
        out.append("tag:{},tag:!ipxe,tag:efi,{},,{}".format(t, efi, ip))
        out.append("tag:{},tag:!ipxe,tag:!efi,{},,{}".format(t, bios, ip))
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
            dm += ["dhcp-boot=" + b for b in _ipxe_boot(node, t, base, ip)]
        else:
            dm.append("dhcp-boot=tag:{},{},,{}".format(t, PXELINUX, ip))
    return {"isc_dhcpd": "\n".join(isc) + "\n", "dnsmasq": "\n".join(dm) + "\n"}


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

