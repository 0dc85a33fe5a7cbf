"""The virtual lab's pure parts: names derived from the lab directory, the
networking node's filtered way out, the package sources it needs."""

import ipaddress
import os
import sys
import types

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import vlab  # noqa: E402  pylint: disable=wrong-import-position


def test_names_derive_from_the_directory_and_fit_the_kernel_limits():
    a, b = vlab.names("/var/lib/netlab-vlab"), vlab.names("/tmp/x/lab")
    assert a == vlab.names("/var/lib/netlab-vlab/")  # same lab, same names
    for key in ("ns", "veth_host", "veth_ns", "table", "host_ip"):
        assert a[key] != b[key], key
    for n in (a, b):
        assert len(n["veth_host"]) <= 15 and len(n["veth_ns"]) <= 15
        host, inner = ipaddress.ip_address(n["host_ip"]), ipaddress.ip_address(n["ns_ip"])
        net = ipaddress.ip_network(n["host_ip"] + "/30", strict=False)
        assert host in net and inner in net and host != inner
        assert host not in (net.network_address, net.broadcast_address)
        assert inner not in (net.network_address, net.broadcast_address)
        assert net.subnet_of(ipaddress.ip_network("10.99.0.0/16"))


def test_the_way_out_is_for_the_networking_node_and_its_package_sources_only():
    n = vlab.names("/var/lib/netlab-vlab")
    rules = vlab.nft_ruleset(n, ["198.51.100.7"], ["192.0.2.53"], uplink=False)
    assert rules.startswith("table ip {} {{".format(n["table"]))
    lines = [ln.strip() for ln in rules.splitlines()]
    assert 'iifname "{}" ip saddr {} ip daddr {{ 198.51.100.7 }} tcp dport {{ 80, 443 }} ' \
        "accept".format(n["veth_host"], n["ns_ip"]) in lines
    assert 'iifname "{}" ip saddr {} ip daddr {{ 192.0.2.53 }} udp dport 53 accept'.format(
        n["veth_host"], n["ns_ip"]) in lines
    # everything else from the lab is dropped, the lab's nodes are not masqueraded
    assert lines.index('iifname "{}" drop'.format(n["veth_host"])) > max(
        i for i, ln in enumerate(lines) if ln.endswith("accept"))
    assert vlab.CIDR not in rules
    with_uplink = vlab.nft_ruleset(n, ["198.51.100.7"], ["192.0.2.53"], uplink=True)
    assert 'ip saddr {} oifname != "{}" masquerade'.format(vlab.CIDR, n["veth_host"]) \
        in with_uplink


def _lab(mirror="http://deb.debian.org/debian", pip_index=None):
    return types.SimpleNamespace(image=types.SimpleNamespace(mirror=mirror, pip_index=pip_index),
                                 network=types.SimpleNamespace(cidr="10.98.0.0/24"))


def test_package_hosts_are_the_mirror_and_the_index():
    assert vlab.package_hosts(_lab(), {}) == ["deb.debian.org", "pypi.org",
                                             "files.pythonhosted.org"]
    # a local index (file://) needs no way out; an http one does
    assert vlab.package_hosts(_lab(), {"index-url": "file:///opt/pypi/simple",
                                       "extra-index-url": ["https://mirror.example/simple"]}
                              ) == ["deb.debian.org", "mirror.example"]
    # a mirror on the lab segment is reached inside the lab, not through the way out
    assert vlab.package_hosts(_lab("http://10.98.0.2:9/debian",
                                   "https://pypi.lan/simple"), {}) == ["pypi.lan"]
    assert vlab.package_hosts(_lab("http://192.0.2.7/debian"), {"index-url": "file:///x"}
                              ) == ["192.0.2.7"]


def test_a_host_that_does_not_resolve_is_a_clear_error():
    with pytest.raises(vlab.VlabError, match="no-such-mirror.invalid does not resolve"):
        vlab.resolve(["no-such-mirror.invalid"])


def test_resolvers_skip_loopback_stubs(tmp_path):
    stub, real = tmp_path / "stub", tmp_path / "real"
    stub.write_text("nameserver 127.0.0.53\noptions edns0\n")
    real.write_text("# upstream\nnameserver 192.0.2.1\nnameserver ::1\nnameserver 192.0.2.2\n")
    assert vlab._resolvers((str(stub), str(real))) == ["192.0.2.1", "192.0.2.2"]
    assert vlab._resolvers((str(stub),)) == []


@pytest.mark.parametrize("argv, message", [
    (["up", "--memory", "100"], "at least 768 MiB"),
    (["up", "--computes", "5"], "invalid choice"),
    (["up", "--boot-timeout", "-1"], "must be positive"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_options_are_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        vlab.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_commands_of_a_lab_that_is_not_up_say_so(tmp_path, capsys):
    assert vlab.main(["--dir", str(tmp_path / "lab"), "status"]) == 1
    assert "not up" in capsys.readouterr().out
    assert vlab.main(["--dir", str(tmp_path / "lab"), "salt-run", "netlab.status"]) == 2
    assert "is not up; ./vlab up" in capsys.readouterr().err
