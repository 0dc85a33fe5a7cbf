"""
DHCP ``off`` mode on the real path (docs/networking.rst, "``off`` -- DHCP is
handled elsewhere").

netlab's networking node in ``off`` mode (the netnode states applied in the server
namespace: dnsmasq for TFTP and DNS, nginx) and, on the same bridge, the home
router's DHCP server in a namespace of its own: a plain dnsmasq, then isc-dhcpd,
each configured with exactly the lines ``salt-call netlab.boot_off_mode`` prints
for it (``dhcpd -t`` parses the isc-dhcpd ones first). Scripted PXE clients then show that the router hands out the boot answers (BIOS and UEFI
firmware: the iPXE binary and netlab as next-server, whose TFTP serves it; iPXE:
netlab's script URL for its MAC; the pxelinux node: pxelinux.0; a machine that is
no node: an address and no boot file) and that netlab's dnsmasq answers no DHCP.

``boot.ipxe``, the generic script for a DHCP server that gives every machine the
same file, is fetched from netlab's nginx and run for each MAC by a small iPXE
interpreter (``lib.ipxe_script``; booting iPXE would need a VM): a node's MAC
chains that node's script, any other MAC stops.
"""

import concurrent.futures
import pathlib
import shutil
import time

import pytest

from lib import daemons as daemons_lib
from lib import ipxe_script, netns
from lib.clients import pxe_discover
from lib.netnodelab import NetnodeLab

pytestmark = [pytest.mark.e2e]

CIDR = "10.76.0.0/24"
NETNODE_IP = "10.76.0.2"
ROUTER_IP = "10.76.0.1"
PORT = 8080
NODES = {
    "nuc1": {"mac": "52:54:00:76:0a:11", "ip": "10.76.0.11", "role": "controller"},
    "nuc2": {"mac": "52:54:00:76:0a:12", "ip": "10.76.0.12", "role": "compute",
             "boot": {"loader": "pxelinux"}},
}
UNKNOWN_MAC = "52:54:00:76:0a:99"
SCRIPTS = "http://{}:{}/boot/".format(NETNODE_IP, PORT)


@pytest.fixture(scope="module")
def off(e2e_ready, tmp_path_factory):  # pylint: disable=unused-argument
    """netlab in off mode; the router's namespace on the same bridge (the router
    fixture starts its DHCP server there)."""
    start = time.monotonic()
    root = tmp_path_factory.mktemp("dhcp-off")
    seg = netns.Segment(cidr=CIDR, server_ip=NETNODE_IP)
    nn = None
    try:
        nn = NetnodeLab(seg, root, NODES, dhcp_mode="off", http_port=PORT)
        nn.fake_boot_files()
        nn.apply()
        lines = nn.salt.call("netlab.boot_off_mode")
        seg.add_client("router", "52:54:00:76:00:01", ip=ROUTER_IP)
        for node_id, spec in NODES.items():
            seg.add_client(node_id, spec["mac"])
        seg.add_client("unknown", UNKNOWN_MAC)
        print("\n[dhcp-off] netnode in off mode applied: {:.1f} s".format(
            time.monotonic() - start))
        yield {"seg": seg, "nn": nn, "tmp": root, "lines": lines}
    finally:
        if nn is not None:
            nn.stop()
        seg.destroy()


def _router_dnsmasq(off, ns, tmp):
    conf = pathlib.Path(daemons_lib.router_dnsmasq_conf(
        tmp / "router.conf", "eth0", "10.76.0.100", "10.76.0.150", router=ROUTER_IP))
    # no-ping: the router offers a dynamic address at once instead of ~3 s later
    # (its ping check is not under test); the pasted lines follow
    conf.write_text(conf.read_text() + "no-ping\n" + off["lines"]["dnsmasq"])
    return ["dnsmasq", "-k", "-C", str(conf), "--pid-file=", "--user=root",
            "--log-facility=" + str(tmp / "router.log")]


def _router_isc_dhcpd(off, ns, tmp):
    if not shutil.which("dhcpd"):
        pytest.skip("dhcpd missing: isc-dhcp-server (see test/apt-packages.txt)")
    conf = tmp / "dhcpd.conf"
    conf.write_text("ping-check false;\n"   # as no-ping above
                    "subnet 10.76.0.0 netmask 255.255.255.0 {\n"
                    "  range 10.76.0.100 10.76.0.150;\n"
                    "  option routers %s;\n"
                    "}\n" % ROUTER_IP + off["lines"]["isc_dhcpd"])
    ns.run(["dhcpd", "-t", "-4", "-cf", conf])   # the pasted lines parse
    (tmp / "dhcpd.leases").write_text("")
    return ["dhcpd", "-4", "-f", "-d", "-cf", conf, "-lf", tmp / "dhcpd.leases",
            "-pf", tmp / "dhcpd.pid", "eth0"]


@pytest.fixture(params=["dnsmasq", "isc-dhcpd"])
def router(request, off, tmp_path):
    """The home router's DHCP server with the lines netlab.boot_off_mode printed
    for it pasted into its config."""
    ns = off["seg"].clients["router"]
    argv = {"dnsmasq": _router_dnsmasq, "isc-dhcpd": _router_isc_dhcpd}[request.param](
        off, ns, tmp_path)
    reg = daemons_lib.Daemons()
    try:
        reg.start(ns, "router-" + request.param, argv, log=str(tmp_path / "router.out"),
                  ready=lambda: daemons_lib.port_open(ns, 67, "udp"))
        yield request.param
    finally:
        reg.stop_all()


def _discover_all(seg, asks):
    """Every (client, arch, user class) DISCOVER at once: each listens 2 s (the
    router answers static and, with no-ping, dynamic addresses at once)."""
    with concurrent.futures.ThreadPoolExecutor(len(asks)) as pool:
        futs = {key: pool.submit(pxe_discover, seg.clients[key[0]], arch=key[1],
                                 user_class=key[2], timeout=2) for key in asks}
        return {key: fut.result() for key, fut in futs.items()}


def test_printed_lines_make_the_router_answer_the_boot_requests(off, router):
    start = time.monotonic()
    seg = off["seg"]
    # netlab's own dnsmasq: TFTP and DNS, no DHCP socket at all
    assert not daemons_lib.port_open(seg.server, 67, "udp")
    assert daemons_lib.port_open(seg.server, 69, "udp")
    asks = [("nuc1", 0, None), ("nuc1", 7, None), ("nuc1", 0, "iPXE"), ("nuc2", 0, None),
            ("unknown", 0, None), ("unknown", 7, None), ("unknown", 0, "iPXE")]
    got = _discover_all(seg, asks)
    # one answer each, from the router only: netlab answers no DHCP in off mode
    for key, replies in got.items():
        assert [(r["server_id"], r["server_ip"]) for r in replies] == [
            (ROUTER_IP, ROUTER_IP)], (key, replies)
    answer = {key: replies[0] for key, replies in got.items()}

    def boot(key):
        return answer[key]["yiaddr"], answer[key]["boot"], answer[key]["siaddr"]

    assert boot(("nuc1", 0, None)) == ("10.76.0.11", "undionly.kpxe", NETNODE_IP)
    assert boot(("nuc1", 7, None)) == ("10.76.0.11", "ipxe.efi", NETNODE_IP)
    assert boot(("nuc1", 0, "iPXE")) == ("10.76.0.11", SCRIPTS + "nuc1.ipxe", NETNODE_IP)
    assert boot(("nuc2", 0, None)) == ("10.76.0.12", "pxelinux.0", NETNODE_IP)
    assert answer[("nuc1", 0, None)].get("hostname") == "nuc1"
    # a machine that is no node: an address from the router's range, no boot answer
    for key in asks[4:]:
        assert answer[key]["boot"] == "" and answer[key]["siaddr"] != NETNODE_IP, answer[key]
        assert answer[key]["yiaddr"].startswith("10.76.0.1"), answer[key]
    # the next-server serves the files the firmware was told to load
    seg.set_client_ip("nuc1", "10.76.0.11")
    cli = seg.clients["nuc1"]
    for name, src in (("undionly.kpxe", "/usr/lib/ipxe/undionly.kpxe"),
                      ("ipxe.efi", "/usr/lib/ipxe/ipxe.efi"),
                      ("pxelinux.0", "/usr/lib/PXELINUX/pxelinux.0")):
        dest = off["tmp"] / ("got-" + name)
        cli.run(["tftp", "-m", "binary", NETNODE_IP, "-c", "get", name, str(dest)],
                timeout=30)
        assert dest.read_bytes() == pathlib.Path(src).read_bytes(), name
    # and the URL iPXE was given is nuc1's script
    script = cli.run(["curl", "-fsS", SCRIPTS + "nuc1.ipxe"]).stdout
    assert script.startswith("#!ipxe") and "netlab.node=nuc1" in script
    print("\n[dhcp-off] {}: boot answers, TFTP, script: {:.1f} s".format(
        router, time.monotonic() - start))


def test_boot_ipxe_chains_the_script_of_the_machine_by_mac(off):
    start = time.monotonic()
    seg = off["seg"]
    seg.set_client_ip("unknown", "10.76.0.99")
    cli = seg.clients["unknown"]

    def fetch(url):
        res = cli.run(["curl", "-fsS", url], check=False)
        return res.stdout if res.returncode == 0 else None

    generic = fetch(SCRIPTS + "boot.ipxe")
    assert generic is not None
    for node_id, spec in NODES.items():
        ran = ipxe_script.run(generic, {"mac": spec["mac"]}, fetch)
        assert ran.chained == SCRIPTS + node_id + ".ipxe", (node_id, generic)
        assert ran.chained_body.startswith("#!ipxe")
        assert "netlab.node=" + node_id in ran.chained_body
        assert "BOOTIF=01-" + spec["mac"].replace(":", "-") in ran.chained_body
    stranger = ipxe_script.run(generic, {"mac": UNKNOWN_MAC}, fetch)
    assert stranger.chained is None and stranger.exit == 1, generic
    assert stranger.echoed == ["netlab: {} is not a lab node".format(UNKNOWN_MAC)]
    print("\n[dhcp-off] boot.ipxe for 3 MACs: {:.1f} s".format(time.monotonic() - start))
