"""
The LAN cache turned off (``netlab:cache:<part>:enabled: false``), as the virtual
lab runs (tools/vlab.py's pillar has every part off): nothing in the lab points
at a cache, the networking node's states run without one and stop a daemon a
part left running, and each part can be turned off on its own.

``salt-call --local`` against a temp root (no daemon is started; the vlab itself
is not run here).
"""

import copy
import os
import pathlib
import subprocess
import sys

import pytest

import netlab_boot
import netlab_cache
import netlab_cache_config
import netlab_image_build
import netlab_lab
import netlab_localconf
import netlab_saltcompat
import netlab_slice
from lib.saltlocal import SaltLocal, changed, failed, temp_root_lookup

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import vlab  # noqa: E402  pylint: disable=wrong-import-position

REPO = pathlib.Path(__file__).resolve().parents[2]
# what the cache adds to a local.conf when it is on
CACHE_NAMES = ("GIT_BASE", "IMAGE_URLS", "DOWNLOAD_DEFAULT_IMAGES", "ETCD_DOWNLOAD_URL",
               "TEMPEST_VENV_UPPER_CONSTRAINTS", "NOVNC_FROM_PACKAGE", "RECLONE",
               "ERROR_ON_CLONE")


def _vlab_pillar(root, control="none"):
    """The vlab's pillar with every path under ``root``; ``control: process`` lets
    netlab.cache manage (stop) its daemons, ``none`` starts nothing (nginx)."""
    raw = vlab.lab_pillar(str(root), computes=2)
    raw["lookup"] = dict(temp_root_lookup(root), service_control=control)
    # the vlab pins its image's minion to its own Salt; the master here may be the
    # other supported line, which refuses a newer minion (tested elsewhere)
    raw["image"]["salt_version"] = netlab_saltcompat.salt_version()
    return raw


def _localrc_names(text):
    body = text.split("[[local|localrc]]", 1)[1]
    return {line.split("=", 1)[0] for line in body.splitlines()
            if "=" in line and not line.startswith("#")}


def test_the_vlab_lab_has_every_part_off_and_nothing_points_at_a_cache(tmp_path):
    raw = _vlab_pillar(tmp_path)
    lab = netlab_lab.load(raw)
    assert not netlab_cache.any_enabled(lab)
    assert netlab_image_build.build_sources(lab) == {"apt_proxy": None, "pip_index": None}
    assert netlab_cache_config.node_files(lab) == {}
    assert netlab_cache_config.nginx_locations(lab) == []
    assert netlab_boot.nginx(lab)["locations"] == []
    for node_id in lab.nodes:
        text = netlab_localconf.render(lab, node_id)
        assert not _localrc_names(text) & set(CACHE_NAMES), (node_id, text)
        sl = netlab_slice.node_slice(lab, node_id, local_conf=text)
        assert sl["devstack"]["repo"] == raw["devstack"]["repo"]
        assert sl["devstack"]["projects"] == []


@pytest.fixture(scope="module")
def salt(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache-off")
    s = SaltLocal(root / "salt", REPO, {"netlab": _vlab_pillar(root, "process")})
    s.sync()
    s.root_dir = root
    return s


def test_netnode_states_run_without_the_cache(salt):
    ret = salt.apply("netlab.cache")
    assert not failed(ret), failed(ret)
    # no daemon, no refresh: the storage directory, and the daemons stopped (none ran)
    assert sorted(ret) == ["netlab-cache-file-directory-storage",
                           "netlab-cache-netlab_daemon-dead-apt",
                           "netlab-cache-netlab_daemon-dead-pip"], sorted(ret)
    assert all("is not running" in ret[s]["comment"] for s in ret if "dead" in s)
    assert changed(salt.apply("netlab.cache")) == []
    # the deploy's node step: every node's checkout straight from its repo, and
    # nothing checked out beforehand
    for node_id in ("ctl", "cmp1", "cmp2"):
        out = salt.call("devstack.settings", node_id)
        assert out["repo"] == vlab.DEVSTACK_REPO and out["projects"] == [], out


def test_a_daemon_left_by_a_part_turned_off_is_stopped(salt):
    """apt was on (its daemon runs), then pillar turns it off: netlab.cache stops it."""
    run = pathlib.Path(salt.pillar["netlab"]["lookup"]["run_dir"]) / "cache"
    run.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(["sleep", "300"])  # pylint: disable=consider-using-with
    try:
        # a pid file without a start record is trusted (netlab_proc.ours)
        (run / "apt.pid").write_text("{}\n".format(proc.pid))
        ret = salt.apply("netlab.cache")
        dead = ret["netlab-cache-netlab_daemon-dead-apt"]
        assert dead["result"] is True and dead["changes"]["stopped"], dead
        assert proc.wait(timeout=20) is not None
        assert not (run / "apt.pid").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("part", netlab_cache.PARTS)
def test_each_part_turns_off_on_its_own(salt, part):
    pillar = copy.deepcopy(salt.pillar)
    cache = {p: {"enabled": p != part} for p in netlab_cache.PARTS}
    pillar["netlab"]["cache"] = cache
    lab = netlab_lab.load(pillar["netlab"])
    text = netlab_localconf.render(lab, "cmp1")
    names = _localrc_names(text)
    sources = netlab_image_build.build_sources(lab)
    files = netlab_cache_config.node_files(lab)
    locations = [loc["path"] for loc in netlab_cache_config.nginx_locations(lab)]
    assert ("GIT_BASE" in names) == (part != "git")
    assert ("ERROR_ON_CLONE" in names) == (part != "git")
    assert bool(netlab_cache.node_checkouts(lab, "cmp1")) == (part != "git")
    assert (sources["apt_proxy"] is None) == (part == "apt")
    assert ("etc/apt/apt.conf.d/01netlab-cache" in files) == (part != "apt")
    assert (sources["pip_index"] is None) == (part == "pip")
    assert ("etc/pip.conf" in files) == (part != "pip")
    assert ("/git/" in locations) == (part != "git")
    assert ("/files/" in locations) == (part != "files")
    # the SLS renders with the part's states gone (a daemon part: stopped instead)
    salt.set_pillar(pillar)
    try:
        shown = salt.run("state.show_sls", "netlab.cache")
    finally:
        salt.set_pillar({"netlab": _vlab_pillar(salt.root_dir, "process")})
    assert isinstance(shown, dict), shown
    ids = set(shown)
    if part in ("apt", "pip"):
        assert "netlab-cache-netlab_daemon-running-" + part not in ids
        assert "netlab-cache-netlab_daemon-dead-" + part in ids
        other = "pip" if part == "apt" else "apt"
        assert "netlab-cache-netlab_daemon-running-" + other in ids
    else:
        assert "netlab-cache-file-directory-" + part not in ids
        assert "netlab-cache-netlab_cache-refreshed" in ids
