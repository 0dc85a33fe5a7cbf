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
interpreter (``lib.ipxe_script``): a node's MAC chains that node's script, any
other MAC stops. Then real iPXE runs it: a diskless VM (SeaBIOS and qemu's iPXE
boot ROM, no operating system) with two NICs boots from its second one, nuc1's,
beside a router that gives every iPXE client ``boot.ipxe``; iPXE chains nuc1's
script and loads its kernel, although its first NIC has another MAC.
"""

import concurrent.futures
import pathlib
import shutil
import time

import pytest

from lib import daemons as daemons_lib
from lib import ipxe_script, netns, qmpvm
from lib.clients import pxe_discover
from lib.netnodelab import NetnodeLab
from lib.vm import serial_text, wait_for

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
# the first NIC of the two-NIC machine: no lab node's, cabled nowhere
ONBOARD_MAC = "52:54:00:76:0a:98"
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
        # booted from its second NIC: the script must name the boot NIC (netX),
        # not another port (net0)
        ran = ipxe_script.run(generic, {"netX/mac": spec["mac"], "net0/mac": ONBOARD_MAC,
                                        "mac": ONBOARD_MAC}, fetch)
        assert ran.chained == SCRIPTS + node_id + ".ipxe", (node_id, generic)
        assert ran.chained_body.startswith("#!ipxe")
        assert "netlab.node=" + node_id in ran.chained_body
        assert "BOOTIF=01-" + spec["mac"].replace(":", "-") in ran.chained_body
    stranger = ipxe_script.run(generic, {"netX/mac": UNKNOWN_MAC, "mac": NODES["nuc1"]["mac"]},
                               fetch)
    assert stranger.chained is None and stranger.exit == 1, generic
    assert stranger.echoed == ["netlab: {} is not a lab node".format(UNKNOWN_MAC)]
    print("\n[dhcp-off] boot.ipxe for 3 MACs: {:.1f} s".format(time.monotonic() - start))


def _ipxe_fetches(access_log):
    """(client IP, path) of every request iPXE made, in order."""
    out = []
    for line in serial_text(str(access_log)).splitlines():
        if "iPXE/" in line and '"GET ' in line:
            out.append((line.split()[0], line.split('"GET ', 1)[1].split()[0]))
    return out


def test_real_ipxe_on_a_two_nic_machine_chains_the_script_of_the_nic_it_booted_from(
        off, tmp_path):
    start = time.monotonic()
    seg, nn = off["seg"], off["nn"]
    ns = seg.clients["router"]
    # a router that can only give every machine the same file: boot.ipxe to iPXE
    conf = pathlib.Path(daemons_lib.router_dnsmasq_conf(
        tmp_path / "generic.conf", "eth0", "10.76.0.100", "10.76.0.150", router=ROUTER_IP))
    conf.write_text(conf.read_text() + "no-ping\ndhcp-userclass=set:ipxe,iPXE\n"
                    "dhcp-boot=tag:ipxe,{}boot.ipxe\n".format(SCRIPTS))
    access = nn.run_dir / "nginx-access.log"
    before = len(_ipxe_fetches(access)) if access.exists() else 0
    reg = daemons_lib.Daemons()
    vm = None
    try:
        reg.start(ns, "router-generic", ["dnsmasq", "-k", "-C", str(conf), "--pid-file=",
                                         "--user=root"],
                  log=str(tmp_path / "router.out"),
                  ready=lambda: daemons_lib.port_open(ns, 67, "udp"))
        vm = qmpvm.QmpVm(seg.server, seg.bridge, NODES["nuc1"]["mac"], tmp_path / "vm",
                         "nltwonic", unplugged_macs=[ONBOARD_MAC], serial_console=True)
        vm.power.on()
        serial = tmp_path / "vm" / "serial.log"

        def done():
            # iPXE loaded the chained script's kernel, or boot.ipxe stopped
            fetched = [path for _, path in _ipxe_fetches(access)[before:]]
            return (any(path.endswith("/vmlinuz") for path in fetched)
                    or "is not a lab node" in serial_text(str(serial)))

        # TCG: SeaBIOS, the boot ROM, a DHCP round and three HTTP fetches; ~20 s quiet
        wait_for(done, 240, "iPXE to run boot.ipxe (serial log {})".format(serial))
    finally:
        if vm is not None:
            vm.stop()
        reg.stop_all()
    fetched = _ipxe_fetches(access)[before:]
    paths = [path for _, path in fetched]
    console = serial_text(str(serial))
    assert "is not a lab node" not in console, console[-2000:]
    # the firmware numbered the uncabled NIC first: iPXE booted from net1
    assert "Configuring (net1 {}".format(NODES["nuc1"]["mac"]) in console, console[-2000:]
    assert paths[:2] == ["/boot/boot.ipxe", "/boot/nuc1.ipxe"], (fetched, console[-2000:])
    assert paths[2].endswith("/vmlinuz"), fetched
    # all from the address the router leased to the machine (its boot NIC's)
    assert len({ip for ip, _ in fetched}) == 1 and fetched[0][0].startswith("10.76.0.1"), fetched
    print("\n[dhcp-off] real iPXE, two NICs, boot.ipxe -> nuc1.ipxe: {:.1f} s".format(
        time.monotonic() - start))
