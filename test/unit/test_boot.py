"""
Boot data of the networking node (_utils/netlab_boot.py) and the configs the
netnode templates render from it, plus DHCP packet handling (_utils/netlab_dhcp.py).

Templates are rendered with plain Jinja2 here, the way Salt's file.managed renders
them (the e2e tier starts real daemons from the configs the states render).
"""

import copy
import os
import re
import struct

import jinja2
import pytest

import netlab_boot
import netlab_boot_dhcp
import netlab_dhcp
import netlab_lab
import netlab_netnode
from conftest import REPO

TEMPLATES = REPO / "netlab" / "files" / "netnode"


def render(name, **ctx):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             undefined=jinja2.StrictUndefined)
    return env.get_template(name).render(**ctx)


def lines(text, key):
    return [ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith(key + "=")]


@pytest.fixture
def raw(example_pillar, tmp_path):
    raw = copy.deepcopy(example_pillar)
    raw["netnode"]["storage"] = str(tmp_path / "srv")
    return raw


def load(raw, **network_dhcp):
    raw = copy.deepcopy(raw)
    raw["network"]["dhcp"].update(network_dhcp)
    return netlab_lab.load(raw)


def no_realpath(p):
    return p


# --------------------------------------------------------------------------- dnsmasq
@pytest.mark.parametrize("mode", ["full", "proxy"])
def test_dnsmasq_one_host_line_per_mac_known_tag_and_ignore_unknown(raw, mode):
    lab = load(raw, mode=mode)
    text = render("dnsmasq.conf.jinja", d=netlab_boot_dhcp.dnsmasq(lab))
    hosts = lines(text, "dhcp-host")
    macs = [h.split(",")[0] for h in hosts]
    assert sorted(macs) == sorted(n.mac for n in lab.nodes.values())
    assert len(macs) == len(set(macs)), "two dhcp-host lines for one MAC drop tags"
    for h in hosts:
        assert ",set:known," in h + ","
    assert lines(text, "dhcp-ignore") == ["tag:!known"]
    # every boot answer is tied to a node tag: an unknown MAC matches none of them
    # (proxy mode's entries for other machines only make dnsmasq log them: ignored)
    for b in lines(text, "dhcp-boot") + lines(text, "pxe-service"):
        assert re.match(r"^tag:nl-nuc[123],", b) or (
            mode == "proxy" and b.startswith("tag:!known,") and
            b.endswith(",netlab-not-a-lab-node")), b


def test_dnsmasq_full_mode_static_leases_options_and_no_pool(raw):
    lab = load(raw, mode="full")
    text = render("dnsmasq.conf.jinja", d=netlab_boot_dhcp.dnsmasq(lab))
    assert "dhcp-host=94:c6:91:aa:00:01,set:known,set:nl-nuc1,192.168.42.11,nuc1,12h" \
        in text.splitlines()
    assert lines(text, "dhcp-range") == ["192.168.42.0,static,255.255.255.0,12h"]
    assert "dhcp-authoritative" in text.splitlines()
    assert "option:router,192.168.42.1" in lines(text, "dhcp-option")
    assert "option:dns-server,192.168.42.2" in lines(text, "dhcp-option")
    assert "option:domain-name,lab.example" in lines(text, "dhcp-option")
    assert lines(text, "pxe-service") == []


def test_dnsmasq_full_mode_pool(raw):
    raw["network"]["dhcp"]["pool"] = {"start": "192.168.42.100", "end": "192.168.42.199"}
    lab = load(raw, mode="full")
    d = netlab_boot_dhcp.dnsmasq(lab)
    assert d["dhcp_ranges"] == ["192.168.42.100,192.168.42.199,255.255.255.0,12h"]
    text = render("dnsmasq.conf.jinja", d=d)
    # other machines get a pool address: no dhcp-ignore of unknown MACs ...
    assert lines(text, "dhcp-ignore") == []
    # ... and still never a boot answer: each one needs a node's tag
    assert lines(text, "dhcp-boot")
    for b in lines(text, "dhcp-boot"):
        assert re.match(r"^tag:nl-nuc[123],", b), b


def test_dnsmasq_proxy_mode_gives_no_addresses(raw):
    lab = load(raw, mode="proxy")
    text = render("dnsmasq.conf.jinja", d=netlab_boot_dhcp.dnsmasq(lab))
    assert lines(text, "dhcp-range") == ["192.168.42.0,proxy,255.255.255.0"]
    assert lines(text, "dhcp-host")[0] == "94:c6:91:aa:00:01,set:known,set:nl-nuc1"
    assert lines(text, "dhcp-option") == []
    assert "dhcp-authoritative" not in text
    assert 'tag:nl-nuc1,tag:!ipxe,x86PC,"netlab nuc1",undionly.kpxe' in lines(text, "pxe-service")
    assert 'tag:nl-nuc1,tag:!ipxe,X86-64_EFI,"netlab nuc1",ipxe.efi' in lines(text, "pxe-service")


def test_dnsmasq_proxy_mode_without_nodes_still_logs_other_machines(raw):
    """A fresh lab (no node yet): dnsmasq logs PXE requests in proxy mode only when a
    boot service matches, so there is one for machines that are not nodes; they are
    ignored (dhcp-ignore), never answered, for discovery only."""
    raw["nodes"] = {}
    text = render("dnsmasq.conf.jinja", d=netlab_boot_dhcp.dnsmasq(load(raw, mode="proxy")))
    assert lines(text, "pxe-service") == [
        'tag:!known,{},"netlab: not a lab node",netlab-not-a-lab-node'.format(csa)
        for csa in ("x86PC", "X86-64_EFI", "BC_EFI")]
    assert lines(text, "dhcp-ignore") == ["tag:!known"]
    assert lines(text, "dhcp-boot") == []


def test_dnsmasq_off_mode_serves_no_dhcp(raw):
    lab = load(raw, mode="off")
    text = render("dnsmasq.conf.jinja", d=netlab_boot_dhcp.dnsmasq(lab))
    for key in ("dhcp-range", "dhcp-host", "dhcp-boot", "pxe-service"):
        assert lines(text, key) == [], key
    assert "enable-tftp" in text.splitlines()  # TFTP and DNS still run
    assert lines(text, "host-record")


def test_dnsmasq_binds_only_to_lab_interface_and_dns_records(raw):
    lab = load(raw)
    text = render("dnsmasq.conf.jinja", d=netlab_boot_dhcp.dnsmasq(lab))
    assert lines(text, "interface") == ["enp3s0"]
    assert "bind-interfaces" in text.splitlines()
    assert lines(text, "host-record") == [
        "netnode.lab.example,netnode,192.168.42.2",
        "nuc1.lab.example,nuc1,192.168.42.11",
        "nuc2.lab.example,nuc2,192.168.42.12",
        "nuc3.lab.example,nuc3,192.168.42.13",
    ]
    assert lines(text, "server") == ["192.168.42.1"]
    assert "no-resolv" in text.splitlines() and "no-hosts" in text.splitlines()
    assert lines(text, "local") == ["/lab.example/"]


def test_dnsmasq_dns_disabled(raw):
    raw["network"]["dns"]["enabled"] = False
    text = render("dnsmasq.conf.jinja", d=netlab_boot_dhcp.dnsmasq(load(raw, mode="full")))
    assert lines(text, "port") == ["0"]
    assert lines(text, "host-record") == []
    assert "option:dns-server,192.168.42.1" in lines(text, "dhcp-option")


def test_dnsmasq_client_arch_chainloads_ipxe(raw):
    d = netlab_boot_dhcp.dnsmasq(load(raw, mode="full"))
    text = render("dnsmasq.conf.jinja", d=d)
    assert "set:ipxe,iPXE" in lines(text, "dhcp-userclass")
    assert sorted(lines(text, "dhcp-match")) == ["set:efi,option:client-arch,7",
                                                 "set:efi,option:client-arch,9"]
    boot = [b for b in lines(text, "dhcp-boot") if b.startswith("tag:nl-nuc1,")]
    assert boot == [
        "tag:nl-nuc1,tag:ipxe,http://192.168.42.2:80/boot/nuc1.ipxe,,192.168.42.2",
        "tag:nl-nuc1,tag:!ipxe,tag:efi,ipxe.efi,,192.168.42.2",
        "tag:nl-nuc1,tag:!ipxe,tag:!efi,undionly.kpxe,,192.168.42.2",
    ]


@pytest.mark.parametrize("firmware,expect", [
    ("bios", "tag:nl-nuc2,tag:!ipxe,undionly.kpxe,,192.168.42.2"),
    ("uefi", "tag:nl-nuc2,tag:!ipxe,ipxe.efi,,192.168.42.2"),
])
def test_dnsmasq_forced_firmware(raw, firmware, expect):
    raw["nodes"]["nuc2"]["boot"]["firmware"] = firmware
    d = netlab_boot_dhcp.dnsmasq(load(raw, mode="full"))
    nuc2 = [b for b in d["dhcp_boot"] if b.startswith("tag:nl-nuc2,")]
    assert nuc2 == ["tag:nl-nuc2,tag:ipxe,http://192.168.42.2:80/boot/nuc2.ipxe,,192.168.42.2",
                    expect]


def test_dnsmasq_ra_only_when_asked(raw):
    lab = load(raw, mode="full")
    assert "enable-ra" not in render("dnsmasq.conf.jinja", d=netlab_boot_dhcp.dnsmasq(lab))
    text = render("dnsmasq.conf.jinja", d=netlab_boot_dhcp.dnsmasq(lab, {"ra": True}))
    assert "enable-ra" in text.splitlines()
    # SLAAC only: no DHCPv6 that iPXE would wait for (dnsmasq ignores the nodes there)
    assert "::,constructor:enp3s0,ra-only" in lines(text, "dhcp-range")


# --------------------------------------------------------------------------- pxelinux
def test_pxelinux_node_gets_pxelinux_over_tftp(raw):
    raw["nodes"]["nuc3"]["boot"] = {"loader": "pxelinux"}
    lab = load(raw, mode="proxy")
    d = netlab_boot_dhcp.dnsmasq(lab)
    assert [b for b in d["dhcp_boot"] if b.startswith("tag:nl-nuc3,")] == [
        "tag:nl-nuc3,tag:!efi,pxelinux.0,,192.168.42.2"]
    assert 'tag:nl-nuc3,tag:!ipxe,x86PC,"netlab nuc3",pxelinux.0' in d["pxe_services"]
    cfgs = netlab_boot.pxelinux_configs(lab, realpath=no_realpath)
    assert list(cfgs) == ["01-94-c6-91-aa-00-03"]
    text = render("pxelinux.cfg.jinja", p=cfgs["01-94-c6-91-aa-00-03"])
    assert "KERNEL images/current/vmlinuz" in text
    assert "initrd=images/current/initrd.img root=/dev/nfs" in text
    assert "netlab.node=nuc3" in text
    # pxelinux has no settings to expand: the initramfs asks DHCP itself
    assert " ip=dhcp " in text and "${" not in text and "BOOTIF" not in text


def test_pxelinux_with_uefi_is_refused_naming_the_key(raw):
    raw["nodes"]["nuc3"]["boot"] = {"loader": "pxelinux", "firmware": "uefi"}
    with pytest.raises(netlab_boot.BootError, match=r"netlab:nodes:nuc3:boot:loader"):
        netlab_netnode.prepare(load(raw))


# --------------------------------------------------------------------------- iPXE
def test_ipxe_script_names_kernel_initrd_root_and_hostname(raw):
    lab = load(raw)
    s = netlab_boot.ipxe_scripts(lab, realpath=no_realpath)["nuc2"]
    text = render("node.ipxe.jinja", s=s)
    root = os.path.join(raw["netnode"]["storage"], "roots", "nuc2")
    assert text.startswith("#!ipxe\n")
    # the initramfs takes iPXE's lease (expanded by iPXE) instead of a DHCP of its own
    assert "kernel http://192.168.42.2:80/images/current/vmlinuz initrd=initrd.img " \
           "root=/dev/nfs nfsroot=192.168.42.2:{},vers=3,tcp " \
           "ip=${{netX/ip}}::${{netX/gateway}}:${{netX/netmask}}:nuc2::off:${{netX/dns}} " \
           "BOOTIF=01-94-c6-91-aa-00-02 netlab.domain=${{netX/domain}} rw " \
           "console=ttyS0,115200 panic=10 netlab.node=nuc2\n".format(root) in text
    assert "initrd --name initrd.img http://192.168.42.2:80/images/current/initrd.img" in text
    assert "# hostname: nuc2" in text
    assert "boot" in text.splitlines()


def test_kernel_cmdline_stateless_and_extra(raw, tmp_path):
    raw["nodes"]["nuc3"]["root"] = {"mode": "stateless"}
    raw["image"]["kernel_cmdline"] = "quiet"
    lab = load(raw)
    build = tmp_path / "srv" / "images" / "b1" / "rootfs"
    build.mkdir(parents=True)
    os.symlink("b1", str(tmp_path / "srv" / "images" / "current"))
    line = netlab_boot.kernel_cmdline(lab, lab.node("nuc3"))
    assert "nfsroot=192.168.42.2:{},vers=3,tcp".format(build) in line
    assert line.endswith("netlab.node=nuc3 netlab.root=stateless netlab.seed=192.168.42.2:"
                         "{}/roots/nuc3.identity quiet".format(tmp_path / "srv"))


def test_boot_menu_chains_per_mac(raw):
    text = render("boot.ipxe.jinja", menu=netlab_boot.menu(load(raw)))
    assert "iseq ${netX/mac} 94:c6:91:aa:00:02 && chain http://192.168.42.2:80/boot/nuc2.ipxe ||" \
        in text
    assert text.rstrip().endswith("exit 1")


# --------------------------------------------------------------------------- nginx
def test_nginx_listens_on_lab_ip_only(raw):
    raw["netnode"]["http"] = {"port": 8080}
    text = render("nginx-server.conf.jinja", d=netlab_boot.nginx(load(raw)))
    assert re.findall(r"listen ([^;]+);", text) == ["192.168.42.2:8080"]
    assert "root {}/http;".format(raw["netnode"]["storage"]) in text


# --------------------------------------------------------------------------- NFS
def test_exports_each_root_only_to_its_node(raw):
    lab = load(raw)
    ex = netlab_boot.exports(lab, exists=lambda p: True, realpath=no_realpath)
    roots = raw["netnode"]["storage"] + "/roots/"
    assert [(e["path"], e["clients"]) for e in ex] == [
        (roots + "nuc1", [{"client": "192.168.42.11", "access": "rw"}]),
        (roots + "nuc2", [{"client": "192.168.42.12", "access": "rw"}]),
        (roots + "nuc3", [{"client": "192.168.42.13", "access": "rw"}]),
    ]
    text = render("exports.jinja", exports=ex)
    line = [ln for ln in text.splitlines() if ln.startswith(roots + "nuc2 ")][0]
    assert re.match(r"^\S+ 192\.168\.42\.12\(rw,sync,no_subtree_check,no_root_squash,"
                    r"fsid=[0-9a-f-]{36}\)$", line), line
    g = render("ganesha.conf.jinja", exports=ex, recovery_root="/r")
    blocks = re.findall(r"EXPORT \{(.*?)\n\}", g, re.S)
    assert len(blocks) == 3
    b2 = [b for b in blocks if 'Path = "{}nuc2"'.format(roots) in b][0]
    assert "Access_Type = None;" in b2  # nobody but the CLIENT below
    assert re.findall(r"CLIENT \{ Clients = ([^;]+); Access_Type = (\w+); \}", b2) == [
        ("192.168.42.12", "RW")]
    assert "Squash = No_Root_Squash;" in b2


def test_export_ids_are_stable_when_nodes_leave(raw):
    full = {e["path"]: e["id"] for e in netlab_boot.exports(load(raw), exists=lambda p: True)}
    del raw["nodes"]["nuc2"]
    fewer = {e["path"]: e["id"] for e in netlab_boot.exports(load(raw), exists=lambda p: True)}
    assert all(full[p] == i for p, i in fewer.items())
    assert len(set(full.values())) == len(full)


def test_stateless_image_read_only_to_subnet(raw):
    raw["nodes"]["nuc3"]["root"] = {"mode": "stateless"}
    ex = netlab_boot.exports(load(raw), exists=lambda p: True, realpath=lambda p: "/real/b7")
    image = [e for e in ex if e["key"].startswith("image:")][0]
    assert image["path"] == "/real/b7"
    assert image["clients"] == [{"client": "192.168.42.0/24", "access": "ro"}]
    ident = [e for e in ex if e["key"] == "identity:nuc3"][0]
    assert ident["clients"] == [{"client": "192.168.42.13", "access": "ro"}]
    assert not [e for e in ex if e["key"] == "root:nuc3"]


def test_missing_root_is_rendered_commented_out(raw):
    ex = netlab_boot.exports(load(raw), exists=lambda p: not p.endswith("nuc2"))
    text = render("exports.jinja", exports=ex)
    assert "# (not exported yet: {}/roots/nuc2 does not exist)".format(
        raw["netnode"]["storage"]) in text
    assert not [ln for ln in text.splitlines() if ln.startswith(
        raw["netnode"]["storage"] + "/roots/nuc2")]
    g = render("ganesha.conf.jinja", exports=ex, recovery_root="/r")
    assert g.count("EXPORT {") == 2


def test_replaced_root_changes_the_config(raw, tmp_path):
    root = tmp_path / "srv" / "roots" / "nuc1"
    root.mkdir(parents=True)
    before = render("ganesha.conf.jinja", exports=netlab_boot.exports(load(raw)),
                    recovery_root="/r")
    root.rename(tmp_path / "old")
    root.mkdir()
    after = render("ganesha.conf.jinja", exports=netlab_boot.exports(load(raw)),
                   recovery_root="/r")
    assert before != after


# --------------------------------------------------------------------------- removal
def test_removed_node_loses_every_answer(raw, tmp_path):
    (tmp_path / "srv" / "roots" / "nuc2").mkdir(parents=True)
    raw["nodes"]["nuc2"]["boot"]["loader"] = "pxelinux"
    before = netlab_netnode.prepare(load(raw, mode="full"))
    del raw["nodes"]["nuc2"]
    after = netlab_netnode.prepare(load(raw, mode="full"))
    assert "nuc2.ipxe" in before["scripts"] and "nuc2.ipxe" not in after["scripts"]
    assert before["pxelinux"] and not after["pxelinux"]
    conf = render("dnsmasq.conf.jinja", d=after["dnsmasq"])
    assert "94:c6:91:aa:00:02" not in conf
    assert "nuc2" not in conf and "192.168.42.12" not in conf
    exports = render("exports.jinja", exports=after["exports"])
    assert "nuc2" not in exports and "192.168.42.12" not in exports
    assert "94:c6:91:aa:00:02" not in render("boot.ipxe.jinja", menu=after["menu"])


def test_prune_leases(raw):
    raw["network"]["dhcp"]["pool"] = {"start": "192.168.42.100", "end": "192.168.42.199"}
    lab = load(raw, mode="full")
    text = ("1700000000 94:c6:91:aa:00:01 192.168.42.11 nuc1 *\n"
            "1700000000 94:c6:91:aa:00:09 192.168.42.19 gone *\n"
            "1700000000 52:54:00:00:00:01 192.168.42.150 laptop *\n"
            "1700000000 94:c6:91:aa:00:02 192.168.42.77 nuc2 *\n")
    kept, removed = netlab_boot_dhcp.prune_leases(text, lab)
    assert kept.splitlines() == [text.splitlines()[0], text.splitlines()[2]]
    assert [r.split()[3] for r in removed] == ["gone", "nuc2"]


# --------------------------------------------------------------------------- off mode
def test_off_mode_snippets_are_per_mac(raw):
    snip = netlab_boot_dhcp.off_mode_snippets(load(raw, mode="off"))
    assert snip["isc_dhcpd"].count("hardware ethernet") == 3
    assert "next-server 192.168.42.2;" in snip["isc_dhcpd"]
    assert 'filename "http://192.168.42.2:80/boot/nuc1.ipxe";' in snip["isc_dhcpd"]
    assert "dhcp-host=94:c6:91:aa:00:01,set:nl-nuc1,192.168.42.11,nuc1" in \
        snip["dnsmasq"].splitlines()
    assert all(b.startswith("dhcp-boot=tag:nl-") for b in snip["dnsmasq"].splitlines()
               if b.startswith("dhcp-boot"))


def test_prepare_rejects_unknown_service_control(raw):
    with pytest.raises(netlab_boot.BootError, match="netlab:lookup:service_control"):
        netlab_netnode.prepare(load(raw), {"service_control": "systemd"})


def test_power_packages_follow_the_drivers_the_nodes_use(raw, platform_defaults):
    params = platform_defaults
    drivers = {n: v["power"]["driver"] for n, v in raw["nodes"].items()}
    assert set(drivers.values()) >= {"wol", "ipmi"}  # the example lab's drivers
    assert netlab_netnode.prepare(load(raw), params)["power_pkgs"] == \
        ["ipmitool", "iputils-ping"]
    for node in raw["nodes"].values():
        node["power"] = {"driver": "manual"}
    assert netlab_netnode.prepare(load(raw), params)["power_pkgs"] == []
    raw["nodes"][sorted(raw["nodes"])[0]]["power"] = {"driver": "wol"}
    assert netlab_netnode.prepare(load(raw), params)["power_pkgs"] == ["iputils-ping"]
    # no platform parameters (a caller without map.jinja): nothing to install
    assert netlab_netnode.prepare(load(raw))["power_pkgs"] == []


# --------------------------------------------------------------------------- DHCP packets
def test_discover_packet_and_reply_parsing():
    pkt = netlab_dhcp.build_discover("52:54:00:12:34:56", 0xDEADBEEF,
                                     vendor_class="PXEClient:Arch:00007:UNDI:002001",
                                     client_arch=7, user_class="iPXE")
    assert pkt[0] == 1 and pkt[236:240] == netlab_dhcp.MAGIC
    opts = netlab_dhcp.parse_options(pkt[240:])
    assert opts[53] == b"\x01"
    assert opts[60] == b"PXEClient:Arch:00007:UNDI:002001"
    assert struct.unpack("!H", opts[93])[0] == 7
    assert opts[77] == b"iPXE"
    # turn it into an offer and parse it back
    reply = bytearray(pkt[:240])
    reply[0] = 2
    reply[16:20] = bytes([10, 0, 0, 5])
    reply[108:108 + 13] = b"undionly.kpxe"
    reply += bytes([53, 1, 2, 54, 4, 10, 0, 0, 1, 12, 4]) + b"nuc1" + bytes([255])
    parsed = netlab_dhcp.parse_reply(bytes(reply))
    assert parsed["message_type"] == "OFFER"
    assert parsed["yiaddr"] == "10.0.0.5"
    assert parsed["server_id"] == "10.0.0.1"
    assert parsed["hostname"] == "nuc1"
    assert parsed["file"] == "undionly.kpxe"
    assert parsed["xid"] == 0xDEADBEEF and parsed["chaddr"] == "52:54:00:12:34:56"


def test_ethernet_frame_checksums():
    frame = netlab_dhcp.ethernet_frame("52:54:00:12:34:56", b"x" * 300)
    ip = frame[14:34]
    assert netlab_dhcp._checksum(ip) == 0  # pylint: disable=protected-access
    assert frame[:6] == b"\xff" * 6 and frame[30:34] == b"\xff" * 4


def test_describe_names_the_server():
    text = netlab_dhcp.describe([{"server_id": "10.0.0.1", "server_ip": "10.0.0.1",
                                  "server_mac": "52:54:00:00:00:01", "offered": "10.0.0.9"}])
    assert "10.0.0.1" in text and "52:54:00:00:00:01" in text
