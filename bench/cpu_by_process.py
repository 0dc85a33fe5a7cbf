#!/usr/bin/env python3
"""
CPU time of a command and of every process on the machine while it runs, by
process kind: where a test run's CPU goes (salt-run, the master's workers, each
minion's job processes, pytest itself, qemu, ...).

    bench/cpu_by_process.py [--interval 0.5] [--top 25] -- <command...>

It reads /proc every ``--interval`` seconds and keeps each process's own user +
system time at its last sample; a process that starts and ends between two
samples is missed (the table says how much CPU the machine spent that no
sample saw). Kinds group command lines with their numbers, job ids and temp
paths blanked, so the 40 forked job processes of one minion are one row.
"""

import argparse
import os
import re
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")
BLANK = [
    (re.compile(r"/tmp/[^ ]*"), "/tmp/…"),
    (re.compile(r"jid=\d+"), "jid=…"),
    (re.compile(r"\d{6,}"), "…"),
    (re.compile(r"\s+"), " "),
]


def kind(cmdline):
    text = cmdline.replace("\0", " ").strip()
    for pattern, repl in BLANK:
        text = pattern.sub(repl, text)
    return text[:110]


def sample(seen):
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/{}/stat".format(pid), "rb") as fh:
                stat = fh.read().decode(errors="replace")
            with open("/proc/{}/cmdline".format(pid), "rb") as fh:
                cmd = fh.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        # fields[11], [12]: utime, stime (man 5 proc, counted from field 3)
        cpu = (int(fields[11]) + int(fields[12])) / TICK
        start = int(fields[19])
        key = (int(pid), start)
        if key not in seen:
            seen[key] = {"kind": kind(cmd) or "[{}]".format(stat.split()[1])}
        seen[key]["last"] = cpu
        if cmd and seen[key]["kind"].startswith("["):
            seen[key]["kind"] = kind(cmd)


def machine_cpu():
    with open("/proc/stat", encoding="ascii") as fh:
        parts = fh.readline().split()[1:]
    busy = sum(int(p) for i, p in enumerate(parts) if i not in (3, 4))  # not idle, iowait
    return busy / TICK


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    seen = {}
    sample(seen)
    before = {k: v["last"] for k, v in seen.items()}
    busy0, t0 = machine_cpu(), time.monotonic()
    proc = subprocess.Popen(command)  # pylint: disable=consider-using-with
    while proc.poll() is None:
        time.sleep(args.interval)
        sample(seen)
    sample(seen)
    wall, busy = time.monotonic() - t0, machine_cpu() - busy0
    rows = {}
    for key, rec in seen.items():
        used = rec["last"] - before.get(key, 0.0)  # a process new to the run: all of it
        if used <= 0:
            continue
        row = rows.setdefault(rec["kind"], [0.0, 0])
        row[0] += used
        row[1] += 1
    total = sum(r[0] for r in rows.values())
    print("\n{:>9} {:>6} {:>6}  {}".format("cpu s", "share", "procs", "kind"))
    for name, (used, count) in sorted(rows.items(), key=lambda kv: -kv[1][0])[:args.top]:
        print("{:9.1f} {:5.1f}% {:6d}  {}".format(used, 100 * used / max(total, 1e-9),
                                                   count, name))
    print("\nwall {:.1f} s; machine busy {:.1f} cpu s; seen in samples {:.1f} cpu s "
          "({:.1f} cpu s in processes no sample saw); exit {}".format(
              wall, busy, total, max(busy - total, 0.0), proc.returncode))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
