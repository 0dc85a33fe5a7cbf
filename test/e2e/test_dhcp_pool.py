"""
Full DHCP mode with a pool, on real dnsmasq with netlab's rendered config: a
machine that is not a node gets a pool address and never a boot answer; a node
gets its own address and its boot file; discovery still finds the stranger.
"""

import copy
import ipaddress
import pathlib

import jinja2
import pytest

import netlab_boot
import netlab_boot_dhcp
import netlab_discover
import netlab_lab
from lib.clients import pxe_discover, udhcpc
from lib.daemons import Daemons, wait_for

REPO = pathlib.Path(__file__).resolve().parents[2]
NODE_MAC = "52:54:00:6e:00:11"
STRANGER_MAC = "52:54:00:6e:00:99"


@pytest.fixture
def pool_lab(segment_factory, example_pillar, tmp_path):
    seg = segment_factory(cidr="10.78.0.0/24", server_ip="10.78.0.2")
    raw = copy.deepcopy(example_pillar)
    raw["network"].update(interface="br0", cidr="10.78.0.0/24", gateway=None)
    raw["network"]["dns"] = {"enabled": False}
    raw["network"]["dhcp"] = {"mode": "full",
                              "pool": {"start": "10.78.0.100", "end": "10.78.0.120"}}
    raw["netnode"].update(ip="10.78.0.2", storage=str(tmp_path / "srv"))
    nuc1 = raw["nodes"]["nuc1"]
    nuc1.update(mac=NODE_MAC, ip="10.78.0.11")
    raw["nodes"] = {"nuc1": nuc1}
    lab = netlab_lab.load(raw)
    log = tmp_path / "dnsmasq.log"
    data = netlab_boot_dhcp.dnsmasq(lab, {"leasefile": str(tmp_path / "leases"), "user": "root",
                                     "log_facility": str(log)})
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(
        str(REPO / "netlab" / "files" / "netnode")), undefined=jinja2.StrictUndefined)
    conf = tmp_path / "dnsmasq.conf"
    conf.write_text(env.get_template("dnsmasq.conf.jinja").render(d=data))
    pathlib.Path(lab.netnode.tftp_root).mkdir(parents=True, exist_ok=True)
    daemons = Daemons()
    try:
        daemons.start(seg.server, "dnsmasq", ["dnsmasq", "-k", "-C", str(conf), "--pid-file="],
                      log=str(tmp_path / "dnsmasq.out"),
                      ready=lambda: log.exists() and "started" in log.read_text())
        seg.add_client("node", NODE_MAC)
        seg.add_client("stranger", STRANGER_MAC)
        yield {"seg": seg, "lab": lab, "conf": conf.read_text(), "log": log,
               "tmp": tmp_path}
    finally:
        daemons.stop_all()


def test_pool_serves_strangers_an_address_and_no_boot_answer(pool_lab):
    assert "dhcp-ignore" not in pool_lab["conf"]
    cli = pool_lab["seg"].clients["stranger"]
    for arch in (0, 7):
        offers = pxe_discover(cli, arch=arch)
        assert offers, "a machine that is not a node gets a pool address"
        for offer in offers:
            ip = ipaddress.ip_address(offer["yiaddr"])
            assert ipaddress.ip_address("10.78.0.100") <= ip <= ipaddress.ip_address(
                "10.78.0.120")
            assert offer["boot"] == "" and not offer["pxe_options"], offer
    ipxe = pxe_discover(cli, user_class="iPXE")
    assert ipxe and all(o["boot"] == "" for o in ipxe), ipxe
    lease = udhcpc(cli, pool_lab["tmp"], tries=3)
    assert lease is not None
    assert ipaddress.ip_address(lease["ip"]) in ipaddress.ip_network("10.78.0.0/24")
    assert not lease.get("boot_file")


def test_node_still_gets_its_address_and_boot_file(pool_lab):
    cli = pool_lab["seg"].clients["node"]
    offers = pxe_discover(cli, arch=0)
    assert [o["yiaddr"] for o in offers] == ["10.78.0.11"]
    assert offers[0]["boot"] == netlab_boot.IPXE_BIOS
    ipxe = pxe_discover(cli, user_class="iPXE")
    assert ipxe[0]["boot"] == "http://10.78.0.2:{}/boot/nuc1.ipxe".format(
        pool_lab["lab"].netnode.http_port)


def test_discovery_finds_the_stranger_in_pool_mode(pool_lab):
    pxe_discover(pool_lab["seg"].clients["stranger"], arch=0)
    pxe_discover(pool_lab["seg"].clients["node"], arch=0)
    wait_for(lambda: STRANGER_MAC in pool_lab["log"].read_text(), 10, "dnsmasq's log")
    seen = netlab_discover.parse_log(pool_lab["log"].read_text().splitlines())
    assert [m["mac"] for m in netlab_discover.unknown(seen, pool_lab["lab"])] == [
        STRANGER_MAC]
