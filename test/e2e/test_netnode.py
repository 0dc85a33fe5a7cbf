"""
The networking node on real services, proven with real clients.

The netnode states are applied with ``salt-call --local`` inside a server network
namespace (``service_control: process``: the states start dnsmasq, nginx, rpcbind
and nfs-ganesha themselves). Clients live in their own namespaces joined to the
server's bridge by veth pairs: busybox udhcpc, a scripted PXE DHCPDISCOVER
(``tools/netlab_dhcp_client.py``; it also shows proxyDHCP offers), tftp-hpa, curl, dig
and libnfs's nfs-cat/nfs-cp (NFSv3 MOUNT + READ/WRITE; the test machines'
kernel has no NFS client), and a libnfs client that stays mounted across a root
reset (``lib.nfs_session``): nfs-ganesha reloads its exports, never restarts.
"""

import copy
import os
import pathlib
import threading
import time

import pytest

from lib import daemons as daemons_lib
from lib import netns
from lib.clients import pxe_discover, pxe_request, udhcpc
from lib.netnodelab import NetnodeLab, changed, failed
from lib.nfs_session import Session

# the full-mode tests share one networking node and its last two change it
# (a node removed, then netlab.netnode.clean): pytest-random-order keeps this
# file's order
pytestmark = [pytest.mark.e2e, pytest.mark.random_order(disabled=True)]

CIDR = "10.77.0.0/24"
NETNODE_IP = "10.77.0.2"
PORT = 8080
NODES = {
    "nuc1": {"mac": "52:54:00:77:00:11", "ip": "10.77.0.11", "role": "controller"},
    "nuc2": {"mac": "52:54:00:77:00:12", "ip": "10.77.0.12", "role": "compute"},
}
UNKNOWN_MAC = "52:54:00:77:00:99"


def dig(ns, name):
    return ns.run(["dig", "@" + NETNODE_IP, name, "+short", "+time=2", "+tries=1"],
                  check=False).stdout.split()


# --------------------------------------------------------------------------- full mode
@pytest.fixture(scope="module")
def full(e2e_ready, tmp_path_factory):  # pylint: disable=unused-argument
    """Full DHCP mode, nfs-ganesha; clients: nuc1, nuc2 (by MAC) and an unknown MAC."""
    root = tmp_path_factory.mktemp("netnode-full")
    seg = netns.Segment(cidr=CIDR, server_ip=NETNODE_IP)
    nn = None
    try:
        nn = NetnodeLab(seg, root, NODES, dhcp_mode="full", http_port=PORT)
        for node_id in NODES:
            nn.make_root(node_id)
        nn.fake_boot_files()
        for node_id, spec in NODES.items():
            seg.add_client(node_id, spec["mac"])
        seg.add_client("unknown", UNKNOWN_MAC)
        seg.add_client("nfs", "52:54:00:77:00:42")
        first = nn.apply()
        yield {"seg": seg, "nn": nn, "tmp": root, "first": first}
    finally:
        if nn is not None:
            nn.stop()
        seg.destroy()


def test_first_run_starts_every_daemon(full):
    first = full["first"]
    for sid in ("netlab-netnode-dnsmasq-netlab_daemon-running",
                "netlab-netnode-http-netlab_daemon-running",
                "netlab-netnode-nfs-netlab_daemon-running-rpcbind",
                "netlab-netnode-nfs-netlab_daemon-running-ganesha"):
        assert first[sid]["changes"].get("started"), (sid, first[sid])
    assert "no other DHCP server" in first[
        "netlab-netnode-dnsmasq-netlab_daemon-dhcp_guard"]["comment"]
    # IPv6 router advertisements are for virtual labs only: off by default
    assert "enable-ra" not in (full["nn"].etc / "dnsmasq.conf").read_text()


def test_known_mac_gets_pillar_ip_hostname_and_boot_file(full):
    lease = udhcpc(full["seg"].clients["nuc1"], full["tmp"])
    assert lease is not None, "nuc1 got no lease"
    assert lease["ip"] == "10.77.0.11"
    assert lease["hostname"] == "nuc1"
    assert lease["boot_file"] == "undionly.kpxe"
    assert lease["serverid"] == NETNODE_IP
    assert lease["siaddr"] == NETNODE_IP
    assert lease.get("domain") == "lab.test"
    assert "router" not in lease  # no gateway in pillar: the netnode does not route


def test_firmware_and_ipxe_get_their_boot_answers(full):
    cli = full["seg"].clients["nuc2"]
    bios = pxe_discover(cli, arch=0)
    assert [(r["server_id"], r["yiaddr"], r["boot"]) for r in bios] == [
        (NETNODE_IP, "10.77.0.12", "undionly.kpxe")]
    uefi = pxe_discover(cli, arch=7)
    assert [r["boot"] for r in uefi] == ["ipxe.efi"]
    ipxe = pxe_discover(cli, arch=0, user_class="iPXE")
    assert [r["boot"] for r in ipxe] == [
        "http://{}:{}/boot/nuc2.ipxe".format(NETNODE_IP, PORT)]


def test_ipxe_binaries_over_tftp(full):
    seg = full["seg"]
    seg.set_client_ip("nuc1", "10.77.0.11")
    cli = seg.clients["nuc1"]
    for name, src in (("undionly.kpxe", "/usr/lib/ipxe/undionly.kpxe"),
                      ("ipxe.efi", "/usr/lib/ipxe/ipxe.efi")):
        dest = full["tmp"] / ("got-" + name)
        cli.run(["tftp", "-m", "binary", NETNODE_IP, "-c", "get", name, str(dest)],
                timeout=30)
        assert dest.read_bytes() == pathlib.Path(src).read_bytes(), name


def test_own_ipxe_script_over_http_names_kernel_initrd_root_hostname(full):
    seg, nn = full["seg"], full["nn"]
    seg.set_client_ip("nuc1", "10.77.0.11")
    cli = seg.clients["nuc1"]
    base = "http://{}:{}".format(NETNODE_IP, PORT)
    script = cli.run(["curl", "-fsS", base + "/boot/nuc1.ipxe"]).stdout
    root = nn.storage / "roots" / "nuc1"
    assert script.startswith("#!ipxe")
    assert "kernel {}/images/current/vmlinuz ".format(base) in script
    assert "initrd --name initrd.img {}/images/current/initrd.img".format(base) in script
    assert "nfsroot={}:{},vers=3,tcp".format(NETNODE_IP, root) in script
    assert "netlab.node=nuc1" in script
    assert "# hostname: nuc1" in script
    assert cli.run(["curl", "-fsS", base + "/images/current/vmlinuz"]).stdout == "fake-kernel"
    # nginx listens on the lab address only
    listen = seg.server.run(["ss", "-H", "-ltn", "sport", "= :{}".format(PORT)]).stdout
    assert listen.split()[3] == "{}:{}".format(NETNODE_IP, PORT)


def test_unknown_mac_gets_no_answer_and_no_lease(full):
    cli = full["seg"].clients["unknown"]
    assert udhcpc(cli, full["tmp"], tries=2) is None
    assert pxe_discover(cli, arch=0, timeout=4) == []
    assert pxe_discover(cli, arch=7, timeout=4) == []
    assert pxe_discover(cli, user_class="iPXE", timeout=4) == []


def test_node_names_resolve_through_the_netnode(full):
    seg = full["seg"]
    seg.set_client_ip("nuc2", "10.77.0.12")
    cli = seg.clients["nuc2"]
    assert dig(cli, "nuc1.lab.test") == ["10.77.0.11"]
    assert dig(cli, "nuc2.lab.test") == ["10.77.0.12"]
    assert dig(cli, "netnode.lab.test") == [NETNODE_IP]
    assert dig(cli, "nope.lab.test") == []
    # DNS only on the lab interface
    listen = seg.server.run(["ss", "-H", "-lun", "sport", "= :53"]).stdout
    assert "127.0.0.1:53" not in listen


def nfs_cat(cli, path):
    """Read ``path`` over NFSv3 from inside ``cli`` (libnfs: MOUNT of the export,
    then READ; this machine's kernel has no NFS client). ``None`` when refused."""
    res = cli.run(["nfs-cat", "nfs://{}{}?version=3".format(NETNODE_IP, path)],
                  check=False, timeout=60)
    return res.stdout if res.returncode == 0 else None


def nfs_put(cli, local, path):
    res = cli.run(["nfs-cp", str(local), "nfs://{}{}?version=3".format(NETNODE_IP, path)],
                  check=False, timeout=60)
    return res.returncode == 0


def test_nfs_root_only_for_its_node(full):
    seg, nn = full["seg"], full["nn"]
    cli = seg.clients["nfs"]
    root1 = str(nn.storage / "roots" / "nuc1")
    root2 = str(nn.storage / "roots" / "nuc2")
    seg.set_client_ip("nfs", "10.77.0.12")   # node B's address
    assert nfs_cat(cli, root1 + "/netlab-marker") is None, "node B read node A's root"
    assert nfs_cat(cli, root2 + "/netlab-marker") == "root of nuc2\n"
    seg.set_client_ip("nfs", "10.77.0.11")   # node A's address
    assert nfs_cat(cli, root1 + "/netlab-marker") == "root of nuc1\n"
    assert nfs_cat(cli, root2 + "/netlab-marker") is None
    # read-write, root not squashed
    local = full["tmp"] / "payload"
    local.write_text("written by nuc1\n")
    assert nfs_put(cli, local, root1 + "/written-by-nuc1")
    written = nn.storage / "roots" / "nuc1" / "written-by-nuc1"
    assert written.read_text() == "written by nuc1\n"
    assert written.stat().st_uid == 0
    # an address that is no node gets nothing
    seg.set_client_ip("nfs", "10.77.0.42")
    assert nfs_cat(cli, root1 + "/netlab-marker") is None


def test_second_run_changes_nothing_and_test_mode_agrees(full):
    nn = full["nn"]
    pids = nn.pids()
    predicted = nn.apply(test=True)
    assert changed(predicted) == []
    assert all(v["result"] is True for v in predicted.values()), failed(predicted)
    again = nn.apply()
    assert changed(again) == []
    assert nn.pids() == pids


class Reader(threading.Thread):
    """Reads node A's held file and a LOOKUP from A's mounted root in a loop
    through one NFS client session; every failure is kept."""

    def __init__(self, session, want):
        super().__init__(daemon=True)
        self.session, self.want = session, want
        self.stop, self.rounds, self.errors = threading.Event(), 0, []

    def run(self):
        while not self.stop.is_set():
            for cmd in ("pread", "cat /netlab-marker"):
                ans = self.session.call(cmd)
                if ans != {"ok": True, "data": self.want}:
                    self.errors.append((cmd, ans))
            self.rounds += 1
            time.sleep(0.05)


def test_reset_root_is_exported_anew_by_reloads_not_a_restart(full):
    """A reimage's root reset under running nodes: the nfs state a reimage
    applies reloads nfs-ganesha (the reset root's export in a reload of its
    own, then the new config), so the same process keeps serving node A, whose
    mounted client reads through it all without an error, while a fresh mount
    of node B's export gets B's new directory."""
    seg, nn = full["seg"], full["nn"]
    pid = nn.pids()["ganesha"]
    seg.set_client_ip("nuc1", "10.77.0.11")
    seg.set_client_ip("nuc2", "10.77.0.12")
    b_root = nn.storage / "roots" / "nuc2"
    with Session(seg.clients["nuc1"], NETNODE_IP, str(nn.storage / "roots" / "nuc1")) as a:
        assert a.mounted, a.mount_error
        assert a.call("open /netlab-marker") == {"ok": True}
        # B's reset: a new directory at the same path (a reimage deletes the old
        # one later: here it is only renamed)
        os.rename(b_root, str(b_root) + ".old")
        nn.make_root("nuc2", marker="new root of nuc2\n")
        log = nn.run_dir / "ganesha.log"
        rereads = log.read_text().count("Reread exports complete")
        reader = Reader(a, "root of nuc1\n")
        reader.start()
        try:
            ret = nn.apply(sls="netlab.netnode.nfs")
            while reader.rounds < 3 and reader.is_alive():
                time.sleep(0.05)
        finally:
            reader.stop.set()
            reader.join(30)
        assert nn.pids()["ganesha"] == pid   # not restarted
        released = ret["netlab-netnode-nfs-netlab_daemon-exports_released-ganesha"]
        assert released["changes"]["released"] == [str(b_root)], released
        assert released["changes"]["reloaded"] == "nfs-ganesha", released
        reloaded = ret["netlab-netnode-nfs-netlab_daemon-reloaded-ganesha"]
        assert reloaded["changes"]["reloaded"] == "nfs-ganesha", reloaded
        assert "reload_failed" not in reloaded["changes"], reloaded
        assert log.read_text().count("Reread exports complete") == rereads + 2
        # A: no error, no stale handle, during and after; it still writes
        assert reader.rounds >= 3 and reader.errors == [], reader.errors[:3]
        assert a.call("pread") == {"ok": True, "data": "root of nuc1\n"}
        assert a.call("write /after-reload written") == {"ok": True}
    assert (nn.storage / "roots" / "nuc1" / "after-reload").read_text() == "written"
    # B: a fresh mount of its export shows the new directory
    with Session(seg.clients["nuc2"], NETNODE_IP, str(b_root)) as b:
        assert b.mounted, b.mount_error
        assert b.call("cat /netlab-marker") == {"ok": True, "data": "new root of nuc2\n"}


def test_removing_a_node_removes_its_answers(full):
    """Runs last in this module: it changes the pillar."""
    seg, nn = full["seg"], full["nn"]
    pids = nn.pids()
    nn.update(lambda p: p["nodes"].pop("nuc2"), apply=False)
    predicted = nn.apply(test=True)
    real = nn.apply()
    assert changed(predicted) == changed(real)
    assert "netlab-netnode-dnsmasq-file-managed-conf" in changed(real)
    assert "netlab-netnode-bootfiles-file-directory-clean-boot_dir" in changed(real)
    # each service restarted once, only where its config changed
    after = nn.pids()
    assert after["dnsmasq"] != pids["dnsmasq"]
    assert after["nginx"] == pids["nginx"]          # nginx config did not change
    # exports changed: ganesha reloaded them (no restart), no root was replaced
    assert after["ganesha"] == pids["ganesha"]
    assert "netlab-netnode-nfs-netlab_daemon-reloaded-ganesha" in changed(real)
    assert "netlab-netnode-nfs-netlab_daemon-exports_released-ganesha" not in changed(real)
    # boot answer and lease gone
    cli2 = seg.clients["nuc2"]
    cli2.run(["ip", "addr", "flush", "dev", "eth0"])
    assert pxe_discover(cli2, arch=0, timeout=4) == []
    assert udhcpc(cli2, full["tmp"], tries=2) is None
    # script gone, DNS name gone
    seg.set_client_ip("nuc1", "10.77.0.11")
    cli1 = seg.clients["nuc1"]
    code = cli1.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                     "http://{}:{}/boot/nuc2.ipxe".format(NETNODE_IP, PORT)]).stdout
    assert code == "404"
    assert dig(cli1, "nuc2.lab.test") == []
    assert dig(cli1, "nuc1.lab.test") == ["10.77.0.11"]
    # export gone: nuc2's address cannot read its former root any more
    cli = seg.clients["nfs"]
    seg.set_client_ip("nfs", "10.77.0.12")
    assert nfs_cat(cli, str(nn.storage / "roots" / "nuc2" / "netlab-marker")) is None
    assert "nuc2" not in (nn.etc / "ganesha.conf").read_text()
    assert "52:54:00:77:00:12" not in (nn.etc / "dnsmasq.conf").read_text()


def test_clean_stops_the_daemons_and_removes_configs(full):
    """Runs after the others of this module: netlab.netnode.clean undoes it all."""
    seg, nn = full["seg"], full["nn"]
    pids = nn.pids()
    predicted = nn.apply(test=True, sls="netlab.netnode.clean")
    ret = nn.apply(sls="netlab.netnode.clean")
    assert changed(predicted) == changed(ret)
    for name in ("dnsmasq", "nginx", "ganesha", "rpcbind"):
        assert not daemons_lib.alive(pids[name]), name
    listening = seg.server.run(["ss", "-H", "-ltun"]).stdout
    assert listening.strip() == "", listening
    assert not (nn.etc / "dnsmasq.conf").exists()
    assert not (nn.storage / "http" / "boot").exists()
    assert (nn.storage / "roots" / "nuc1" / "netlab-marker").exists()   # roots stay
    assert changed(nn.apply(sls="netlab.netnode.clean")) == []


# --------------------------------------------------------------------------- proxy mode
ROUTER_IP = "10.77.0.1"


@pytest.fixture(scope="module")
def proxy(e2e_ready, tmp_path_factory):  # pylint: disable=unused-argument
    """A home router (plain dnsmasq handing out 10.77.0.100-150) and netlab in
    proxy mode on the same segment."""
    root = tmp_path_factory.mktemp("netnode-proxy")
    seg = netns.Segment(cidr=CIDR, server_ip=NETNODE_IP)
    reg = daemons_lib.Daemons()
    nn = None
    try:
        router = seg.add_client("router", "52:54:00:77:00:01", ip=ROUTER_IP)
        conf = daemons_lib.router_dnsmasq_conf(root / "router.conf", "eth0", "10.77.0.100",
                                               "10.77.0.150", router=ROUTER_IP)
        reg.start(router, "router-dnsmasq", ["dnsmasq", "-k", "-C", conf,
                                             "--pid-file=", "--user=root",
                                             "--log-facility=" + str(root / "router.log")],
                  log=str(root / "router.out"),
                  ready=lambda: daemons_lib.port_open(router, 67, "udp"))
        seg.add_client("nuc1", NODES["nuc1"]["mac"])
        seg.add_client("unknown", UNKNOWN_MAC)
        nn = NetnodeLab(seg, root, NODES, dhcp_mode="proxy", http_port=PORT)
        nn.fake_boot_files()
        nn.apply()
        yield {"seg": seg, "nn": nn, "tmp": root}
    finally:
        if nn is not None:
            nn.stop()
        reg.stop_all()
        seg.destroy()


def pxe_suboptions(reply):
    """The sub-option codes of a reply's PXE vendor options (option 43)."""
    raw, codes, i = bytes.fromhex(reply.get("pxe_options") or ""), set(), 0
    while i < len(raw) and raw[i] != 255:
        if raw[i] == 0:
            i += 1
            continue
        codes.add(raw[i])
        i += 2 + raw[i + 1]
    return codes


def test_proxy_client_address_from_router_boot_from_netlab(proxy):
    seg = proxy["seg"]
    cli = seg.clients["nuc1"]
    offers = pxe_discover(cli, arch=0)
    by_server = {r["server_id"]: r for r in offers}
    assert set(by_server) == {ROUTER_IP, NETNODE_IP}, offers
    assert by_server[ROUTER_IP]["yiaddr"].startswith("10.77.0.1")  # from the router's range
    assert by_server[ROUTER_IP]["boot"] == ""
    assert by_server[NETNODE_IP]["yiaddr"] == "0.0.0.0"            # proxy: no address
    assert by_server[NETNODE_IP]["boot"] == "undionly.kpxe"
    assert by_server[NETNODE_IP].get("vendor_class") == "PXEClient"
    ipxe = {r["server_id"]: r for r in pxe_discover(cli, arch=0, user_class="iPXE")}
    assert ipxe[NETNODE_IP]["boot"] == "http://{}:{}/boot/nuc1.ipxe".format(NETNODE_IP, PORT)
    # the PXE boot menu (option 43, sub-option 9) goes to the firmware only: iPXE would
    # follow it before its boot file and load itself again, in a loop
    assert 9 in pxe_suboptions(by_server[NETNODE_IP]), by_server[NETNODE_IP]
    assert 9 not in pxe_suboptions(ipxe[NETNODE_IP]), ipxe[NETNODE_IP]
    # a real DHCP client takes its lease from the router
    lease = udhcpc(cli, proxy["tmp"])
    assert lease is not None
    assert lease["serverid"] == ROUTER_IP
    assert 100 <= int(lease["ip"].rsplit(".", 1)[1]) <= 150
    # UEFI firmware: the proxy offer carries no file; the client asks port 4011
    uefi = {r["server_id"]: r for r in pxe_discover(cli, arch=7)}
    assert uefi[NETNODE_IP]["yiaddr"] == "0.0.0.0"
    ack = pxe_request(cli, NETNODE_IP, NODES["nuc1"]["mac"], lease["ip"], arch=7)
    assert ack is not None and ack["message_type"] == "ACK"
    assert ack["boot"] == "ipxe.efi"
    assert ack["siaddr"] == NETNODE_IP


def test_proxy_unknown_mac_gets_only_the_router(proxy):
    cli = proxy["seg"].clients["unknown"]
    for arch in (0, 7):
        offers = pxe_discover(cli, arch=arch)
        assert [r["server_id"] for r in offers] == [ROUTER_IP], arch
    lease = udhcpc(cli, proxy["tmp"])
    assert lease is not None and lease["serverid"] == ROUTER_IP
    assert pxe_request(cli, NETNODE_IP, UNKNOWN_MAC, lease["ip"], arch=7) is None


DNSMASQ_STATES = ["netlab-netnode-dnsmasq-file-managed-conf",
                  "netlab-netnode-dnsmasq-netlab_daemon-running"]


def test_rogue_guard_refuses_full_mode_beside_the_router(proxy):
    nn = proxy["nn"]
    conf = (nn.etc / "dnsmasq.conf").read_text()
    pid = nn.pids()["dnsmasq"]
    original = copy.deepcopy(nn.pillar)
    try:
        ret = nn.update(lambda p: p["network"]["dhcp"].update(mode="full"), expect_ok=False)
        guard = ret["netlab-netnode-dnsmasq-netlab_daemon-dhcp_guard"]
        assert guard["result"] is False
        assert ROUTER_IP in guard["comment"] and "52:54:00:77:00:01" in guard["comment"]
        assert "network:dhcp:mode proxy" in guard["comment"]
        # nothing of full mode was turned on
        assert (nn.etc / "dnsmasq.conf").read_text() == conf
        assert nn.pids()["dnsmasq"] == pid
        # test=True predicts the refusal too
        predicted = nn.apply(test=True, expect_ok=False)
        assert predicted["netlab-netnode-dnsmasq-netlab_daemon-dhcp_guard"]["result"] is False
        # network:dhcp:allow_other_servers: the refusal becomes a Salt warning and
        # full mode is turned on (only dnsmasq changes: the refused run left
        # nothing behind); netlab then offers nuc1 its static address itself
        start = time.monotonic()
        ret = nn.update(lambda p: p["network"]["dhcp"].update(allow_other_servers=True))
        guard = ret["netlab-netnode-dnsmasq-netlab_daemon-dhcp_guard"]
        assert guard["result"] is True and guard["warnings"] == [guard["comment"]], guard
        assert ROUTER_IP in guard["comment"], guard
        assert "allow_other_servers is true" in guard["comment"], guard
        assert changed(ret) == DNSMASQ_STATES, changed(ret)
        full_conf = (nn.etc / "dnsmasq.conf").read_text()
        assert "dhcp-range=10.77.0.0,static," in full_conf and ",proxy" not in full_conf
        assert nn.pids()["dnsmasq"] != pid
        offers = pxe_discover(proxy["seg"].clients["nuc1"], arch=0, timeout=2)
        assert (NETNODE_IP, "10.77.0.11", "undionly.kpxe") in [
            (r["server_id"], r["yiaddr"], r["boot"]) for r in offers], offers
        print("\n[rogue guard] allow_other_servers apply and offer: {:.1f} s".format(
            time.monotonic() - start))
    finally:
        nn.update(lambda p: (p.clear(), p.update(original)), apply=False)
    # back to proxy mode: dnsmasq's config as before, nothing else changes
    back = nn.apply()
    assert changed(back) == DNSMASQ_STATES, changed(back)
    assert (nn.etc / "dnsmasq.conf").read_text() == conf


# --------------------------------------------------------------------------- IPv6 RA
def test_router_advertisements_only_when_asked(segment_factory, netnode_factory):
    """The virtual-lab option (netlab:lookup:dnsmasq:ra): SLAAC on the test bridge,
    so iPXE does not wait for IPv6. Off by default (test_first_run_...)."""
    seg = segment_factory(cidr="10.78.0.0/24", server_ip="10.78.0.2", ipv6=True)
    nn = netnode_factory(seg, {"nuc1": {"mac": "52:54:00:79:00:11", "ip": "10.78.0.11",
                                        "role": "controller"}}, dhcp_mode="proxy", ra=True)
    cli = seg.add_client("nuc1", "52:54:00:79:00:11")
    nn.apply()
    assert "enable-ra" in (nn.etc / "dnsmasq.conf").read_text()
    daemons_lib.wait_for(lambda: "fd00:6e6c::" in cli.run(
        ["ip", "-6", "addr", "show", "dev", "eth0"]).stdout, 20, "a SLAAC address")


# --------------------------------------------------------------------------- pxelinux
def test_pxelinux_legacy_path_over_tftp(segment_factory, netnode_factory, tmp_path):
    """A node with boot:loader pxelinux gets pxelinux.0, its per-MAC config, and
    kernel + initrd over TFTP (through tftp_root/images -> http_root/images)."""
    mac = "52:54:00:79:00:21"
    seg = segment_factory(cidr="10.79.0.0/24", server_ip="10.79.0.2")
    nn = netnode_factory(seg, {"nuc1": {"mac": mac, "ip": "10.79.0.11", "role": "controller",
                                        "boot": {"loader": "pxelinux"}}}, dhcp_mode="full")
    nn.fake_boot_files()
    cli = seg.add_client("nuc1", mac)
    nn.apply()
    offers = pxe_discover(cli, arch=0)
    assert [(r["yiaddr"], r["boot"]) for r in offers] == [("10.79.0.11", "pxelinux.0")]
    seg.set_client_ip("nuc1", "10.79.0.11")

    def tftp(name):
        dest = tmp_path / name.replace("/", "_")
        cli.run(["tftp", "-m", "binary", "10.79.0.2", "-c", "get", name, str(dest)], timeout=30)
        return dest.read_bytes()

    assert tftp("pxelinux.0") == pathlib.Path("/usr/lib/PXELINUX/pxelinux.0").read_bytes()
    assert tftp("ldlinux.c32")[:4] == b"\x7fELF"
    cfg = tftp("pxelinux.cfg/01-" + mac.replace(":", "-")).decode()
    assert "KERNEL images/current/vmlinuz" in cfg and "netlab.node=nuc1" in cfg
    assert "nfsroot=10.79.0.2:{}/roots/nuc1,vers=3,tcp".format(nn.storage) in cfg
    assert tftp("images/current/vmlinuz") == b"fake-kernel"
    assert tftp("images/current/initrd.img") == b"fake-initrd"
