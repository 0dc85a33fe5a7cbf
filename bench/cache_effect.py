#!/usr/bin/env python3
"""
The LAN cache's effect, cold vs warm, and whether it is enough offline.

A networking node in a network namespace (its only way out: a NAT to Debian's
mirror and PyPI) runs ``netlab.cache`` (apt-cacher-ng, devpi-server) with
``salt-call --local``; then three times: first with empty caches (cold), then
again (warm), then with the networking node cut from the internet and the git
upstream gone (offline: the uplink's route and NAT removed, ``netlab.cache``
re-applied, which switches apt-cacher-ng to offline mode):

- image build (force): ``netlab_image.build`` inside the namespace, through the
  caches (the build host's own pip settings left out, so Salt comes from PyPI
  through devpi); every run must make a new build;
- node preparation: a node namespace fetches DevStack's base Debian packages
  (``apt-get install --download-only``, own apt state) and a set of DevStack's
  Python requirements (``pip download --no-deps``) through the caches;
- restack clones: ``netlab.cache`` refreshes the git mirror from an upstream
  namespace (DevStack's upstream cannot be reached from here: a bare copy of
  this repository stands in for a project), then the node clones it from the
  mirror, as ``netlab.node.prepare`` does before every stack.sh;

and prints, for each, the seconds, the bytes fetched from upstream (received on
the networking node's uplink; for git, sent by the upstream namespace) and the
bytes the node received from the networking node. A step that fails is printed
as FAILED with its error and the bench exits 1. Root, Debian's mirror and PyPI
needed; it builds the image three times (12 minutes in all on 2 cores). Run it
under the e2e lock:

    flock /work/wt/e2e.lock /opt/netlab-venv/bin/python bench/cache_effect.py
    /opt/netlab-venv/bin/python bench/cache_effect.py --no-image   # the light part

Everything it makes (namespaces, links, the nftables table, daemons, temp dir) is
removed at the end, also on failure.
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "test"), str(REPO / "_utils")]

import netlab_saltcompat  # noqa: E402  pylint: disable=wrong-import-position

from lib import daemons as daemons_lib  # noqa: E402  pylint: disable=wrong-import-position
from lib import netns  # noqa: E402  pylint: disable=wrong-import-position
from lib.cachelab import AptClient, git, pip_download, wait_port  # noqa: E402  pylint: disable=wrong-import-position
from lib.saltlocal import SaltLocal, failed  # noqa: E402  pylint: disable=wrong-import-position
from lib.uplink import Uplink  # noqa: E402  pylint: disable=wrong-import-position

CIDR = "10.81.0.0/24"
NETNODE_IP = "10.81.0.2"
NODE_IP = "10.81.0.11"
UPSTREAM_IP = "10.81.0.50"
UPSTREAM = "http://{}:8000".format(UPSTREAM_IP)
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
# empty caches; warm (a second run, upstream reachable); offline (the networking
# node cut from the internet, DevStack's upstream gone)
RUNS = ("cold", "warm", "offline")
BUILD_SCRIPT = """
import json, sys
sys.path.insert(0, {utils!r})
import netlab_image, netlab_lab
lab = netlab_lab.load(json.loads(sys.argv[1]))
res = netlab_image.build(lab, force=True, pip_settings={{}})
print(json.dumps({{"build_id": res["build_id"], "duration": res["duration"]}}))
"""


def link_bytes(ns, ifname, direction="rx"):
    out = ns.run(["ip", "-s", "-j", "link", "show", ifname]).stdout
    return json.loads(out)[0]["stats64"][direction]["bytes"]


def pillar(root):
    return {
        "network": {"interface": "br0", "cidr": CIDR, "domain": "lab.test",
                    "dhcp": {"mode": "proxy"}, "dns": {"enabled": True, "upstream": []}},
        "netnode": {"id": "netnode", "ip": NETNODE_IP, "storage": str(root / "srv"),
                    "http": {"port": 8080}},
        "image": {"salt_version": netlab_saltcompat.salt_version(), "variant": "minbase",
                  "packages": []},
        "devstack": {"user": "stack", "services": {"base": False},
                     "repo": UPSTREAM + "/openstack/devstack.git", "git_base": UPSTREAM},
        "nodes": {"nuc1": {"mac": "52:54:00:81:00:11", "ip": NODE_IP,
                           "role": "controller"}},
        "cache": {"files": {"enabled": False}},
        "lookup": {
            "service_control": "process", "install_packages": False,
            "run_dir": str(root / "run"),
            "nginx": {"conf": str(root / "etc" / "nginx-netlab.conf"), "user": "root"},
            "cache": {"devpi_venv": str(root / "devpi-venv"), "apt_user": "root"},
        },
    }


def measure(run, what, func, upstream, node):
    """``upstream``/``node``: ``() -> bytes`` counters (fetched from upstream,
    received by the node). A step that fails is a row saying so (the offline run
    is the question, not a given); the bench exits non-zero at the end."""
    up0, node0 = upstream(), node()
    t0 = time.monotonic()
    error = None
    try:
        func()
    except Exception as exc:  # pylint: disable=broad-except
        error = "{}: {}".format(type(exc).__name__, exc)
        print("{} {} FAILED: {}".format(run, what, error), file=sys.stderr)
    return {"run": run, "what": what, "seconds": time.monotonic() - t0,
            "bytes": upstream() - up0, "node_bytes": node() - node0, "error": error}


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="The LAN cache's effect, cold vs warm, and offline (docs/operations.rst).")
    parser.add_argument("--no-image", action="store_true",
                        help="leave out the three image builds (the heavy part: 2 to "
                             "6 minutes of mmdebstrap each on 2 cores)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench/cache_effect.py needs root (namespaces, mmdebstrap)")
    print("bench/cache_effect.py {} on {} ({} cores), load {}".format(
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.uname().nodename,
        os.cpu_count(), " ".join("{:.2f}".format(x) for x in os.getloadavg())), flush=True)
    root = pathlib.Path(tempfile.mkdtemp(prefix="netlab-cache-bench-"))
    seg = netns.Segment(cidr=CIDR, server_ip=NETNODE_IP)
    uplink = None
    upstream_server = None
    rows = []
    problems = []
    try:
        uplink = Uplink(seg.server, ("deb.debian.org", "pypi.org", "files.pythonhosted.org"))
        node = seg.add_client("node", "52:54:00:81:00:11", ip=NODE_IP)
        up = seg.add_client("up", "52:54:00:81:00:50", ip=UPSTREAM_IP)
        served = root / "upstream" / "openstack"
        served.mkdir(parents=True)
        # a project with real history: this repository, as a bare clone
        for name in ("devstack", "requirements"):
            git("clone", "-q", "--bare", str(REPO), str(served / (name + ".git")))
            git("--git-dir", str(served / (name + ".git")), "update-server-info")
        upstream_server = up.popen(
            ["python3", "-m", "http.server", "-b", UPSTREAM_IP, "-d",
             str(root / "upstream"), "8000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(up, 8000)
        lab = pillar(root)
        salt = SaltLocal(root / "salt", REPO, {"netlab": lab}, prefix=seg.server.prefix)
        salt.sync()
        from_up = lambda: link_bytes(seg.server, "uplink0")  # noqa: E731
        git_up = lambda: link_bytes(up, "eth0", "tx")  # noqa: E731
        to_node = lambda: link_bytes(node, "eth0")  # noqa: E731

        def refresh():
            ret = salt.apply("netlab.cache")
            if failed(ret):
                raise RuntimeError("netlab.cache failed: {}".format(failed(ret)))

        ret = salt.apply("netlab.netnode.http")  # nginx serves the git mirror
        if failed(ret):
            raise RuntimeError("netlab.netnode.http failed: {}".format(failed(ret)))
        # the daemons first (devpi's venv comes from PyPI), without the git part
        salt.set_pillar({"netlab": dict(lab, cache={"files": {"enabled": False},
                                                    "git": {"enabled": False}})})
        refresh()
        wait_port(seg.server, 3141, timeout=120)
        wait_port(seg.server, 3142)
        salt.set_pillar({"netlab": lab})
        # cold: the mirror is made by this first refresh
        cold_refresh = measure("cold", "git mirror refresh", refresh, git_up, to_node)
        mirror = "http://{}:8080/git/openstack/requirements.git".format(NETNODE_IP)
        apt = AptClient(node, root / "apt", "http://{}:3142".format(NETNODE_IP))
        index = "http://{}:3141/root/pypi/+simple/".format(NETNODE_IP)
        script = BUILD_SCRIPT.format(utils=str(REPO / "_utils"))
        builds = []
        for run in RUNS:
            if run == "offline":
                # the networking node cut from the internet and DevStack's
                # upstream gone: netlab.cache switches apt-cacher-ng to offline
                # mode and the git refresh keeps the last good copy
                upstream_server.terminate()
                upstream_server.wait(timeout=10)
                upstream_server = None
                uplink.cut()
                refresh()
                wait_port(seg.server, 3142)
            if not args.no_image:
                def image(run=run):
                    out = seg.server.run([sys.executable, "-c", script, json.dumps(lab)],
                                         timeout=3600).stdout
                    builds.append(json.loads(out.splitlines()[-1])["build_id"])

                rows.append(measure(run, "image build (force)", image, from_up, to_node))

            def prepare(run=run):
                apt.clear()
                apt.run("update")
                apt.run("install", "--download-only", "--no-install-recommends",
                        *DEVSTACK_DEBS)
                pip_download(node, root / ("pip-" + run), index, NETNODE_IP, DEVSTACK_PIP)

            rows.append(measure(run, "node preparation (apt+pip)", prepare, from_up,
                                to_node))
            # a restack: the deploy refreshes the mirror (warm: nothing new
            # upstream; offline: the upstream is gone), the node clones from it
            rows.append(dict(cold_refresh, run=run) if run == "cold" else measure(
                run, "git mirror refresh", refresh, git_up, to_node))
            rows.append(measure(run, "restack clone (git)", lambda run=run: node.run(
                ["git", "clone", "-q", mirror, str(root / ("clone-" + run))],
                env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent",
                     "GIT_CONFIG_NOSYSTEM": "1"}), git_up, to_node))
        if len(set(builds)) != len(builds):
            problems.append("an image build did not make a new build: {}".format(builds))
    finally:
        if upstream_server is not None:
            upstream_server.terminate()
            upstream_server.wait(timeout=10)
        daemons_lib.stop_pidfiles(root / "run" / "cache", names=("apt", "pip"))
        daemons_lib.stop_pidfiles(root / "run")
        seg.destroy()
        if uplink is not None:
            uplink.remove()
        shutil.rmtree(root, ignore_errors=True)
        if rows:  # also what was measured before a failure
            print(table(rows), flush=True)
    for problem in problems:
        print("bench/cache_effect.py: " + problem, file=sys.stderr)
    if problems or any(r["error"] for r in rows):
        sys.exit(1)


def table(rows):
    """One line per step and run: seconds, MB from upstream, MB the node got from
    the networking node (plain text), a failed step says so."""
    lines = ["{:<28} {:<8} {:>8} {:>15} {:>12}".format(
        "step", "run", "seconds", "upstream (MB)", "to node (MB)")]
    for what in dict.fromkeys(r["what"] for r in rows):
        for row in sorted((r for r in rows if r["what"] == what),
                          key=lambda r: RUNS.index(r["run"])):
            lines.append("{:<28} {:<8} {:>8.1f} {:>15.2f} {:>12.2f}{}".format(
                what, row["run"], row["seconds"], row["bytes"] / 1e6,
                row["node_bytes"] / 1e6,
                "  FAILED: " + row["error"] if row["error"] else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
