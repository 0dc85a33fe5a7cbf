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
               "TEMPEST_VENV_UPPER_CONSTRAINTS", "NOVNC_FROM_PACKAGE", "RECLONE",
               "ERROR_ON_CLONE")


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
        # nothing is checked out beforehand: stack.sh clones as it always does
        assert sl["devstack"]["projects"] == []


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


# --------------------------------------------------------------------------- ERROR_ON_CLONE
def _checkouts(lab, node_id):
    return {c["name"]: c for c in netlab_cache.node_checkouts(lab, node_id)}


def test_with_the_mirror_stack_sh_may_not_clone_and_every_repo_is_checked_out(raw):
    """DevStack's git_clone (functions-common) dies when ERROR_ON_CLONE=True and the
    destination does not exist, whatever the remote: so prepare checks out, from
    the mirror, every repository the node's stack.sh clones, and RECLONE=False
    keeps stack.sh from fetching into them."""
    lab = netlab_lab.load(raw)
    git = "http://{}/git".format(NETNODE)
    for node_id in lab.nodes:
        text = netlab_localconf.render(lab, node_id)
        rc = localrc(text)
        assert (rc["ERROR_ON_CLONE"], rc["RECLONE"]) == ("True", "False"), node_id
        sl = netlab_slice.node_slice(lab, node_id, local_conf=text)
        assert sl["devstack"]["projects"] == netlab_cache.node_checkouts(lab, node_id)
    dest = lab.node("nuc1").devstack["dest"]
    ctl = _checkouts(lab, "nuc1")
    # pillar.example's controller: DevStack's default services but tempest;
    # requirements always; the heat plugin in $DEST/heat
    assert set(ctl) == {"requirements", "keystone", "glance", "nova", "placement",
                        "neutron", "cinder", "horizon", "heat"}, set(ctl)
    assert ctl["nova"] == {"name": "nova", "target": dest + "/nova",
                           "repo": git + "/openstack/nova.git", "branch": "master"}
    assert ctl["heat"]["repo"] == git + "/openstack/heat.git"
    # every checkout comes from a mirror the lab serves
    served = {"{}/{}".format(git, rel) for rel in netlab_cache.git_repos(lab)}
    assert {c["repo"] for c in ctl.values()} <= served
    # a compute (CI's subnode set): no keystone, no tempest
    cmp_ = _checkouts(lab, "nuc2")
    assert "keystone" not in cmp_ and "tempest" not in cmp_
    assert {"requirements", "nova", "neutron"} <= set(cmp_)


def test_checkout_branches_follow_devstack(raw):
    """stackrc: integrated projects follow TARGET_BRANCH (the DevStack release
    branch), tempest and os-test-images stay on master, <PREFIX>_BRANCH wins."""
    raw["devstack"]["branch"] = "stable/2025.1"
    raw["devstack"]["services"]["tempest"] = True
    raw["devstack"]["localrc"]["NOVA_BRANCH"] = "my-nova-fix"
    raw["devstack"]["plugins"] = {"heat": {"repo": "https://opendev.org/openstack/heat",
                                           "branch": "stable/2025.1"}}
    ctl = _checkouts(netlab_lab.load(raw), "nuc1")
    assert ctl["keystone"]["branch"] == "stable/2025.1"
    assert ctl["requirements"]["branch"] == "stable/2025.1"
    assert ctl["nova"]["branch"] == "my-nova-fix"
    assert ctl["tempest"]["branch"] == "master"
    assert ctl["os-test-images"]["branch"] == "master"
    assert ctl["heat"]["branch"] == "stable/2025.1"
    raw["devstack"]["branch"] = "my-devstack-topic"
    assert _checkouts(netlab_lab.load(raw), "nuc1")["keystone"]["branch"] == "master"


def test_a_pillar_repo_override_is_mirrored_and_written_as_the_mirror(raw):
    raw["devstack"]["localrc"]["NOVA_REPO"] = "https://github.com/example/nova"
    raw["devstack"]["localrc"]["LIBS_FROM_GIT"] = "oslo.messaging"
    raw["cache"]["git"] = {"repos": ["https://opendev.org/openstack/heat-templates"]}
    lab = netlab_lab.load(raw)
    git = "http://{}/git".format(NETNODE)
    repos = netlab_cache.git_repos(lab)
    assert repos["example/nova.git"] == "https://github.com/example/nova"
    assert repos["openstack/oslo.messaging.git"] ==         "https://opendev.org/openstack/oslo.messaging.git"
    rc = localrc(netlab_localconf.render(lab, "nuc1"))
    assert rc["NOVA_REPO"] == git + "/example/nova.git"
    ctl = _checkouts(lab, "nuc1")
    assert ctl["nova"]["repo"] == git + "/example/nova.git"
    assert ctl["oslo.messaging"]["target"].endswith("/oslo.messaging")
    assert ctl["heat-templates"]["repo"] == git + "/openstack/heat-templates.git"


def test_an_unmirrorable_repo_is_left_to_error_on_clone(raw):
    """A repository the mirror cannot hold (a local path) is not checked out: with
    ERROR_ON_CLONE=True stack.sh stops at it, naming $DEST/<name>."""
    raw["devstack"]["localrc"]["NOVA_REPO"] = "/srv/git/nova"
    lab = netlab_lab.load(raw)
    rc = localrc(netlab_localconf.render(lab, "nuc1"))
    assert rc["NOVA_REPO"] == "/srv/git/nova" and rc["ERROR_ON_CLONE"] == "True"
    assert "nova" not in _checkouts(lab, "nuc1")


def test_error_on_clone_can_be_turned_off_in_pillar(raw):
    raw["devstack"]["localrc"]["ERROR_ON_CLONE"] = False
    rc = localrc(netlab_localconf.render(netlab_lab.load(raw), "nuc1"))
    assert rc["ERROR_ON_CLONE"] == "False"
