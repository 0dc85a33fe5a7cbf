#!/usr/bin/env python3
"""
Per-node timings of the last deploy, as a table (not a test).

Reads the networking node's lifecycle history and stack results
(``<storage>/state/lifecycle.json``, ``devstack.json``) and prints, per node:
reimage (root reset), power-on to minion start, stack.sh duration, and when
stack.sh ran relative to the controller's (so the controller-first and
computes-in-parallel waves are visible).

    bench/deploy_timings.py /var/lib/netlab-vlab/srv/state     # after ./vlab up
    bench/deploy_timings.py /srv/netlab/state
"""

import json
import os
import sys


def _load(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def rows(state_dir):
    life = _load(os.path.join(state_dir, "lifecycle.json")).get("nodes", {})
    stack = _load(os.path.join(state_dir, "devstack.json"))
    out = []
    for node, rec in sorted(life.items()):
        hist = rec.get("history") or []
        at = {}
        for h in hist:  # the last time each state was entered
            at[h["state"]] = h["at"]
        res = stack.get(node, {})
        fin = res.get("finished")
        dur = res.get("duration")
        start = fin - dur if fin and dur else None
        out.append({
            "node": node, "role": res.get("role") or "-", "state": rec.get("state"),
            "reimage": (at["booting"] - at["reimaging"]) if "booting" in at and
            "reimaging" in at and at["booting"] >= at["reimaging"] else None,
            "boot": (at["up"] - at["booting"]) if "up" in at and "booting" in at and
            at["up"] >= at["booting"] else None,
            "stack": dur, "stack_start": start,
        })
    t0 = min((r["stack_start"] for r in out if r["stack_start"]), default=None)
    for r in out:
        r["offset"] = (r["stack_start"] - t0) if t0 and r["stack_start"] else None
    return out


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip())
        return 2
    table = rows(argv[1])
    fmt = "{:<10} {:<11} {:<8} {:>12} {:>14} {:>12} {:>16}"
    print(fmt.format("NODE", "ROLE", "STATE", "REIMAGE (s)", "BOOT->UP (s)", "STACK (s)",
                     "STACK START (+s)"))

    def num(v):
        return "-" if v is None else "{:.1f}".format(v)

    for r in table:
        print(fmt.format(r["node"], r["role"], r["state"], num(r["reimage"]), num(r["boot"]),
                         num(r["stack"]), num(r["offset"])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
