"""
The validation error catalogue: one test per rule of the lab pillar.

Each test breaks ``pillar.example`` in exactly one way and checks that
``netlab_lab.validate`` reports that problem, with its pillar path, and nothing
else; the last tests break many things at once and expect every problem.
"""

import copy

import pytest

import netlab_lab


@pytest.fixture
def lab(example_pillar):
    return copy.deepcopy(example_pillar)


def only_error(raw):
    errors = netlab_lab.validate(raw)
    assert len(errors) == 1, errors
    return errors[0]


def test_the_example_is_valid(lab):
    assert netlab_lab.validate(lab) == []
    model = netlab_lab.load(lab)
    assert [n.id for n in model.subnodes] == ["nuc2", "nuc3"]
    assert model.controller.id == "nuc1"


# --------------------------------------------------------------------------- MAC
def test_malformed_mac(lab):
    lab["nodes"]["nuc2"]["mac"] = "94:c6:91:aa:00"
    assert only_error(lab) == ("netlab:nodes:nuc2:mac: '94:c6:91:aa:00' is not a MAC "
                               "address (e.g. 94:c6:91:aa:00:01)")


def test_duplicate_mac_even_when_spelled_differently(lab):
    lab["nodes"]["nuc2"]["mac"] = "94-C6-91-AA-00-01"
    assert only_error(lab) == \
        "netlab:nodes:nuc2:mac: 94:c6:91:aa:00:01 is already used by node nuc1"


# --------------------------------------------------------------------------- IP
def test_malformed_ip(lab):
    lab["nodes"]["nuc3"]["ip"] = "192.168.42.300"
    assert only_error(lab) == "netlab:nodes:nuc3:ip: 192.168.42.300 is not an IPv4 address"


def test_duplicate_ip(lab):
    lab["nodes"]["nuc3"]["ip"] = "192.168.42.12"
    assert only_error(lab) == "netlab:nodes:nuc3:ip: 192.168.42.12 is already used by node nuc2"


def test_ip_outside_the_network(lab):
    lab["nodes"]["nuc3"]["ip"] = "192.168.43.13"
    assert only_error(lab) == \
        "netlab:nodes:nuc3:ip: 192.168.43.13 is outside network:cidr 192.168.42.0/24"


@pytest.mark.parametrize("ip, what", [
    ("192.168.42.1", "network:gateway"),
    ("192.168.42.0", "the network address of network:cidr"),
    ("192.168.42.255", "the broadcast address of network:cidr"),
    ("192.168.42.2", "the networking node (netlab:netnode:ip)"),
], ids=["gateway", "network", "broadcast", "networking-node"])
def test_ip_equal_to_a_reserved_address(lab, ip, what):
    lab["nodes"]["nuc2"]["ip"] = ip
    assert only_error(lab) == "netlab:nodes:nuc2:ip: {} is {}".format(ip, what)


def test_ip_inside_the_full_mode_dhcp_pool(lab):
    lab["network"]["dhcp"]["mode"] = "full"
    lab["network"]["dhcp"]["pool"] = {"start": "192.168.42.100", "end": "192.168.42.199"}
    lab["nodes"]["nuc2"]["ip"] = "192.168.42.150"
    assert only_error(lab) == ("netlab:nodes:nuc2:ip: 192.168.42.150 is inside the DHCP "
                               "pool 192.168.42.100-192.168.42.199 (network:dhcp:pool)")


# --------------------------------------------------------------------------- hostname
@pytest.mark.parametrize("name", ["-nuc", "nuc_2", "NUC2", "a" * 64, "nuc.2"])
def test_hostname_not_a_dns_label(lab, name):
    lab["nodes"]["nuc2"]["hostname"] = name
    error = only_error(lab)
    assert error.startswith("netlab:nodes:nuc2:hostname: {!r} is not a valid DNS label"
                            .format(name))


def test_duplicate_hostname(lab):
    lab["nodes"]["nuc3"]["hostname"] = "nuc2"
    assert only_error(lab) == "netlab:nodes:nuc3:hostname: nuc2 is already used by node nuc2"


# --------------------------------------------------------------------------- roles
def test_no_controller(lab):
    lab["nodes"]["nuc1"]["role"] = "compute"
    assert only_error(lab) == \
        "netlab:nodes: a lab needs exactly one node with role controller, found 0"


def test_two_controllers(lab):
    lab["nodes"]["nuc2"]["role"] = "controller"
    assert only_error(lab) == ("netlab:nodes: a lab needs exactly one node with role "
                               "controller, found 2 (nuc1, nuc2)")


def test_unknown_role(lab):
    lab["nodes"]["nuc3"]["role"] = "comptue"
    assert only_error(lab) == \
        "netlab:nodes:nuc3:role: 'comptue' is not a role (known: controller, compute)"


# --------------------------------------------------------------------------- power
def test_unknown_power_driver(lab):
    lab["nodes"]["nuc2"]["power"] = {"driver": "amt"}
    assert only_error(lab).startswith(
        "netlab:nodes:nuc2:power:driver: 'amt' is not a power driver (known: wol, ipmi, "
        "redfish")


@pytest.mark.parametrize("field, value, error", [
    ("verify", "ca.pem", "'ca.pem' is not true, false or the absolute path of a CA bundle"),
    ("system", "a/b", "'a/b' is not a Redfish system id"),
    ("bootdev", "disk", "'disk' is not one of: pxe, none"),
    ("port", 0, "0 is not a TCP port (1-65535)"),
    ("address", "bmc.example", "is not an IPv4 address"),
])
def test_redfish_power_fields(lab, field, value, error):
    lab["nodes"]["nuc2"]["power"] = {"driver": "redfish", "address": "192.168.43.12",
                                     "username": "op", "password": "pw", field: value}
    text = only_error(lab)
    assert text.startswith("netlab:nodes:nuc2:power:{}: ".format(field)), text
    assert error in text, text


def test_missing_power_driver_fields(lab):
    del lab["nodes"]["nuc3"]["power"]["password"]
    assert only_error(lab) == \
        "netlab:nodes:nuc3:power:password: is required by the ipmi driver"


# --------------------------------------------------------------------------- devstack
def test_unknown_local_conf_phase(lab):
    lab["devstack"]["local_conf"]["post_config"] = {"$NOVA_CONF": {"DEFAULT": {"a": 1}}}
    assert only_error(lab) == (
        "netlab:devstack:local_conf:post_config: unknown local.conf phase (valid: local, "
        "post-config, extra, post-extra, test-config)")


@pytest.mark.parametrize("name", ["9LIVES", "MY-VAR", "A B", "X$Y"])
def test_localrc_name_not_a_shell_identifier(lab, name):
    lab["roles"]["compute"]["devstack"] = {"localrc": {name: "x"}}
    assert only_error(lab) == \
        "netlab:roles:compute:devstack:localrc:{0}: {0!r} is not a shell variable name".format(
            name)


def test_localrc_cycle_in_the_lab_layer_is_reported_once_there(lab):
    lab["devstack"]["localrc"].update({"A": "$B/x", "B": "${C}", "C": "$A"})
    assert only_error(lab) == ("netlab:devstack:localrc: variables reference each other in "
                               "a cycle: A -> B -> C -> A")


def test_localrc_cycle_that_a_role_closes_is_reported_at_the_role(lab):
    lab["devstack"]["localrc"]["A"] = "$B"
    lab["roles"]["compute"]["devstack"] = {"localrc": {"B": "$A"}}
    assert only_error(lab) == ("netlab:roles:compute:devstack:localrc: variables reference "
                               "each other in a cycle: A -> B -> A")


def test_localrc_cycle_that_only_appears_after_merging_a_node(lab):
    lab["devstack"]["localrc"]["A"] = "$B"
    lab["roles"]["compute"]["devstack"] = {"localrc": {"B": "x"}}
    lab["nodes"]["nuc3"]["devstack"]["localrc"]["B"] = "pre-$A"
    # the cycle is shown from the variable whose new reference closes it
    assert only_error(lab) == ("netlab:nodes:nuc3:devstack:localrc: variables reference "
                               "each other in a cycle: B -> A -> B")


def test_localrc_self_reference_is_not_a_cycle(lab):
    lab["devstack"]["localrc"]["PATH"] = "$PATH:/opt/bin"
    assert netlab_lab.validate(lab) == []


def test_plugin_requires_cycle(lab):
    lab["devstack"]["plugins"] = {
        "a": {"repo": "https://opendev.org/x/a", "requires": ["b"]},
        "b": {"repo": "https://opendev.org/x/b", "requires": ["a"]},
    }
    assert only_error(lab) == ("netlab:devstack:plugins: plugins require each other in a "
                               "cycle: a -> b -> a")


def test_plugin_requires_cycle_closed_by_a_node(lab):
    lab["devstack"]["plugins"] = {
        "a": {"repo": "https://opendev.org/x/a", "requires": ["b"]},
        "b": "https://opendev.org/x/b"}
    lab["nodes"]["nuc2"]["devstack"] = {"plugins": {
        "b": {"repo": "https://opendev.org/x/b", "requires": ["a"]}}}
    assert only_error(lab) == ("netlab:nodes:nuc2:devstack:plugins: plugins require each "
                               "other in a cycle: b -> a -> b")


def test_plugin_requires_a_plugin_that_is_not_enabled(lab):
    lab["nodes"]["nuc2"]["devstack"] = {"plugins": {
        "a": {"repo": "https://opendev.org/x/a", "requires": ["zz"]}}}
    assert only_error(lab) == ("netlab:nodes:nuc2:devstack:plugins:a:requires: requires "
                               "plugin 'zz', which is not enabled")


@pytest.mark.parametrize("fname", ["$(touch /tmp/x)", "/etc/a b.conf", "`x`", "a|b"])
def test_local_conf_file_name_with_shell_syntax(lab, fname):
    lab["devstack"]["local_conf"]["post-config"] = {fname: {"DEFAULT": {"a": 1}}}
    assert only_error(lab).startswith(
        "netlab:devstack:local_conf:post-config:{}: is not a file name".format(fname))


def test_local_conf_section_and_key_names(lab):
    lab["devstack"]["local_conf"]["post-config"]["$NOVA_CONF"] = {
        "bad section": {"ok": 1}, "DEFAULT": {"$(id)": 1}}
    errors = netlab_lab.validate(lab)
    assert sorted(errors) == [
        "netlab:devstack:local_conf:post-config:$NOVA_CONF:DEFAULT:$(id): '$(id)' is not "
        "an INI option name (letters, digits, _ . : @ / + -)",
        "netlab:devstack:local_conf:post-config:$NOVA_CONF:bad section: 'bad section' is "
        "not an INI section name (letters, digits, _ . : @ / + -)",
    ]


def test_local_conf_localrc_section_goes_through_localrc(lab):
    lab["devstack"]["local_conf"]["local"] = {"localrc": {}}
    assert only_error(lab) == ("netlab:devstack:local_conf:local:localrc: use "
                               "devstack:localrc for the localrc section")


def test_local_conf_value_on_two_lines(lab):
    lab["devstack"]["local_conf"]["post-config"]["$NOVA_CONF"]["DEFAULT"]["x"] = "a\n[[b|c]]"
    assert only_error(lab).startswith(
        "netlab:devstack:local_conf:post-config:$NOVA_CONF:DEFAULT:x: must be a single line")


# --------------------------------------------------------------------------- typos
@pytest.mark.parametrize("where, key", [
    ((), "nodez"),
    (("network",), "cdir"),
    (("nodes", "nuc2"), "rolle"),
    (("devstack",), "local_conff"),
])
def test_unknown_keys(lab, where, key):
    target = lab
    for part in where:
        target = target[part]
    target[key] = {}
    error = only_error(lab)
    assert error.startswith(":".join(("netlab",) + where + (key,)) + ": unknown key (known: ")


# --------------------------------------------------------------------------- all at once
def test_every_problem_is_reported_at_once(lab):
    lab["nodez"] = {}
    lab["nodes"]["nuc3"]["ip"] = "192.168.42.300"
    lab["nodes"]["nuc2"]["mac"] = lab["nodes"]["nuc1"]["mac"]
    lab["nodes"]["nuc2"]["hostname"] = "Bad_Name"
    lab["nodes"]["nuc1"]["role"] = "boss"
    lab["nodes"]["nuc3"]["power"] = {"driver": "ipmi"}
    lab["devstack"]["local_conf"]["postconfig"] = {}
    lab["devstack"]["localrc"]["1X"] = "y"
    lab["devstack"]["localrc"].update({"A": "$B", "B": "$A"})
    errors = netlab_lab.validate(lab)
    expected_prefixes = [
        "netlab:nodez: unknown key",
        "netlab:nodes:nuc3:ip: 192.168.42.300 is not an IPv4 address",
        "netlab:nodes:nuc2:mac: 94:c6:91:aa:00:01 is already used by node nuc1",
        "netlab:nodes:nuc2:hostname: 'Bad_Name' is not a valid DNS label",
        "netlab:nodes:nuc1:role: 'boss' is not a role",
        "netlab:nodes:nuc3:power:address: is required by the ipmi driver",
        "netlab:nodes:nuc3:power:username: is required by the ipmi driver",
        "netlab:nodes:nuc3:power:password: is required by the ipmi driver",
        "netlab:devstack:local_conf:postconfig: unknown local.conf phase",
        "netlab:devstack:localrc:1X: '1X' is not a shell variable name",
        "netlab:devstack:localrc: variables reference each other in a cycle: A -> B -> A",
        "netlab:nodes: a lab needs exactly one node with role controller, found 0",
    ]
    for prefix in expected_prefixes:
        assert [e for e in errors if e.startswith(prefix)], (prefix, errors)
    assert len(errors) == len(expected_prefixes), errors
    with pytest.raises(netlab_lab.LabError) as exc:
        netlab_lab.load(lab)
    assert exc.value.errors == errors
    assert "({} problems)".format(len(errors)) in str(exc.value)
