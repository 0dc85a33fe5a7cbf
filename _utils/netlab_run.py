"""
The record of one orchestration run (deploy or restack), kept on the networking node.

An orchestration is a chain of steps: networking node, image, nodes up, node
states, stack.sh on the controller, on the computes, host discovery. When a step
fails, the later steps must know it: a failed networking node or image stops every
node step; a node that failed (did not come up, its states failed, its stack.sh
failed) is left out of the later steps while the other nodes go on; and the run
ends with one summary that names the *first* failure, its cause and where its log
is. Salt's requisites can stop a whole step but cannot leave one node out, so the
steps share this record instead::

    <state_dir>/run.json
    {"kind": "deploy", "id": "20261130T120000.123456", "started": 1764504000.1,
     "failures": [{"step": "image", "node": null, "cause": "...", "log": "...",
                   "log_tail": "...", "at": 1764504100.2}]}

``begin`` starts a new record (the previous run's failures no longer exclude
anyone); ``add_failure`` appends; ``excluded`` lists the nodes a later step must
skip; ``first_failure`` and ``summary_lines`` shape the end of the run. Every
read-modify-write holds an ``fcntl`` lock and replaces the file atomically.
"""

import contextlib
import fcntl
import json
import os
import re
import time

RUN_NAME = "run.json"
LOCK_NAME = "run.lock"
TAIL_LINES = 15


def _path(state_dir, name=RUN_NAME):
    return os.path.join(state_dir, name)


@contextlib.contextmanager
def _locked(state_dir):
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    with open(_path(state_dir, LOCK_NAME), "a+", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write(state_dir, record):
    tmp = _path(state_dir, RUN_NAME + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, _path(state_dir))


def read(state_dir):
    """The current run record, or ``None`` when no run was ever started."""
    try:
        with open(_path(state_dir), encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def begin(state_dir, kind, now=None):
    """Start a new run of ``kind`` (``deploy``, ``restack``); returns its record."""
    now = time.time() if now is None else now
    record = {"kind": kind, "started": now,
              "id": time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + "{:.6f}".format(
                  now % 1)[1:],
              "failures": []}
    with _locked(state_dir):
        _write(state_dir, record)
    return record


def add_failure(state_dir, step, cause, node=None, log=None, log_tail=None, now=None):
    """Record that ``step`` failed (for ``node``, or for the whole run when None)."""
    entry = {"step": step, "node": node, "cause": str(cause), "log": log,
             "log_tail": tail(log_tail or ""), "at": time.time() if now is None else now}
    with _locked(state_dir):
        record = read(state_dir) or {"kind": "manual", "started": entry["at"],
                                     "id": "manual", "failures": []}
        record.setdefault("failures", []).append(entry)
        _write(state_dir, record)
    return entry


MAX_WARNINGS = 20


def add_warning(state_dir, text):
    """Record a warning of the current run (an event that could not be fired...);
    the summary shows it. Nothing is recorded when no run was started (the
    warning is then only in the master's log)."""
    with _locked(state_dir):
        record = read(state_dir)
        if record is None:
            return False
        warnings = record.setdefault("warnings", [])
        record["warning_count"] = record.get("warning_count", len(warnings)) + 1
        if len(warnings) < MAX_WARNINGS:
            warnings.append(str(text))
        _write(state_dir, record)
    return True


def fire_checked(fire, tag, data, state_dir=None, logger=None):
    """Fire one event with ``fire(data, tag)`` (a Salt event bus's ``fire_event``).

    Salt's ``fire_event`` returns False when it cannot reach the master's bus and
    raises on a broken one. Either way the event is lost, so it becomes a warning
    in the master's log and (``state_dir``: a path, or a callable returning one,
    asked only then) in the run record, which the run's summary shows. Returns
    True when the event was fired.
    """
    try:
        ok = fire(data, tag) is not False
        why = "the master's event bus did not take it"
    except Exception as exc:  # pylint: disable=broad-except
        ok, why = False, str(exc) or type(exc).__name__
    if ok:
        return True
    text = "event {} was not fired: {}".format(tag, why)
    if logger is not None:
        logger.warning("netlab: %s", text)
    try:
        where = state_dir() if callable(state_dir) else state_dir
        if where:
            add_warning(where, text)
    except Exception as exc:  # pylint: disable=broad-except
        if logger is not None:
            logger.warning("netlab: could not record that warning in the run: %s", exc)
    return False


def lost_on_nodes(returns):
    """Warning texts for the events lab nodes could not fire during a step, from
    the nodes' returns (``{node: return}``; a return's ``events_lost``, see the
    ``devstack`` execution module), each naming its node."""
    out = []
    for node_id in sorted(returns):
        ret = returns[node_id]
        if isinstance(ret, dict):
            for text in ret.get("events_lost") or []:
                out.append("{}: {}".format(node_id, text))
    return out


def tail(text, lines=TAIL_LINES):
    return "\n".join(str(text).rstrip("\n").splitlines()[-lines:]) if text else ""


def excluded(record):
    """Nodes that failed in this run: later steps leave them out."""
    if not record:
        return []
    return sorted({f["node"] for f in record.get("failures", []) if f.get("node")})


def blocked(record):
    """The failure of a whole-run step (networking node, image), or None."""
    for failure in (record or {}).get("failures", []):
        if not failure.get("node"):
            return failure
    return None


def first_failure(record):
    failures = (record or {}).get("failures") or []
    return min(failures, key=lambda f: f.get("at", 0)) if failures else None


def describe(failure):
    """One line: which step, on what, why."""
    where = "node {}".format(failure["node"]) if failure.get("node") else "the networking node"
    return "{} failed on {}: {}".format(failure["step"], where, failure["cause"])


def warning_lines(record):
    warnings = (record or {}).get("warnings") or []
    lines = ["warning: " + w for w in warnings]
    more = (record or {}).get("warning_count", len(warnings)) - len(warnings)
    if more > 0:
        lines.append("warning: ... and {} more (see the master's log)".format(more))
    return lines


def summary_lines(record):
    """The lines that end a run: the first failure with its log, then the others,
    then the run's warnings."""
    first = first_failure(record)
    if not first:
        return warning_lines(record)
    lines = ["first failure: " + describe(first)]
    if first.get("log"):
        lines.append("  log: {}".format(first["log"]))
    for line in (first.get("log_tail") or "").splitlines():
        lines.append("  | " + line)
    others = [f for f in record["failures"] if f is not first]
    for failure in others:
        lines.append("also: " + describe(failure))
    return lines + warning_lines(record)


def state_failures(ret):
    """A minion's return of ``state.apply``/``state.sls`` -> its failing states in
    run order: ``[{"id", "comment"}]``. A render error (a list or text instead
    of state results) and no answer at all are failures too."""
    if ret is None:
        return [{"id": "(no answer)", "comment": "the minion did not return"}]
    if isinstance(ret, (list, tuple)):
        return [{"id": "(render)", "comment": str(e).strip()} for e in ret] or [
            {"id": "(render)", "comment": "no states rendered"}]
    if not isinstance(ret, dict):
        return [{"id": "(error)", "comment": str(ret).strip()}]
    failing = []
    for key, res in ret.items():
        if not isinstance(res, dict) or "result" not in res:
            continue
        if res.get("result") is False:
            failing.append((res.get("__run_num__", 0), {
                "id": res.get("__id__") or (key.split("_|-")[1] if "_|-" in key else key),
                "comment": str(res.get("comment") or "").strip()}))
    return [f for _, f in sorted(failing, key=lambda item: item[0])]


_LOG_RE = re.compile(r"(/[^\s:;,()'\"]+\.log)\b")


def log_path(text):
    """The first ``/....log`` path named in ``text`` (a cause), or None."""
    match = _LOG_RE.search(str(text or ""))
    return match.group(1) if match else None


def job_applies(arguments, sls):
    """Whether a job's arguments (as the job cache lists them) apply exactly ``sls``
    (``netlab.netnode`` is not ``netlab.netnode.nfs``)."""
    for arg in arguments or []:
        if isinstance(arg, dict):
            arg = arg.get("mods", "")
        if isinstance(arg, str) and sls in [a.strip() for a in arg.split(",")]:
            return True
    return False


def jid_of(timestamp):
    """The Salt job id a job started at ``timestamp`` (local time, as the master
    writes jids) would have: jids sort as text, so older jobs sort before it."""
    return time.strftime("%Y%m%d%H%M%S", time.localtime(timestamp)) + "{:06d}".format(
        int((timestamp % 1) * 1e6))


def job_return(lookup, target):
    """``target``'s return from what ``jobs.lookup_jid`` gives: ``{minion: ret}``, or
    for a state job ``{"outputter": "highstate", "data": {minion: ret}}``."""
    if isinstance(lookup, dict) and "outputter" in lookup and isinstance(
            lookup.get("data"), dict):
        lookup = lookup["data"]
    return lookup.get(target) if isinstance(lookup, dict) else None
