"""
The netlab.netnode states with salt-call --local against a temp root.

``service_control: none``: the states render and check every config (dnsmasq
--test on the new file before it replaces the old one, nginx -t) but start no
daemon (the e2e tier does, in network namespaces). The lab sits on 127.77.0.0/24
so ``nginx -t`` can bind the netnode's address; no packet leaves loopback.
"""

import copy
import os
import pathlib
import secrets
import time

import pytest

import netlab_saltcompat
from lib.saltlocal import SaltLocal, changed, failed, temp_root_lookup

REPO = pathlib.Path(__file__).resolve().parents[2]
LAYOUT_NOTE = "netlab-netnode-nfs-test-show_notification-storage-layout"
NODES = {
    "nuc1": {"mac": "52:54:00:78:00:11", "ip": "127.77.0.11", "role": "controller"},
    "nuc2": {"mac": "52:54:00:78:00:12", "ip": "127.77.0.12", "role": "compute",
             "boot": {"loader": "pxelinux"}},
    "nuc3": {"mac": "52:54:00:78:00:13", "ip": "127.77.0.13", "role": "compute"},
}


def lab_pillar(root, nfs="ganesha", mode="proxy"):
    root = pathlib.Path(root)
    return {
        "network": {"interface": "nlfunc0", "cidr": "127.77.0.0/24", "domain": "lab.test",
                    "dhcp": {"mode": mode}, "dns": {"upstream": []}},
        "netnode": {"ip": "127.77.0.2", "storage": str(root / "srv"),
                    "nfs": {"server": nfs},
                    "http": {"port": 20000 + secrets.randbelow(20000)}},
        "nodes": copy.deepcopy(NODES),
        # the image's salt-minion is this Salt: never newer than the master
        "image": {"salt_version": netlab_saltcompat.salt_version()},
        "lookup": temp_root_lookup(root),
    }


@pytest.fixture
def salt(tmp_path):
    pillar = lab_pillar(tmp_path)
    (tmp_path / "srv" / "roots" / "nuc1").mkdir(parents=True)
    (tmp_path / "srv" / "roots" / "nuc3").mkdir(parents=True)
    s = SaltLocal(tmp_path / "salt", REPO, {"netlab": pillar})
    s.sync()
    s.root_dir = tmp_path
    return s


def test_prediction_first_run_and_idempotency(salt):
    root = salt.root_dir
    predicted = salt.apply("netlab.netnode", test=True)
    assert not failed(predicted), failed(predicted)
    assert not (root / "etc" / "dnsmasq.conf").exists()   # test=True wrote nothing
    real = salt.apply("netlab.netnode")
    assert not failed(real), failed(real)
    assert changed(predicted) == changed(real)
    assert "netlab-netnode-dnsmasq-file-managed-conf" in changed(real)
    # nginx -t passed: a check that passes changes nothing (it runs on every apply)
    assert real["netlab-netnode-http-netlab_daemon-config_valid"]["result"] is True
    assert "netlab-netnode-http-file-managed-conf" in changed(real)
    again = salt.apply("netlab.netnode")
    assert changed(again) == [] and not failed(again)
    assert changed(salt.apply("netlab.netnode", test=True)) == []
    # the roots share the temp directory's filesystem: every apply warns, and the
    # warning is what netlab.storage_layout says
    layout = salt.call("netlab.storage_layout")
    assert layout["own_filesystem"] is False
    assert layout["warning"].startswith("WARNING: node roots ({}) are on the same "
                                        "filesystem as {}:".format(root / "srv" / "roots",
                                                                   root))
    for ret in (real, again):
        note = ret[LAYOUT_NOTE]
        assert (note["result"], note["comment"], note["changes"]) == \
            (True, layout["warning"], {})

    srv = root / "srv"
    assert sorted(os.listdir(srv / "http" / "boot")) == ["boot.ipxe", "nuc1.ipxe",
                                                        "nuc2.ipxe", "nuc3.ipxe"]
    assert (srv / "tftp" / "undionly.kpxe").read_bytes() == \
        pathlib.Path("/usr/lib/ipxe/undionly.kpxe").read_bytes()
    assert (srv / "tftp" / "ipxe.efi").exists()
    # legacy pxelinux path for nuc2
    assert (srv / "tftp" / "pxelinux.0").exists() and (srv / "tftp" / "ldlinux.c32").exists()
    assert os.readlink(srv / "tftp" / "images") == str(srv / "http" / "images")
    cfg = (srv / "tftp" / "pxelinux.cfg" / "01-52-54-00-78-00-12").read_text()
    assert "netlab.node=nuc2" in cfg
    conf = (root / "etc" / "dnsmasq.conf").read_text()
    assert "interface=nlfunc0" in conf and "dhcp-ignore=tag:!known" in conf
    ganesha = (root / "etc" / "ganesha.conf").read_text()
    assert ganesha.count("EXPORT {") == 2   # nuc2 has no root yet: commented out
    assert "not exported yet: {}".format(srv / "roots" / "nuc2") in ganesha


def test_removing_a_node_cleans_its_files(salt):
    root = salt.root_dir
    salt.apply("netlab.netnode")
    pillar = salt.pillar
    del pillar["netlab"]["nodes"]["nuc2"]
    del pillar["netlab"]["nodes"]["nuc3"]
    salt.set_pillar(pillar)
    predicted = salt.apply("netlab.netnode", test=True)
    real = salt.apply("netlab.netnode")
    assert not failed(real), failed(real)
    assert changed(predicted) == changed(real)
    srv = root / "srv"
    assert sorted(os.listdir(srv / "http" / "boot")) == ["boot.ipxe", "nuc1.ipxe"]
    assert os.listdir(srv / "tftp" / "pxelinux.cfg") == []
    conf = (root / "etc" / "dnsmasq.conf").read_text()
    for gone in ("52:54:00:78:00:12", "nuc2", "52:54:00:78:00:13", "nuc3"):
        assert gone not in conf
    assert "nuc3" not in (root / "etc" / "ganesha.conf").read_text()
    assert changed(salt.apply("netlab.netnode")) == []


def test_stale_leases_are_pruned(salt):
    root = salt.root_dir
    pillar = salt.pillar
    pillar["netlab"]["network"]["dhcp"]["mode"] = "full"
    pillar["netlab"]["network"]["interface"] = "lo"   # the guard probes loopback only
    pillar["netlab"]["network"]["dhcp"]["probe_timeout"] = 1
    salt.set_pillar(pillar)
    (root / "leases").write_text(
        "1900000000 52:54:00:78:00:11 127.77.0.11 nuc1 *\n"
        "1900000000 52:54:00:78:00:99 127.77.0.19 gone *\n")
    predicted = salt.apply("netlab.netnode", test=True)
    real = salt.apply("netlab.netnode")
    assert not failed(real), failed(real)
    assert changed(predicted) == changed(real)
    assert real["netlab-netnode-dnsmasq-netlab_daemon-leases_pruned"]["changes"] == {
        "removed": ["1900000000 52:54:00:78:00:99 127.77.0.19 gone *"]}
    assert (root / "leases").read_text() == "1900000000 52:54:00:78:00:11 127.77.0.11 nuc1 *\n"
    assert "dhcp-host=52:54:00:78:00:11,set:known,set:nl-nuc1,127.77.0.11,nuc1,12h" in \
        (root / "etc" / "dnsmasq.conf").read_text()


def test_kernel_nfs_server_exports(salt):
    root = salt.root_dir
    pillar = salt.pillar
    pillar["netlab"]["netnode"]["nfs"]["server"] = "kernel"
    salt.set_pillar(pillar)
    real = salt.apply("netlab.netnode")
    assert not failed(real), failed(real)
    lines = [ln for ln in (root / "etc" / "netlab.exports").read_text().splitlines()
             if ln and not ln.startswith("#")]
    srv = root / "srv" / "roots"
    assert [ln.split("(")[0] for ln in lines] == [
        "{} 127.77.0.11".format(srv / "nuc1"), "{} 127.77.0.13".format(srv / "nuc3")]
    assert all("(rw,sync,no_subtree_check,no_root_squash,fsid=" in ln for ln in lines)
    assert not (root / "etc" / "ganesha.conf").exists()


def test_invalid_pillar_fails_first_and_changes_nothing(salt):
    root = salt.root_dir
    pillar = salt.pillar
    pillar["netlab"]["nodes"]["nuc3"]["ip"] = "10.1.1.1"
    pillar["netlab"]["nodes"]["nuc1"]["mac"] = "zz"
    salt.set_pillar(pillar)
    ret = salt.apply("netlab.netnode")
    assert list(ret) == ["netlab-netnode-check-netlab-invalid_pillar"]
    comment = ret["netlab-netnode-check-netlab-invalid_pillar"]["comment"]
    assert "netlab:nodes:nuc3:ip: 10.1.1.1 is outside network:cidr" in comment
    assert "netlab:nodes:nuc1:mac" in comment
    assert not (root / "etc").exists() and not (root / "srv" / "http").exists()


def test_boot_problem_is_reported_with_its_key(salt):
    pillar = salt.pillar
    pillar["netlab"]["nodes"]["nuc2"]["boot"] = {"loader": "pxelinux", "firmware": "uefi"}
    salt.set_pillar(pillar)
    ret = salt.apply("netlab.netnode", test=True)   # test=True fails the same way
    check = ret["netlab-netnode-check-netlab-invalid_pillar"]
    assert check["result"] is False
    assert "netlab:nodes:nuc2:boot:loader" in check["comment"]


def test_image_minion_newer_than_the_master_is_refused_before_anything(salt):
    """Salt supports no minion newer than its master: validate says so with the key,
    and netlab.netnode fails first (also under test=True), changing nothing."""
    running = netlab_saltcompat.salt_version()
    major, minor = netlab_saltcompat.version_tuple(running)
    newer = "{}.{}".format(major, minor + 1)
    pillar = salt.pillar
    pillar["netlab"]["image"]["salt_version"] = newer
    salt.set_pillar(pillar)
    assert salt.call("netlab.validate") == {"valid": False, "errors": [
        "netlab:image:salt_version: salt-minion {0} would be newer than the master's "
        "Salt {1} (Salt supports minions of the master's version or older): set it to "
        "{1} or older, or upgrade the master".format(newer, running)]}
    for test in (True, False):
        ret = salt.apply("netlab.netnode", test=test)
        check = ret["netlab-netnode-check-netlab-invalid_pillar"]
        assert list(ret) == ["netlab-netnode-check-netlab-invalid_pillar"]
        assert check["result"] is False
        assert "netlab:image:salt_version: salt-minion " + newer in check["comment"]
    assert not (salt.root_dir / "etc").exists()
    pillar["netlab"]["image"]["salt_version"] = "3006.1"   # older is fine on either line
    salt.set_pillar(pillar)
    assert salt.call("netlab.validate") == {"valid": True, "errors": []}


def test_clean_undoes_everything_but_roots_and_images(salt):
    root = salt.root_dir
    salt.apply("netlab.netnode")
    predicted = salt.apply("netlab.netnode.clean", test=True)
    ret = salt.apply("netlab.netnode.clean")
    assert not failed(ret), failed(ret)
    assert changed(predicted) == changed(ret)
    srv = root / "srv"
    for gone in (root / "etc" / "dnsmasq.conf", root / "etc" / "nginx-netlab.conf",
                 root / "etc" / "ganesha.conf", root / "run" / "nginx.conf",
                 srv / "http" / "boot", srv / "tftp" / "undionly.kpxe",
                 srv / "tftp" / "pxelinux.cfg", srv / "tftp" / "images"):
        assert not os.path.lexists(gone), gone
    assert (srv / "roots" / "nuc1").is_dir()
    assert changed(salt.apply("netlab.netnode.clean")) == []


def test_boot_functions_from_the_module(salt):
    data = salt.call("netlab.boot_data")
    assert data["dnsmasq"]["interface"] == "nlfunc0"
    assert sorted(data["scripts"]) == ["nuc1.ipxe", "nuc2.ipxe", "nuc3.ipxe"]
    snippets = salt.call("netlab.boot_off_mode")
    assert "hardware ethernet 52:54:00:78:00:11;" in snippets["isc_dhcpd"]
    report = salt.call("netlab.dhcp_probe", interface="lo", timeout=1)
    assert report == {"interface": "lo", "servers": []}


def test_off_mode_serves_tftp_and_dns_only(salt):
    root = salt.root_dir
    pillar = salt.pillar
    pillar["netlab"]["network"]["dhcp"]["mode"] = "off"
    salt.set_pillar(pillar)
    ret = salt.apply("netlab.netnode")
    assert not failed(ret), failed(ret)   # dnsmasq --test accepted the config
    conf = (root / "etc" / "dnsmasq.conf").read_text()
    assert "enable-tftp" in conf and "host-record=nuc1.lab.test,nuc1,127.77.0.11" in conf
    assert "dhcp-range" not in conf and "dhcp-host" not in conf
    assert "netlab-netnode-dnsmasq-netlab_daemon-leases_pruned" not in ret


def test_service_control_service_renders_service_states(salt):
    """Hosts with systemd: Salt's service states, restarted through watch."""
    pillar = salt.pillar
    pillar["netlab"]["lookup"]["service_control"] = "service"
    salt.set_pillar(pillar)
    show = salt.run("state.show_sls", "netlab.netnode")
    assert isinstance(show, dict), show

    def state(sid):
        fun = [k for k in show[sid] if not k.startswith("__")][0]
        args = {}
        for item in show[sid][fun]:
            if isinstance(item, dict):
                args.update(item)
        return fun, args

    fun, args = state("netlab-netnode-dnsmasq-service-running")
    assert (fun, args["name"]) == ("service", "dnsmasq")
    assert {"file": "netlab-netnode-dnsmasq-file-managed-conf"} in args["watch"]
    fun, args = state("netlab-netnode-http-service-running")
    assert {"netlab_daemon": "netlab-netnode-http-netlab_daemon-config_valid"} in args["require"]
    fun, args = state("netlab-netnode-http-netlab_daemon-config_valid")
    assert (fun, args["check"]) == ("netlab_daemon", "/usr/sbin/nginx -t -q")
    fun, args = state("netlab-netnode-nfs-service-running-ganesha")
    assert args["name"] == "nfs-ganesha"
    # changed exports reload ganesha (systemctl reload: SIGHUP), never restart it
    assert {"file": "netlab-netnode-nfs-file-managed-ganesha"} in args["require"]
    assert "watch" not in args
    fun, args = state("netlab-netnode-nfs-netlab_daemon-reloaded-ganesha")
    assert fun == "netlab_daemon" and args["daemon"]["mode"] == "service"
    assert args["daemon"]["reload_log"] == "/var/log/ganesha/ganesha.log"
    assert {"file": "netlab-netnode-nfs-file-managed-ganesha"} in args["watch"]
    assert {"service": "netlab-netnode-nfs-service-running-ganesha"} in args["require"]
    fun, args = state("netlab-netnode-nfs-netlab_daemon-exports_released-ganesha")
    assert {"file": "netlab-netnode-nfs-file-managed-ganesha"} in args["require_in"]
    assert not [sid for sid in show if "netlab_daemon-running" in sid]


def test_pxelinux_enabled_after_the_first_image_build(tmp_path):
    """An image build publishes kernel and initrd into tftp_root/images (a real
    directory); enabling a pxelinux node afterwards must use it, not fail on it."""
    pillar = lab_pillar(tmp_path)
    pillar["nodes"]["nuc2"]["boot"] = {"loader": "ipxe"}
    s = SaltLocal(tmp_path / "salt", REPO, {"netlab": pillar})
    s.sync()
    assert not failed(s.apply("netlab.netnode"))
    images = tmp_path / "srv" / "tftp" / "images"
    assert not images.exists()
    (images / "b1").mkdir(parents=True)       # what netlab.image's publish leaves
    (images / "b1" / "vmlinuz").write_text("kernel")
    (images / "current").symlink_to("b1")
    pillar["nodes"]["nuc2"]["boot"] = {"loader": "pxelinux"}
    s = SaltLocal(tmp_path / "salt", REPO, {"netlab": pillar})
    ret = s.apply("netlab.netnode")
    assert not failed(ret), failed(ret)
    assert images.is_dir() and not images.is_symlink()
    assert (images / "current" / "vmlinuz").read_text() == "kernel"


def test_storage_on_a_filesystem_of_its_own_gives_no_warning(tmp_path):
    """``netnode:storage`` mounted (a tmpfs, in a mount namespace of the salt-call's
    own, gone with it): netlab.storage_layout says so and the nfs state has no
    warning."""
    t0 = time.monotonic()
    srv = tmp_path / "srv"
    srv.mkdir()
    mount = ["unshare", "-m", "--propagation", "private", "sh", "-c",
             'mount -t tmpfs -o size=1m netlab-test "$0" && exec "$@"', str(srv)]
    s = SaltLocal(tmp_path / "salt", REPO, {"netlab": lab_pillar(tmp_path)}, prefix=mount)
    s.sync()
    assert s.call("netlab.storage_layout") == {"own_filesystem": True, "warning": None}
    ret = s.apply("netlab.netnode.nfs", test=True)
    assert not failed(ret), failed(ret)
    assert LAYOUT_NOTE not in ret and "netlab-netnode-nfs-file-managed-ganesha" in ret
    print("\nstorage layout, own filesystem: {:.1f} s".format(time.monotonic() - t0))
