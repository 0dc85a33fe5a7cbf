"""
DHCP on the wire: build a DHCPDISCOVER, collect and parse the offers.

Two users:

* the **rogue-DHCP guard** (:func:`probe`): before netlab turns on ``full`` mode it
  broadcasts one DHCPDISCOVER on ``network:interface`` and lists every server that
  offers an address (except netlab's own dnsmasq);
* the **tests**, which play a PXE client (:func:`discover` with vendor class
  ``PXEClient`` and option 93) and read what a server answers, including proxyDHCP
  offers that ``udhcpc``/``dhclient`` drop; their command line (and the port-4011
  request only a test client sends) is ``tools/netlab_dhcp_client.py``, which is
  not synced to minions.

Frames go through an ``AF_PACKET`` socket bound to the one interface (needs root):
the DISCOVER is an Ethernet broadcast on that segment only and never routed; the
interface needs no IPv4 address. Pure Python, standard library only.

"""

import random
import select
import socket
import struct
import time

ETH_P_IP = 0x0800
ETH_P_ALL = 0x0003
BOOTREQUEST, BOOTREPLY = 1, 2
MAGIC = b"\x63\x82\x53\x63"
MSG_TYPES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK",
             6: "NAK", 7: "RELEASE", 8: "INFORM"}
# options decoded to text / addresses in parsed offers
OPT_NAMES = {1: "netmask", 3: "router", 6: "dns", 12: "hostname", 15: "domain",
             51: "lease_time", 53: "message_type", 54: "server_id", 60: "vendor_class",
             66: "tftp_server", 67: "bootfile"}
ADDR_OPTS = (1, 3, 6, 54)


class DhcpError(RuntimeError):
    """The probe could not run (no such interface, not root, ...)."""


# --------------------------------------------------------------------------- packets
def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac_bytes(mac):
    return bytes(int(x, 16) for x in mac.replace("-", ":").split(":"))


def mac_text(raw):
    return ":".join("%02x" % b for b in raw)


def build_discover(mac, xid, vendor_class=None, client_arch=None, user_class=None,
                   broadcast=True):
    """The BOOTP/DHCP payload of a DHCPDISCOVER from ``mac``.

    ``vendor_class`` (option 60, e.g. ``PXEClient:Arch:00000:UNDI:002001``),
    ``client_arch`` (option 93: 0 BIOS, 7/9 x86-64 UEFI) and ``user_class``
    (option 77, ``iPXE`` for iPXE's own second DHCP round) make it look like a
    firmware PXE ROM or iPXE.
    """
    chaddr = mac_bytes(mac)
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", BOOTREQUEST, 1, 6, 0, xid, 0,
                       0x8000 if broadcast else 0, b"\0" * 4, b"\0" * 4, b"\0" * 4,
                       b"\0" * 4, chaddr.ljust(16, b"\0"), b"", b"")
    opts = bytes([53, 1, 1])
    opts += bytes([55, 8, 1, 3, 6, 12, 15, 43, 66, 67])
    if vendor_class:
        v = vendor_class.encode()
        opts += bytes([60, len(v)]) + v
    if client_arch is not None:
        opts += bytes([93, 2]) + struct.pack("!H", int(client_arch))
        opts += bytes([94, 3, 1, 2, 1])  # UNDI 2.1
        opts += bytes([97, 17, 0]) + bytes(16)
    if user_class:
        u = user_class.encode()
        opts += bytes([77, len(u)]) + u
    opts += bytes([255])
    return head + MAGIC + opts


def ethernet_frame(src_mac, payload):
    """Wrap a BOOTP payload into Ethernet/IPv4/UDP: 0.0.0.0:68 -> 255.255.255.255:67."""
    udp_len = 8 + len(payload)
    udp = struct.pack("!HHHH", 68, 67, udp_len, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, random.randint(0, 0xFFFF),
                     0, 64, 17, 0, b"\0" * 4, b"\xff" * 4)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    pseudo = b"\0" * 4 + b"\xff" * 4 + struct.pack("!BBH", 0, 17, udp_len)
    csum = _checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    return b"\xff" * 6 + mac_bytes(src_mac) + struct.pack("!H", ETH_P_IP) + ip + udp


def parse_options(data):
    """DHCP options area -> ``{code: bytes}`` (first occurrence wins, pad skipped)."""
    opts = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code == 0:
            i += 1
            continue
        if code == 255 or i + 1 >= len(data):
            break
        length = data[i + 1]
        opts.setdefault(code, data[i + 2:i + 2 + length])
        i += 2 + length
    return opts


def parse_reply(payload):
    """A BOOTREPLY payload -> dict (``None`` when it is not a DHCP reply)."""
    if len(payload) < 240 or payload[0] != BOOTREPLY or payload[236:240] != MAGIC:
        return None
    (_op, _htype, _hlen, _hops, xid, _secs, _flags, _ciaddr, yiaddr, siaddr, _giaddr,
     chaddr, sname, bfile) = struct.unpack("!BBBBIHH4s4s4s4s16s64s128s", payload[:236])
    opts = parse_options(payload[240:])
    out = {
        "xid": xid,
        "chaddr": mac_text(chaddr[:6]),
        "yiaddr": socket.inet_ntoa(yiaddr),
        "siaddr": socket.inet_ntoa(siaddr),
        "sname": sname.split(b"\0")[0].decode(errors="replace"),
        "file": bfile.split(b"\0")[0].decode(errors="replace"),
        "options": sorted(opts),
        "pxe_options": opts.get(43, b"").hex(),
    }
    for code, name in OPT_NAMES.items():
        if code not in opts:
            continue
        raw = opts[code]
        if code == 53:
            out[name] = MSG_TYPES.get(raw[0], raw[0]) if raw else None
        elif code == 51 and len(raw) == 4:
            out[name] = struct.unpack("!I", raw)[0]
        elif code in ADDR_OPTS:
            addrs = [socket.inet_ntoa(raw[j:j + 4]) for j in range(0, len(raw) - 3, 4)]
            out[name] = addrs[0] if code in (1, 54) and addrs else addrs
        else:
            out[name] = raw.split(b"\0")[0].decode(errors="replace")
    # the boot file: option 67 when the client asked for it, else the BOOTP file field
    out["boot"] = out.get("bootfile") or out["file"]
    return out


def _parse_frame(frame):
    """Ethernet frame -> (source MAC, source IP, BOOTP payload) for UDP to port 68."""
    if len(frame) < 42 or struct.unpack("!H", frame[12:14])[0] != ETH_P_IP:
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[9] != 17:
        return None
    sport, dport = struct.unpack("!HH", ip[ihl:ihl + 4])
    if dport != 68 or sport != 67:
        return None
    return mac_text(frame[6:12]), socket.inet_ntoa(ip[12:16]), ip[ihl + 8:]


# --------------------------------------------------------------------------- wire
def interface_mac(interface):
    try:
        with open("/sys/class/net/{}/address".format(interface), encoding="ascii") as fh:
            return fh.read().strip().lower()
    except OSError:
        raise DhcpError("network interface {!r} does not exist".format(interface)) from None


def discover(interface, mac=None, timeout=3.0, vendor_class=None, client_arch=None,
             user_class=None, resend=1.0):
    """Broadcast a DHCPDISCOVER on ``interface`` and return every reply seen.

    Listens for ``timeout`` seconds (all servers get their chance, not just the
    first), sending the DISCOVER again every ``resend`` seconds like a real client
    (same transaction id). Servers that ping-check an address first (dnsmasq:
    about 3 s) answer late. Each distinct reply is a :func:`parse_reply` dict plus
    ``server_mac`` and ``server_ip`` (the frame's sources).
    """
    src = interface_mac(interface)
    mac = (mac or src).lower()
    xid = random.getrandbits(32)
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    except PermissionError:
        raise DhcpError("probing DHCP needs root (raw socket on {})".format(interface)) \
            from None
    replies = []
    try:
        sock.bind((interface, ETH_P_IP))
        payload = build_discover(mac, xid, vendor_class, client_arch, user_class)
        frame_out = ethernet_frame(mac, payload)
        sock.send(frame_out)
        now = time.monotonic()
        deadline = now + float(timeout)
        next_send = now + resend if resend else deadline
        seen = set()
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_send:
                sock.send(frame_out)
                next_send = now + resend
            ready, _, _ = select.select([sock], [], [], min(deadline, next_send) - now)
            if not ready:
                continue
            frame, addr = sock.recvfrom(65535)
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            parsed = _parse_frame(frame)
            if not parsed:
                continue
            reply = parse_reply(parsed[2])
            if not reply or reply["xid"] != xid or reply["chaddr"] != mac:
                continue
            reply.update(server_mac=parsed[0], server_ip=parsed[1])
            key = (reply["server_mac"], reply.get("server_id"), reply["yiaddr"],
                   reply["boot"], reply.get("message_type"))
            if key not in seen:
                seen.add(key)
                replies.append(reply)
    finally:
        sock.close()
    return replies


def local_addresses():
    """IPv4 addresses of this host (netlab's own dnsmasq answers from one of them)."""
    import subprocess  # pylint: disable=import-outside-toplevel

    try:
        out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True,
                             text=True, check=False).stdout
    except OSError:
        return set()
    return {line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3}


def probe(interface, timeout=3.0, own=()):
    """The rogue-DHCP guard: every *other* DHCP server answering on ``interface``.

    Returns ``[{'server_id', 'server_ip', 'server_mac', 'offered'}]`` (one per
    server, sorted), leaving out servers whose id or source address is in ``own``
    (netlab's own addresses) or whose MAC is this interface's. Only servers
    offering an address count (a plain DISCOVER, no PXE vendor class: proxyDHCP
    servers stay silent, as they should).
    """
    own = set(own) | local_addresses()
    my_mac = interface_mac(interface)
    servers = {}
    for reply in discover(interface, timeout=timeout):
        if reply.get("message_type") != "OFFER":
            continue
        sid = reply.get("server_id") or reply["server_ip"]
        if sid in own or reply["server_ip"] in own or reply["server_mac"] == my_mac:
            continue
        servers.setdefault(sid, {"server_id": sid, "server_ip": reply["server_ip"],
                                 "server_mac": reply["server_mac"],
                                 "offered": reply["yiaddr"]})
    return [servers[k] for k in sorted(servers)]


def describe(servers):
    """Human text naming each server of :func:`probe`."""
    return "; ".join("{server_id} (from {server_ip}, MAC {server_mac}, offered "
                     "{offered})".format(**s) for s in servers)
