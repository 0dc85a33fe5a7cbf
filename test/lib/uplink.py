"""
A networking node's way out, for tests: a veth pair from a segment's server
namespace to this machine, NAT only to Debian's mirror and PyPI (and the name
servers that resolve them), and :meth:`Uplink.cut` to take the route away again.

    up = Uplink(seg.server, hosts=("deb.debian.org", "pypi.org",
                                   "files.pythonhosted.org"))
    try:
        ...                       # the server namespace reaches those hosts only
        up.cut()                  # and now nothing outside
    finally:
        up.remove()               # veth, nftables table, ip_forward as it was
                                  # (unless a virtual lab or another uplink
                                  # still routes through this machine)

Names carry a random suffix; everything made is removed by :meth:`remove`, also
after a failure half-way through :meth:`__init__`.
"""

import ipaddress
import os
import secrets
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "tools"))
import vlab as vlab_tool  # noqa: E402  pylint: disable=wrong-import-position


def _sh(cmd, check=True, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    if check and res.returncode != 0:
        raise RuntimeError("command failed ({}): {}\n{}".format(
            res.returncode, " ".join(cmd), res.stderr))
    return res


def resolvers(path="/etc/resolv.conf"):
    out = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    addr = ipaddress.ip_address(parts[1])
                    if addr.version == 4 and not addr.is_loopback:
                        out.append(str(addr))
    except (OSError, ValueError):
        pass
    return out


def addresses(hosts):
    out = set()
    for host in hosts:
        for info in socket.getaddrinfo(host, 443, socket.AF_INET, socket.SOCK_STREAM):
            out.add(info[4][0])
    return sorted(out)


class Uplink:
    def __init__(self, ns, hosts, subnet=None):
        tag = secrets.token_hex(3)
        self.ns = ns
        self.host_if = "nlu" + tag
        self.table = "netlab_uplink_" + tag
        third = int(tag[:2], 16) % 200 + 20
        net = subnet or "172.31.{}.0/30".format(third)
        hosts_ip = list(ipaddress.ip_network(net).hosts())
        self.host_ip, self.ns_ip = str(hosts_ip[0]), str(hosts_ip[1])
        self.made = []
        try:
            self._make(hosts)
        except Exception:
            self.remove()
            raise

    def _make(self, hosts):
        targets = addresses(hosts)
        dns = resolvers()
        _sh(["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "uplink0",
             "netns", self.ns.name])
        self.made.append("veth")
        _sh(["ip", "addr", "add", self.host_ip + "/30", "dev", self.host_if])
        _sh(["ip", "link", "set", self.host_if, "up"])
        self.ns.run(["ip", "addr", "add", self.ns_ip + "/30", "dev", "uplink0"])
        self.ns.run(["ip", "link", "set", "uplink0", "up"])
        self.ns.run(["ip", "route", "add", "default", "via", self.host_ip])
        rules = [
            "table ip {} {{".format(self.table),
            "  chain forward {",
            "    type filter hook forward priority 0; policy accept;",
            '    oifname "{}" ct state established,related accept'.format(self.host_if),
            '    iifname "{}" ip daddr {{ {} }} tcp dport {{ 80, 443 }} accept'.format(
                self.host_if, ", ".join(targets)),
        ]
        if dns:
            for proto in ("udp", "tcp"):
                rules.append('    iifname "{}" ip daddr {{ {} }} {} dport 53 accept'.format(
                    self.host_if, ", ".join(dns), proto))
        rules += [
            '    iifname "{}" drop'.format(self.host_if),
            "  }",
            "  chain postrouting {",
            "    type nat hook postrouting priority 100; policy accept;",
            '    ip saddr {} oifname != "{}" masquerade'.format(self.ns_ip, self.host_if),
            "  }",
            "}",
        ]
        _sh(["nft", "-f", "-"], input="\n".join(rules) + "\n")
        self.made.append("table")
        # after the table exists: another user's release sees it and leaves forwarding on
        vlab_tool.forwarding_acquire()

    def share(self, cidr):
        """Let the segment ``cidr`` behind the namespace out through the uplink too,
        the way a home router does: forwarding on and a masquerade inside the
        namespace (both go with it). The host's filter still lets only the
        allowed hosts through."""
        self.ns.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        self.ns.run(["nft", "-f", "-"], input=(
            "table ip netlab_share {\n"
            "  chain postrouting {\n"
            "    type nat hook postrouting priority 100; policy accept;\n"
            '    ip saddr %s oifname "uplink0" masquerade\n'
            "  }\n"
            "}\n") % cidr)

    def cut(self):
        """No way out any more: the namespace's default route and the NAT go."""
        self.ns.run(["ip", "route", "del", "default"], check=False)
        if "table" in self.made:
            _sh(["nft", "delete", "table", "ip", self.table], check=False)
            self.made.remove("table")

    def remove(self):
        if "table" in self.made:
            _sh(["nft", "delete", "table", "ip", self.table], check=False)
        if "veth" in self.made:
            _sh(["ip", "link", "delete", self.host_if], check=False)
        self.made = []
        vlab_tool.forwarding_release(self.table)
    