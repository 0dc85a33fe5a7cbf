"""
Discovery: machines that PXE-boot on the lab segment but are not in pillar.

netlab's dnsmasq answers only the MACs of pillar (``dhcp-ignore=tag:!known``) and
logs every DHCP transaction (``log-dhcp``). For a machine it does not know, the
log holds, under one transaction id::

    Nov 30 11:30:12 dnsmasq-dhcp[5644]: 2608386118 vendor class: PXEClient:Arch:00000:UNDI:002001
    Nov 30 11:30:12 dnsmasq-dhcp[5644]: 2608386118 DHCPDISCOVER(br0) 52:54:00:79:00:21 ignored

(full mode; with a ``pool`` the request is answered with an address only, and
logged without ``ignored``) or ``PXE(br0) 52:54:00:79:00:21 proxy-ignored`` (proxy
mode). The
vendor class of a PXE ROM names its architecture (option 93): ``00000`` BIOS,
``00006`` 32-bit UEFI, ``00007``/``00009`` x86-64 UEFI, ``00011`` ARM64 UEFI.

:func:`parse_log` turns log lines (dnsmasq's own log file in process mode, the
journal or syslog in service mode) into one record per machine;
:func:`unknown` drops the MACs the lab knows; :func:`pillar_lines` proposes the
``nodes:`` entries to paste. Nothing here answers a machine: discovery only reads.
"""

import datetime
import ipaddress
import re

import netlab_params

# syslog / dnsmasq log-facility ("Nov 30 11:30:12") or journalctl -o short-iso
# ("2026-11-30T11:30:12+0000"), an optional host name, then dnsmasq-dhcp[pid]:
_LINE = re.compile(
    r"^(?P<ts>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S*)\s+"
    r"(?:\S+\s+)?dnsmasq-dhcp\[\d+\]:\s+(?P<xid>\d+)\s+(?P<msg>.*)$")
_VENDOR = re.compile(r"^vendor class: (?P<vendor>.*)$")
_IGNORED = re.compile(
    r"^(?P<kind>DHCPDISCOVER|DHCPREQUEST|PXE)\((?P<iface>[^)]+)\)\s+(?:\S+\s+)?"
    r"(?P<mac>[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5})(?:\s+(?P<why>ignored|proxy-ignored)\b"
    # full mode with a pool answers other machines (an address, no boot answer): the
    # request is logged without "ignored"; unknown() drops the lab's own MACs
    r"|\s*$)")
_ARCH = re.compile(r"PXEClient:Arch:(\d{5})")

# option 93 client system architecture (RFC 4578 / IANA)
ARCHES = {
    0: ("bios", "x86 BIOS"),
    6: ("uefi", "x86 32-bit UEFI"),
    7: ("uefi", "x86-64 UEFI"),
    9: ("uefi", "x86-64 UEFI"),
    10: ("uefi", "ARM 32-bit UEFI"),
    11: ("uefi", "ARM 64-bit UEFI"),
    16: ("uefi", "x86-64 UEFI HTTP boot"),
}


def firmware(vendor_class):
    """``(firmware, description)`` from a PXE vendor class; ``(None, ...)`` when the
    client is no PXE ROM (an OS asking for an address)."""
    match = _ARCH.search(vendor_class or "")
    if not match:
        return None, "not a PXE client"
    arch = int(match.group(1))
    return ARCHES.get(arch, ("unknown", "architecture {}".format(arch)))


def _timestamp(text, now):
    if text[:4].isdigit():
        raw = text
        if re.search(r"[+-]\d{4}$", raw):
            raw = raw[:-2] + ":" + raw[-2:]
        try:
            stamp = datetime.datetime.fromisoformat(raw)
        except ValueError:
            return None
        if stamp.tzinfo is not None:
            stamp = stamp.astimezone(now.tzinfo).replace(tzinfo=None) if now.tzinfo \
                else stamp.astimezone().replace(tzinfo=None)
        return stamp
    # syslog has no year: this year, or last year when that would be in the future
    try:
        stamp = datetime.datetime.strptime("{} {}".format(now.year, text), "%Y %b %d %H:%M:%S")
    except ValueError:
        return None
    if stamp > now + datetime.timedelta(days=1):
        stamp = stamp.replace(year=now.year - 1)
    return stamp


def parse_log(lines, now=None, pxe_only=True):
    """Machines dnsmasq ignored, from its log ``lines``.

    Returns ``{mac: {'mac', 'vendor_class', 'firmware', 'arch', 'interface',
    'first_seen', 'last_seen', 'requests'}}`` (times ISO 8601, local time of the
    log). ``pxe_only`` keeps only PXE clients (vendor class ``PXEClient...``), the
    machines that try to boot from the network.
    """
    now = now or datetime.datetime.now()
    vendor_by_xid = {}
    seen = {}
    for line in lines:
        match = _LINE.match(line.rstrip("\n"))
        if not match:
            continue
        xid, msg = match.group("xid"), match.group("msg")
        vendor = _VENDOR.match(msg)
        if vendor:
            vendor_by_xid[xid] = vendor.group("vendor").strip()
            continue
        ignored = _IGNORED.match(msg)
        if not ignored:
            continue
        vclass = vendor_by_xid.get(xid, "")
        fw, arch = firmware(vclass)
        if pxe_only and fw is None:
            continue
        stamp = _timestamp(match.group("ts"), now)
        when = stamp.isoformat(timespec="seconds") if stamp else match.group("ts")
        mac = ignored.group("mac").lower()
        rec = seen.get(mac)
        if rec is None:
            rec = seen[mac] = {"mac": mac, "first_seen": when, "requests": 0}
        rec.update(vendor_class=vclass, firmware=fw, arch=arch,
                   interface=ignored.group("iface"), last_seen=when)
        rec["requests"] += 1
    return seen


def unknown(seen, lab):
    """Only the machines whose MAC is not a node of ``lab``, oldest first."""
    known = {n.mac for n in lab.nodes.values()}
    return sorted((r for m, r in seen.items() if m not in known),
                  key=lambda r: (r["first_seen"], r["mac"]))


def _free_addresses(lab):
    net = ipaddress.ip_network(lab.network.cidr, strict=False)
    used = {n.ip for n in lab.nodes.values()} | {lab.netnode.ip}
    if lab.network.gateway:
        used.add(lab.network.gateway)
    pool = lab.network.pool
    lo = hi = None
    if pool:
        lo, hi = ipaddress.ip_address(pool["start"]), ipaddress.ip_address(pool["end"])
    # start after the highest node address (or at .11: below is often the router's
    # and servers'), never inside full mode's pool
    node_ips = sorted(ipaddress.ip_address(n.ip) for n in lab.nodes.values())
    start = int(node_ips[-1]) + 1 if node_ips else int(net.network_address) + 11
    for value in range(start, int(net.broadcast_address)):
        addr = ipaddress.ip_address(value)
        if str(addr) in used or (lo is not None and lo <= addr <= hi):
            continue
        yield str(addr)


def _free_ids(lab, prefix="node"):
    n = 1
    while True:
        name = "{}{}".format(prefix, n)
        if name not in lab.nodes:
            yield name
        n += 1


def pillar_lines(machines, lab):
    """YAML lines to add under ``netlab:nodes`` for ``machines`` (from
    :func:`unknown`): a free id and address each, the controller role for the
    first one when the lab has none yet, Wake-on-LAN power; in proxy mode a
    comment that the router must reserve those addresses."""
    if not machines:
        return []
    ids, ips = _free_ids(lab), _free_addresses(lab)
    has_controller = any(n.is_controller for n in lab.nodes.values())
    lines = ["  nodes:"]
    if lab.network.dhcp_mode == "proxy":
        # the router hands out the addresses: a node that gets another one than its
        # pillar ip finds no NFS export for it
        lines.append("    # dhcp proxy: reserve each ip below for its MAC on the router's "
                     "DHCP server")
    for rec in machines:
        role = "compute" if has_controller else "controller"
        has_controller = True
        ip = next(ips, None)
        lines += [
            "    {}:   # {} ({}), first seen {}".format(
                next(ids), rec["arch"], rec["vendor_class"] or "no vendor class",
                rec["first_seen"]),
            '      mac: "{}"'.format(rec["mac"]),
            "      ip: {}".format(ip if ip else "CHOOSE-AN-ADDRESS"),
            "      role: {}".format(role),
            "      power: {driver: wol}",
        ]
    return lines


def journal_command(since=None):
    """The journal query for dnsmasq's DHCP log in service mode (dnsmasq logs to
    syslog under the identifier ``dnsmasq-dhcp``)."""
    cmd = ["journalctl", "-t", "dnsmasq-dhcp", "-o", "short-iso", "--no-pager", "-q"]
    if since:
        cmd += ["--since", str(since)]
    return cmd


class DiscoverError(Exception):
    """dnsmasq's log cannot be read; the message says which and how to pass another."""


def _read_log(lookup, log, since, read_lines, journal):
    """``(lines, source)``: ``log``, else dnsmasq's own log in process mode, else the
    journal."""
    try:
        log = log or netlab_params.dnsmasq_log(lookup)
    except netlab_params.ParamError as exc:
        raise DiscoverError(str(exc)) from None
    if log:
        try:
            return read_lines(log), log
        except OSError as exc:
            raise DiscoverError("cannot read dnsmasq's log {}: {}".format(log, exc)) from None
    cmd = journal_command(since)
    rc, out, err = journal(cmd)
    if rc != 0:
        raise DiscoverError("cannot read dnsmasq's log from the journal ({}): {}; pass "
                            "log=<file>".format(" ".join(cmd), err.strip()))
    return out.splitlines(), "journal"


def report(lab, lookup, read_lines, journal, log=None, since=None, all_clients=False):
    """``salt-run netlab.discover``: the unknown machines in dnsmasq's log and the
    pillar lines to add them. ``lookup``: the raw ``netlab:lookup`` pillar (where
    dnsmasq logs); ``read_lines(path)``: a file's lines; ``journal(cmd)``: ``(rc,
    stdout, stderr)`` of a command. Raises :class:`DiscoverError`."""
    lines, source = _read_log(lookup, log, since, read_lines, journal)
    machines = unknown(parse_log(lines, pxe_only=not all_clients), lab)
    return {"source": source, "unknown": machines,
            "pillar": "\n".join(pillar_lines(machines, lab)) or
                      "(no unknown machine has tried to boot)"}
