#!/opt/netlab-venv/bin/python
"""
Daemon restarts under a running node (a script, not a test): the pause it sees.

Boots one node (n1: persistent root over NFS, BIOS) with the lab of
bench/boot_timeline.py (its ``setup``/``one_run``/``teardown``: the e2e
harness of test/e2e/test_vms.py), starts a write/fsync/read-back loop on its
root (test/lib/nodeio.py) and restarts the networking node's daemons the way
netlab does (test/lib/netnode_restarts.py: one ``state.apply netlab.netnode``
after the configs on disk became an older netlab's): first nothing (the
loop's own rhythm), then dnsmasq, nginx and nfs-ganesha each alone, then all
three in one state run; every scenario ``--runs`` times (default 3).

One row per scenario: the longest pause between two of the loop's rounds from
just before the state run to three rounds after it (by the node's clock;
median and max over the runs), the loop's I/O errors, the node's minion
answering ``test.ping`` after it, and how long the restart states and the
whole state run took (median).

Run as root, alone on the machine's VM budget::

    /opt/netlab-venv/bin/python bench/daemon_restarts.py [--runs N]

Needs the test image (built on first use by test/lib/image.py). Everything it
creates (namespaces, daemons, the VM, temp dirs) is removed, also on failure.
"""

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
for _p in (REPO / "bench", REPO / "_utils", REPO / "test", REPO / "test" / "e2e"):
    sys.path.insert(0, str(_p))

import boot_timeline as BT  # noqa: E402
import netlab_roots  # noqa: E402
from bench_lifecycle import table  # noqa: E402
from lib import netnode_restarts as restarts  # noqa: E402
from lib.image import ensure_test_image  # noqa: E402
from lib.nodeio import IoLoop  # noqa: E402

NODE = BT.NODES[0][0]
SCENARIOS = ((), ("dnsmasq",), ("nginx",), ("ganesha",), restarts.DAEMONS)


def one_restart(env, loop, daemons):
    """Restart ``daemons`` (none: just wait) under the loop; the row's numbers."""
    mark = loop.rounds()
    done = restarts.restart(env["master"], env["raw"], daemons) if daemons else None
    hung = False
    try:
        loop.wait_rounds(3 if daemons else 6)
    except AssertionError:  # the loop stopped writing: the root hangs
        hung = True
    data, _ = env["master"].run_json("salt", "-t", "60", NODE, "test.ping", check=False)
    window = loop.window(mark)
    return {"pause": window["longest_pause"], "errors": window["errors"] + hung,
            "answers": (data or {}).get(NODE) is True,
            "restart s": round(sum(done["states"].values()), 1) if done else None,
            "state run s": done["seconds"] if done else None}


def row(daemons, results):
    def med(key):
        vals = [r[key] for r in results if r[key] is not None]
        return "{:.1f}".format(statistics.median(vals)) if vals else "-"

    pauses = [r["pause"] for r in results]
    return [" + ".join(daemons) or "none (the loop's rhythm)",
            "{:.1f}".format(statistics.median(pauses)), "{:.1f}".format(max(pauses)),
            sum(r["errors"] for r in results),
            "{}/{}".format(sum(r["answers"] for r in results), len(results)),
            med("restart s"), med("state run s")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (namespaces, NFS server, qemu)")
    img = ensure_test_image()
    base = pathlib.Path(tempfile.mkdtemp(prefix="bench-restarts-", dir="/tmp"))
    os.chmod(base, 0o755)  # nginx (www-data) reads the http tree under it
    env = {"base": base}
    results = {s: [] for s in SCENARIOS}
    loads = [os.getloadavg()[0]]
    error_text = ""
    try:
        env = BT.setup(base, img)
        env["raw"] = BT.lab_pillar(base)
        t0 = time.monotonic()
        BT.one_run(env, [NODE])
        print("{} booted in {:.0f} s".format(NODE, time.monotonic() - t0), flush=True)
        loop = IoLoop(env["master"], NODE, netlab_roots.root_path(env["lab"], NODE),
                      name="ioloop-bench").start()
        for i in range(args.runs):
            for daemons in SCENARIOS:
                r = one_restart(env, loop, daemons)
                results[daemons].append(r)
                print("run {} {}: {}".format(i + 1, " + ".join(daemons) or "none", r),
                      flush=True)
            loads.append(os.getloadavg()[0])
        error_text = loop.stop()["error_text"]
    finally:
        BT.teardown(env)
        report(args.runs, results, loads, error_text)


def report(runs, results, loads, error_text):
    """The table (also of the runs done before a failure)."""
    done = [s for s in SCENARIOS if results[s]]
    if not done:
        return
    table("Daemon restarts under a running node ({}: write, fsync, read back every 0.5 s "
          "on its NFS root); {} runs".format(NODE, runs),
          ["restarted (one state.apply)", "longest pause s (median)", "(max)",
           "I/O errors", "minion answers", "restart states s", "state run s"],
          [row(s, results[s]) for s in done])
    print("  host load average (1 min) at the start and after each run: {} (2 cores "
          "here)".format(", ".join("{:.1f}".format(x) for x in loads)))
    if error_text.strip():
        print("  the loop's errors:\n" + error_text[-2000:])


if __name__ == "__main__":
    main()
