"""
What a running lab node can still do, asked through its minion (e2e VM tests).

* :func:`loads_module`: ``modprobe`` of a module the node has not loaded yet
  (reads ``/lib/modules`` of its root: the kernel it runs and its root's
  modules must match, and the root must still be served);
* :func:`reads_root`: page cache dropped, then files of the root read again
  (over NFS, from the server as it is now);
* :class:`IoLoop`: a write/read loop on a persistent node's root, started
  through its minion, read back from the networking node's copy of that root;
  every round is stamped with the node's own clock, so the longest pause the
  node saw needs no clock of any other machine. Each loop has a directory of
  its own under ``/root`` (``name``): a second loop on the same node never reads
  the first one's rounds or its stop file. :meth:`IoLoop.window` gives the
  rounds from a mark on (a round count read before a fault), so one loop can
  measure several faults in turn.
"""

import os

from lib.vm import wait_for


def loads_module(master, node, module):
    """True when ``module`` was not loaded and ``modprobe`` loads it now."""
    out = master.cmd(node, "if [ -d /sys/module/{0} ]; then echo already; else modprobe {0} "
                     "&& [ -d /sys/module/{0} ] && echo loaded; fi".format(module),
                     timeout=120)
    assert out.splitlines()[-1:] == ["loaded"], (node, module, out)
    return True


def reads_root(master, node):
    """The node answers ``test.ping`` and reads its root again with no page cache."""
    data, proc = master.run_json("salt", "-t", "60", node, "test.ping", check=False)
    assert (data or {}).get(node) is True, (node, proc.stdout[-1000:], proc.stderr[-1000:])
    out = master.cmd(node, "sync; echo 3 > /proc/sys/vm/drop_caches; "
                     "cat /etc/debian_version; ls /lib/modules/$(uname -r) | grep -c .")
    assert len(out.splitlines()) == 2 and int(out.splitlines()[1]) > 0, (node, out)
    return out


_LOOP = r"""#!/bin/sh
# netlab e2e: write, fsync and read back a file on this root, every round stamped
d=$1
n=0
while [ ! -e $d/stop ] && [ $n -lt 20000 ]; do
  n=$((n+1)); t=$(date +%s.%N)
  if echo "$n $t" > $d/f 2>>$d/err && sync $d/f 2>>$d/err \
     && [ "$(cat $d/f 2>>$d/err)" = "$n $t" ]; then
    echo "ok $t" >> $d/log
  else
    echo "ERR $t" >> $d/log
  fi
  sleep 0.5
done
"""


class IoLoop:
    """``IoLoop(master, node, root, name)``: ``root`` is the node's root as the
    networking node holds it (what the node mounts); the loop works in
    ``/root/<name>`` on the node."""

    def __init__(self, master, node, root, name="ioloop"):
        self.master, self.node = master, node
        self.node_dir = "/root/" + name
        self.dir = os.path.join(root, "root", name)

    def start(self):
        os.makedirs(self.dir, exist_ok=False)  # a fresh directory: no old rounds
        with open(os.path.join(self.dir, "loop.sh"), "w", encoding="utf-8") as fh:
            fh.write(_LOOP)
        self.master.run("salt", "-t", "60", self.node, "cmd.run",
                        "sh {0}/loop.sh {0}".format(self.node_dir), "bg=True")
        wait_for(lambda: self.rounds() >= 2, 300, "{}'s I/O loop to run".format(self.node))
        return self

    def lines(self):
        """``[(status, node time)]`` of the rounds written so far (a round being
        written right now is left out until its line is complete)."""
        try:
            with open(os.path.join(self.dir, "log"), encoding="utf-8") as fh:
                text = fh.read()
        except FileNotFoundError:
            return []
        out = []
        for line in text.split("\n")[:-1]:
            parts = line.split()
            if len(parts) == 2 and parts[0] in ("ok", "ERR"):
                out.append((parts[0], float(parts[1])))
        return out

    def rounds(self):
        return len(self.lines())

    def wait_rounds(self, more, timeout=300):
        """Wait until ``more`` rounds were written after now."""
        now = self.rounds()
        return wait_for(lambda: self.rounds() >= now + more, timeout,
                        "{} more rounds of {}'s I/O loop".format(more, self.node))

    def window(self, start=0):
        """``{rounds, errors, longest_pause}`` of the rounds from index ``start``
        (a :meth:`rounds` count read earlier) on. The pause runs from the round
        before ``start``: one that began before the mark is counted whole.
        ``longest_pause``: seconds between two rounds by the node's clock (the
        loop paces at 0.5 s)."""
        lines = self.lines()
        stamps = [t for _, t in lines[max(0, start - 1):]]
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        return {"rounds": len(lines) - start,
                "errors": sum(1 for s, _ in lines[start:] if s != "ok"),
                "longest_pause": round(max(gaps, default=0.0), 2)}

    def error_text(self):
        """What the loop's commands wrote to stderr (an I/O error, a stale handle)."""
        try:
            with open(os.path.join(self.dir, "err"), encoding="utf-8") as fh:
                return fh.read()
        except FileNotFoundError:
            return ""

    def stop(self):
        """Stop the loop; ``{rounds, errors, error_text, longest_pause}`` of all
        its rounds (see :meth:`window`)."""
        self.master.cmd(self.node, "touch {}/stop".format(self.node_dir))
        return dict(self.window(), error_text=self.error_text())
