"""
Discovery of unknown PXE clients from dnsmasq's log (_utils/netlab_discover.py).

The log lines are verbatim from dnsmasq 2.90 (Debian 12) rendered from netlab's
config (``log-dhcp``, ``dhcp-ignore=tag:!known``): a scripted PXE DISCOVER in
full mode, a proxy-mode one, and a known node's answered request.
"""

import copy
import datetime

import pytest
import yaml

import netlab_discover
import netlab_lab

FULL_LOG = """\
Nov 30 11:30:11 dnsmasq[5644]: started, version 2.90 DNS disabled
Nov 30 11:30:11 dnsmasq-dhcp[5644]: DHCP, static leases only on 10.79.0.0, lease time 1h
Nov 30 11:30:12 dnsmasq-dhcp[5644]: 2608386118 available DHCP subnet: 10.79.0.0/255.255.255.0
Nov 30 11:30:12 dnsmasq-dhcp[5644]: 2608386118 vendor class: PXEClient:Arch:00000:UNDI:002001
Nov 30 11:30:12 dnsmasq-dhcp[5644]: 2608386118 DHCPDISCOVER(vsnlbs16767) 52:54:00:79:00:21 ignored
Nov 30 11:30:13 dnsmasq-dhcp[5644]: 2608386118 available DHCP subnet: 10.79.0.0/255.255.255.0
Nov 30 11:30:13 dnsmasq-dhcp[5644]: 2608386118 vendor class: PXEClient:Arch:00000:UNDI:002001
Nov 30 11:30:13 dnsmasq-dhcp[5644]: 2608386118 DHCPDISCOVER(vsnlbs16767) 52:54:00:79:00:21 ignored
Nov 30 11:30:14 dnsmasq-dhcp[5644]: 4029950945 available DHCP subnet: 10.79.0.0/255.255.255.0
Nov 30 11:30:14 dnsmasq-dhcp[5644]: 4029950945 vendor class: PXEClient:Arch:00007:UNDI:002001
Nov 30 11:30:14 dnsmasq-dhcp[5644]: 4029950945 DHCPDISCOVER(vsnlbs16767) 52:54:00:79:00:22 ignored
Nov 30 11:30:16 dnsmasq-dhcp[5644]: 1105047825 available DHCP subnet: 10.79.0.0/255.255.255.0
Nov 30 11:30:16 dnsmasq-dhcp[5644]: 1105047825 vendor class: PXEClient:Arch:00009:UNDI:003016
Nov 30 11:30:16 dnsmasq-dhcp[5644]: 1105047825 DHCPDISCOVER(vsnlbs16767) 52:54:00:79:00:23 ignored
Nov 30 11:30:17 dnsmasq-dhcp[5644]: 1105047826 available DHCP subnet: 10.79.0.0/255.255.255.0
Nov 30 11:30:17 dnsmasq-dhcp[5644]: 1105047826 DHCPDISCOVER(vsnlbs16767) 52:54:00:79:00:24 ignored
"""

PROXY_LOG = """\
Nov 30 11:30:22 dnsmasq-dhcp[5811]: 2452486115 available DHCP subnet: 10.79.0.0/255.255.255.0
Nov 30 11:30:22 dnsmasq-dhcp[5811]: 2452486115 vendor class: PXEClient:Arch:00000:UNDI:002001
Nov 30 11:30:22 dnsmasq-dhcp[5811]: 2452486115 PXE(vsnlbs12462) 52:54:00:79:00:33 proxy-ignored
Nov 30 11:30:22 dnsmasq-dhcp[5811]: 2452486115 tags: vsnlbs12462
Nov 30 11:30:24 dnsmasq-dhcp[5811]: 3691318420 available DHCP subnet: 10.79.0.0/255.255.255.0
Nov 30 11:30:24 dnsmasq-dhcp[5811]: 3691318420 vendor class: PXEClient:Arch:00000:UNDI:002001
Nov 30 11:30:24 dnsmasq-dhcp[5811]: 3691318420 PXE(vsnlbs12462) 52:54:00:79:00:21 proxy
Nov 30 11:30:24 dnsmasq-dhcp[5811]: 3691318420 tags: known, vsnlbs12462
"""

NOW = datetime.datetime(2026, 11, 30, 12, 0, 0)


def test_full_mode_log_gives_mac_firmware_and_times():
    seen = netlab_discover.parse_log(FULL_LOG.splitlines(), now=NOW)
    assert sorted(seen) == ["52:54:00:79:00:21", "52:54:00:79:00:22", "52:54:00:79:00:23"]
    bios = seen["52:54:00:79:00:21"]
    assert bios["firmware"] == "bios" and bios["arch"] == "x86 BIOS"
    assert bios["vendor_class"] == "PXEClient:Arch:00000:UNDI:002001"
    assert bios["first_seen"] == "2026-11-30T11:30:12"
    assert bios["last_seen"] == "2026-11-30T11:30:13"
    assert bios["requests"] == 2
    assert bios["interface"] == "vsnlbs16767"
    assert seen["52:54:00:79:00:22"]["firmware"] == "uefi"
    assert seen["52:54:00:79:00:23"]["arch"] == "x86-64 UEFI"


def test_non_pxe_clients_only_on_request():
    seen = netlab_discover.parse_log(FULL_LOG.splitlines(), now=NOW, pxe_only=False)
    assert seen["52:54:00:79:00:24"]["firmware"] is None
    assert seen["52:54:00:79:00:24"]["arch"] == "not a PXE client"


def test_proxy_mode_ignored_is_found_and_answered_known_node_is_not():
    seen = netlab_discover.parse_log(PROXY_LOG.splitlines(), now=NOW)
    assert list(seen) == ["52:54:00:79:00:33"]
    assert seen["52:54:00:79:00:33"]["firmware"] == "bios"


def test_journal_iso_lines_with_host_name():
    lines = [
        "2026-11-30T11:30:14+0000 netnode dnsmasq-dhcp[812]: 4029950945 vendor class: "
        "PXEClient:Arch:00007:UNDI:002001",
        "2026-11-30T11:30:14+0000 netnode dnsmasq-dhcp[812]: 4029950945 "
        "DHCPDISCOVER(enp3s0) 94:C6:91:AA:00:09 ignored",
    ]
    seen = netlab_discover.parse_log(lines, now=NOW.replace(tzinfo=datetime.timezone.utc))
    rec = seen["94:c6:91:aa:00:09"]
    assert rec["firmware"] == "uefi" and rec["interface"] == "enp3s0"
    assert rec["first_seen"] == "2026-11-30T11:30:14"


def test_syslog_date_in_the_future_is_last_year():
    lines = ["Dec 31 23:59:00 dnsmasq-dhcp[1]: 7 vendor class: PXEClient:Arch:00000",
             "Dec 31 23:59:00 dnsmasq-dhcp[1]: 7 DHCPDISCOVER(br0) 52:54:00:00:00:01 ignored"]
    seen = netlab_discover.parse_log(lines, now=datetime.datetime(2027, 1, 1, 0, 5))
    assert seen["52:54:00:00:00:01"]["first_seen"] == "2026-12-31T23:59:00"


def test_unknown_drops_lab_macs_and_pillar_lines_validate(example_pillar):
    raw = copy.deepcopy(example_pillar)
    lab = netlab_lab.load(raw)
    lines = FULL_LOG.replace("52:54:00:79:00:22", "94:c6:91:aa:00:02").splitlines()
    machines = netlab_discover.unknown(netlab_discover.parse_log(lines, now=NOW), lab)
    assert [m["mac"] for m in machines] == ["52:54:00:79:00:21", "52:54:00:79:00:23"]
    text = "\n".join(netlab_discover.pillar_lines(machines, lab))
    added = yaml.safe_load(text)["nodes"]
    assert sorted(added) == ["node1", "node2"]
    assert added["node1"]["mac"] == "52:54:00:79:00:21"
    assert added["node1"]["role"] == "compute"  # the lab has its controller
    raw["nodes"].update(added)
    merged = netlab_lab.load(raw)  # the printed lines are a valid pillar as they are
    assert merged.nodes["node1"].ip == "192.168.42.14"
    assert merged.nodes["node2"].ip == "192.168.42.15"


def test_first_discovered_machine_of_an_empty_lab_is_the_controller(example_pillar):
    raw = copy.deepcopy(example_pillar)
    raw["nodes"] = {}
    lab = netlab_lab.load(raw)
    machines = netlab_discover.unknown(netlab_discover.parse_log(
        FULL_LOG.splitlines(), now=NOW), lab)
    added = yaml.safe_load("\n".join(netlab_discover.pillar_lines(machines, lab)))["nodes"]
    assert [added[n]["role"] for n in sorted(added)] == ["controller", "compute", "compute"]
    assert added["node1"]["ip"] == "192.168.42.11"
    raw["nodes"] = added
    assert netlab_lab.validate(raw) == []
    assert netlab_discover.pillar_lines([], lab) == []


def test_proxy_mode_lines_say_the_router_reserves_the_addresses(example_pillar):
    raw = copy.deepcopy(example_pillar)
    raw["nodes"] = {}
    machines = [{"mac": "52:54:00:79:00:21", "arch": "bios", "vendor_class": "",
                 "first_seen": "2026-11-30T11:30:12"}]
    for mode, said in (("proxy", True), ("full", False)):
        raw["network"]["dhcp"] = {"mode": mode}
        lines = netlab_discover.pillar_lines(machines, netlab_lab.load(raw))
        assert any("reserve each ip below" in line for line in lines) is said
        assert yaml.safe_load("\n".join(lines))["nodes"]["node1"]["ip"] == "192.168.42.11"


# --------------------------------------------------------------------------- the runner's pipeline
def _no_journal(cmd):
    raise AssertionError("the journal must not be read: {}".format(cmd))


def test_report_reads_dnsmasqs_own_log_in_process_mode(example_pillar):
    lab = netlab_lab.load(copy.deepcopy(example_pillar))
    read = []

    def read_lines(path):
        read.append(path)
        return FULL_LOG.splitlines()

    ret = netlab_discover.report(lab, {"service_control": "process", "run_dir": "/run/x"},
                                 read_lines, _no_journal)
    assert read == ["/run/x/dnsmasq.log"] and ret["source"] == "/run/x/dnsmasq.log"
    assert [m["mac"] for m in ret["unknown"]] == ["52:54:00:79:00:21", "52:54:00:79:00:22",
                                                 "52:54:00:79:00:23"]
    assert "52:54:00:79:00:21" in ret["pillar"]


def test_report_asks_the_journal_in_service_mode_and_names_its_failure(example_pillar):
    lab = netlab_lab.load(copy.deepcopy(example_pillar))
    asked = []

    def journal(cmd):
        asked.append(cmd)
        return 0, "", ""

    ret = netlab_discover.report(lab, None, lambda p: [], journal, since="1 hour ago")
    assert asked[0][-2:] == ["--since", "1 hour ago"] and ret["source"] == "journal"
    assert ret["unknown"] == [] and ret["pillar"] == "(no unknown machine has tried to boot)"
    with pytest.raises(netlab_discover.DiscoverError, match="from the journal .*: no "
                       "journal; pass log=<file>"):
        netlab_discover.report(lab, {}, lambda p: [], lambda cmd: (1, "", "no journal\n"))


def test_report_names_an_unreadable_log_and_a_bad_service_control(example_pillar):
    lab = netlab_lab.load(copy.deepcopy(example_pillar))

    def missing(path):
        raise FileNotFoundError(2, "No such file or directory")

    with pytest.raises(netlab_discover.DiscoverError, match="cannot read dnsmasq's log "
                       "/var/log/x: .*No such file"):
        netlab_discover.report(lab, {}, missing, _no_journal, log="/var/log/x")
    with pytest.raises(netlab_discover.DiscoverError,
                       match="netlab:lookup:service_control: 'systemd' is not one of"):
        netlab_discover.report(lab, {"service_control": "systemd"}, missing, _no_journal)
