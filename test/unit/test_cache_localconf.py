"""local.conf, node slices and node roots with the LAN cache on and off: on, every
node points at the networking node; off, none of it is there."""

import copy

import pytest

import netlab_cache
import netlab_lab
import netlab_localconf
import netlab_roots
import netlab_slice

OFF = {part: {"enabled": False} for part in netlab_cache.PARTS}
NETNODE = "192.168.42.2"
FILES = [
    "https://github.com/etcd-io/etcd/releases/download/v3.5.15/etcd-v3.5.15-linux-amd64.tar.gz",
    "https://download.cirros-cloud.net/0.6.3/cirros-0.6.3-x86_64-disk.img",
    "https://example.org/images/other.qcow2",
    "https://releases.openstack.org/constraints/upper/master",
]
CACHE_NAMES = ("GIT_BASE", "IMAGE_URLS", "DOWNLOAD_DEFAULT_IMAGES", "ETCD_DOWNLOAD_URL",
               "TEMPEST_VENV_UPPER_CONSTRAINTS", "NOVNC_FROM_PACKAGE", "RECLONE")


@pytest.fixture
def raw(example_pillar):
    raw = copy.deepcopy(example_pillar)
    raw["cache"] = {"files": {"urls": list(FILES)}}
    raw["devstack"]["plugins"] = {"heat": "https://opendev.org/openstack/heat"}
    return raw


def localrc(text):
    out = {}
    for line in text.split("[[local|localrc]]", 1)[1].split("\n[[", 1)[0].splitlines():
        if "=" in line and not line.startswith("#"):
            name, value = line.split("=", 1)
            out[name] = value
    return out


def test_with_the_cache_every_node_points_at_the_networking_node(raw):
    lab = netlab_lab.load(raw)
    base = "http://{}".format(NETNODE)
    for node_id in lab.nodes:
        text = netlab_localconf.render(lab, node_id)
        rc = localrc(text)
        assert rc["GIT_BASE"] == base + "/git", node_id
        assert rc["IMAGE_URLS"] == (
            base + "/files/download.cirros-cloud.net/0.6.3/cirros-0.6.3-x86_64-disk.img,"
            + base + "/files/example.org/images/other.qcow2")
        assert rc["DOWNLOAD_DEFAULT_IMAGES"] == "False"
        assert rc["ETCD_DOWNLOAD_URL"] == \
            base + "/files/github.com/etcd-io/etcd/releases/download"
        assert rc["TEMPEST_VENV_UPPER_CONSTRAINTS"] == \
            base + "/files/releases.openstack.org/constraints/upper/master"
        assert rc["NOVNC_FROM_PACKAGE"] == "True"
        assert "enable_plugin heat {}/git/openstack/heat.git".format(base) in \
            text.splitlines()
        # the DevStack checkout itself comes from the mirror
        sl = netlab_slice.node_slice(lab, node_id, local_conf=text)
        assert sl["devstack"]["repo"] == base + "/git/openstack/devstack.git"
        assert sl["devstack"]["git_base"] == base + "/git"


def test_etcd_url_resolves_to_the_cached_file(raw):
    """DevStack fetches ${ETCD_DOWNLOAD_URL}/${ETCD_VERSION}/etcd-...tar.gz."""
    lab = netlab_lab.load(raw)
    rc = localrc(netlab_localconf.render(lab, "nuc1"))
    assert "{}/v3.5.15/etcd-v3.5.15-linux-amd64.tar.gz".format(rc["ETCD_DOWNLOAD_URL"]) == \
        netlab_cache.file_url(lab, FILES[0])


def test_a_nondefault_http_port_is_in_every_url(raw):
    raw["netnode"]["http"] = {"port": 8080}
    lab = netlab_lab.load(raw)
    rc = localrc(netlab_localconf.render(lab, "nuc2"))
    assert rc["GIT_BASE"] == "http://{}:8080/git".format(NETNODE)
    assert rc["IMAGE_URLS"].startswith("http://{}:8080/files/".format(NETNODE))


def test_pillar_localrc_still_wins(raw):
    raw["devstack"]["localrc"]["GIT_BASE"] = "https://opendev.org"
    rc = localrc(netlab_localconf.render(netlab_lab.load(raw), "nuc1"))
    assert rc["GIT_BASE"] == "https://opendev.org"


def test_without_the_cache_none_of_it(raw):
    raw["cache"] = copy.deepcopy(OFF)
    raw["cache"]["files"]["urls"] = list(FILES)
    lab = netlab_lab.load(raw)
    for node_id in lab.nodes:
        text = netlab_localconf.render(lab, node_id)
        rc = localrc(text)
        assert not [n for n in CACHE_NAMES if n in rc], (node_id, rc)
        assert NETNODE not in text.replace("HOST_IP=" + NETNODE, "")
        assert "enable_plugin heat https://opendev.org/openstack/heat" in text.splitlines()
        sl = netlab_slice.node_slice(lab, node_id, local_conf=text)
        assert sl["devstack"]["repo"] == "https://opendev.org/openstack/devstack"


def test_git_off_files_on_and_the_reverse(raw):
    raw["cache"]["git"] = {"enabled": False}
    rc = localrc(netlab_localconf.render(netlab_lab.load(raw), "nuc1"))
    assert "GIT_BASE" not in rc and "IMAGE_URLS" in rc
    raw["cache"]["git"] = {"enabled": True}
    raw["cache"]["files"]["enabled"] = False
    rc = localrc(netlab_localconf.render(netlab_lab.load(raw), "nuc1"))
    assert "GIT_BASE" in rc and "IMAGE_URLS" not in rc and "ETCD_DOWNLOAD_URL" not in rc


def test_node_roots_get_apt_and_pip_settings_only_with_the_cache(raw, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setattr(netlab_roots, "gen_ssh_host_keys", lambda root: [])
    lab = netlab_lab.load(raw)
    root = tmp_path / "on"
    root.mkdir()
    written = netlab_roots.write_identity(lab, "nuc2", str(root), {
        "generation": 0, "machine_id": "0" * 32, "ovn_uuid": "u"}, ("priv", "pub"))
    assert "etc/pip.conf" in written
    assert "index-url = http://{}:3141/root/pypi/+simple/".format(NETNODE) in \
        (root / "etc" / "pip.conf").read_text()
    assert 'Acquire::http::Proxy "http://{}:3142";'.format(NETNODE) in \
        (root / "etc" / "apt" / "apt.conf.d" / "01netlab-cache").read_text()
    raw["cache"] = copy.deepcopy(OFF)
    root = tmp_path / "off"
    root.mkdir()
    written = netlab_roots.write_identity(netlab_lab.load(raw), "nuc2", str(root), {
        "generation": 0, "machine_id": "0" * 32, "ovn_uuid": "u"}, ("priv", "pub"))
    assert "etc/pip.conf" not in written
    assert not (root / "etc" / "apt").exists()
