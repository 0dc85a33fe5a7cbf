"""
Locks that keep two netlab runs from working on the same lab or node at once.

A lock is an ``flock`` on a file under ``<state_dir>/locks``: the kernel drops it
when the holding process dies, so a crashed run never blocks the next one. The
holder writes who it is (command, pid, host, since when) into the file; a run
that finds the lock taken waits up to ``wait`` seconds, then is refused with a
message naming the holder.

Two kinds, both through :func:`hold`:

``lab``
    lab-wide: deploy, reimage, restack, unstack (anything that changes several
    nodes or the order they are stacked in).
``node-<id>``
    one node: its reimage (root reset, key, pre-accept, power) and enrolment.

Within one process a lock is re-entrant (an orchestration's steps and the
runner functions they call run in the same salt-run process: ``devstack.bring_up``
calls ``netlab.reimage``), so nesting never deadlocks on itself.

Pure Python, no Salt.
"""

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import threading
import time

LOCK_DIR = "locks"
DEFAULT_WAIT = 10.0

_HELD = {}  # path -> [fd, depth] held by this process
_GUARD = threading.Lock()


class LockBusy(RuntimeError):
    """The lock is held by another run; the message names it."""

    def __init__(self, message, holder=None):
        super().__init__(message)
        self.holder = holder or {}


def lock_path(state_dir, name):
    return os.path.join(state_dir, LOCK_DIR, name + ".lock")


def _read_holder(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 65536).decode("utf-8") or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def describe(holder):
    """``'netlab.reimage nuc2 (pid 4242 on netnode, since 2026-11-30 11:02:03 UTC)'``."""
    if not holder:
        return "another run (it has not said which yet)"
    since = holder.get("since")
    when = (datetime.datetime.fromtimestamp(since, datetime.timezone.utc)
            .strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(since, (int, float)) else "?")
    return "{} (pid {} on {}, since {})".format(
        holder.get("command", "?"), holder.get("pid", "?"), holder.get("host", "?"), when)


@contextlib.contextmanager
def hold(state_dir, name, command, wait=DEFAULT_WAIT, poll=0.2):
    """Hold lock ``name`` of the lab whose state directory is ``state_dir``.

    ``command`` says who holds it (shown to a run that has to wait). Waits at
    most ``wait`` seconds for another holder, then raises :class:`LockBusy`.
    Yields the holder record written into the lock file.
    """
    path = lock_path(state_dir, name)
    with _GUARD:
        mine = _HELD.get(path)
        if mine is not None:
            mine[1] += 1
    if mine is not None:
        try:
            yield _read_holder(mine[0])
        finally:
            with _GUARD:
                mine[1] -= 1
        return
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        deadline = time.monotonic() + max(0.0, float(wait))
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            if time.monotonic() >= deadline:
                holder = _read_holder(fd)
                raise LockBusy(
                    "the {} lock is held by {}; it is released when that run ends (or "
                    "its process dies). Waited {:.0f} s; try again later".format(
                        "lab" if name == "lab" else name.replace("-", " ", 1),
                        describe(holder), float(wait)), holder)
            time.sleep(poll)
        holder = {"command": command, "pid": os.getpid(), "host": socket.gethostname(),
                  "since": time.time()}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(holder, sort_keys=True) + "\n").encode("utf-8"))
        with _GUARD:
            _HELD[path] = [fd, 1]
        try:
            yield holder
        finally:
            with _GUARD:
                del _HELD[path]
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def hold_lab(state_dir, command, nodes=(), wait=DEFAULT_WAIT):
    """The lab lock, then each node's lock in sorted order (one order everywhere:
    two runs never wait for each other crosswise)."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(hold(state_dir, "lab", command, wait=wait))
        for node_id in sorted(set(nodes)):
            stack.enter_context(hold(state_dir, "node-" + node_id, command, wait=wait))
        yield


def holder(state_dir, name):
    """Who holds lock ``name`` now (``{}`` when nobody): for status output."""
    path = lock_path(state_dir, name)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return {}
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _read_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return {}
    finally:
        os.close(fd)
