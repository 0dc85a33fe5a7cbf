"""
What netlab-bootstrap writes (_utils/netlab_bootstrap.py): network detection from
real ``ip`` output formats, the lab pillar from pillar.example, the Salt config
and the refusal to override a config it did not write.
"""

import pytest
import yaml

import netlab_bootstrap as nb
import netlab_lab
from conftest import REPO

ADDR = """\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: enp3s0    inet 192.168.42.2/24 brd 192.168.42.255 scope global enp3s0\\       valid_lft forever
3: wlp2s0    inet 10.1.1.7/16 brd 10.1.255.255 scope global dynamic wlp2s0\\       valid_lft 1h
"""
ROUTE = "default via 192.168.42.1 dev enp3s0 proto static metric 100 \n"


def test_detect_network_from_default_route():
    assert nb.detect_network(ADDR, ROUTE) == {
        "interface": "enp3s0", "address": "192.168.42.2", "prefixlen": 24,
        "cidr": "192.168.42.0/24", "gateway": "192.168.42.1"}


def test_detect_network_explicit_interface_has_no_gateway_of_another_one():
    facts = nb.detect_network(ADDR, ROUTE, interface="wlp2s0")
    assert facts["cidr"] == "10.1.0.0/16" and facts["gateway"] is None


def test_detect_network_without_default_route_takes_the_only_interface():
    only = "\n".join(ADDR.splitlines()[:2])
    assert nb.detect_network(only, "")["interface"] == "enp3s0"
    with pytest.raises(nb.BootstrapError, match="pass --interface"):
        nb.detect_network(ADDR, "")
    with pytest.raises(nb.BootstrapError, match="eth9 has no IPv4 address"):
        nb.detect_network(ADDR, ROUTE, interface="eth9")


@pytest.mark.parametrize("mode", ["proxy", "full"])
def test_lab_sls_from_pillar_example_validates_with_no_nodes(mode):
    example = (REPO / "pillar.example").read_text()
    facts = nb.detect_network(ADDR, ROUTE, interface="wlp2s0")
    text = nb.lab_sls(example, facts, mode, "netnode", password="s3cret")
    raw = yaml.safe_load(text)["netlab"]
    assert raw["network"]["interface"] == "wlp2s0"
    assert raw["network"]["cidr"] == "10.1.0.0/16"
    assert raw["network"]["gateway"] is None
    assert raw["network"]["dns"]["upstream"] == []
    assert raw["network"]["dhcp"]["mode"] == mode
    assert raw["netnode"]["ip"] == "10.1.1.7" and raw["netnode"]["id"] == "netnode"
    assert raw["nodes"] == {}
    assert raw["devstack"]["localrc"]["ADMIN_PASSWORD"] == "s3cret"
    assert "ipmi-secret" not in text  # the example's nodes (and BMC password) are gone
    assert "# proxy: the home router keeps handing out addresses" in text  # comments kept
    assert netlab_lab.validate(raw) == []


def test_lab_sls_with_gateway_and_random_password():
    example = (REPO / "pillar.example").read_text()
    a = yaml.safe_load(nb.lab_sls(example, nb.detect_network(ADDR, ROUTE), "proxy", "nn1"))
    b = yaml.safe_load(nb.lab_sls(example, nb.detect_network(ADDR, ROUTE), "proxy", "nn1"))
    assert a["netlab"]["network"]["gateway"] == "192.168.42.1"
    assert a["netlab"]["network"]["dns"]["upstream"] == ["192.168.42.1"]
    assert a["netlab"]["netnode"]["hostname"] == "nn1"
    pw = a["netlab"]["devstack"]["localrc"]["ADMIN_PASSWORD"]
    assert pw != "change-me" and pw != b["netlab"]["devstack"]["localrc"]["ADMIN_PASSWORD"]


def test_salt_config_texts():
    master = yaml.safe_load(nb.master_conf("/root/netlab", "netnode"))
    assert master["id"] == "netnode_master" and master["auto_accept"] is False
    assert master["file_roots"] == {"base": ["/srv/salt", "/root/netlab"]}
    assert master["ext_pillar"] == [{"netlab": {"sls": "netlab.lab"}}]
    assert yaml.safe_load(nb.top_sls("netnode")) == {
        "base": {"L@netnode,netnode_master": ["netlab.lab"]}}
    assert yaml.safe_load(nb.minion_conf("netnode")) == {"id": "netnode",
                                                         "master": "127.0.0.1"}


def test_plan_file_never_overwrites_a_foreign_file():
    ours = nb.master_conf("/root/netlab", "netnode")
    assert nb.plan_file("p", ours, None) == "create"
    assert nb.plan_file("p", ours, ours) == "keep"
    assert nb.plan_file("p", ours, nb.master_conf("/old", "netnode")) == "update"
    assert nb.plan_file("p", ours, "file_roots: {}\n") == "refuse"


def test_foreign_master_keys_and_refusal_message():
    configs = {"/etc/salt/master": "# mine\ninterface: 0.0.0.0\nfile_roots:\n  base: [/srv/x]\n"
                                   "ext_pillar: []\n",
               "/etc/salt/master.d/log.conf": "log_level: debug\n",
               "/etc/salt/master.d/netlab.conf": nb.master_conf("/r", "n")}
    clashes = nb.foreign_master_keys(configs)
    assert clashes == {"/etc/salt/master": ["ext_pillar", "file_roots"]}
    text = nb.refusal(clashes, "/etc/salt/master.d/netlab.conf", nb.master_conf("/r", "n"))
    assert "/etc/salt/master sets ext_pillar, file_roots" in text
    assert "    file_roots:" in text and "run netlab-bootstrap again" in text


def test_pem_body_ignores_armour_and_line_endings():
    pem = "-----BEGIN PUBLIC KEY-----\nMIIB\nIjAN\n-----END PUBLIC KEY-----\n"
    assert nb.pem_body(pem) == "MIIBIjAN"
    assert nb.pem_body(pem.replace("\n", "\r\n")) == nb.pem_body(pem)
    assert nb.pem_body(None) == ""
