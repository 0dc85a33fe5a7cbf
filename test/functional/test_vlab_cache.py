"""
``./vlab up --cache``: the virtual lab's networking node runs the LAN cache's apt
proxy and pip mirror, the image build and the nodes fetch through them; the git
mirrors and files stay off (their upstreams are outside the lab's NAT).

The pillar the vlab writes, the settings the image build and the nodes get from
it, ``netlab.cache`` rendered by ``salt-call --local`` (``state.show_sls``: the
daemons' specs as the vlab runs them, nothing started), the networking node's
way out and the command line. ``./vlab`` itself is not run here.
"""

import os
import pathlib
import sys
import types

import pytest

import netlab_cache
import netlab_cache_config
import netlab_image
import netlab_image_build
import netlab_lab
import netlab_localconf
import netlab_saltcompat
from lib.saltlocal import SaltLocal

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import vlab  # noqa: E402  pylint: disable=wrong-import-position

REPO = pathlib.Path(__file__).resolve().parents[2]
APT = "http://{}:3142".format(vlab.NETNODE_IP)
PIP = "http://{}:3141/root/pypi/+simple/".format(vlab.NETNODE_IP)


def _pillar(base, cache=True):
    raw = vlab.lab_pillar(str(base), computes=2, cache=cache)
    # the vlab pins its image's minion to its own Salt; the master here may be the
    # other supported line (tested elsewhere)
    raw["image"]["salt_version"] = netlab_saltcompat.salt_version()
    return raw


def test_cache_turns_on_apt_and_pip_and_the_image_build_and_nodes_use_them(tmp_path):
    lab = netlab_lab.load(_pillar(tmp_path))
    assert [p for p in netlab_cache.PARTS if netlab_cache.enabled(lab, p)] == ["apt", "pip"]
    assert netlab_image_build.build_sources(lab) == {"apt_proxy": APT, "pip_index": PIP}
    # the image build's chroot pip: the networking node's devpi, trusted (plain http)
    text, _, _ = netlab_image.pip_config({}, netlab_image_build.build_sources(lab)[
        "pip_index"])
    assert "index-url = {}".format(PIP) in text.splitlines()
    assert "trusted-host = {}".format(vlab.NETNODE_IP) in text.splitlines()
    # every node's root gets apt and pip settings pointing at the networking node
    files = netlab_cache_config.node_files(lab)
    assert sorted(files) == ["etc/apt/apt.conf.d/01netlab-cache", "etc/pip.conf"]
    assert 'Acquire::http::Proxy "{}";'.format(APT) in files[
        "etc/apt/apt.conf.d/01netlab-cache"]
    assert "index-url = {}".format(PIP) in files["etc/pip.conf"]
    # no git mirror: DevStack and its projects come from where they come from
    # without the cache, and local.conf says nothing about a mirror
    assert netlab_cache.git_base(lab) is None
    assert netlab_cache_config.nginx_locations(lab) == []
    for node_id in lab.nodes:
        assert netlab_cache.node_checkouts(lab, node_id) == []
        text = netlab_localconf.render(lab, node_id)
        for name in ("GIT_BASE", "ERROR_ON_CLONE", "RECLONE", "IMAGE_URLS"):
            assert name + "=" not in text, (node_id, name)
    # the apt proxy lets through the image's mirror only
    assert netlab_cache.apt_mirrors(lab) == ["http://deb.debian.org/debian"]


def test_the_cache_lives_under_the_lab_directory(tmp_path):
    raw = _pillar(tmp_path)
    lab = netlab_lab.load(raw)
    assert lab.cache["storage"] == str(tmp_path / "srv" / "cache")
    assert raw["lookup"]["cache"]["devpi_venv"] == str(tmp_path / "devpi-venv")
    # without --cache the lookup has no cache settings and every part is off
    off = _pillar(tmp_path, cache=False)
    assert "cache" not in off["lookup"]
    assert not netlab_cache.any_enabled(netlab_lab.load(off))


def test_the_networking_node_reaches_pypi_for_devpi_whatever_index_this_machine_uses():
    settings = {"index-url": "https://mirror.example/simple"}
    for cache, want in ((False, ["deb.debian.org", "mirror.example"]),
                        (True, ["deb.debian.org", "pypi.org", "files.pythonhosted.org",
                                "mirror.example"])):
        lab = netlab_lab.load(vlab.lab_pillar("/var/lib/netlab-vlab", cache=cache))
        assert vlab.package_hosts(lab, settings) == want, cache


@pytest.fixture(scope="module")
def shown(tmp_path_factory):
    root = tmp_path_factory.mktemp("vlab-cache")
    raw = _pillar(root)
    salt = SaltLocal(root / "salt", REPO, {"netlab": raw})
    salt.sync()
    out = salt.run("state.show_sls", "netlab.cache")
    assert isinstance(out, dict), out
    return root, out


def _args(state):
    """A shown state's arguments as one dict (show_sls lists them)."""
    fun = next(k for k in state if not k.startswith("__"))
    out = {}
    for item in state[fun]:
        if isinstance(item, dict):
            out.update(item)
    return out


def test_netlab_cache_runs_apt_cacher_ng_and_devpi_as_processes_of_the_lab(shown):
    root, states = shown
    run = root / "run" / "cache"
    apt = _args(states["netlab-cache-netlab_daemon-running-apt"])
    assert apt["cmd"][0] == "/usr/sbin/apt-cacher-ng"
    assert apt["pidfile"] == str(run / "apt.pid")
    pip = _args(states["netlab-cache-netlab_daemon-running-pip"])
    assert pip["cmd"][:1] == [str(root / "devpi-venv" / "bin" / "devpi-server")]
    # on the lab IP only
    assert pip["cmd"][pip["cmd"].index("--host") + 1] == vlab.NETNODE_IP
    assert pip["pidfile"] == str(run / "pip.pid")
    conf = _args(states["netlab-cache-file-managed-acng-conf"])
    assert "BindAddress: {}".format(vlab.NETNODE_IP) in conf["contents"]
    assert _args(states["netlab-cache-file-directory-apt"])["user"] == "root"
    venv = _args(states["netlab-cache-cmd-run-devpi-venv"])
    assert venv["creates"] == str(root / "devpi-venv" / "bin" / "devpi-server")
    # the package's own apt-cacher-ng service is not touched in process mode, the
    # git and files parts have no states
    assert not [s for s in states if "acng-package" in s or "-git" in s or "-files" in s]


def test_up_cache_reaches_up_and_a_running_lab_without_pypi_is_refused(tmp_path,
                                                                        monkeypatch):
    seen = {}
    monkeypatch.setattr(vlab.Vlab, "up", lambda self, **kw: seen.update(kw) or 0)
    assert vlab.main(["--dir", str(tmp_path / "lab"), "up", "--cache"]) == 0
    assert seen["cache"] is True
    assert vlab.main(["--dir", str(tmp_path / "lab"), "up"]) == 0
    assert seen["cache"] is False
    # a lab made without --cache whose way out lacks PyPI (this machine's pip
    # uses another index): up --cache asks for down first
    lab = vlab.Vlab(str(tmp_path / "lab2"))
    lab.state.update(holder=1, uplink=False, hosts=["deb.debian.org", "mirror.example"])
    monkeypatch.setattr(vlab.Vlab, "holder", property(lambda self: 1))
    namespace = lab._namespace  # pylint: disable=protected-access
    with pytest.raises(vlab.VlabError, match="without pypi.org, files.pythonhosted.org"):
        namespace(None, False, ["deb.debian.org", "pypi.org", "files.pythonhosted.org",
                                "mirror.example"])
    namespace(None, False, ["deb.debian.org"])  # hosts it has: nothing to do


def test_preflight_wants_apt_cacher_ng_with_cache_and_stops_the_packages_own(monkeypatch):
    monkeypatch.setattr(vlab.shutil, "which", lambda c: None if c == "apt-cacher-ng"
                        else "/usr/bin/" + c)
    monkeypatch.setattr(vlab.os.path, "exists",
                        lambda p: not p.endswith("/apt-cacher-ng") and os.path.lexists(p))
    assert vlab.Vlab.missing_commands() == []
    assert vlab.Vlab.missing_commands(cache=True) == ["apt-cacher-ng"]
    assert vlab.acng_package_stop(True, True) == [
        ["systemctl", "disable", "--now", "apt-cacher-ng"]]
    assert vlab.acng_package_stop(False, True) == [
        [vlab.ACNG_INIT_SCRIPT, "stop"], ["update-rc.d", "apt-cacher-ng", "disable"]]
    assert vlab.acng_package_stop(False, False) == []


def test_preflight_installs_apt_cacher_ng_then_stops_its_service(monkeypatch):
    state = {"installed": False}
    calls = []

    def sh(cmd, check=True, **kw):  # pylint: disable=unused-argument
        calls.append(list(cmd))
        if cmd[:2] == ["apt-get", "install"]:
            state["installed"] = True
        return types.SimpleNamespace(returncode=0, stdout="", stderr="")

    monkeypatch.setattr(vlab, "_sh", sh)
    monkeypatch.setattr(vlab.os, "geteuid", lambda: 0)
    monkeypatch.setattr(vlab.Vlab, "missing_commands", staticmethod(
        lambda cache=False: [] if state["installed"] or not cache else ["apt-cacher-ng"]))
    real_isdir, real_exists = vlab.os.path.isdir, vlab.os.path.exists
    monkeypatch.setattr(vlab.os.path, "isdir",
                        lambda p: p == "/run/systemd/system" or real_isdir(p))
    monkeypatch.setattr(vlab.os.path, "exists",
                        lambda p: p == "/dev/net/tun" or real_exists(p))
    monkeypatch.setattr(vlab.shutil, "which", lambda c: "/usr/bin/" + c)
    vlab.Vlab("/nonexistent/lab").preflight(install=True, cache=True)
    install = next(c for c in calls if c[:2] == ["apt-get", "install"])
    assert "apt-cacher-ng" in install
    assert calls[-1] == ["systemctl", "disable", "--now", "apt-cacher-ng"]
