#!/usr/bin/env python3
"""
A DHCP/PXE test client on the wire (developer and test tool, not synced to minions).

Plays a PXE client with :mod:`netlab_dhcp` (``_utils``) and prints what servers
answer as JSON, proxyDHCP offers included (``udhcpc``/``dhclient`` drop those)::

    python tools/netlab_dhcp_client.py discover IFACE [--mac M] [--pxe] [--arch N]
                                                [--user-class iPXE] [--timeout S]
    python tools/netlab_dhcp_client.py pxe-request SERVER --mac M --client-ip IP [--arch 7]
    python tools/netlab_dhcp_client.py probe IFACE [--timeout S] [--own IP]

The tests run it inside client network namespaces (``test/lib/clients.py``).
"""

import json
import os
import random
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "_utils"))
from netlab_dhcp import (  # noqa: E402  pylint: disable=wrong-import-position
    BOOTREQUEST, MAGIC, discover, mac_bytes, parse_reply, probe)


def build_pxe_request(mac, xid, client_ip, client_arch=7):
    """The DHCPREQUEST a PXE client sends to a proxyDHCP server's port 4011 (boot
    server discovery), e.g. UEFI firmware after a proxy offer without a boot file."""
    chaddr = mac_bytes(mac)
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", BOOTREQUEST, 1, 6, 0, xid, 0, 0,
                       socket.inet_aton(client_ip), b"\0" * 4, b"\0" * 4, b"\0" * 4,
                       chaddr.ljust(16, b"\0"), b"", b"")
    vendor = "PXEClient:Arch:{:05d}:UNDI:003016".format(client_arch).encode()
    opts = bytes([53, 1, 3])
    opts += bytes([55, 4, 43, 60, 66, 67])
    opts += bytes([60, len(vendor)]) + vendor
    opts += bytes([93, 2]) + struct.pack("!H", int(client_arch))
    opts += bytes([94, 3, 1, 3, 16])
    opts += bytes([97, 17, 0]) + bytes(16)
    opts += bytes([255])
    return head + MAGIC + opts


def pxe_request(server_ip, mac, client_ip, client_arch=7, timeout=3.0):
    """Ask a proxyDHCP server's port 4011 for the boot file (needs ``client_ip``
    configured, from the segment's own DHCP server); the parsed DHCPACK or None."""
    xid = random.getrandbits(32)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((client_ip, 0))
        sock.settimeout(float(timeout))
        sock.sendto(build_pxe_request(mac, xid, client_ip, client_arch), (server_ip, 4011))
        deadline = time.monotonic() + float(timeout)
        while time.monotonic() < deadline:
            try:
                data, addr = sock.recvfrom(65535)
            except socket.timeout:
                return None
            reply = parse_reply(data)
            if reply and reply["xid"] == xid:
                reply.update(server_ip=addr[0])
                return reply
        return None
    finally:
        sock.close()



def main(argv=None):
    import argparse  # pylint: disable=import-outside-toplevel

    ap = argparse.ArgumentParser(prog="netlab_dhcp_client", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("discover", help="send one DHCPDISCOVER, print the replies as JSON")
    d.add_argument("interface")
    d.add_argument("--mac")
    d.add_argument("--timeout", type=float, default=3.0)
    d.add_argument("--pxe", action="store_true",
                   help="vendor class PXEClient:Arch:<arch>:UNDI:002001")
    d.add_argument("--arch", type=int, default=None, help="option 93 (0 BIOS, 7 UEFI x64)")
    d.add_argument("--user-class", default=None, help="option 77, e.g. iPXE")
    r = sub.add_parser("pxe-request", help="boot server request to a proxy's port 4011")
    r.add_argument("server")
    r.add_argument("--mac", required=True)
    r.add_argument("--client-ip", required=True)
    r.add_argument("--arch", type=int, default=7)
    r.add_argument("--timeout", type=float, default=3.0)
    p = sub.add_parser("probe", help="list other DHCP servers (rogue-DHCP guard)")
    p.add_argument("interface")
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--own", action="append", default=[])
    args = ap.parse_args(argv)
    if args.cmd == "discover":
        arch = args.arch
        vendor = None
        if args.pxe:
            arch = 0 if arch is None else arch
            vendor = "PXEClient:Arch:{:05d}:UNDI:002001".format(arch)
        out = discover(args.interface, mac=args.mac, timeout=args.timeout,
                       vendor_class=vendor, client_arch=arch, user_class=args.user_class)
    elif args.cmd == "pxe-request":
        out = pxe_request(args.server, args.mac, args.client_ip, args.arch, args.timeout)
    else:
        out = probe(args.interface, timeout=args.timeout, own=args.own)
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
