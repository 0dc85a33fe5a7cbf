"""
DevStack across the lab: which nodes to stack, in which waves, and the summary.

Pure Python (no Salt). The Salt faces are ``_modules/devstack.py`` (stack, unstack,
discover on one node) and the runner ``_runners/devstack.py`` (stack a wave of
nodes at once from the master and record the outcome in the lifecycle).

Waves follow DevStack's multi-node guide: the controller first (it runs the
database, message queue and APIs the others register with), then every compute
at the same time, then ``tools/discover_hosts.sh`` on the controller so nova
maps the new computes into its cell.

Last stack results are kept beside the lifecycle state on the networking node
(``<state_dir>/devstack.json``): per node the result, duration, log path and the
last lines of the log, so a summary can show why a node failed long after the
run.
"""

import json
import os
import time

import netlab_lab
import netlab_localconf
import netlab_lock

DEFAULT_REPO = netlab_lab.DEVSTACK_DEFAULTS["repo"]
RESULTS_NAME = "devstack.json"
LOG_NAME = "netlab-stack.log"
TAIL_LINES = 25
READY = "ready"
WAVES = ("controller", "compute")


class StackError(ValueError):
    """Bad request (unknown node or role); the message says what was asked."""


# --------------------------------------------------------------------------- checkout
def checkout_source(devstack):
    """Where a node clones DevStack from: ``{repo, branch}``.

    ``devstack:repo`` as given, except when it is DevStack's default (opendev) and
    ``devstack:git_base`` names a mirror: then ``<git_base>/openstack/devstack.git``,
    the path DevStack itself uses for every repository under ``GIT_BASE``.
    """
    repo = devstack.get("repo") or DEFAULT_REPO
    git_base = devstack.get("git_base")
    if git_base and repo.rstrip("/") in (DEFAULT_REPO, DEFAULT_REPO + ".git"):
        repo = git_base.rstrip("/") + "/openstack/devstack.git"
    return {"repo": repo, "branch": devstack.get("branch") or "master"}


def paths(devstack):
    """The node-side paths of a DevStack checkout (from ``user``/``dest``)."""
    dest = devstack["dest"].rstrip("/") or "/"
    logs = os.path.join(dest, "logs")
    return {
        "dest": dest,
        "checkout": os.path.join(dest, "devstack"),
        "local_conf": os.path.join(dest, "devstack", "local.conf"),
        "logs": logs,
        "stack_log": os.path.join(logs, LOG_NAME),
        "unstack_log": os.path.join(logs, "netlab-unstack.log"),
        "discover_log": os.path.join(logs, "netlab-discover.log"),
        "last": os.path.join(logs, "netlab-stack.json"),
    }


# --------------------------------------------------------------------------- planning
def wave(lab, role=None, nodes=None):
    """Node ids to act on: ``nodes`` (list or comma string) or a wave by ``role``.

    ``role``: ``controller`` (the controller), ``compute`` (every other node) or
    ``None`` (all nodes, controller first).
    """
    if nodes:
        if isinstance(nodes, str):
            nodes = [n.strip() for n in nodes.split(",") if n.strip()]
        unknown = [n for n in nodes if n not in lab.nodes]
        if unknown:
            raise StackError("not a node of this lab: {} (known: {})".format(
                ", ".join(unknown), ", ".join(lab.nodes)))
        order = [lab.controller.id] + [n.id for n in lab.subnodes]
        return [n for n in order if n in nodes]
    if role in (None, "", "all"):
        return [lab.controller.id] + [n.id for n in lab.subnodes]
    if role == "controller":
        return [lab.controller.id]
    if role in ("compute", "computes", "subnodes"):
        return [n.id for n in lab.subnodes]
    raise StackError("role must be controller, compute or all, not {!r}".format(role))


def plan(targets, states, force=False):
    """Split ``targets`` into ``(to_stack, already_ready)``.

    ``states``: node id -> lifecycle state. A node is stacked unless it is
    ``ready`` (``force`` stacks it anyway).
    """
    to_stack, ready = [], []
    for node_id in targets:
        if not force and states.get(node_id) == READY:
            ready.append(node_id)
        else:
            to_stack.append(node_id)
    return to_stack, ready


def bring_up_plan(lab, states, answering, stacked_roles):
    """What ``netlab.deploy`` does to get every node up: ``{reimage, boot, up}``.

    states
        node id -> lifecycle state
    answering
        node ids whose minion answers now
    stacked_roles
        node id -> the role the node was last stacked in (from the results file)

    - role changed since the node was stacked -> ``reimage`` (fresh root for the
      new role);
    - minion answers -> ``up`` (nothing to do);
    - never set up (``registered``, no reimage yet) -> ``reimage`` (its root is
      created from the image);
    - otherwise (known node, powered off or hung) -> ``boot``.

    Each value is a list of node ids in lab order; ``reasons`` says why.
    """
    out = {"reimage": [], "boot": [], "up": [], "reasons": {}}
    for node in lab.nodes.values():
        then = stacked_roles.get(node.id)
        state = states.get(node.id, "registered")
        if then and then != node.role:
            out["reimage"].append(node.id)
            out["reasons"][node.id] = "role changed from {} to {}".format(then, node.role)
        elif node.id in answering:
            out["up"].append(node.id)
            out["reasons"][node.id] = "minion answers"
        elif state == "registered":
            out["reimage"].append(node.id)
            out["reasons"][node.id] = "new node: root created from the image"
        else:
            out["boot"].append(node.id)
            out["reasons"][node.id] = "minion does not answer (was {})".format(state)
    return out


def stacked_roles(results):
    """node id -> role it was last stacked in (from :func:`load_results`)."""
    return {n: r.get("role") for n, r in results.items() if r.get("role")}


# --------------------------------------------------------------------------- results
def tail(text, lines=TAIL_LINES):
    """The last ``lines`` lines of ``text`` (``''`` for nothing)."""
    if not text:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def fmt_duration(seconds):
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 120:
        return "{} s".format(seconds)
    return "{} min {} s".format(seconds // 60, seconds % 60)


def outcome(node_id, ret, role=None, script="stack.sh", secrets=()):
    """A minion's return of ``devstack.stack`` (or of the function running another
    DevStack ``script``) -> normalised result dict.

    ``ret`` is ``None`` when the minion did not answer; ``role`` is the role the
    node was stacked in (kept, so a later role change is noticed); ``secrets``:
    the literal secret values of the node's localrc (:func:`node_secrets`).

    What the node sent is masked again here, with the master's own knowledge of
    the secrets: the tail and the reason are kept in devstack.json, fired in
    events and shown in summaries, and a node (broken, or hostile) may have sent
    them unmasked.
    """
    if not isinstance(ret, dict):
        if ret is None:
            reason = "no answer from the minion (is it up? `salt {} test.ping`)".format(
                node_id)
        else:  # an error raised on the node comes back as text
            reason = netlab_localconf.mask_log(str(ret).strip(), secrets)[:500]
        return {"node": node_id, "role": role, "result": False, "duration": None,
                "log": None, "log_tail": "", "retcode": None, "reason": reason}
    out = {"node": node_id, "role": role, "result": bool(ret.get("result")),
           "duration": ret.get("duration"), "log": ret.get("log"),
           "log_tail": netlab_localconf.mask_log(str(ret.get("log_tail") or ""), secrets),
           "retcode": ret.get("retcode")}
    if out["result"]:
        out["reason"] = None
    else:
        last = [ln for ln in out["log_tail"].splitlines() if ln.strip()]
        comment = ret.get("comment")
        out["reason"] = netlab_localconf.mask_log(str(comment), secrets) if comment else \
            "{} failed after {} (exit {}){}".format(
                script, fmt_duration(out["duration"]), out["retcode"],
                ": " + last[-1].strip()[:200] if last else "")
    return out


def node_secrets(lab, node_id):
    """The literal values of ``node_id``'s secret-named localrc variables (pillar:
    lab -> role -> node), which :func:`outcome` masks wherever they appear."""
    try:
        localrc = lab.node(node_id).devstack.get("localrc")
    except (KeyError, AttributeError):  # a node no longer in pillar
        return set()
    return netlab_localconf.secret_values(localrc)


def result_text(out):
    """Short lifecycle ``result`` for a successful stack."""
    return "stacked in {}".format(fmt_duration(out["duration"]))


def load_results(state_dir):
    try:
        with open(os.path.join(state_dir, RESULTS_NAME), encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save_results(state_dir, outcomes, now=None):
    """Merge ``outcomes`` (list of :func:`outcome` dicts) into the results file."""
    now = time.time() if now is None else now
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    # read-modify-write: two waves saving at once would drop each other's outcomes
    with netlab_lock.hold(state_dir, "devstack-results", "save stack results", wait=60):
        data = load_results(state_dir)
        for out in outcomes:
            data[out["node"]] = dict(out, finished=now)
        path = os.path.join(state_dir, RESULTS_NAME)
        tmp = "{}.tmp-{}".format(path, os.getpid())
        # log tails and reasons stay readable by root only
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o600)
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    return data


def summary(lab, status_rows, results):
    """Deploy summary from lifecycle rows and the saved stack results.

    Returns ``{ready: [...], failed: {node: {reason, log, log_tail}}, pending:
    {node: state}, text}``; ``text`` is what the orchestration prints.
    """
    ready, failed, pending = [], {}, {}
    for row in status_rows:
        node_id = row["node"]
        if node_id not in lab.nodes:
            continue
        if row["state"] == READY:
            ready.append(node_id)
        elif row["state"] == "failed":
            res = results.get(node_id, {})
            failed[node_id] = {"reason": row.get("result") or res.get("reason"),
                               "log": res.get("log"), "log_tail": res.get("log_tail", "")}
        else:
            pending[node_id] = row["state"]
    lines = ["netlab deploy: {} of {} nodes ready".format(len(ready), len(lab.nodes))]
    for node_id in ready:
        res = results.get(node_id, {})
        lines.append("  ready   {:<12} {}".format(
            node_id, result_text(res) if res.get("result") else ""))
    for node_id, state in pending.items():
        lines.append("  {:<7} {:<12} (not stacked)".format(state, node_id))
    for node_id, info in failed.items():
        lines.append("  FAILED  {:<12} {}".format(node_id, info["reason"] or ""))
        if info["log"]:
            lines.append("          log: {} (on {})".format(info["log"], node_id))
        for ln in (info["log_tail"] or "").splitlines():
            lines.append("          | " + ln)
    return {"ready": ready, "failed": failed, "pending": pending,
            "text": "\n".join(lines)}
