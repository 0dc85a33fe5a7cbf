"""
Real clients for e2e tests, run inside client namespaces.

* :func:`udhcpc` -- busybox's DHCP client: the lease it got (IP, hostname, boot
  file, server) or ``None``;
* :func:`pxe_discover` -- a scripted DHCPDISCOVER like a PXE ROM or iPXE
  (``tools/netlab_dhcp_client.py``); unlike udhcpc/dhclient it also shows proxyDHCP
  offers (no address, boot file only).
"""

import json
import pathlib
import stat
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
PYTHON = sys.executable
DHCP_TOOL = str(REPO / "tools" / "netlab_dhcp_client.py")


UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc calls this with deconfig|bound|renew|leasefail|nak
case "$1" in
  bound|renew)
    env > "{out}"
    ip addr flush dev "$interface"
    ip addr add "$ip/${{mask:-24}}" dev "$interface"
    ;;
esac
exit 0
"""


def udhcpc(ns, tmp_path, ifname="eth0", tries=3, vendor=None):
    """Run busybox udhcpc once in ``ns``; returns the lease env (``ip``,
    ``hostname``, ``boot_file``, ``siaddr``, ``serverid``...) or ``None``.
    The address is configured on the interface when a lease comes."""
    tmp_path = pathlib.Path(tmp_path)
    out = tmp_path / "udhcpc-{}.env".format(ns.name)
    script = tmp_path / "udhcpc-{}.sh".format(ns.name)
    script.write_text(UDHCPC_SCRIPT.format(out=out))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    if out.exists():
        out.unlink()
    # -T 3: a DISCOVER every 3 s, so an offer that dnsmasq holds back ~3 s for its
    # ping check (dynamic addresses) still lands inside the client's window on TCG
    cmd = ["udhcpc", "-i", ifname, "-f", "-q", "-n", "-t", str(tries), "-T", "3",
           "-A", "1", "-s", str(script), "-O", "hostname", "-O", "domain"]
    if vendor:
        cmd += ["-V", vendor]
    res = ns.run(cmd, check=False, timeout=tries * 5 + 20)
    if res.returncode != 0 or not out.exists():
        return None
    env = {}
    for line in out.read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            env[k] = v
    return env


def pxe_discover(ns, mac=None, arch=0, user_class=None, timeout=8.0, pxe=True,
                 ifname="eth0"):
    """One scripted DHCPDISCOVER like a PXE ROM (vendor class ``PXEClient``,
    option 93 = ``arch``) or iPXE (``user_class='iPXE'``) from inside ``ns``;
    returns every reply (see ``netlab_dhcp.parse_reply``), proxy offers included.

    It listens for ``timeout`` seconds: 8 by default, well over the ~3 s that
    dnsmasq holds an offer of a dynamic address for its ping check (a test that
    expects *no* answer may pass a shorter time: a late answer fails it anyway
    only if it comes, never by chance)."""
    cmd = [PYTHON, DHCP_TOOL, "discover", ifname, "--timeout", str(timeout)]
    if mac:
        cmd += ["--mac", mac]
    if pxe:
        cmd += ["--pxe", "--arch", str(arch)]
    if user_class:
        cmd += ["--user-class", user_class]
    return json.loads(ns.run(cmd, timeout=timeout + 20).stdout)


def pxe_request(ns, server, mac, client_ip, arch=7, timeout=3.0):
    """The second step of a PXE client beside a proxyDHCP server (UEFI firmware):
    a DHCPREQUEST to the proxy's port 4011; returns the parsed answer or None."""
    cmd = [PYTHON, DHCP_TOOL, "pxe-request", server, "--mac", mac, "--client-ip", client_ip,
           "--arch", str(arch), "--timeout", str(timeout)]
    return json.loads(ns.run(cmd, timeout=timeout + 20).stdout)
