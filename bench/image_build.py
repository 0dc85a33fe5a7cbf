#!/usr/bin/env python3
"""
Benchmark of the node image build (prints tables; asserts nothing).

    python bench/image_build.py              # cached test image: hash, plan, no-op build
    python bench/image_build.py --rebuild    # + a full real build into a temp dir (~5 min)

The cached image is the one the tests use (test/lib/image.py, $NETLAB_TEST_CACHE).
``--rebuild`` builds the same recipe from scratch into a throw-away storage dir
(the cache is not touched), prints its phases (from the timestamped build.log)
and removes it. Needs root (mmdebstrap --mode=root).
"""

import argparse
import os
import re
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "_utils"))
sys.path.insert(0, os.path.join(REPO, "test"))

import netlab_cache_refresh  # noqa: E402
import netlab_image  # noqa: E402
from lib import image as test_image_lib  # noqa: E402

PHASE_RE = re.compile(r"^\[\s*([0-9.]+)s\] (I: .*|netlab-image: .*)$")


def timed(func, runs=5):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def table(title, rows, headers):
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    print("\n" + title)
    line = "  ".join("-" * w for w in widths)
    print(line)
    print("  ".join(str(h).ljust(w) for h, w in zip(headers, widths)))
    print(line)
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    print(line)


def phases(logfile):
    marks = []
    try:
        with open(logfile, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                m = PHASE_RE.match(line.rstrip("\n"))
                if m:
                    text = m.group(2)
                    if text.startswith("I: running --"):
                        text = text.split(" in shell:")[0]
                    marks.append((float(m.group(1)), text[:70]))
    except OSError:
        return []
    rows = []
    for i, (t, text) in enumerate(marks):
        nxt = marks[i + 1][0] if i + 1 < len(marks) else t
        rows.append((text, "{:.1f}".format(t), "{:.1f}".format(nxt - t)))
    return rows


def mib(path):
    return "{:.1f}".format(os.path.getsize(path) / 2**20)


def du_mib(path):
    return "{:.0f}".format(netlab_cache_refresh.disk_usage(path) / 2**20)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rebuild", action="store_true",
                    help="also time a full build from scratch (minutes)")
    ap.add_argument("--runs", type=int, default=5, help="repeats of the quick steps")
    args = ap.parse_args()

    t0 = time.perf_counter()
    img = test_image_lib.ensure_test_image()
    first = time.perf_counter() - t0
    lab = img["lab"]
    rows = [
        ("ensure_test_image() (first call here)", "{:.2f}".format(first),
         img["result"]["action"]),
        ("input_hash(lab)", "{:.4f}".format(timed(lambda: netlab_image.input_hash(lab),
                                                  args.runs)), ""),
        ("plan(lab)", "{:.4f}".format(timed(lambda: netlab_image.plan(lab), args.runs)), ""),
        ("build(lab), same inputs (no-op)", "{:.4f}".format(
            timed(lambda: netlab_image.build(lab), args.runs)), "cached"),
    ]
    manifest_duration = None
    try:
        import json  # pylint: disable=import-outside-toplevel
        with open(img["manifest"], encoding="utf-8") as fh:
            manifest_duration = json.load(fh).get("duration")
    except (OSError, ValueError):
        pass
    if manifest_duration:
        rows.append(("full build of the cached image (manifest)",
                     "{:.1f}".format(manifest_duration), img["build_id"]))

    rebuild_log = None
    if args.rebuild:
        storage = tempfile.mkdtemp(prefix="netlab-bench-image-",
                                   dir=os.path.dirname(test_image_lib.cache_dir().rstrip("/"))
                                   if os.path.isdir(test_image_lib.cache_dir()) else None)
        try:
            fresh = test_image_lib.image_lab(storage=storage)
            t0 = time.perf_counter()
            res = netlab_image.build(fresh)
            took = time.perf_counter() - t0
            rows.append(("full build from scratch (now)", "{:.1f}".format(took),
                         res["build_id"]))
            cur = netlab_image.current_build(fresh)
            rebuild_log = os.path.join(cur["dir"], "build.log")
            table("phases of the fresh build (seconds from mmdebstrap start)",
                  phases(rebuild_log), ("phase", "start", "took"))
            t0 = time.perf_counter()
            netlab_image.build(fresh)
            rows.append(("build() right after, same inputs", "{:.4f}".format(
                time.perf_counter() - t0), "no-op"))
        finally:
            netlab_image.remove_tree(storage)

    table("node image build (bookworm test image, {} cores)".format(os.cpu_count()),
          rows, ("step", "seconds", "note"))
    if not args.rebuild:
        ph = phases(os.path.join(img["dir"], "build.log"))
        if ph:
            table("phases of the cached build", ph, ("phase", "start", "took"))
    sizes = [("rootfs", du_mib(img["rootfs"])), ("vmlinuz", mib(img["kernel"])),
             ("initrd.img", mib(img["initrd"])),
             ("/opt/salt (venv)", du_mib(os.path.join(img["rootfs"], "opt", "salt"))),
             ("kernel modules", du_mib(os.path.join(img["rootfs"], "usr", "lib", "modules")))]
    table("sizes (MiB)", sizes, ("what", "MiB"))


if __name__ == "__main__":
    main()
