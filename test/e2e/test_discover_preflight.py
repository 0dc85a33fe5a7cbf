"""
Discovery and preflight against real dnsmasq on a lab segment in namespaces.

* A machine not in pillar PXE-boots (a scripted DISCOVER with the vendor class and
  option 93 of a BIOS and of a UEFI PXE ROM, from a client namespace): netlab's
  dnsmasq, started from the config the repository renders, gives it no answer,
  while a pillar node gets its offer; ``netlab.discover`` lists both unknown
  machines with MAC, firmware and time, and prints pillar lines that validate.
* Preflight on the networking node's namespace: a foreign DHCP server (a second
  dnsmasq playing the home router) found by netlab's rogue-DHCP probe fails full
  mode; a foreign process on the HTTP port is named, netlab's own dnsmasq on
  67/69 is not.
"""

import copy
import json

import jinja2
import yaml

import netlab_boot_dhcp
import netlab_lab
import netlab_preflight as pf
from lib import clients
from lib import daemons as daemons_lib
from lib.saltrunner import runner_loader

REPO = clients.REPO
KNOWN = "52:54:00:78:00:11"
BIOS_MAC = "52:54:00:78:00:31"
UEFI_MAC = "52:54:00:78:00:32"


def _lab_raw(seg, tmp_path, mode, run_dir):
    with open(REPO / "pillar.example", encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)["netlab"]
    raw["network"] = {"interface": seg.bridge, "cidr": str(seg.cidr),
                      "dhcp": {"mode": mode, "probe_timeout": 9},  # the rogue ping-checks ~3 s
                      "dns": {"enabled": False}}
    raw["netnode"] = {"id": "netnode", "ip": seg.server_ip, "storage": str(tmp_path / "srv")}
    raw["nodes"] = {"nuc1": {"mac": KNOWN, "ip": str(seg.cidr[11]), "role": "controller",
                             "power": {"driver": "manual"}}}
    raw["lookup"] = {"service_control": "process", "run_dir": str(run_dir)}
    return raw


def _start_netlab_dnsmasq(seg, daemons_reg, lab, run_dir):
    """netlab's dnsmasq from the repository's template, the way netlab.netnode
    renders it in process mode (log file in run_dir)."""
    d = netlab_boot_dhcp.dnsmasq(lab, {"leasefile": str(run_dir / "leases"), "user": "root",
                                  "log_facility": str(run_dir / "dnsmasq.log")})
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(
        str(REPO / "netlab" / "files" / "netnode")), undefined=jinja2.StrictUndefined)
    conf = run_dir / "dnsmasq.conf"
    conf.write_text(env.get_template("dnsmasq.conf.jinja").render(d=d))
    text = conf.read_text()
    assert "dhcp-ignore=tag:!known" in text and "log-dhcp" in text
    seg.server.run(["mkdir", "-p", lab.netnode.tftp_root])
    return daemons_reg.start(seg.server, "netlab-dnsmasq", ["dnsmasq", "-k", "-C", str(conf)],
                             log=run_dir / "dnsmasq.out",
                             ready=lambda: daemons_lib.port_open(seg.server, 67, "udp"))


def test_unknown_pxe_clients_get_no_answer_and_are_discovered(segment_factory, daemons,
                                                              tmp_path):
    seg = segment_factory(cidr="10.78.0.0/24", server_ip="10.78.0.2")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    raw = _lab_raw(seg, tmp_path, "full", run_dir)
    lab = netlab_lab.load(raw)
    _start_netlab_dnsmasq(seg, daemons, lab, run_dir)
    client = seg.add_client("pc", mac=BIOS_MAC)

    # unknown BIOS and UEFI PXE ROMs: no answer at all
    assert clients.pxe_discover(client, mac=BIOS_MAC, arch=0, timeout=3) == []
    assert clients.pxe_discover(client, mac=UEFI_MAC, arch=7, timeout=3) == []
    # the pillar node on the same wire gets its offer: dnsmasq does answer
    offers = clients.pxe_discover(client, mac=KNOWN, arch=0, timeout=9)
    assert [o["yiaddr"] for o in offers if o.get("message_type") == "OFFER"] == ["10.78.0.11"]

    runners = runner_loader(tmp_path / "master")
    # the log's place comes from lookup (process mode: <run_dir>/dnsmasq.log)
    ret = runners["netlab.discover"](pillar=copy.deepcopy(raw))
    assert ret["retcode"] == 0, ret
    assert ret["source"] == str(run_dir / "dnsmasq.log")
    found = {m["mac"]: m for m in ret["unknown"]}
    assert sorted(found) == [BIOS_MAC, UEFI_MAC]
    assert found[BIOS_MAC]["firmware"] == "bios"
    assert found[UEFI_MAC]["firmware"] == "uefi"
    assert found[BIOS_MAC]["vendor_class"].startswith("PXEClient:Arch:00000")
    assert found[BIOS_MAC]["first_seen"][:4].isdigit()  # ISO time
    added = yaml.safe_load(ret["pillar"])["nodes"]
    assert sorted(m["mac"] for m in added.values()) == [BIOS_MAC, UEFI_MAC]
    raw["nodes"].update(added)
    assert netlab_lab.validate(raw) == []

    # still no answer for them (discovery only reads)
    assert clients.pxe_discover(client, mac=BIOS_MAC, arch=0, timeout=2) == []

    # an unreadable log is a clear error, not a traceback
    bad = runners["netlab.discover"](log=str(tmp_path / "missing.log"), pillar=raw)
    assert bad["retcode"] == 1 and "cannot read dnsmasq's log" in bad["Error"]


def _ns_runner(ns):
    def run(argv):
        res = ns.run(argv, check=False)
        return res.returncode, res.stdout, res.stderr

    return run


def _ns_probe(ns, own):
    def probe(interface, timeout):
        cmd = [clients.PYTHON, clients.DHCP_TOOL, "probe", interface, "--timeout",
               str(timeout), "--own", own]
        return json.loads(ns.run(cmd, timeout=timeout + 20).stdout)

    return probe


def test_preflight_finds_foreign_dhcp_and_foreign_port_holder(segment_factory, daemons,
                                                               tmp_path):
    seg = segment_factory(cidr="10.78.1.0/24", server_ip="10.78.1.2")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    raw = _lab_raw(seg, tmp_path, "full", run_dir)
    raw["netnode"]["http"] = {"port": 8080}
    lab = netlab_lab.load(raw)
    _start_netlab_dnsmasq(seg, daemons, lab, run_dir)
    probe = _ns_probe(seg.server, seg.server_ip)
    holders = lambda proto, port: pf.listeners(proto, port, _ns_runner(seg.server))  # noqa: E731

    # netlab's own dnsmasq ignores the probe and holds 67/69: no problem
    assert pf.check_dhcp(lab, probe) == []
    assert pf.check_ports(lab, holders) == []
    assert pf.check_interface(lab, pf.interface_state(seg.bridge, _ns_runner(seg.server))) == []

    # a home router's DHCP server on the segment
    router = seg.add_client("router", mac="52:54:00:78:01:01", ip="10.78.1.1")
    conf = daemons_lib.router_dnsmasq_conf(tmp_path / "router.conf", "eth0", "10.78.1.100",
                                       "10.78.1.150")
    daemons.start(router, "router-dnsmasq", ["dnsmasq", "-k", "-C", conf],
                      log=tmp_path / "router.log",
                      ready=lambda: daemons_lib.port_open(router, 67, "udp"))
    problems = pf.check_dhcp(lab, probe)
    assert len(problems) == 1
    assert problems[0].startswith("network:dhcp:mode is full but another DHCP server answers "
                                  "on {}: 10.78.1.1 (MAC 52:54:00:78:01:01, offered 10.78.1."
                                  .format(seg.bridge))
    raw_proxy = copy.deepcopy(raw)
    raw_proxy["network"]["dhcp"]["mode"] = "proxy"
    assert pf.check_dhcp(netlab_lab.load(raw_proxy), probe) == []

    # a foreign web server on netlab's HTTP port
    daemons.start(seg.server, "foreign-http", [
        clients.PYTHON, "-m", "http.server", "8080", "--bind", "0.0.0.0"],
        log=tmp_path / "http.log", ready=lambda: daemons_lib.port_open(seg.server, 8080))
    problems = pf.check_ports(lab, holders)
    assert len(problems) == 1
    assert problems[0].startswith("port tcp/8080 for HTTP boot (nginx) is in use on 0.0.0.0 "
                                  "by python")
