"""
The LAN cache on real daemons: ``netlab.cache`` (and the netnode's nginx) applied
with ``salt-call --local`` inside a networking-node namespace whose only way out
is a NAT to Debian's mirror and PyPI (lib.uplink). A node namespace on the lab
bridge fetches through the caches; a third namespace on the bridge is the
stand-in git upstream (bare repositories served over HTTP).

One scenario, in order (each test builds on the previous one):

1. cold: apt-get (own state dirs, the host's dpkg untouched) and pip download
   through the caches; git clone through the local.conf's ``GIT_BASE``;
2. the upstream gets a commit; ``netlab.cache`` refreshes; the clone has it;
3. the upstream goes away; the refresh says the last good copy is served; clones
   still work;
4. the networking node's route out is removed; ``netlab.cache`` switches
   apt-cacher-ng to offline; apt-get update/install and pip succeed from the
   cache alone;
5. a restack of the node with the upstream gone and no way out: ``netlab.node``
   (``salt-call --local`` in the node namespace, the node's own slice as pillar)
   checks DevStack and every repository its stack.sh clones out of the git
   mirror, then ``devstack.stack`` runs stack.sh as the stack user. DevStack's
   upstream cannot be reached from here, so DevStack is the stand-in of
   test/lib/fake_devstack.py, which clones with DevStack's own ``git_clone``
   rules (``ERROR_ON_CLONE``, ``RECLONE``, ``GIT_BASE``) and pip-downloads through
   the node's pip configuration; a repository the mirror never got is a named
   failure of the refresh and of the node's preparation.
"""

import os
import pathlib
import pwd
import shutil
import subprocess
import time
import uuid

import pytest

import netlab_cache
import netlab_cache_config
import netlab_lab
import netlab_localconf
import netlab_slice

from lib import daemons as daemons_lib
from lib import fake_devstack, netns, testusers
from lib.cachelab import AptClient, bare_repo, clone, git, pip_download, wait_port
from lib.saltlocal import SaltLocal, failed
from lib.uplink import Uplink

# one scenario in order (above): pytest-random-order keeps this file's order
pytestmark = [pytest.mark.e2e, pytest.mark.random_order(disabled=True)]

REPO = pathlib.Path(__file__).resolve().parents[2]
CIDR = "10.79.0.0/24"
NETNODE_IP = "10.79.0.2"
NODE_IP = "10.79.0.11"
UPSTREAM_IP = "10.79.0.50"
HTTP_PORT = 8080
UP_PORT = 8000
UPSTREAM = "http://{}:{}".format(UPSTREAM_IP, UP_PORT)
PACKAGE_HOSTS = ("deb.debian.org", "pypi.org", "files.pythonhosted.org")
APT_PACKAGE = "hello"
PIP_PACKAGE = "six==1.16.0"


def _pillar(root, user, dest):
    return {
        "network": {"interface": "br0", "cidr": CIDR, "domain": "lab.test",
                    "dhcp": {"mode": "proxy"}, "dns": {"enabled": True, "upstream": []}},
        "netnode": {"id": "netnode", "ip": NETNODE_IP, "storage": str(root / "srv"),
                    "http": {"port": HTTP_PORT}},
        "image": {"salt_version": _salt_version()},
        "devstack": {"repo": UPSTREAM + "/openstack/devstack.git", "git_base": UPSTREAM,
                     "user": user, "dest": str(dest),
                     # stack.sh clones requirements and keystone (the stand-in: only
                     # with FAKE_CLONE) and pip-installs (FAKE_PIP_PACKAGES)
                     "services": {"base": False, "key": True},
                     "localrc": {"FAKE_CLONE": True, "FAKE_PIP_PACKAGES": PIP_PACKAGE,
                                 "NETLAB_FAKE_SLEEP": 0}},
        "nodes": {"nuc1": {"mac": "52:54:00:79:00:11", "ip": NODE_IP,
                           "role": "controller"}},
        "cache": {"files": {"urls": [UPSTREAM + "/images/tiny-disk.img"]}},
        "lookup": {
            "service_control": "process", "install_packages": False,
            "run_dir": str(root / "run"),
            "nginx": {"conf": str(root / "etc" / "nginx-netlab.conf"), "user": "root"},
            "cache": {"devpi_venv": str(root / "devpi-venv"), "apt_user": "root"},
        },
    }


def _salt_version():
    import netlab_saltcompat  # pylint: disable=import-outside-toplevel

    return netlab_saltcompat.salt_version()


def _apply(salt, sls, expect_ok=True):
    ret = salt.apply(sls)
    if expect_ok:
        assert not failed(ret), (sls, failed(ret))
    return ret


def _pip(ns, dest):
    return pip_download(ns, dest, "http://{}:3141/root/pypi/+simple/".format(NETNODE_IP),
                        NETNODE_IP, [PIP_PACKAGE])


def _by_suffix(ret, sid):
    assert sid in ret, (sid, sorted(ret))
    return ret[sid]


@pytest.fixture(scope="module")
def lab(e2e_ready, tmp_path_factory):  # pylint: disable=unused-argument
    if not os.path.exists("/usr/sbin/apt-cacher-ng"):
        pytest.skip("apt-cacher-ng is not installed (test/apt-packages.txt lists it)")
    root = tmp_path_factory.mktemp("cache-e2e")
    seg = netns.Segment(cidr=CIDR, server_ip=NETNODE_IP)
    uplink = None
    salt = None
    user = None
    # the stack user must reach DEST: not below pytest's 0700 temp dirs
    node_root = pathlib.Path("/tmp") / "netlab-cache-e2e-{}".format(uuid.uuid4().hex[:8])
    env = {"root": root, "seg": seg, "timings": {}, "node_root": node_root}
    try:
        t0 = time.monotonic()
        node_root.mkdir(mode=0o755)
        user = env["user"] = testusers.create("nlce")
        uplink = Uplink(seg.server, PACKAGE_HOSTS)
        node = seg.add_client("node", "52:54:00:79:00:11", ip=NODE_IP)
        up = seg.add_client("up", "52:54:00:79:00:50", ip=UPSTREAM_IP)
        served = root / "upstream"
        work = root / "work"
        (served / "openstack").mkdir(parents=True)
        (served / "images").mkdir(parents=True)
        (served / "images" / "tiny-disk.img").write_bytes(b"not really a disk\n" * 64)
        work.mkdir()
        env["src"] = {n: bare_repo(served, "openstack/" + n, work)
                      for n in ("devstack", "requirements", "keystone")}
        # DevStack: the stand-in's scripts beside the README the clones check
        ds = env["src"]["devstack"]
        fake_devstack.write_files(ds, sleep=0, require_sudo=True)
        git("add", "-A", cwd=ds)
        git("commit", "-q", "-m", "stand-in DevStack", cwd=ds)
        git("push", "-q", str(served / "openstack" / "devstack.git"), "master", cwd=ds)
        env["served"] = served
        env["up_server"] = up.popen(
            ["python3", "-m", "http.server", "-b", UPSTREAM_IP, "-d", str(served),
             str(UP_PORT)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(up, UP_PORT)
        pillar = _pillar(root, user, node_root / "opt" / "stack")
        salt = SaltLocal(root / "salt", REPO, {"netlab": pillar},
                         prefix=seg.server.prefix)
        salt.sync()
        env.update(salt=salt, node=node, up=up, uplink=uplink, pillar=pillar,
                   apt=AptClient(node, root / "apt", "http://{}:3142".format(NETNODE_IP)))
        env["first_http"] = _apply(salt, "netlab.netnode.http")
        env["first"] = _apply(salt, "netlab.cache")
        wait_port(seg.server, 3141, timeout=120)
        wait_port(seg.server, 3142)
        env["timings"]["setup"] = time.monotonic() - t0
        yield env
    finally:
        if salt is not None:
            daemons_lib.stop_pidfiles(root / "run" / "cache", names=(
                "netlab-cache-apt", "netlab-cache-pip", "apt", "pip"))
            daemons_lib.stop_pidfiles(root / "run")
        seg.destroy()
        if uplink is not None:
            uplink.remove()
        if user is not None:
            testusers.remove(user)  # with its home and the sudoers file prepare wrote
        shutil.rmtree(node_root, ignore_errors=True)


def test_cold_apt_pip_and_git_through_the_caches(lab):
    first = lab["first"]
    assert _by_suffix(first, "netlab-cache-netlab_daemon-running-apt")["changes"]
    assert _by_suffix(first, "netlab-cache-netlab_daemon-running-pip")["changes"]
    refreshed = _by_suffix(first, "netlab-cache-netlab_cache-refreshed")
    assert refreshed["result"] is True, refreshed
    assert "git openstack/devstack.git" in refreshed["changes"], refreshed
    # the daemons listen on the lab IP only
    listen = lab["seg"].server.run(["ss", "-Hltn"]).stdout
    for port in (3141, 3142):
        addrs = {line.split()[3] for line in listen.splitlines()
                 if line.split()[3].endswith(":{}".format(port))}
        assert addrs == {"{}:{}".format(NETNODE_IP, port)}, listen
    apt = lab["apt"]
    apt.run("update")
    apt.run("install", "--download-only", "--no-install-recommends", APT_PACKAGE)
    assert any(d.startswith(APT_PACKAGE + "_") for d in apt.debs()), apt.debs()
    # not an open proxy: only the configured mirror
    code = lab["node"].run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-x",
                            "http://{}:3142".format(NETNODE_IP),
                            "http://{}:{}/openstack/devstack.git/HEAD".format(
                                UPSTREAM_IP, UP_PORT)], check=False).stdout
    assert code == "403", code
    _pip(lab["node"], lab["root"] / "pip1")
    assert list((lab["root"] / "pip1").glob("six-1.16.0*")), "pip download through devpi"
    # local.conf of the node points at the networking node
    model = netlab_lab.load(lab["pillar"])
    text = netlab_localconf.render(model, "nuc1")
    git_base = "http://{}:{}/git".format(NETNODE_IP, HTTP_PORT)
    assert "GIT_BASE={}".format(git_base) in text.splitlines()
    image = "IMAGE_URLS=http://{}:{}/files/{}/images/tiny-disk.img".format(
        NETNODE_IP, HTTP_PORT, UPSTREAM_IP)
    assert image in text.splitlines(), text
    assert clone(lab["node"], git_base + "/openstack/devstack.git",
                  lab["root"] / "clone1") == "openstack/devstack v1\n"
    got = lab["node"].run(["curl", "-sf", image.split("=", 1)[1]]).stdout
    assert got == "not really a disk\n" * 64
    # nothing else is served from the cache directories
    code = lab["node"].run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                            git_base + "/"], check=False).stdout
    assert code in ("403", "404"), code


def test_a_new_upstream_commit_is_served_after_a_refresh(lab):
    src = lab["src"]["devstack"]
    (src / "README").write_text("openstack/devstack v2\n")
    git("commit", "-q", "-am", "v2", cwd=src)
    git("push", "-q", str(lab["served"] / "openstack" / "devstack.git"), "master", cwd=src)
    ret = _apply(lab["salt"], "netlab.cache")
    refreshed = _by_suffix(ret, "netlab-cache-netlab_cache-refreshed")
    assert refreshed["changes"].get("git openstack/devstack.git") == "updated", refreshed
    git_base = "http://{}:{}/git".format(NETNODE_IP, HTTP_PORT)
    assert clone(lab["node"], git_base + "/openstack/devstack.git",
                  lab["root"] / "clone2") == "openstack/devstack v2\n"
    # a second run changes nothing
    again = _apply(lab["salt"], "netlab.cache")
    assert not [sid for sid, r in again.items() if r["changes"]], again


def test_with_the_upstream_gone_the_last_good_copy_is_served(lab):
    lab["up_server"].terminate()
    lab["up_server"].wait(timeout=10)
    lab["seg"].clients.pop("up").delete()
    ret = _apply(lab["salt"], "netlab.cache")
    refreshed = _by_suffix(ret, "netlab-cache-netlab_cache-refreshed")
    assert refreshed["result"] is True
    assert "git openstack/devstack.git: update from" in refreshed["comment"], refreshed
    assert "serving its last good copy" in refreshed["comment"]
    git_base = "http://{}:{}/git".format(NETNODE_IP, HTTP_PORT)
    assert clone(lab["node"], git_base + "/openstack/devstack.git",
                  lab["root"] / "clone3") == "openstack/devstack v2\n"


def test_offline_apt_and_pip_from_the_cache_alone(lab):
    lab["uplink"].cut()
    ret = _apply(lab["salt"], "netlab.cache")
    # apt-cacher-ng restarted in offline mode: the mirror is unreachable
    assert _by_suffix(ret, "netlab-cache-netlab_daemon-running-apt")["changes"], ret
    wait_port(lab["seg"].server, 3142)
    conf = (lab["root"] / "srv" / "cache" / "apt-conf" / "acng.conf").read_text()
    assert "Offlinemode: 1" in conf
    apt = lab["apt"]
    apt.clear()
    apt.run("update")
    apt.run("install", "--download-only", "--no-install-recommends", APT_PACKAGE)
    assert any(d.startswith(APT_PACKAGE + "_") for d in apt.debs()), apt.debs()
    # a package never fetched is a clear failure, not a hang
    res = apt.run("install", "--download-only", "--no-install-recommends", "cowsay",
                  check=False)
    assert res.returncode != 0
    _pip(lab["node"], lab["root"] / "pip2")
    assert list((lab["root"] / "pip2").glob("six-1.16.0*"))
    # the networking node itself has no way out
    res = lab["seg"].server.run(["curl", "-s", "-m", "5", "http://deb.debian.org/"],
                                check=False)
    assert res.returncode != 0


def _node_salt(lab, pillar):
    """The lab node nuc1 as netlab's ext_pillar would see it: its slice only."""
    model = netlab_lab.load(pillar)
    text = netlab_localconf.render(model, "nuc1")
    node = SaltLocal(lab["root"] / "node-salt", REPO,
                     {"netlab_node": netlab_slice.node_slice(model, "nuc1", local_conf=text)},
                     minion_id="nuc1", prefix=lab["node"].prefix)
    return model, text, node


def _head(path):
    return git("-c", "safe.directory=*", "-C", str(path), "rev-parse", "HEAD").strip()


def test_a_restack_offline_from_the_cache_alone(lab):
    """Upstream gone (test 3), the networking node cut from the internet (test 4)."""
    model, text, node = _node_salt(lab, lab["pillar"])
    assert {"ERROR_ON_CLONE=True", "RECLONE=False"} <= set(text.splitlines())
    # the node's pip configuration (in the image: /etc/pip.conf, written at
    # reimage; the namespace shares this machine's /etc, so the user's own file)
    home = pathlib.Path(pwd.getpwnam(lab["user"]).pw_dir)
    (home / ".config" / "pip").mkdir(parents=True, exist_ok=True)
    (home / ".config" / "pip" / "pip.conf").write_text(netlab_cache_config.pip_node_conf(model))
    subprocess.run(["chown", "-R", lab["user"], str(home / ".config")], check=True)
    node.sync()
    ret = _apply(node, "netlab.node")
    dest = pathlib.Path(lab["pillar"]["devstack"]["dest"])
    mirrors = lab["root"] / "srv" / "cache" / "git" / "mirrors" / "openstack"
    for name in ("devstack", "requirements", "keystone"):
        sid = "netlab-node-prepare-git-latest" + ("" if name == "devstack" else "-" + name)
        assert _by_suffix(ret, sid)["result"] is True
        assert _head(dest / name) == _head(mirrors / (name + ".git")), name
    out = node.call("devstack.stack")
    assert out["result"] is True, out
    rec = fake_devstack.records(dest, "stack")[-1]
    # stack.sh found every repository in DEST and cloned nothing
    assert rec["cloned"] == [] and sorted(rec["kept"]) == ["keystone", "requirements"], rec
    assert rec["localrc"]["ERROR_ON_CLONE"] == "True"
    assert [f for f in rec["pip_files"] if f.startswith("six-1.16.0")], rec
    # a second restack: unstack, prepare (nothing new in the mirror), stack
    assert node.call("devstack.unstack")["result"] is True
    again = _apply(node, "netlab.node")
    assert not [sid for sid, r in again.items() if r["changes"]], again
    assert node.call("devstack.stack")["result"] is True


def test_a_repository_the_mirror_never_got_is_a_named_error_offline(lab):
    """A pillar fork of keystone that the mirror never got (its refresh fails
    naming it: test/functional/test_cache_states.py): the node's preparation fails
    at that repository, by name (a deploy or restack then leaves the node out of
    stack.sh)."""
    pillar = dict(lab["pillar"], devstack=dict(lab["pillar"]["devstack"]))
    pillar["devstack"]["localrc"] = dict(pillar["devstack"]["localrc"],
                                         KEYSTONE_REPO=UPSTREAM + "/fork/keystone.git")
    model, text, node = _node_salt(lab, pillar)
    mirror = "{}/fork/keystone.git".format(netlab_cache.git_base(model))
    assert "KEYSTONE_REPO={}".format(mirror) in text.splitlines()
    ret = _apply(node, "netlab.node", expect_ok=False)
    bad = failed(ret)
    assert list(bad) == ["netlab-node-prepare-git-latest-keystone"], bad
    assert "fork/keystone.git" in bad["netlab-node-prepare-git-latest-keystone"]
