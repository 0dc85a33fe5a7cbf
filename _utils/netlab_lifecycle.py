"""
Per-node lifecycle records, kept on the networking node.

One JSON file ``<state_dir>/lifecycle.json`` holds a record per node::

    {"nodes": {"nuc1": {"state": "up", "since": 1763700000.0, "result": "...",
                        "reason": null, "generation": 2, "history": [...]}}}

Every read-modify-write holds an exclusive ``fcntl`` lock on
``<state_dir>/lifecycle.lock`` and replaces the file atomically (write + rename),
so the runner, an orchestration and ``netlab.status`` can run at the same time.

States::

    registered -> reimaging -> booting -> up -> stacking -> ready
                       any state -> failed (with a reason)

``registered`` is implicit: a node of the lab without a record. ``generation``
counts reimages (0 = never reimaged); node identity (machine-id, OVN system id)
derives from it (:func:`netlab_slice.identity`).
"""

import contextlib
import fcntl
import json
import os
import time

STATES = ("registered", "reimaging", "booting", "up", "stacking", "ready", "failed")
# allowed transitions (besides: any state -> reimaging | failed | registered)
TRANSITIONS = {
    "registered": {"booting", "up"},
    "reimaging": {"booting"},
    "booting": {"up"},
    "up": {"booting", "stacking"},
    "stacking": {"ready", "up"},
    "ready": {"booting", "stacking", "up"},
    "failed": {"booting", "up", "stacking"},
}
ALWAYS = {"reimaging", "failed", "registered"}
HISTORY = 20  # transitions kept per node
DB_NAME = "lifecycle.json"
LOCK_NAME = "lifecycle.lock"


class LifecycleError(RuntimeError):
    """Bad state, bad transition or unreadable state file; the message names the node."""


def db_path(state_dir):
    return os.path.join(state_dir, DB_NAME)


def _state_dir(lab_or_dir):
    return lab_or_dir if isinstance(lab_or_dir, str) else lab_or_dir.netnode.state_dir


def _read(state_dir):
    path = db_path(state_dir)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {"nodes": {}}
    except ValueError as exc:
        raise LifecycleError("lifecycle state {} is not valid JSON ({}); move it away to "
                             "start over".format(path, exc)) from exc
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), dict):
        raise LifecycleError("lifecycle state {} has no 'nodes' mapping".format(path))
    return data


def _write(state_dir, data):
    path = db_path(state_dir)
    tmp = "{}.tmp-{}".format(path, os.getpid())
    # the lifecycle holds failure reasons: readable by root only
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fh.fileno(), 0o600)
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def locked(lab_or_dir):
    """Hold the lifecycle lock; yields the data dict, written back on success."""
    state_dir = _state_dir(lab_or_dir)
    os.makedirs(state_dir, exist_ok=True)
    with open(os.path.join(state_dir, LOCK_NAME), "a+", encoding="utf-8") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            data = _read(state_dir)
            yield data
            _write(state_dir, data)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def read(lab_or_dir):
    """All records (a shared lock while reading)."""
    state_dir = _state_dir(lab_or_dir)
    if not os.path.isdir(state_dir):
        return {"nodes": {}}
    lock_path = os.path.join(state_dir, LOCK_NAME)
    try:
        lock = open(lock_path, "a+", encoding="utf-8")  # pylint: disable=consider-using-with
    except OSError:  # read-only state dir: read without a lock
        return _read(state_dir)
    with lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_SH)
        try:
            return _read(state_dir)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _default(now=None):
    return {"state": "registered", "since": now, "result": None, "reason": None,
            "generation": 0, "history": []}


def record(lab, node_id):
    """The record of ``node_id`` (a fresh ``registered`` record when none is kept)."""
    lab.node(node_id)
    rec = read(lab)["nodes"].get(node_id)
    return dict(_default(), **rec) if rec else _default()


def generation(lab, node_id):
    """The node's reimage generation (int, 0 when it was never reimaged)."""
    return int(record(lab, node_id).get("generation") or 0)


def check_transition(node_id, old, new):
    if new not in STATES:
        raise LifecycleError("node {}: {!r} is not a lifecycle state (known: {})".format(
            node_id, new, ", ".join(STATES)))
    if new in ALWAYS or new == old or new in TRANSITIONS.get(old, ()):
        return
    raise LifecycleError("node {}: cannot go from {} to {} (from {} it can go to {})".format(
        node_id, old, new, old, ", ".join(sorted(TRANSITIONS.get(old, set()) | ALWAYS))))


def set_state(lab, node_id, state, result=None, reason=None, generation=None, now=None,
              build=None):
    """Move ``node_id`` to ``state``; returns the new record.

    ``result`` is a short human text ("reimaged in 48 s"), ``reason`` why it
    failed (required for ``failed``); ``generation`` replaces the stored one;
    ``build`` (set by a reimage) the image build the node's root came from.
    """
    lab.node(node_id)
    if state == "failed" and not reason:
        raise LifecycleError("node {}: a failed state needs a reason".format(node_id))
    now = time.time() if now is None else now
    with locked(lab) as data:
        rec = dict(_default(now), **data["nodes"].get(node_id, {}))
        check_transition(node_id, rec["state"], state)
        hist = list(rec.get("history") or [])
        hist.append({"state": state, "at": now, "result": result, "reason": reason})
        rec.update(state=state, since=now, result=result,
                   reason=reason if state == "failed" else None,
                   history=hist[-HISTORY:])
        if generation is not None:
            rec["generation"] = int(generation)
        if build is not None:
            rec["build"] = str(build)
        data["nodes"][node_id] = rec
        return dict(rec)


def current_build_id(lab):
    """The build ``<images_dir>/current`` points at (None before the first build)."""
    try:
        return os.path.basename(os.readlink(
            os.path.join(lab.netnode.images_dir, "current")).rstrip("/")) or None
    except OSError:
        return None


def node_builds(lab, records=None):
    """``{node id: build id or None}``: the image build each node's root came from,
    as its last reimage recorded it (None: never reimaged by netlab)."""
    recs = (records if records is not None else read(lab))["nodes"]
    return {n: (recs.get(n) or {}).get("build") or None for n in lab.nodes}


def status(lab, now=None, current=None):
    """One row per lab node: node, role, ip, state, since, last result, generation,
    build (the image build its root came from) and ``stale`` (a newer build is
    current: the node gets it at its next reimage). ``current``: the current
    build id (default: read from the images directory)."""
    recs = read(lab)["nodes"]
    current = current_build_id(lab) if current is None else current
    rows = []
    for node in lab.nodes.values():
        rec = dict(_default(), **recs.get(node.id, {}))
        build = rec.get("build") or None
        rows.append({
            "node": node.id, "role": node.role, "ip": node.ip, "state": rec["state"],
            "since": rec["since"], "result": rec["reason"] if rec["state"] == "failed"
            else rec["result"], "generation": rec["generation"],
            "power": node.power_driver, "root_mode": node.root_mode,
            "build": build, "stale": bool(build and current and build != current),
        })
    return rows


def _fmt_since(ts, now):
    if not ts:
        return "-"
    age = max(0, int(now - ts))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))
    if age < 120:
        ago = "{}s".format(age)
    elif age < 7200:
        ago = "{}m".format(age // 60)
    elif age < 172800:
        ago = "{}h".format(age // 3600)
    else:
        ago = "{}d".format(age // 86400)
    return "{}Z ({} ago)".format(stamp, ago)


def status_table(lab, now=None):
    """:func:`status` as a plain text table (what ``salt-run netlab.status`` prints)."""
    now = time.time() if now is None else now
    head = ("NODE", "ROLE", "IP", "STATE", "GEN", "BUILD", "SINCE", "LAST RESULT")
    rows = [(r["node"], r["role"], r["ip"], r["state"], str(r["generation"]),
             (r["build"] or "-") + (" (stale)" if r["stale"] else ""),
             _fmt_since(r["since"], now), r["result"] or "-") for r in status(lab)]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    widths[-1] = 0
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
             for row in [head] + rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- minion starts
def start_event_node(event):
    """The node a ``salt/minion/<id>/start`` event names, or None for any other event
    and for a start event whose data names another minion (``event.fire_master``
    from minion A puts A's authenticated id in the data, whatever the tag says)."""
    if not isinstance(event, dict):
        return None
    parts = str(event.get("tag", "")).split("/")
    if len(parts) != 4 or parts[:2] != ["salt", "minion"] or parts[3] != "start":
        return None
    data = event.get("data")
    sender = data.get("id") if isinstance(data, dict) else None
    if sender != parts[2]:
        return None
    return parts[2]


def wait_for_starts(next_start, pending, deadline_for, confirm, clock=time.monotonic,
                    retry=5.0):
    """Wait until every node of ``pending`` has started on this master.

    ``next_start(wait)`` returns the node a start event names within ``wait``
    seconds (:func:`start_event_node` of the next master event), or None; ``deadline_for[node]`` is each node's deadline on
    ``clock``; ``confirm(node)`` asks that minion id directly (``test.ping``) and
    returns True only when it answered.

    A start event is only a hint: any accepted minion can put the tag
    ``salt/minion/<id>/start`` on the master's bus with data of its choosing (a
    crafted event list is fired as sent). A node counts as started when, after its
    start event, its minion answers ``confirm``: only the holder of the key the
    master accepted for that id can, and a reimage has just made that key new. A
    ping that goes unanswered is asked again every ``retry`` seconds until the
    deadline. Returns ``{node: clock() when confirmed}``.
    """
    started = {}
    waiting = set(pending)
    due = {}  # hinted node -> when to ask it (again)
    while True:
        now = clock()
        for node in list(waiting):
            if now >= deadline_for[node]:
                waiting.discard(node)
                due.pop(node, None)
        if not waiting:
            break
        for node in sorted(due):
            if due[node] <= clock():
                if confirm(node) and clock() <= deadline_for[node]:
                    started[node] = clock()
                    waiting.discard(node)
                    del due[node]
                else:
                    due[node] = clock() + retry
        if not waiting:
            break
        now = clock()
        wait = min(deadline_for[n] for n in waiting) - now
        if due:
            wait = min(wait, min(due.values()) - now)
        wait = max(min(wait, 5), 0.01)
        node = next_start(wait)
        if node in waiting:
            due[node] = clock()
    return started
