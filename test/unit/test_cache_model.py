"""The LAN cache's pillar schema, derived settings and pure pipelines
(_utils/netlab_cache.py)."""

import copy
import os
import subprocess

import pytest

import netlab_cache
import netlab_cache_config
import netlab_cache_refresh
import netlab_image
import netlab_lab

OFF = {part: {"enabled": False} for part in netlab_cache.PARTS}


@pytest.fixture
def raw(example_pillar):
    return copy.deepcopy(example_pillar)


def load(raw):
    return netlab_lab.load(raw)


# --------------------------------------------------------------------------- schema
def test_every_part_is_on_by_default_with_bounded_sizes(raw):
    raw.pop("cache", None)
    lab = load(raw)
    for part in netlab_cache.PARTS:
        assert lab.cache[part]["enabled"] is True
        assert lab.cache[part]["max_size"] == netlab_cache.parse_size(
            netlab_cache.DEFAULT_SIZES[part])
        assert lab.cache[part]["dir"] == "/srv/netlab/cache/" + part
    assert lab.cache["apt"]["port"] == 3142 and lab.cache["pip"]["port"] == 3141


@pytest.mark.parametrize("part", netlab_cache.PARTS)
def test_each_part_turns_off_alone(raw, part):
    raw["cache"] = {part: {"enabled": False}}
    lab = load(raw)
    assert [p for p in netlab_cache.PARTS if not netlab_cache.enabled(lab, p)] == [part]


@pytest.mark.parametrize("cache, error", [
    ({"apt": {"enabled": "no"}}, "netlab:cache:apt:enabled: must be true or false"),
    ({"pip": {"max_size": "huge"}}, "netlab:cache:pip:max_size: 'huge' is not a size"),
    ({"git": {"max_size": 10}}, "netlab:cache:git:max_size: 10 is not a size of at least"),
    ({"apt": {"port": 80}}, "netlab:cache:apt:port: 80 is netnode:http:port"),
    ({"apt": {"port": 3141}}, "netlab:cache:pip:port: 3141 is cache:apt:port too"),
    ({"pip": {"port": 70000}}, "netlab:cache:pip:port: 70000 is not a TCP port"),
    ({"apt": {"offline": "sometimes"}}, "netlab:cache:apt:offline: 'sometimes' is not one"),
    ({"apt": {"mirrors": ["https://deb.example.org/debian"]}},
     "netlab:cache:apt:mirrors:0: 'https://deb.example.org/debian' is not a URL (http://"),
    ({"git": {"repos": "https://opendev.org/openstack/heat"}},
     "netlab:cache:git:repos: must be a list of URLs"),
    ({"git": {"repos": ["file:///srv/heat.git"]}}, "netlab:cache:git:repos:0:"),
    ({"files": {"urls": ["https://example.org/a;rm -rf"]}}, "netlab:cache:files:urls:0:"),
    ({"files": {"urls": ["https://example.org/"]}},
     "netlab:cache:files:urls:0: 'https://example.org/': its path does not make a file"),
    ({"storage": "/var"}, "netlab:cache:storage: '/var' is a system directory"),
    ({"pip": {"index": "https://pypi.org/simple"}}, "netlab:cache:pip:index: unknown key"),
    ({"squid": {}}, "netlab:cache:squid: unknown key"),
    ("yes", "netlab:cache: must be a mapping"),
])
def test_bad_cache_pillar_is_named_by_its_path(raw, cache, error):
    raw["cache"] = cache
    errors = netlab_lab.validate(raw)
    assert any(e.startswith(error) for e in errors), errors
    with pytest.raises(netlab_lab.LabError):
        load(raw)


def test_sizes():
    assert netlab_cache.parse_size("20G") == 20 << 30
    assert netlab_cache.parse_size("500M") == 500 << 20
    assert netlab_cache.parse_size("1GiB") == 1 << 30
    assert netlab_cache.parse_size(4096) == 4096
    assert netlab_cache.parse_size(True) is None
    assert netlab_cache.parse_size("1.5G") is None


# --------------------------------------------------------------------------- git repos
def test_repos_follow_devstack_stackrc_for_the_services(raw):
    """keystone, glance, nova, placement and neutron with OVN: devstack, requirements
    and the five services; tempest adds tempest and os-test-images."""
    raw["devstack"]["services"] = {
        "base": False, "key": True, "g-api": True, "n-api": True, "n-cpu": True,
        "placement-api": True, "q-svc": True, "ovn-northd": True, "tempest": False}
    # subnodes start from DevStack CI's subnode set, which has cinder's volume
    # services: off here, so no cinder
    raw["roles"]["compute"]["devstack"] = {"services": {"c-vol": False, "c-bak": False}}
    for node in raw["nodes"].values():
        node.pop("devstack", None)
    lab = load(raw)
    names = sorted(netlab_cache.git_repos(lab))
    assert names == ["openstack/devstack.git", "openstack/glance.git",
                     "openstack/keystone.git", "openstack/neutron.git", "openstack/nova.git",
                     "openstack/placement.git", "openstack/requirements.git"]
    raw["devstack"]["services"]["tempest"] = True
    names = sorted(netlab_cache.git_repos(load(raw)))
    assert "openstack/tempest.git" in names and "openstack/os-test-images.git" in names


def test_plugins_and_pillar_repos_are_mirrored_and_local_repos_are_not(raw):
    raw["devstack"]["plugins"] = {"heat": "https://opendev.org/openstack/heat",
                                  "local": "file:///srv/git/local-plugin"}
    raw["cache"] = {"git": {"repos": ["https://github.com/novnc/novnc.git"]}}
    repos = netlab_cache.git_repos(load(raw))
    assert repos["openstack/heat.git"] == "https://opendev.org/openstack/heat"
    assert repos["novnc/novnc.git"] == "https://github.com/novnc/novnc.git"
    assert not [r for r in repos if "local-plugin" in r]


def test_the_upstream_base_is_devstack_git_base(raw):
    raw["devstack"]["git_base"] = "https://git.example.org/mirror"
    repos = netlab_cache.git_repos(load(raw))
    assert repos["openstack/requirements.git"] == \
        "https://git.example.org/mirror/openstack/requirements.git"


# --------------------------------------------------------------------------- renderers
def test_apt_cacher_ng_listens_on_the_lab_ip_and_only_reaches_the_mirrors(raw):
    raw["cache"] = {"apt": {"mirrors": ["http://security.debian.org/debian-security"]}}
    lab = load(raw)
    conf = netlab_cache_config.acng_conf(lab).splitlines()
    assert "BindAddress: 192.168.42.2" in conf
    assert "ForceManaged: 1" in conf
    assert "PassThroughPattern: ^$" in conf
    assert "Offlinemode: 0" in conf
    remaps = [line for line in conf if line.startswith("Remap-")]
    assert remaps == [
        "Remap-netlab0: deb.debian.org/debian ; http://deb.debian.org/debian",
        "Remap-netlab1: security.debian.org/debian-security ; "
        "http://security.debian.org/debian-security"]
    assert "Offlinemode: 1" in netlab_cache_config.acng_conf(lab, offline=True).splitlines()


def test_offline_auto_probes_the_mirrors(raw):
    lab = load(raw)

    def refused(addr, timeout):
        raise OSError("unreachable")

    def ok(addr, timeout):
        assert addr == ("deb.debian.org", 80)

    data = netlab_cache_config.service_data(lab, "/run/netlab/cache", "/opt/d", refused)
    assert data["apt"]["offline"] is True and "Offlinemode: 1" in data["apt"]["conf"]
    data = netlab_cache_config.service_data(lab, "/run/netlab/cache", "/opt/d", ok)
    assert data["apt"]["offline"] is False
    raw["cache"] = {"apt": {"offline": False}}
    data = netlab_cache_config.service_data(load(raw), "/run/x", "/opt/d", refused)
    assert data["apt"]["offline"] is False


def test_devpi_on_the_lab_ip(raw):
    data = netlab_cache_config.service_data(load(raw), "/run/x", "/opt/d", lambda a, t: None)
    assert data["pip"]["argv"] == ["/opt/d/bin/devpi-server", "--serverdir",
                                   "/srv/netlab/cache/pip", "--host", "192.168.42.2",
                                   "--port", "3141"]
    assert data["pip"]["url"] == "http://192.168.42.2:3141/root/pypi/+simple/"


def test_node_files_point_apt_and_pip_at_the_networking_node(raw):
    files = netlab_cache_config.node_files(load(raw))
    assert files["etc/apt/apt.conf.d/01netlab-cache"].endswith(
        'Acquire::http::Proxy "http://192.168.42.2:3142";\n')
    assert "index-url = http://192.168.42.2:3141/root/pypi/+simple/" in files["etc/pip.conf"]
    raw["cache"] = copy.deepcopy(OFF)
    assert netlab_cache_config.node_files(load(raw)) == {}


def test_nginx_serves_the_git_and_files_caches_only_when_on(raw):
    lab = load(raw)
    assert netlab_cache_config.nginx_locations(lab) == [
        {"path": "/git/", "alias": "/srv/netlab/cache/git/served/"},
        {"path": "/files/", "alias": "/srv/netlab/cache/files/"}]
    raw["cache"] = copy.deepcopy(OFF)
    assert netlab_cache_config.nginx_locations(load(raw)) == []


def test_the_image_builds_through_the_caches_but_its_hash_does_not_change(raw, tmp_path):
    lab_on = load(raw)
    raw_off = copy.deepcopy(raw)
    raw_off["cache"] = copy.deepcopy(OFF)
    lab_off = load(raw_off)
    assert netlab_image.recipe(lab_on) == netlab_image.recipe(lab_off)
    rec = netlab_image.recipe(lab_on)
    rec["cache"] = netlab_image.build_sources(lab_on)
    cmd = netlab_image.mmdebstrap_command(rec, "/r", "/s", {})
    assert '--aptopt=Acquire::http::Proxy "http://192.168.42.2:3142"' in cmd
    stage = tmp_path / "stage"
    files_dir = tmp_path / "files"
    (files_dir / "overlay").mkdir(parents=True)
    (files_dir / "configure.sh").write_text("#!/bin/sh\n")
    netlab_image.stage_inputs(lab_on, rec, "d" * 64, str(stage), str(files_dir),
                              pip_settings={})
    conf = (stage / "pip" / "pip.conf").read_text().splitlines()
    assert "index-url = http://192.168.42.2:3141/root/pypi/+simple/" in conf
    # plain http: without trusted-host the chroot's pip ignores the index
    assert "trusted-host = 192.168.42.2" in conf
    assert "timeout = 180" in conf
    rec_off = netlab_image.recipe(lab_off)
    rec_off["cache"] = netlab_image.build_sources(lab_off)
    assert not [a for a in netlab_image.mmdebstrap_command(rec_off, "/r", "/s", {})
                if "Proxy" in a]


# --------------------------------------------------------------------------- pipelines
def _git(*args, cwd=None):
    return subprocess.run(["git"] + list(args), cwd=cwd, check=True, capture_output=True,
                          text=True, env={"PATH": os.environ["PATH"], "HOME": "/nonexistent",
                                          "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t",
                                          "GIT_AUTHOR_EMAIL": "t@t",
                                          "GIT_COMMITTER_NAME": "t",
                                          "GIT_COMMITTER_EMAIL": "t@t"}).stdout


def _run(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_refresh_mirror_creates_updates_and_keeps_the_last_good_copy(tmp_path):
    upstream = tmp_path / "up.git"
    work = tmp_path / "work"
    _git("init", "-q", "--bare", "-b", "master", str(upstream))
    _git("init", "-q", "-b", "master", str(work))
    (work / "f").write_text("1\n")
    _git("add", "f", cwd=work)
    _git("commit", "-q", "-m", "1", cwd=work)
    _git("push", "-q", str(upstream), "master", cwd=work)
    mirror = tmp_path / "mirrors" / "openstack" / "x.git"
    res = netlab_cache_refresh.refresh_mirror(str(mirror), str(upstream), _run)
    assert res == {"changed": True, "created": True, "error": None}
    assert (mirror / "info" / "refs").is_file()  # dumb HTTP needs update-server-info
    assert netlab_cache_refresh.refresh_mirror(str(mirror), str(upstream), _run)["changed"] is False
    (work / "f").write_text("2\n")
    _git("commit", "-q", "-am", "2", cwd=work)
    _git("push", "-q", str(upstream), "master", cwd=work)
    res = netlab_cache_refresh.refresh_mirror(str(mirror), str(upstream), _run)
    assert res["changed"] is True and res["error"] is None
    head = _git("rev-parse", "master", cwd=work).strip()
    assert head in (mirror / "info" / "refs").read_text()
    os.rename(upstream, tmp_path / "gone.git")
    res = netlab_cache_refresh.refresh_mirror(str(mirror), str(upstream), _run)
    assert res["changed"] is False and "update from" in res["error"]
    assert head in (mirror / "info" / "refs").read_text()
    # a first clone that fails leaves nothing behind
    other = tmp_path / "mirrors" / "openstack" / "y.git"
    res = netlab_cache_refresh.refresh_mirror(str(other), str(upstream), _run)
    assert res["error"].startswith("clone of") and not other.exists()
    assert not (tmp_path / "mirrors" / "openstack" / "y.git.new").exists()


def test_refresh_report_warns_for_a_kept_copy_and_fails_for_a_missing_one(tmp_path):
    (tmp_path / "openstack" / "nova.git").mkdir(parents=True)
    ok, comment, changes = netlab_cache_refresh.refresh_report(
        {"openstack/nova.git": {"changed": False, "error": "update from X failed: boom"},
         "openstack/glance.git": {"changed": True, "created": True, "error": None}},
        {}, str(tmp_path))
    assert ok is True
    assert "git openstack/nova.git: update from X failed: boom; serving its last good " \
           "copy" in comment
    assert changes == {"git openstack/glance.git": "created"}
    ok, comment, _ = netlab_cache_refresh.refresh_report(
        {"openstack/keystone.git": {"changed": False, "error": "clone of Y failed"}},
        {}, str(tmp_path))
    assert ok is False and "not served" in comment


def test_publish_serves_exactly_the_named_mirrors(raw, tmp_path):
    raw["netnode"]["storage"] = str(tmp_path)
    lab = load(raw)
    mirrors = tmp_path / "cache" / "git" / "mirrors"
    for rel in ("openstack/nova.git", "openstack/old.git"):
        (mirrors / rel).mkdir(parents=True)
    served = tmp_path / "cache" / "git" / "served"
    (served / "openstack").mkdir(parents=True)
    (served / "openstack" / "old.git").symlink_to(mirrors / "openstack" / "old.git")
    added, removed = netlab_cache_refresh.publish_mirrors(lab)
    assert added == ["openstack/nova.git"] and removed == ["openstack/old.git"]
    assert sorted(os.listdir(served / "openstack")) == ["nova.git"]
    assert netlab_cache_refresh.stale_mirrors(lab) == ["openstack/old.git"]
    assert netlab_cache_refresh.publish_mirrors(lab) == ([], [])


def test_files_are_fetched_once_and_bounded(raw, tmp_path):
    raw["netnode"]["storage"] = str(tmp_path)
    raw["cache"] = {"files": {"urls": ["http://example.org/a/one.img",
                                       "http://example.org/a/two.img"],
                              "max_size": "1M"}}
    lab = load(raw)
    calls = []

    def download(url, dest):
        calls.append(url)
        with open(dest, "wb") as fh:
            fh.write(b"x" * (2 << 20))

    res = netlab_cache_refresh.fetch_files(lab, download, netlab_cache_refresh.disk_usage)
    assert res["http://example.org/a/one.img"] == {"changed": True, "error": None}
    assert "max_size" in res["http://example.org/a/two.img"]["error"]
    assert calls == ["http://example.org/a/one.img"]
    res = netlab_cache_refresh.fetch_files(lab, download, netlab_cache_refresh.disk_usage)
    assert res["http://example.org/a/one.img"] == {"changed": False, "error": None}

    def broken(url, dest):
        raise OSError("no route to host")

    raw["cache"]["files"]["max_size"] = "1G"
    res = netlab_cache_refresh.fetch_files(load(raw), broken, netlab_cache_refresh.disk_usage)
    assert res["http://example.org/a/two.img"]["error"] == \
        "download failed: no route to host"


def test_prune_removes_the_least_recently_used_packages(raw, tmp_path):
    raw["netnode"]["storage"] = str(tmp_path)
    raw["cache"] = {"apt": {"max_size": "2M"}}
    lab = load(raw)
    pool = tmp_path / "cache" / "apt" / "debrep" / "pool"
    pool.mkdir(parents=True)
    for i, name in enumerate(("old.deb", "mid.deb", "new.deb")):
        p = pool / name
        p.write_bytes(b"x" * (1 << 20))
        os.utime(p, (1000 + i, 1000 + i))
    (pool / "InRelease").write_bytes(b"i" * 100)
    removed = netlab_cache_refresh.prune(lab, "apt")
    assert [os.path.basename(p) for p in removed] == ["old.deb", "mid.deb"]
    assert sorted(os.listdir(pool)) == ["InRelease", "new.deb"]
    usage = netlab_cache_refresh.usage(lab, netlab_cache_refresh.disk_usage)
    assert usage["apt"]["over"] is False and usage["apt"]["used"] == (1 << 20) + 100


def test_usage_table_for_netlab_status(raw, tmp_path):
    raw["netnode"]["storage"] = str(tmp_path)
    raw["cache"] = {"files": {"enabled": False}, "git": {"max_size": "1M"}}
    lab = load(raw)
    (tmp_path / "cache" / "git").mkdir(parents=True)
    (tmp_path / "cache" / "git" / "big").write_bytes(b"x" * (2 << 20))
    table = netlab_cache_refresh.usage_table(netlab_cache_refresh.usage(lab, netlab_cache_refresh.disk_usage))
    lines = table.splitlines()
    assert lines[0].split() == ["CACHE", "STATE", "USED", "BOUND", "WHERE"]
    assert lines[3].split()[:2] == ["git", "OVER"]
    assert lines[4].split()[:3] == ["files", "off", "-"]
