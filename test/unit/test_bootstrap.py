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
    # another config dir: the minion's keys follow it (Salt's default would not)
    assert yaml.safe_load(nb.minion_conf("nn", "/opt/etc/pki/minion"))["pki_dir"] == \
        "/opt/etc/pki/minion"


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


# --------------------------------------------------------------------------- salt, services
def test_choose_salt_takes_the_first_supported_release_and_says_why_not_others():
    found, notes = nb.choose_salt([("/opt/v/bin", None),
                                   ("/usr/bin", "salt-master 3005.1 (Phosphorus)\n")])
    assert found is None
    assert notes == ["ignoring Salt 'salt-master 3005.1 (Phosphorus)' in /usr/bin: not a "
                     "supported release (3006.x, 3007.x, 3008.x)"]
    found, notes = nb.choose_salt([("/opt/v/bin", "salt-master 3008.3 (Potassium)"),
                                   ("/usr/bin", "salt-master 3006.9 (Sulfur)")])
    assert found == "/opt/v/bin" and notes == []
    assert nb.choose_salt([("/usr/bin", "salt-master 3006.9 (Sulfur)")])[0] == "/usr/bin"
    assert nb.salt_release("garbage") is None


def test_install_commands_pin_salt_like_the_test_venv():
    cmds = nb.install_commands("/opt/v", python_has_venv=False)
    assert cmds[0] == ["apt-get", "install", "-y", "-q", "python3-venv"]
    assert cmds[1] == ["python3", "-m", "venv", "/opt/v"]
    assert cmds[2][:3] == ["/opt/v/bin/pip", "install", "-q"]
    pins = dict(p.split("==") for p in cmds[2][3:])
    reqs = dict(ln.split("==") for ln in (REPO / "test" / "requirements.txt").read_text()
                .splitlines() if "==" in ln and not ln.startswith("#"))
    assert pins["salt"] == nb.SALT_VERSION == reqs["salt"]
    assert pins["netaddr"] == reqs["netaddr"]
    assert cmds == nb.install_commands("/opt/v", python_has_venv=False, gitfs=False)
    again = nb.install_commands("/opt/v", True, gitfs=True, have_python=True)
    assert len(again) == 1 and "GitPython==3.2.1" in again[0]


def test_service_mode_follows_the_machine_and_refuses_systemd_without_it():
    assert nb.service_mode("auto", True) == "systemd"
    assert nb.service_mode("auto", False) == "process"
    assert nb.service_mode("process", True) == "process"
    assert nb.service_mode("systemd", True) == "systemd"
    with pytest.raises(nb.BootstrapError, match="systemd does not run on this machine"):
        nb.service_mode("systemd", False)


def test_unit_names_never_take_a_packaged_unit():
    assert nb.unit_name("salt-master", from_venv=True) == "netlab-salt-master"
    assert nb.unit_name("salt-minion", from_venv=False) == "salt-minion"


def test_unit_file_runs_the_venv_salt_in_the_foreground():
    text = nb.unit_file("salt-minion", "/opt/v/bin", "/etc/salt")
    assert nb.written_by_us(text)
    assert "ExecStart=/opt/v/bin/salt-minion -c /etc/salt\n" in text
    assert "KillMode=process" in text  # a minion-run restart of itself survives
    assert "-d" not in text.split("ExecStart=")[1].splitlines()[0]
    assert "WantedBy=multi-user.target" in text


@pytest.mark.parametrize("enabled,active,restart,changed,want", [
    (True, True, False, False, []),                                   # a re-run
    (False, False, False, True, [["systemctl", "daemon-reload"],
                                 ["systemctl", "enable", "u"], ["systemctl", "start", "u"]]),
    (True, True, True, False, [["systemctl", "restart", "u"]]),      # its config changed
    (True, True, False, True, [["systemctl", "daemon-reload"], ["systemctl", "restart", "u"]]),
    (True, False, True, False, [["systemctl", "start", "u"]]),
])
def test_unit_actions(enabled, active, restart, changed, want):
    assert nb.unit_actions("u", enabled, active, restart, changed) == want


def test_dhcp_mode():
    assert nb.dhcp_mode("auto", [{"server": "10.0.0.1"}])[0] == "proxy"
    assert nb.dhcp_mode("auto", []) == ("full", "no other DHCP server answered")
    assert nb.dhcp_mode("full", [{"server": "10.0.0.1"}]) == ("full", "--dhcp full")


# --------------------------------------------------------------------------- process mode
def test_process_mode_lab_and_master_config():
    example = (REPO / "pillar.example").read_text()
    text = nb.lab_sls(example, nb.detect_network(ADDR, ROUTE), "full", "nn", service="process")
    raw = yaml.safe_load(text)["netlab"]
    assert raw["lookup"] == {"service_control": "process"}
    assert netlab_lab.validate(raw) == []
    assert "lookup" not in yaml.safe_load(nb.lab_sls(example, nb.detect_network(ADDR, ROUTE),
                                                     "full", "nn"))["netlab"]
    # no stop command for ganesha in either mode: a reimage reloads its exports
    assert "netlab_exports_refresh" not in yaml.safe_load(nb.master_conf("/r", "nn"))


# --------------------------------------------------------------------------- gitfs
def test_gitfs_settings_validated_and_written():
    g = nb.gitfs_settings("/srv/git/netlab.git", "main", ("pygit2", "gitpython"))
    assert g == {"url": "file:///srv/git/netlab.git", "branch": "main", "provider": "pygit2"}
    master = yaml.safe_load(nb.master_conf("/root/netlab", "nn", gitfs=g))
    assert master["fileserver_backend"] == ["roots", "gitfs"]
    assert master["gitfs_remotes"] == [{"file:///srv/git/netlab.git": [{"base": "main"}]}]
    assert master["gitfs_provider"] == "pygit2"
    assert master["file_roots"] == {"base": ["/srv/salt"]}  # not the checkout
    for url in ("https://example.org/you/netlab.git", "git@example.org:you/netlab.git",
                "ssh://git@example.org/you/netlab.git"):
        assert nb.gitfs_settings(url, "stable/1", ("gitpython",))["url"] == url
    with pytest.raises(nb.BootstrapError, match="not a git remote URL"):
        nb.gitfs_settings("netlab.git", "main", ("gitpython",))
    with pytest.raises(nb.BootstrapError, match="not a git remote URL"):
        nb.gitfs_settings("https://x/y'z", "main", ("gitpython",))
    for bad in ("", "-x", "a..b", "a b", "a:b", "x.lock", "x/"):
        with pytest.raises(nb.BootstrapError, match="not a valid git branch name"):
            nb.gitfs_settings("/srv/git/n.git", bad, ("gitpython",))
    with pytest.raises(nb.BootstrapError, match="needs GitPython or pygit2"):
        nb.gitfs_settings("/srv/git/n.git", "main", ())


def test_refusal_covers_every_key_the_gitfs_drop_in_sets():
    ours = nb.master_conf("/r", "n", gitfs=nb.gitfs_settings("/g", "main", ("gitpython",)))
    clashes = nb.foreign_master_keys({"/etc/salt/master": "fileserver_backend: [roots]\n"},
                                     nb.top_keys(ours))
    assert clashes == {"/etc/salt/master": ["fileserver_backend"]}
