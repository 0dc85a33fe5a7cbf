"""
The netlab.cache states with salt-call --local against a temp root.

The git and files parts run for real against a stand-in upstream on loopback
(python's http.server serving bare repositories, git's dumb HTTP); apt and pip
(daemons) are rendered in service mode and checked as text here, and run for real
in test/e2e/test_cache_e2e.py.
"""

import copy
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
