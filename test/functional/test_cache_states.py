"""
The netlab.cache states with salt-call --local against a temp root.

The git and files parts run for real against a stand-in upstream on loopback
(python's http.server serving bare repositories, git's dumb HTTP); apt and pip
(daemons) are rendered in service mode and checked as text here, and run for real
in test/e2e/test_cache_e2e.py.
"""

import copy
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest
import yaml

import netlab_saltcompat
from lib.cachelab import bare_repo
from lib.saltlocal import SaltLocal, changed, failed
from lib.saltrunner import runner_loader

REPO = pathlib.Path(__file__).resolve().parents[2]

# One networking node's cache storage for the module: the first test checks the
# prediction and effect of a FIRST run on it (found by a --random-order run, where
# it failed after another test had made the storage), so the file's order holds.
pytestmark = pytest.mark.random_order(disabled=True)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("cache-states")


@pytest.fixture(scope="module")
def upstream(base):
    tmp_path = base
    served = tmp_path / "upstream"
    (served / "openstack").mkdir(parents=True)
    (served / "images").mkdir()
    (served / "images" / "disk.img").write_bytes(b"disk\n")
    for name in ("devstack", "requirements"):
        bare_repo(served, "openstack/" + name, tmp_path)
    port = _free_port()
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, "-m", "http.server", "-b", "127.0.0.1", "-d", str(served),
         str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield "http://127.0.0.1:{}".format(port)
    proc.terminate()
    proc.wait(timeout=10)


def lab_pillar(root, upstream):
    return {
        "network": {"interface": "nlfunc0", "cidr": "127.78.0.0/24", "domain": "lab.test",
                    "dhcp": {"mode": "proxy"}, "dns": {"upstream": []}},
        "netnode": {"ip": "127.78.0.2", "storage": str(root / "srv")},
        "nodes": {"nuc1": {"mac": "52:54:00:78:01:11", "ip": "127.78.0.11",
                           "role": "controller"}},
        "image": {"salt_version": netlab_saltcompat.salt_version()},
        "devstack": {"repo": upstream + "/openstack/devstack.git", "git_base": upstream,
                     "services": {"base": False}},
        "cache": {"apt": {"enabled": False}, "pip": {"enabled": False},
                  "files": {"urls": [upstream + "/images/disk.img"]}},
        "lookup": {"service_control": "none", "install_packages": False,
                   "run_dir": str(root / "run")},
    }


@pytest.fixture(scope="module")
def salt_module(base, upstream):
    s = SaltLocal(base / "salt", REPO, {"netlab": lab_pillar(base, upstream)})
    s.sync()
    return s


@pytest.fixture
def salt(salt_module):
    """One synced minion for the module (a sync costs seconds); each test gets the
    pillar back as it was."""
    saved = copy.deepcopy(salt_module.pillar)
    yield salt_module
    salt_module.set_pillar(saved)


def test_prediction_first_run_idempotency_and_what_is_served(salt, base):
    tmp_path = base
    predicted = salt.apply("netlab.cache", test=True)
    assert not failed(predicted), failed(predicted)
    assert not (tmp_path / "srv" / "cache").exists()
    real = salt.apply("netlab.cache")
    assert not failed(real), failed(real)
    assert "netlab-cache-netlab_cache-refreshed" in changed(real)
    ref = real["netlab-cache-netlab_cache-refreshed"]
    assert set(ref["changes"]) == {"git openstack/devstack.git",
                                   "git openstack/requirements.git",
                                   "file " + salt.pillar["netlab"]["cache"]["files"]["urls"][0]}
    cache = tmp_path / "srv" / "cache"
    served = cache / "git" / "served" / "openstack"
    assert sorted(p.name for p in served.iterdir()) == ["devstack.git", "requirements.git"]
    assert (served / "devstack.git" / "info" / "refs").is_file()
    assert (cache / "files" / "127.0.0.1" / "images" / "disk.img").read_bytes() == b"disk\n"
    again = salt.apply("netlab.cache")
    assert changed(again) == [] and not failed(again), changed(again)


def test_a_repository_never_mirrored_fails_the_state_with_its_name(salt, upstream):
    pillar = copy.deepcopy(salt.pillar)
    pillar["netlab"]["cache"]["git"] = {"repos": [upstream + "/x/missing.git"]}
    salt.set_pillar(pillar)
    ret = salt.apply("netlab.cache")
    comment = failed(ret)["netlab-cache-netlab_cache-refreshed"]
    assert "git x/missing.git: clone of {}/x/missing.git failed".format(upstream) in comment
    assert "not served" in comment


def test_invalid_cache_pillar_fails_first_and_changes_nothing(salt, base):
    pillar = copy.deepcopy(salt.pillar)
    pillar["netlab"]["cache"]["git"] = {"max_size": "lots"}
    pillar["netlab"]["cache"]["storage"] = str(base / "elsewhere")
    salt.set_pillar(pillar)
    ret = salt.apply("netlab.cache")
    assert list(ret) == ["netlab-cache-check-netlab-invalid_pillar"]
    assert "netlab:cache:git:max_size: 'lots' is not a size" in \
        ret["netlab-cache-check-netlab-invalid_pillar"]["comment"]
    assert not (base / "elsewhere").exists()


def test_service_mode_renders_units_on_the_lab_ip_and_checks_before_restart(salt):
    pillar = copy.deepcopy(salt.pillar)
    pillar["netlab"]["cache"] = {"git": {"enabled": False}, "files": {"enabled": False},
                                 "apt": {"offline": False}}
    pillar["netlab"]["lookup"]["service_control"] = "service"
    salt.set_pillar(pillar)
    out = salt.run("slsutil.renderer", "salt://netlab/cache.sls",
                   "default_renderer=jinja", "sls=netlab.cache")
    sls = yaml.safe_load(out)
    unit = sls["netlab-cache-file-managed-unit-pip"]["file.managed"]
    text = [x for x in unit if "contents" in x][0]["contents"]
    # systemd joins the continued lines
    assert "--host 127.78.0.2 --port 3141" in " ".join(text.replace("\\\n", " ").split())
    assert "Environment=REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt" in text
    apt = sls["netlab-cache-service-running-apt"]["service.running"]
    assert {"cmd": "netlab-cache-cmd-run-acng-check"} in \
        [x for x in apt if "require" in x][0]["require"]
    dead = sls["netlab-cache-service-dead-acng-package"]["service.dead"]
    assert {"name": "apt-cacher-ng"} in dead and {"enable": False} in dead
    conf = sls["netlab-cache-file-managed-acng-conf"]["file.managed"]
    text = [x for x in conf if "contents" in x][0]["contents"]
    assert "BindAddress: 127.78.0.2" in text and "ForceManaged: 1" in text


def _cache_file(path, size, age):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (time.time() - age, time.time() - age))


def test_usage_prune_and_status_on_a_cache_with_files(salt, base):
    """``salt-call netlab.cache_usage`` / ``salt-run netlab.cache_usage`` report each
    part's use against its bound and the mirrors the lab no longer names;
    ``salt-run netlab.status`` shows it as a table; ``salt-call netlab.cache_prune``
    removes the least recently used package files of a part over its bound, and
    nothing else."""
    t0 = time.monotonic()
    store = base / "usage"
    pillar = copy.deepcopy(salt.pillar)
    pillar["netlab"]["cache"].update(storage=str(store), apt={"max_size": "1M"},
                                     pip={"max_size": "1M"})
    salt.set_pillar(pillar)
    kib = 1024
    pool = store / "apt" / "debrep" / "pool" / "main"
    for name, age in (("a_1.deb", 300), ("b_1.deb", 200), ("c_1.deb", 100)):
        _cache_file(pool / name[0] / name, 400 * kib, age)
    release = store / "apt" / "debrep" / "dists" / "bookworm" / "Release"
    _cache_file(release, 100 * kib, 1000)   # older, but no package: kept
    _cache_file(store / "pip" / "+files" / "x-1.whl", 300 * kib, 500)
    _cache_file(store / "pip" / "+files" / "y-1.tar.gz", 300 * kib, 500)
    _cache_file(store / "git" / "mirrors" / "openstack" / "devstack.git" / "packed-refs",
                10 * kib, 0)
    _cache_file(store / "git" / "mirrors" / "x" / "old.git" / "HEAD", kib, 0)
    _cache_file(store / "files" / "127.0.0.1" / "images" / "disk.img", 5, 0)

    def part(name, used, bound, summary):
        return {"enabled": True, "used": used, "max_size": bound, "over": used > bound,
                "dir": str(store / name), "summary": summary}

    gib10 = 10 << 30
    usage = salt.call("netlab.cache_usage")
    assert usage == {
        "apt": part("apt", 1331200, 1 << 20, "1.3 MiB of 1.0 MiB"),
        "pip": part("pip", 614400, 1 << 20, "600.0 KiB of 1.0 MiB"),
        "git": dict(part("git", 11264, gib10, "11.0 KiB of 10.0 GiB"),
                    unused_mirrors=["x/old.git"]),
        "files": part("files", 5, gib10, "5 B of 10.0 GiB")}
    runners = runner_loader(base / "master")
    assert runners["netlab.cache_usage"](pillar=pillar["netlab"]) == usage
    table = runners["netlab.status"](pillar=pillar["netlab"])
    rows = [line.split() for line in table.splitlines()]
    assert ["CACHE", "STATE", "USED", "BOUND", "WHERE"] in rows, table
    for row in (["apt", "OVER", "BOUND", "1.3", "MiB", "1.0", "MiB", str(store / "apt")],
                ["pip", "on", "600.0", "KiB", "1.0", "MiB", str(store / "pip")],
                ["git", "on", "11.0", "KiB", "10.0", "GiB", str(store / "git")]):
        assert row in rows, table

    removed = salt.call("netlab.cache_prune")
    assert removed == {"apt": [str(pool / "a" / "a_1.deb")], "pip": []}
    left = sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file())
    assert left == ["apt/debrep/dists/bookworm/Release", "apt/debrep/pool/main/b/b_1.deb",
                    "apt/debrep/pool/main/c/c_1.deb",
                    "files/127.0.0.1/images/disk.img",
                    "git/mirrors/openstack/devstack.git/packed-refs",
                    "git/mirrors/x/old.git/HEAD", "pip/+files/x-1.whl",
                    "pip/+files/y-1.tar.gz"]
    after = runners["netlab.cache_usage"](pillar=pillar["netlab"])
    assert after["apt"]["used"] == 921600 and not after["apt"]["over"]
    print("\ncache usage, prune and status: {:.1f} s".format(time.monotonic() - t0))
