"""
Preflight checks (_utils/netlab_preflight.py): each check passes on a good
networking node and fails with a clear message on the mistake it is for.

Collaborators are real where that is cheap and harmless (a real listening socket
and ``ss`` for the port check, ``ip`` on the loopback interface), fakes otherwise
(statvfs, the DHCP probe, the URL opener). The DHCP probe against a real foreign
dnsmasq is in test/e2e/test_discover_preflight.py.
"""

import copy
import os
import socket
import urllib.error

import pytest

import netlab_lab
import netlab_options
import netlab_preflight as pf

RUN = pf.command_runner()


@pytest.fixture
def raw(example_pillar, tmp_path):
    raw = copy.deepcopy(example_pillar)
    raw["netnode"]["storage"] = str(tmp_path / "srv")
    return raw


@pytest.fixture
def lab(raw):
    return netlab_lab.load(raw)


# --------------------------------------------------------------------------- salt
def test_salt_versions_ok_and_failing():
    assert pf.check_salt_versions("3008.3", {"netnode": "3008.3"}) == []
    assert pf.check_salt_versions("3008.3", {"netnode": "3006.29"}) == []
    problems = pf.check_salt_versions("3005.1", {"netnode": None, "nuc1": "3008.4",
                                                 "nuc2": "2019.2.8"})
    assert len(problems) == 4
    assert "salt-master 3005.1 is not a supported Salt release" in problems[0]
    assert "minion netnode did not answer" in problems[1]
    assert "minion nuc1 runs Salt 3008.4, newer than the master's 3005.1" in problems[2]
    assert "minion nuc2 runs Salt 2019.2.8, not a supported release" in problems[3]


def test_modules_synced(tmp_path):
    src = tmp_path / "src"
    (src / "modules").mkdir(parents=True)
    (src / "modules" / "netlab.py").write_text("A = 1\n")
    (src / "modules" / "devstack.py").write_text("B = 1\n")
    expected = pf.file_hashes(str(src), dirs=("modules",))
    assert sorted(expected) == ["modules/devstack.py", "modules/netlab.py"]
    assert pf.check_modules_synced(expected, {"netnode": dict(expected)}) == []
    have = {"modules/netlab.py": "old"}
    problems = pf.check_modules_synced(expected, {"netnode": have, "master": None})
    assert problems == [
        "could not list the custom modules synced to master",
        "custom modules on netnode are not synced (missing modules/devstack.py; out of "
        "date modules/netlab.py): run 'salt netnode saltutil.sync_all'"]
    assert "not on the master's fileserver" in pf.check_modules_synced({}, {})[0]


# --------------------------------------------------------------------------- pillar
def test_pillar_must_reach_master_and_netnode_but_no_lab_node():
    ok = {"netnode": True, "netnode_master": True, "nuc1": False}
    assert pf.check_pillar_targeting(ok, "netnode_master", "netnode", ["nuc1"]) == []
    leaked = dict(ok, nuc1=True, nuc2=True)
    problems = pf.check_pillar_targeting(leaked, "netnode_master", "netnode",
                                         ["nuc1", "nuc2", "nuc3"])
    assert problems == [
        "pillar 'netlab' (the whole lab with its secrets) reaches lab node(s) nuc1, nuc2: "
        "target it in top.sls to netnode and netnode_master only; lab nodes get their own "
        "slice from netlab's ext_pillar"]
    missing = pf.check_pillar_targeting({"netnode": True}, "netnode_master", "netnode", [])
    assert missing == ["pillar 'netlab' does not reach netnode_master (the master's own "
                       "id, for orchestration): target the lab SLS to it in top.sls"]


# --------------------------------------------------------------------------- interface
def test_interface_state_of_real_loopback_and_missing_interface():
    exists, up, addrs = pf.interface_state("lo", RUN)
    assert exists and up and "127.0.0.1/8" in addrs
    assert pf.interface_state("nl-no-such0", RUN) == (False, False, [])


def test_interface_state_nic_without_carrier_is_down_a_bridge_is_not():
    def fake(link):
        def run(argv):
            if "addr" in argv:
                return 0, "2: x    inet 10.0.0.2/24 brd 10.0.0.255 scope global x\n", ""
            return 0, link, ""
        return run

    nic = "2: enp3s0: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1500 state DOWN\\ link/ether"
    bridge = ("3: br0: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1500 state DOWN\\ "
              "link/ether 1a:2b:3c:4d:5e:6f \\ bridge forward_delay 0 hello_time 200")
    assert pf.interface_state("enp3s0", fake(nic)) == (True, False, ["10.0.0.2/24"])
    assert pf.interface_state("br0", fake(bridge)) == (True, True, ["10.0.0.2/24"])


def test_interface_checks(lab):
    assert pf.check_interface(lab, (True, True, ["192.168.42.2/24"])) == []
    assert pf.check_interface(lab, (False, False, [])) == [
        "network:interface enp3s0 does not exist on the networking node"]
    problems = pf.check_interface(lab, (True, False, ["192.168.1.5/24"]))
    assert "enp3s0 is not up" in problems[0]
    assert problems[1] == (
        "network:interface enp3s0 does not have the networking node's address "
        "192.168.42.2/24 (netlab:netnode:ip with the prefix of network:cidr); it has: "
        "192.168.1.5/24")


# --------------------------------------------------------------------------- ports
def test_port_taken_by_a_real_socket_is_named_with_its_process(raw):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("0.0.0.0", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        raw["netnode"]["http"] = {"port": port}
        lab = netlab_lab.load(raw)
        found = pf.listeners("tcp", port, RUN)
        assert found and found[0][1][0][1] == os.getpid()

        def holders(proto, p):
            return pf.listeners(proto, p, RUN) if p == port else []

        problems = pf.check_ports(lab, holders)
        assert len(problems) == 1
        assert problems[0].startswith(
            "port tcp/{} for HTTP boot (nginx) is in use on 0.0.0.0 by ".format(port))
        assert "(pid {})".format(os.getpid()) in problems[0]
    finally:
        sock.close()


def test_ports_held_by_netlab_daemons_or_elsewhere_are_fine(lab):
    taken = {
        ("udp", 67): [("0.0.0.0", [("dnsmasq", 10)])],
        ("udp", 69): [("192.168.42.2", [("dnsmasq", 10)])],
        ("tcp", 80): [("127.0.0.1", [("apache2", 11)])],   # another address: no clash
        ("tcp", 2049): [("0.0.0.0", [])],                  # kernel nfsd, nfs server kernel
        ("tcp", 111): [("0.0.0.0", [("rpcbind", 12)])],
    }
    assert pf.check_ports(lab, lambda proto, port: taken.get((proto, port), [])) == []
    taken[("udp", 67)] = [("192.168.1.1", [("dhcpd", 13)])]
    taken[("tcp", 80)] = [("*", [("apache2", 11)])]
    problems = pf.check_ports(lab, lambda proto, port: taken.get((proto, port), []))
    assert problems == [
        "port udp/67 for DHCP (dnsmasq) is in use on 192.168.1.1 by dhcpd (pid 13): stop "
        "it or move it off 192.168.42.2",
        "port tcp/80 for HTTP boot (nginx) is in use on * by apache2 (pid 11): stop it or "
        "move it off 192.168.42.2"]


# --------------------------------------------------------------------------- storage
class FakeStatvfs:
    def __init__(self, free_bytes):
        self.f_frsize = 4096
        self.f_bavail = free_bytes // 4096

    def __call__(self, path):
        return self


def test_storage_free_space(lab):
    gib = pf.GIB
    nothing = lambda path: False  # noqa: E731 - no image, no root yet
    # 3 new nodes on ext4: image 3 + 3 * (6 + 1) = 24 GiB
    assert pf.check_storage(lab, FakeStatvfs(24 * gib), "ext4", nothing) == []
    assert pf.check_storage(lab, FakeStatvfs(21 * gib), "btrfs", nothing) == []
    problems = pf.check_storage(lab, FakeStatvfs(2 * gib), "ext4", nothing)
    assert problems == [
        "netnode:storage {} has 2.0 GiB free on ext4, needs about 24.0 GiB (image 3 GiB "
        "unless built, per new node (3 of 3) 6 GiB for DevStack + 1 GiB root copy (ext4 "
        "shares no extents; btrfs would)): free space or point netnode:storage at a "
        "bigger filesystem".format(lab.netnode.storage)]


def test_storage_counts_only_what_a_redeploy_still_writes(lab):
    built = {lab.netnode.http_root + "/images/current", lab.netnode.roots_dir + "/nuc1",
             lab.netnode.roots_dir + "/nuc2"}
    assert pf.storage_needed(lab, False, built.__contains__) == (7 * pf.GIB, 1)
    assert pf.check_storage(lab, FakeStatvfs(7 * pf.GIB), "ext4", built.__contains__) == []


def test_storage_of_a_path_not_made_yet_uses_its_parent(lab, tmp_path):
    assert pf.existing_parent(str(tmp_path / "srv" / "x" / "y")) == str(tmp_path)
    seen = []
    pf.check_storage(lab, lambda path: seen.append(path) or FakeStatvfs(100 * pf.GIB), "ext4")
    assert seen == [str(tmp_path)]  # netnode:storage (tmp/srv) does not exist yet
    mounts = "rootfs / ext4 rw 0 0\n/dev/sdb1 /srv btrfs rw 0 0\n"
    assert pf.fs_type("/srv/netlab", mounts) == "btrfs"
    assert pf.fs_type("/srvx", mounts) == "ext4"


# --------------------------------------------------------------------------- DHCP
FOREIGN = [{"server_id": "192.168.42.1", "server_ip": "192.168.42.1",
            "server_mac": "aa:bb:cc:00:00:01", "offered": "192.168.42.150"}]


def test_foreign_dhcp_in_full_mode(raw):
    raw["network"]["dhcp"]["mode"] = "full"
    lab = netlab_lab.load(raw)
    problems = pf.check_dhcp(lab, lambda iface, timeout: FOREIGN)
    assert problems == [
        "network:dhcp:mode is full but another DHCP server answers on enp3s0: "
        "192.168.42.1 (MAC aa:bb:cc:00:00:01, offered 192.168.42.150). Use mode proxy "
        "beside it, or switch it off"]
    assert pf.check_dhcp(lab, lambda iface, timeout: []) == []
    raw["network"]["dhcp"]["allow_other_servers"] = True
    assert pf.check_dhcp(netlab_lab.load(raw), lambda iface, timeout: FOREIGN) == []


def test_proxy_mode_without_a_dhcp_server(lab):
    assert pf.check_dhcp(lab, lambda iface, timeout: FOREIGN) == []
    problems = pf.check_dhcp(lab, lambda iface, timeout: [])
    assert "mode is proxy but no DHCP server answers on enp3s0" in problems[0]


def test_probe_that_cannot_run_is_a_problem(lab):
    def probe(iface, timeout):
        raise RuntimeError("probing DHCP needs root (raw socket on enp3s0)")

    assert pf.check_dhcp(lab, probe) == [
        "could not probe for DHCP servers on enp3s0: probing DHCP needs root (raw socket "
        "on enp3s0)"]


# --------------------------------------------------------------------------- outside
def test_mirror_and_pypi_unreachable(lab):
    asked = []

    def fetch(url):
        asked.append(url)
        if "pypi" in url:
            raise urllib.error.URLError("Name or service not known")

    problems = pf.check_reachable(lab, fetch)
    assert asked == ["http://deb.debian.org/debian/dists/bookworm/Release",
                     "https://pypi.org/simple/pip/"]
    assert problems == [
        "Python package index https://pypi.org/simple/pip/ is not reachable from the "
        "networking node (Name or service not known): check its route/DNS/proxy or set "
        "image:pip_index"]


# --------------------------------------------------------------------------- all
def test_deploy_runs_the_checks_its_steps_need():
    assert pf.deploy_checks({}) == ["salt", "pillar", "interface", "ports", "storage",
                                    "dhcp", "outside"]
    assert pf.deploy_checks({"netnode": False, "image": "false"}) == [
        "salt", "pillar", "storage"]
    assert pf.deploy_checks({}, have_image=True) == [
        "salt", "pillar", "interface", "ports", "storage", "dhcp"]
    assert pf.deploy_checks({"preflight": False}) == []
    assert pf.deploy_checks({"preflight": "ports, dhcp"}) == ["ports", "dhcp"]
    assert pf.deploy_checks({"preflight": ["modules"]}) == ["modules"]
    # every spelling of on/off the other options take
    assert pf.deploy_checks({"preflight": "no"}) == []
    assert pf.deploy_checks({"preflight": "off"}) == []
    assert pf.deploy_checks({"netnode": "off", "image": "no", "preflight": "yes"}) == [
        "salt", "pillar", "storage"]
    assert pf.deploy_checks({"preflight": ""}) == pf.deploy_checks({})


def test_deploy_option_that_is_not_on_or_off_is_refused_by_name():
    with pytest.raises(netlab_options.OptionError, match="netlab_deploy:netnode"):
        pf.deploy_checks({"netnode": "maybe"})


def test_run_reports_every_problem_and_survives_a_crashing_check():
    def boom():
        raise KeyError("x")

    report = pf.run([("salt", lambda: []), ("ports", lambda: ["a", "b"]), ("dhcp", boom),
                     ("storage", lambda: ["c"])])
    assert report == {"ok": False, "passed": ["salt"], "problems": [
        "ports: a", "ports: b", "dhcp: check could not run: KeyError: 'x'", "storage: c"]}
    assert pf.run([("salt", lambda: [])]) == {"ok": True, "problems": [], "passed": ["salt"]}


# --------------------------------------------------------------------------- the runner's pipeline
def _lab(raw):
    return netlab_lab.load(raw)


def test_preflight_runs_the_named_checks_and_summarises_problems(raw):
    import netlab_master_preflight as mp  # pylint: disable=import-outside-toplevel

    asked, failures = [], []

    def run_checks(names):
        asked.append(names)
        return {"ok": False, "passed": ["salt"], "problems": ["ports: 53/udp is in use"]}

    out = mp.preflight(_lab(raw), run_checks, checks="salt, ports",
                       record_failure=lambda *a: failures.append(a))
    assert asked == [["salt", "ports"]]
    assert out == {"ok": False, "passed": ["salt"], "problems": ["ports: 53/udp is in use"],
                   "Error": "preflight found 1 problem(s); nothing was changed"}
    assert failures == []        # only a deploy's preflight goes into the run record


def test_preflight_of_a_deploy_records_its_problems_or_is_skipped(raw):
    import netlab_master_preflight as mp  # pylint: disable=import-outside-toplevel

    failures = []
    out = mp.preflight(_lab(raw), lambda names: {"ok": False, "passed": [],
                                                 "problems": ["a", "b"]},
                       deploy={"preflight": "storage"}, published=lambda lab: True,
                       record_failure=lambda *a: failures.append(a))
    assert out["ok"] is False and failures == [("preflight", "a; b")]
    skipped = mp.preflight(_lab(raw), lambda names: pytest.fail("no check may run"),
                           deploy={"preflight": False})
    assert skipped["ok"] is True and "skipped" in skipped["comment"]


def test_preflight_refuses_an_unknown_check_before_running_any(raw):
    import netlab_master  # pylint: disable=import-outside-toplevel
    import netlab_master_preflight as mp  # pylint: disable=import-outside-toplevel

    with pytest.raises(netlab_master.Refused, match=r"unknown check\(s\) nonsense"):
        mp.preflight(_lab(raw), lambda names: pytest.fail("no check may run"),
                     checks="pillar,nonsense")
    assert mp.wanted(_lab(raw)) == list(pf.CHECKS)
    # a deploy option that is neither on nor off: refused, naming it, nothing run
    with pytest.raises(netlab_master.Refused, match=r"netlab_deploy:image must be true or false"):
        mp.preflight(_lab(raw), lambda names: pytest.fail("no check may run"),
                     deploy={"image": "sometimes"})
