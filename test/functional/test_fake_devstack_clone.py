"""
The DevStack stand-in (test/lib/fake_devstack.py) clones the way DevStack's
``git_clone`` does (functions-common: ``GIT_BASE``, ``<PROJECT>_REPO``/``_BRANCH``,
``RECLONE``, ``ERROR_ON_CLONE``), and what netlab checks out from the git mirror
before stack.sh (``netlab_cache.node_checkouts``) is exactly what stack.sh then
needs with ``ERROR_ON_CLONE=True``.

DevStack's upstream cannot be reached from here, so the stand-in is what the
e2e's offline restack runs; this file shows it keeps DevStack's rules. Local bare
repositories stand in for opendev; stack.sh runs as ``nobody`` (it refuses root,
like DevStack) in a directory of its own.
"""

import copy
import os
import pathlib
import shutil
import subprocess
import uuid

import pytest

import netlab_cache
import netlab_lab
import netlab_localconf
from lib import fake_devstack
from lib.cachelab import bare_repo

NOBODY = 65534
PROJECTS = ("requirements", "keystone", "glance", "nova", "placement", "neutron",
            "oslo.messaging")


_GITHOME = {}


@pytest.fixture
def base():
    path = pathlib.Path("/tmp") / "netlab-fdc-{}".format(uuid.uuid4().hex[:8])
    path.mkdir(mode=0o755)
    home = path / "githome"
    home.mkdir()
    (home / ".gitconfig").write_text("[safe]\n\tdirectory = *\n")
    _GITHOME["path"] = home
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def site(base):
    """Upstream bare repos (``<base>/up/openstack/<name>.git``, and a plugin), the
    stand-in checked out in ``<base>/dest/devstack``; all owned by nobody."""
    up, work = base / "up", base / "work"
    (up / "openstack").mkdir(parents=True)
    work.mkdir()
    src = {n: bare_repo(up, "openstack/" + n, work) for n in PROJECTS + ("heat",)}
    fake = fake_devstack.create(base / "fake", sleep=0, require_sudo=False)
    dest = base / "dest"
    dest.mkdir()
    _git("clone", "-q", str(fake.bare), str(dest / "devstack"))
    subprocess.run(["chown", "-R", "{0}:{0}".format(NOBODY), str(base)], check=True)
    return {"up": up, "src": src, "dest": dest, "base": base}


def _run(top):
    res = subprocess.run(
        ["setpriv", "--reuid={}".format(NOBODY), "--regid={}".format(NOBODY),
         "--clear-groups", str(top / "stack.sh")],
        capture_output=True, text=True, timeout=120, cwd=str(top),
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1",
             "LC_ALL": "C"})
    recs = fake_devstack.records(top.parent, "stack")
    return res, recs[-1] if recs else None


def _git(*args, cwd=None):
    """git as root on the repositories nobody owns: a HOME of its own whose
    global config trusts them (git ignores safe.directory given on the command
    line in the helper processes of a local clone or push)."""
    return subprocess.run(
        ["git"] + list(args), cwd=cwd, check=True, capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(_GITHOME["path"]),
             "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
             "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}).stdout


def _head(path):
    return _git("-C", str(path), "rev-parse", "HEAD").strip()


def _commit(site, name, text):
    src = site["src"][name]
    (src / "README").write_text(text)
    _git("commit", "-q", "-am", text, cwd=src)
    _git("push", "-q",
        str(site["up"] / "openstack" / (name + ".git")), "master", cwd=src)


def test_stand_in_follows_devstacks_git_clone_rules(site):
    dest = site["dest"]
    rc = {"GIT_BASE": str(site["up"]), "FAKE_CLONE": "True"}
    services = "disable_all_services\nenable_service key\n"
    top = dest / "devstack"

    def stack(extra):
        text = "[[local|localrc]]\n" + "".join(
            "{}={}\n".format(k, v) for k, v in dict(rc, **extra).items()) + services
        (top / "local.conf").write_text(text)
        return _run(top)

    # nothing in DEST: clone from GIT_BASE (requirements always, keystone for key)
    res, rec = stack({})
    assert res.returncode == 0, res.stdout + res.stderr
    assert sorted(rec["cloned"]) == ["keystone", "requirements"], rec
    assert (dest / "keystone" / "README").read_text() == "openstack/keystone v1\n"
    # present and RECLONE unset: kept as they are, the new upstream commit unseen
    _commit(site, "keystone", "openstack/keystone v2\n")
    res, rec = stack({})
    assert res.returncode == 0 and rec["cloned"] == [], res.stdout + res.stderr
    assert sorted(rec["kept"]) == ["keystone", "requirements"]
    assert (dest / "keystone" / "README").read_text() == "openstack/keystone v1\n"
    # RECLONE=True fetches from the remote into the existing checkout
    res, rec = stack({"RECLONE": "True"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert (dest / "keystone" / "README").read_text() == "openstack/keystone v2\n"
    # ERROR_ON_CLONE=True: a missing destination is DevStack's named error, and
    # nothing is fetched (the remote is not even there)
    shutil.rmtree(dest / "keystone")
    res, rec = stack({"ERROR_ON_CLONE": "True", "GIT_BASE": "http://192.0.2.1/nowhere"})
    assert res.returncode == 3 and rec["rc"] == 3
    assert "The {}/keystone project was not found".format(dest) in res.stdout + res.stderr
    assert "ERROR_ON_CLONE is set to True so cloning not allowed" in res.stderr
    assert rec["kept"] == ["requirements"] and rec["cloned"] == []
    assert not (dest / "keystone").exists()
    # <PROJECT>_REPO and _BRANCH win over GIT_BASE
    _git("branch", "-q", "topic", cwd=site["src"]["keystone"])
    _git("push", "-q",
        str(site["up"] / "openstack" / "keystone.git"), "topic", cwd=site["src"]["keystone"])
    subprocess.run(["chown", "-R", "{0}:{0}".format(NOBODY), str(site["up"])], check=True)
    res, rec = stack({"GIT_BASE": "http://192.0.2.1/nowhere",
                      "KEYSTONE_REPO": str(site["up"] / "openstack" / "keystone.git"),
                      "KEYSTONE_BRANCH": "topic"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert rec["cloned"] == ["keystone"]
    assert _head(dest / "keystone") == _head(site["up"] / "openstack" / "keystone.git")


def test_netlabs_checkouts_are_all_stack_sh_needs_with_error_on_clone(site,
                                                                      example_pillar):
    """The node's local.conf as netlab renders it (git mirror on: ERROR_ON_CLONE,
    RECLONE=False, GIT_BASE at the networking node); the repositories of
    ``node_checkouts`` put in DEST the way ``netlab.node.prepare`` does: stack.sh
    runs through, clones nothing, and with one of them missing stops naming it."""
    raw = copy.deepcopy(example_pillar)
    raw["devstack"]["dest"] = str(site["dest"])
    raw["devstack"]["services"] = {"base": False, "key": True, "n-api": True,
                                   "n-cpu": True, "placement-api": True, "q-svc": True}
    raw["devstack"]["plugins"] = {"heat": "https://opendev.org/openstack/heat"}
    raw["devstack"]["localrc"].update({"FAKE_CLONE": True,
                                       "LIBS_FROM_GIT": "oslo.messaging"})
    lab = netlab_lab.load(raw)
    text = netlab_localconf.render(lab, "nuc1")
    assert "ERROR_ON_CLONE=True" in text.splitlines()
    mirror = netlab_cache.git_base(lab)
    checkouts = netlab_cache.node_checkouts(lab, "nuc1")
    assert sorted(c["name"] for c in checkouts) == sorted(PROJECTS + ("heat",))
    for c in checkouts:
        # prepare's git.latest, from the mirror (here: its local stand-in)
        assert c["repo"].startswith(mirror + "/openstack/"), c
        local = str(site["up"]) + c["repo"][len(mirror):]
        _git("clone", "-q", "-b", c["branch"], local,
            c["target"])
    subprocess.run(["chown", "-R", "{0}:{0}".format(NOBODY), str(site["dest"])],
                   check=True)
    top = site["dest"] / "devstack"
    (top / "local.conf").write_text(text)
    res, rec = _run(top)
    assert res.returncode == 0, res.stdout + res.stderr
    assert rec["cloned"] == [] and sorted(rec["kept"]) == sorted(PROJECTS + ("heat",))
    assert rec["localrc"]["ERROR_ON_CLONE"] == "True"
    shutil.rmtree(site["dest"] / "placement")
    res, rec = _run(top)
    assert res.returncode == 3
    assert "The {}/placement project was not found".format(site["dest"]) in res.stdout
