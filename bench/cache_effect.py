#!/usr/bin/env python3
"""
The LAN cache's effect, cold vs warm, on this machine.

A networking node in a network namespace (its only way out: a NAT to Debian's
mirror and PyPI) runs ``netlab.cache`` (apt-cacher-ng, devpi-server) with
``salt-call --local``; then twice, first with empty caches, then warm:

- image build (force): ``netlab_image.build`` inside the namespace, through the
  caches (the build host's own pip settings left out, so Salt comes from PyPI);
- node preparation: a node namespace fetches DevStack's base Debian packages
  (``apt-get install --download-only``, own apt state) and a set of DevStack's
  Python requirements (``pip download --no-deps``) through the caches;

and prints seconds and bytes the networking node fetched from upstream (received
on its uplink) for each. Root, Debian's mirror and PyPI needed; it builds the
image twice (about 10 minutes on 2 cores). Run it under the e2e lock:

    flock /work/wt/e2e.lock /opt/netlab-venv/bin/python bench/cache_effect.py

Everything it makes (namespaces, links, the nftables table, daemons, temp dir) is
removed at the end, also on failure.
"""

import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "test"), str(REPO / "_utils")]

import netlab_saltcompat  # noqa: E402  pylint: disable=wrong-import-position

from lib import daemons as daemons_lib  # noqa: E402  pylint: disable=wrong-import-position
from lib import netns  # noqa: E402  pylint: disable=wrong-import-position
from lib.cachelab import AptClient, pip_download, wait_port  # noqa: E402  pylint: disable=wrong-import-position
from lib.saltlocal import SaltLocal, failed  # noqa: E402  pylint: disable=wrong-import-position
from lib.uplink import Uplink  # noqa: E402  pylint: disable=wrong-import-position

CIDR = "10.81.0.0/24"
NETNODE_IP = "10.81.0.2"
NODE_IP = "10.81.0.11"
# DevStack's files/debs/general (the packages every node installs first)
DEVSTACK_DEBS = [
    "bc", "bsdmainutils", "curl", "g++", "gcc", "gettext", "git", "graphviz",
    "iputils-ping", "libffi-dev", "libjpeg-dev", "libpcre3-dev", "libpq-dev",
    "libssl-dev", "libsystemd-dev", "libxml2-dev", "libxslt1-dev", "libyaml-dev",
    "lsof", "openssh-server", "openssl", "pkg-config", "psmisc", "python3-dev",
    "python3-pip", "python3-venv", "tar", "tcpdump", "unzip", "uuid-runtime", "wget",
    "zlib1g-dev",
]
# a slice of what DevStack pip-installs for keystone (no versions: the newest)
DEVSTACK_PIP = [
    "pbr", "oslo.config", "oslo.i18n", "oslo.utils", "oslo.serialization",
    "oslo.log", "oslo.context", "oslo.messaging", "oslo.db", "oslo.policy",
    "keystoneauth1", "keystonemiddleware", "python-keystoneclient", "SQLAlchemy",
    "alembic", "Routes", "WebOb", "Paste", "PasteDeploy", "Flask", "Flask-RESTful",
    "cryptography", "bcrypt", "passlib", "stevedore", "requests", "PyMySQL",
    "pycadf", "osprofiler", "jsonschema", "msgpack", "eventlet", "greenlet",
]
BUILD_SCRIPT = """
import json, sys
sys.path.insert(0, {utils!r})
import netlab_image, netlab_lab
lab = netlab_lab.load(json.loads(sys.argv[1]))
res = netlab_image.build(lab, force=True, pip_settings={{}})
print(json.dumps({{"build_id": res["build_id"], "duration": res["duration"]}}))
"""


def rx_bytes(ns, ifname="uplink0"):
    out = ns.run(["ip", "-s", "-j", "link", "show", ifname]).stdout
    return json.loads(out)[0]["stats64"]["rx"]["bytes"]


def pillar(root):
    return {
        "network": {"interface": "br0", "cidr": CIDR, "domain": "lab.test",
                    "dhcp": {"mode": "proxy"}, "dns": {"enabled": True, "upstream": []}},
        "netnode": {"id": "netnode", "ip": NETNODE_IP, "storage": str(root / "srv"),
                    "http": {"port": 8080}},
        "image": {"salt_version": netlab_saltcompat.salt_version(), "variant": "minbase",
                  "packages": []},
        "devstack": {"user": "stack", "services": {"base": False}},
        "nodes": {"nuc1": {"mac": "52:54:00:81:00:11", "ip": NODE_IP,
                           "role": "controller"}},
        "cache": {"git": {"enabled": False}, "files": {"enabled": False}},
        "lookup": {
            "service_control": "process", "install_packages": False,
            "run_dir": str(root / "run"),
            "cache": {"devpi_venv": str(root / "devpi-venv"), "apt_user": "root"},
        },
    }


def measure(ns, what, func):
    before = rx_bytes(ns)
    t0 = time.monotonic()
    func()
    return {"what": what, "seconds": time.monotonic() - t0, "bytes": rx_bytes(ns) - before}


def main():
    if os.geteuid() != 0:
        sys.exit("bench/cache_effect.py needs root (namespaces, mmdebstrap)")
    root = pathlib.Path(tempfile.mkdtemp(prefix="netlab-cache-bench-"))
    seg = netns.Segment(cidr=CIDR, server_ip=NETNODE_IP)
    uplink = None
    rows = []
    try:
        uplink = Uplink(seg.server, ("deb.debian.org", "pypi.org", "files.pythonhosted.org"))
        node = seg.add_client("node", "52:54:00:81:00:11", ip=NODE_IP)
        lab = pillar(root)
        salt = SaltLocal(root / "salt", REPO, {"netlab": lab}, prefix=seg.server.prefix)
        salt.sync()
        ret = salt.apply("netlab.cache")
        if failed(ret):
            raise RuntimeError("netlab.cache failed: {}".format(failed(ret)))
        wait_port(seg.server, 3141, timeout=120)
        wait_port(seg.server, 3142)
        apt = AptClient(node, root / "apt", "http://{}:3142".format(NETNODE_IP))
        index = "http://{}:3141/root/pypi/+simple/".format(NETNODE_IP)
        script = BUILD_SCRIPT.format(utils=str(REPO / "_utils"))
        for run in ("cold", "warm"):
            rows.append(dict(run=run, **measure(seg.server, "image build (force)", lambda: (
                seg.server.run([sys.executable, "-c", script, json.dumps(lab)],
                               timeout=3600)))))

            def prepare(run=run):
                apt.clear()
                apt.run("update")
                apt.run("install", "--download-only", "--no-install-recommends",
                        *DEVSTACK_DEBS)
                pip_download(node, root / ("pip-" + run), index, NETNODE_IP, DEVSTACK_PIP)

            rows.append(dict(run=run, **measure(seg.server, "node preparation (apt+pip)",
                                                prepare)))
    finally:
        daemons_lib.stop_pidfiles(root / "run" / "cache", names=("apt", "pip"))
        seg.destroy()
        if uplink is not None:
            uplink.remove()
        shutil.rmtree(root, ignore_errors=True)
    print("{:<28} {:>10} {:>10} {:>14} {:>14}".format(
        "step", "cold s", "warm s", "cold upstream", "warm upstream"))
    for what in ("image build (force)", "node preparation (apt+pip)"):
        cold = next(r for r in rows if r["run"] == "cold" and r["what"] == what)
        warm = next(r for r in rows if r["run"] == "warm" and r["what"] == what)
        print("{:<28} {:>10.1f} {:>10.1f} {:>11.1f} MB {:>11.1f} MB".format(
            what, cold["seconds"], warm["seconds"], cold["bytes"] / 1e6,
            warm["bytes"] / 1e6))


if __name__ == "__main__":
    main()
