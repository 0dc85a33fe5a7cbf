#!/opt/netlab-venv/bin/python
"""
How long ``state.apply netlab.netnode`` takes for a lab of 50, 200 and 500 nodes
(a script, not a test: prints a table, asserts nothing).

Each size gets a fresh ``salt-call --local`` root (the formula as file_roots, the
lab as pillar, every path under a temp dir, ``service_control: none`` and no
package installs), one ``saltutil.sync_all``, then ``state.apply netlab.netnode
test=True`` (the prediction: render everything, change nothing) and a real
``state.apply netlab.netnode`` (writes every boot file under the temp dir). The
per-node column shows whether the time grows linearly.

Run: ``/opt/netlab-venv/bin/python bench/netnode_render.py [--sizes 50,200,500]
[--runs 1]``. Needs no root, no network and no daemons.
"""

import argparse
import pathlib
import shutil
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "_utils"))
sys.path.insert(0, str(REPO / "test"))

import netlab_saltcompat  # noqa: E402

from lib.saltlocal import (  # noqa: E402  pylint: disable=wrong-import-position
    SaltLocal, failed, temp_root_lookup)


def lab_pillar(root, size):
    """A lab of ``size`` nodes in 10.42.0.0/16 (one controller, the rest computes)."""
    nodes = {}
    for i in range(size):
        nodes["n{:04d}".format(i)] = {
            "mac": "52:54:00:42:{:02x}:{:02x}".format(i // 256, i % 256),
            "ip": "10.42.{}.{}".format(1 + i // 250, 1 + i % 250),
            "role": "controller" if i == 0 else "compute",
        }
    return {
        "network": {"interface": "nlbench0", "cidr": "10.42.0.0/16", "domain": "lab.test",
                    "dhcp": {"mode": "proxy"}, "dns": {"upstream": []}},
        "netnode": {"ip": "10.42.0.2", "storage": str(root / "srv"),
                    "nfs": {"server": "ganesha"}, "http": {"port": 8080}},
        "nodes": nodes,
        "image": {"salt_version": netlab_saltcompat.salt_version()},
        "lookup": temp_root_lookup(root),
    }


def timed(salt, test):
    t0 = time.monotonic()
    ret = salt.apply("netlab.netnode", test=test)
    return time.monotonic() - t0, len(ret), sorted(failed(ret))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="50,200,500")
    ap.add_argument("--runs", type=int, default=1, help="best of N per size")
    args = ap.parse_args()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        root = pathlib.Path(tempfile.mkdtemp(prefix="netlab-bench-netnode-"))
        try:
            salt = SaltLocal(root / "salt", REPO, {"netlab": lab_pillar(root, size)})
            salt.sync()
            test = min(timed(salt, True)[0] for _ in range(args.runs))
            real, states, bad = timed(salt, False)
            rows.append((size, states, "{:.1f}".format(test), "{:.1f}".format(real),
                         "{:.1f}".format(1000 * test / size), ", ".join(bad) or "-"))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    head = ("nodes", "states", "test=True s", "apply s", "ms/node (test=True)",
            "failed states (host tools, e.g. nginx -t of an address this host lacks)")
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    print("state.apply netlab.netnode (salt-call --local, service_control none)")
    for row in [head] + rows:
        print("  " + "  ".join(str(c).rjust(w) for c, w in zip(row, widths)))


if __name__ == "__main__":
    main()
