"""
DevStack across the lab, from the master: stack a wave of nodes at once.

``salt-run devstack.stack role=compute`` publishes ``devstack.stack`` to every
compute that is not ``ready`` in ONE job (a list target), so all of them run
``stack.sh`` at the same time; it waits for every answer, records each node's
outcome in the lifecycle (``stacking`` -> ``ready`` / ``failed`` with the time
taken, shown by ``salt-run netlab.status``) and the log tail of failures beside
it, and fails only after every node of the wave is done. The orchestrations
(``netlab.deploy``, ``netlab.restack``, ``netlab.unstack``) call these steps.

The lab comes from the master's own pillar (the id the orchestrate runner
compiles pillar for, which top.sls gives the whole ``netlab``).

Events on the master bus: ``netlab/stack/<wave>/started|finished`` here, and
``netlab/node/<id>/stack/started|finished|failed`` from each node.
"""

import functools
import importlib
import logging
import os
import sys

import salt.client
import salt.utils.event
import salt.wheel

try:
    import netlab_lifecycle
    import netlab_lock
    import netlab_master
    import netlab_master_ops
    import netlab_run
    import netlab_stack
    import netlab_waves
except ImportError:  # pragma: no cover - synced after this master started: __virtual__
    pass

log = logging.getLogger(__name__)

__virtualname__ = "devstack"

_LIBS = ("netlab_lab", "netlab_lifecycle", "netlab_lock", "netlab_master",
         "netlab_master_ops", "netlab_options", "netlab_run", "netlab_stack", "netlab_waves")



def __virtual__():
    # Salt puts the utils directories on sys.path only while a loader that was given
    # them loads a module; a runner loaded by another loader (or after a sync during
    # the run) would not find netlab's _utils: the synced copy and the master's
    # utils_dirs go on sys.path for good.
    opts = __opts__  # pylint: disable=undefined-variable
    for utils in [os.path.join(opts.get("extension_modules", ""), "utils")] + list(
            opts.get("utils_dirs") or []):
        if os.path.isdir(utils) and utils not in sys.path:
            sys.path.append(utils)
    try:
        globals().update(importlib.import_module("netlab_master").import_utils(_LIBS))
    except ImportError as exc:
        return (False, "netlab's _utils are not synced to the master ({}); run "
                       "'salt-run saltutil.sync_all'".format(exc))
    return __virtualname__


# --------------------------------------------------------------------------- helpers
def _lab():
    """The lab model from the master-side pillar (netlab_master.load_lab: the same
    rule as ``salt-run netlab.*``); a refusal with the full report when invalid."""
    return netlab_master.load_lab(__opts__)  # pylint: disable=undefined-variable


def _guard(func):
    """A refusal returns ``{'Error': message, 'retcode': 1}`` (netlab_master.guard)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return netlab_master.guard(func, (netlab_stack.StackError,))(*args, **kwargs)

    return wrapper


def _lab_locked(func):
    """Run ``func`` under the lab-wide lock (stack, unstack and bring-up change
    several nodes; deploy, restack and unstack are made of these steps). Another
    run holding it: wait ``netlab_lock_wait`` seconds (master option), then refuse
    naming it."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        lab = _lab()
        command = "salt-run devstack.{} {}".format(func.__name__, " ".join(
            ["{}".format(a) for a in args]
            + ["{}={}".format(k, v) for k, v in sorted(kwargs.items())
               if not k.startswith("__")])).strip()
        try:
            with netlab_lock.hold(lab.netnode.state_dir, "lab", command,
                                  wait=netlab_master.lock_wait(__opts__)):  # pylint: disable=undefined-variable
                return func(*args, **kwargs)
        except netlab_lock.LockBusy as exc:
            return netlab_master.refuse(exc)

    return wrapper


def _fire(tag, data):
    """Fire an event; one that is lost is a warning in the log and the run summary."""

    def fire(payload, event_tag):
        with salt.utils.event.get_master_event(
                __opts__, __opts__["sock_dir"], listen=False) as bus:  # pylint: disable=undefined-variable
            return bus.fire_event(payload, event_tag)

    netlab_run.fire_checked(fire, tag, data, lambda: _lab().netnode.state_dir, log)


def _progress(text):
    """A line on the runner's console (``salt-run``) and in the master log."""
    log.info("netlab: %s", text)
    try:
        __jid_event__.fire_event({"message": text}, "progress")  # pylint: disable=undefined-variable
    except Exception:  # pylint: disable=broad-except
        pass


def _finish(ret):
    """Both exit channels (netlab_master.finish)."""
    return netlab_master.finish(__context__, ret)  # pylint: disable=undefined-variable


def _run_failure(lab, step, cause, node=None, log=None, log_tail=None):
    """Record a failure in this run (later steps leave the node out) and fire it."""
    entry = netlab_run.add_failure(lab.netnode.state_dir, step, cause, node=node, log=log,
                                   log_tail=log_tail)
    _fire("netlab/run/failed", {k: entry[k] for k in ("step", "node", "cause", "log")})
    return entry


def _excluded(lab):
    return netlab_run.excluded(netlab_run.read(lab.netnode.state_dir))


def _client():
    return salt.client.get_local_client(mopts=__opts__)  # pylint: disable=undefined-variable


def _job_kwargs(lab, targets):
    return netlab_master.job_kwargs(__opts__, lab, targets)  # pylint: disable=undefined-variable


def _states(lab):
    return {r["node"]: r["state"] for r in netlab_lifecycle.status(lab)}


def _set(lab, node_id, state, **kwargs):
    """Move a node in the lifecycle and fire ``netlab/node/<id>/<state>``."""
    try:
        rec = netlab_lifecycle.set_state(lab, node_id, state, **kwargs)
    except netlab_lifecycle.LifecycleError as exc:
        log.warning("netlab: %s", exc)
        return
    _fire("netlab/node/{}/{}".format(node_id, state),
          {"node": node_id, "state": state, "result": kwargs.get("result"),
           "reason": kwargs.get("reason"), "generation": rec.get("generation")})


def _keys():
    """Every minion key this master knows: ``{accepted: [...], all: set}``."""
    with salt.wheel.WheelClient(__opts__) as wheel:  # pylint: disable=undefined-variable
        listed = wheel.cmd("key.list_all", print_event=False) or {}
    every = set()
    for kind in ("minions", "minions_pre", "minions_rejected", "minions_denied"):
        every.update(listed.get(kind, []) or [])
    return {"accepted": list(listed.get("minions", []) or []), "all": every}


def _timeout(timeout):
    if timeout in (None, ""):
        return max(int(__opts__.get("timeout", 5)), 30)  # pylint: disable=undefined-variable
    return int(timeout)


def _ping(targets, timeout):
    """Node ids (of ``targets``) whose minion answers (only accepted keys are asked)."""
    accepted = set(_keys()["accepted"])
    targets = [n for n in targets if n in accepted]
    if not targets:
        return []
    ret = _client().cmd(targets, "test.ping", tgt_type="list", timeout=timeout)
    return [n for n in targets if ret.get(n) is True]


def _publish(lab, targets, fun, kwarg, timeout):
    """Run ``fun`` on every target in one job; ``{node: return or None}``. Events a
    node could not fire on its way become warnings of the run (log and summary)."""
    out = {n: None for n in targets}
    for chunk in _client().cmd_iter(targets, fun, kwarg=kwarg, tgt_type="list",
                                    timeout=timeout, **_job_kwargs(lab, targets)):
        for minion, data in chunk.items():
            if minion in out and isinstance(data, dict):
                out[minion] = data.get("ret")
    lost = netlab_run.lost_on_nodes(out)
    if lost:
        state_dir = lab.netnode.state_dir
        for text in lost:
            log.warning("netlab: %s", text)
            netlab_run.add_warning(state_dir, text)
    return out


# --------------------------------------------------------------------------- steps
@_guard
def plan(role=None, nodes=None, force=False):
    """
    What ``devstack.stack`` would do: ``{stack: [...], ready: [...]}``.

    CLI Example:

    .. code-block:: bash

        salt-run devstack.plan role=compute
    """
    lab = _lab()
    targets = netlab_stack.wave(lab, role=role, nodes=nodes)
    to_stack, ready = netlab_stack.plan(targets, _states(lab), force=force)
    return {"stack": to_stack, "ready": ready}


@_guard
@_lab_locked
def stack(role=None, nodes=None, force=False, timeout=None, lines=25):
    """
    Run ``stack.sh`` on a wave of nodes at the same time; record the outcomes.

    role
        ``controller``, ``compute`` (every non-controller node) or ``all``
        (default; controller first is NOT implied: use two calls, as
        ``netlab.deploy`` does).
    nodes
        explicit node ids (list or comma-separated) instead of a role.
    force
        stack nodes that are already ``ready`` too (default: only the others).
    timeout
        seconds to wait for a minion that stops answering (a running stack.sh
        keeps the job alive however long it takes); default: the master's
        ``timeout`` option, at least 30.

    Returns ``{result, stacked, failed, skipped, nodes: {id: outcome}}``; fails
    (non-zero exit) when any node of the wave failed, after all of them ended.

    CLI Example:

    .. code-block:: bash

        salt-run devstack.stack role=compute
        salt-run devstack.stack nodes=nuc2 force=True
    """
    lab = _lab()
    force = netlab_master.flag(force, name="force")
    ret = netlab_waves.stack(lab, _wave_ops(lab, _timeout(timeout)), role=role, nodes=nodes,
                             force=force, lines=lines)
    return _finish(ret)


def _wave_ops(lab, timeout):
    """The master's side of a stack wave (netlab_waves.Ops)."""
    return netlab_waves.Ops(
        states=lambda: _states(lab), excluded=lambda: _excluded(lab),
        ping=lambda nodes: _ping(nodes, timeout=timeout),
        publish=lambda nodes, fun, kwarg: _publish(lab, nodes, fun, kwarg, timeout),
        record=lambda node, state, **kw: _set(lab, node, state, **kw),
        failure=lambda step, cause, node, log_, tail: _run_failure(
            lab, step, cause, node=node, log=log_, log_tail=tail),
        progress=_progress, fire=_fire, sync=lambda nodes: _sync(lab, nodes, timeout))


def _sync(lab, nodes, timeout):
    """netlab's modules and a fresh pillar on ``nodes`` before their states run."""
    _client().cmd(nodes, "saltutil.sync_all", tgt_type="list", timeout=timeout,
                  **_job_kwargs(lab, nodes))
    _client().cmd(nodes, "saltutil.refresh_pillar", kwarg={"wait": True},
                  tgt_type="list", timeout=timeout, **_job_kwargs(lab, nodes))


@_guard
@_lab_locked
def bring_up(timeout=600, ping_timeout=None, dry_run=False):
    """
    Get every node of the lab up, as ``netlab.deploy`` needs it: nodes whose
    role changed since they were stacked are reimaged (``netlab.reimage``), new
    nodes (never set up) are reimaged (their root is created), known nodes that
    do not answer are powered on (``netlab.boot``), nodes that answer are left
    alone. Waits at most ``timeout`` seconds for minions to start.
    ``dry_run=True``: only says which nodes would be reimaged or booted, and why.

    Returns ``{plan: {reimage, boot, up, reasons}, reimage: ..., boot: ...}``;
    fails when a node did not come up (the others are still brought up).

    CLI Example:

    .. code-block:: bash

        salt-run devstack.bring_up timeout=900
        salt-run devstack.bring_up dry_run=True
    """
    lab = _lab()
    dry_run = netlab_master.flag(dry_run, False, name="dry_run")
    ops = _wave_ops(lab, _timeout(ping_timeout))
    ret = netlab_waves.bring_up(
        lab, ops, lambda action, nodes: netlab_master_ops.bring_up(
            __opts__, lab, action, nodes, timeout),  # pylint: disable=undefined-variable
        netlab_stack.load_results(lab.netnode.state_dir), dry_run=dry_run)
    return _finish(ret)


@_guard
def forget_removed(dry_run=False):
    """
    Nodes removed from pillar: delete their minion keys from this master, so a
    machine that was a lab node cannot come back as one. A removed node is one
    the lifecycle or the stack results still know but ``netlab:nodes`` no longer
    lists (other minions, e.g. the networking node's, are never touched). Their
    boot answer and NFS export go away with ``netlab.netnode``; their root
    directory is kept (delete ``<storage>/roots/<id>`` yourself).

    CLI Example:

    .. code-block:: bash

        salt-run devstack.forget_removed dry_run=True
    """
    lab = _lab()
    known = set(netlab_lifecycle.read(lab)["nodes"]) | set(
        netlab_stack.load_results(lab.netnode.state_dir))
    removed = sorted(n for n in known if n not in lab.nodes and n != lab.netnode.id)
    deleted = [n for n in removed if n in _keys()["all"]]
    dry_run = netlab_master.flag(dry_run, name="dry_run")
    if deleted and not dry_run:
        with salt.wheel.WheelClient(__opts__) as wheel:  # pylint: disable=undefined-variable
            for node_id in deleted:
                wheel.cmd("key.delete", [node_id], print_event=False)
                _progress("{}: removed from pillar, minion key deleted".format(node_id))
                _fire("netlab/node/{}/removed".format(node_id), {"node": node_id})
    return {"removed": removed, "keys_deleted": deleted, "dry_run": dry_run}


@_guard
@_lab_locked
def unstack(role=None, nodes=None, timeout=None, lines=25, computes_only=None):
    """
    Run ``unstack.sh`` on a wave of nodes at the same time (``role``: controller,
    compute or all; or explicit ``nodes``; ``computes_only``: role compute). Stacked
    nodes go back to ``up``; a node whose ``unstack.sh`` fails is a failure of the
    run (a restack leaves it out of its later steps).

    CLI Example:

    .. code-block:: bash

        salt-run devstack.unstack role=compute
    """
    lab = _lab()
    if netlab_master.flag(computes_only, name="computes_only") and not nodes:
        role = "compute"
    ret = netlab_waves.unstack(lab, _wave_ops(lab, _timeout(timeout)), role=role, nodes=nodes,
                               lines=lines)
    return _finish(ret)


@_guard
def discover(timeout=None, lines=25):
    """
    Run ``tools/discover_hosts.sh`` on the controller (nova maps new computes
    into its cell). Skipped, with a comment, when the controller is not ready.

    CLI Example:

    .. code-block:: bash

        salt-run devstack.discover
    """
    lab = _lab()
    timeout = _timeout(timeout)
    ctl = lab.controller.id
    if _states(lab).get(ctl) != "ready":
        return {"result": True, "comment": "controller {} is not ready: discovery skipped"
                .format(ctl), "skipped": True}
    returns = _publish(lab, [ctl], "devstack.discover", {"lines": int(lines)}, timeout)
    data = returns.get(ctl)
    ok = isinstance(data, dict) and bool(data.get("result"))
    _progress("host discovery on {}: {}".format(ctl, "done" if ok else "FAILED"))
    _fire("netlab/stack/discover/{}".format("finished" if ok else "failed"),
          {"node": ctl, "result": ok})
    return _finish({"result": ok, "node": ctl, "return": data})


@_guard
def summary(fail=True, stacked=True):
    """
    The run summary: which nodes are ready (or up, when stack.sh was not run),
    which failed (with the last lines of their stack.sh log), which are not
    stacked, and the first failure of this run with its cause and log. With
    ``fail=True`` (the default) the call fails when anything failed (or, when
    ``stacked``, a node is not ready), so an orchestration ends red.

    CLI Example:

    .. code-block:: bash

        salt-run devstack.summary
    """
    lab = _lab()
    stacked = netlab_master.flag(stacked, True, name="stacked")
    out = netlab_stack.summary(lab, netlab_lifecycle.status(lab),
                               netlab_stack.load_results(lab.netnode.state_dir))
    record = netlab_run.read(lab.netnode.state_dir)
    lines = out["text"].splitlines()
    if not stacked:
        up = [n for n, st in out["pending"].items() if st == "up"]
        lines[0] = "netlab deploy: stack.sh not run; {} of {} nodes up with their " \
            "local.conf".format(len(up) + len(out["ready"]), len(lab.nodes))
        out["pending"] = {n: st for n, st in out["pending"].items() if st != "up"}
    lines += netlab_run.summary_lines(record)
    out["text"] = "\n".join(lines)
    out["first_failure"] = netlab_run.first_failure(record)
    for line in lines:
        _progress(line)
    _fire("netlab/deploy/summary", {k: out[k] for k in ("ready", "failed", "pending")})
    bad = out["failed"] or out["pending"] or out["first_failure"]
    out["result"] = not (netlab_master.flag(fail, True, name="fail") and bad)
    out["comment"] = "first failure: " + netlab_run.describe(out["first_failure"]) \
        if out["first_failure"] else lines[0]
    return _finish(out)


@_guard
def begin(kind="deploy"):
    """
    Start a new orchestration run (``deploy``, ``restack`` or ``unstack``): later steps leave
    out the nodes that fail in it, and ``devstack.summary`` names its first
    failure. The orchestrations call this first.

    CLI Example:

    .. code-block:: bash

        salt-run devstack.begin kind=deploy
    """
    lab = _lab()
    record = netlab_run.begin(lab.netnode.state_dir, str(kind))
    _fire("netlab/{}/started".format(kind), {"id": record["id"]})
    return _finish({"result": True, "id": record["id"], "kind": kind})


def _state_job_failures(target, sls, since=None):
    """Failing states of the newest ``state.sls``/``state.apply`` job of ``sls`` on
    ``target`` in the master's job cache, started after ``since`` (a timestamp;
    ``[]`` when it holds none)."""
    jobs = __salt__["jobs.list_jobs"](  # pylint: disable=undefined-variable
        search_function="state.sls,state.apply", search_target=target) or {}
    first = netlab_run.jid_of(since) if since else ""
    newest = sorted((jid for jid, job in jobs.items() if str(jid) >= first and
                     netlab_run.job_applies(job.get("Arguments"), sls)), reverse=True)
    for jid in newest[:1]:
        data = __salt__["jobs.lookup_jid"](jid)  # pylint: disable=undefined-variable
        return netlab_run.state_failures(netlab_run.job_return(data, target))
    return []


@_guard
def step_failed(step, sls=None, target=None):
    """
    Record that a whole-lab step (the networking node's states, the image) failed,
    with the first failing state and its comment as the cause, so the summary
    names it. The orchestrations call this through ``onfail``.

    CLI Example:

    .. code-block:: bash

        salt-run devstack.step_failed step=image sls=netlab.image
    """
    lab = _lab()
    target = target or lab.netnode.id
    record = netlab_run.read(lab.netnode.state_dir)
    earlier = netlab_run.blocked(record)
    if earlier:  # this step did not run because of that one: nothing to add
        return _finish({"result": True, "recorded": None,
                        "comment": "not run: " + netlab_run.describe(earlier)})
    failures = []
    if sls:
        try:
            failures = _state_job_failures(target, sls, since=(record or {}).get("started"))
        except Exception as exc:  # pylint: disable=broad-except
            log.warning("netlab: reading the job cache for %s failed: %s", sls, exc)
    if failures:
        cause = "state {}: {}".format(failures[0]["id"], failures[0]["comment"])
    else:
        cause = "{} failed on {} (its failing states are in the output above; " \
            "re-run: salt {} state.apply {})".format(sls or step, target, target, sls or step)
    first, _, rest = cause.partition("\n")
    entry = _run_failure(lab, step, first.strip()[:400], log=netlab_run.log_path(cause),
                         log_tail=rest)
    _progress(netlab_run.describe(entry) + "; no node step runs")
    return _finish({"result": True, "recorded": entry})


@_guard
@_lab_locked
def prepare(nodes=None, sls="netlab.node", checkout=True, timeout=None):
    """
    The node step of ``netlab.deploy``/``netlab.restack``: sync netlab's modules,
    refresh pillar and apply ``netlab.node`` (stack user, DevStack checkout,
    ``local.conf``) on every node that is up, in one job. Nodes that failed
    earlier in this run are left out; a node whose states fail, or whose minion
    does not answer, is marked ``failed`` with the first failing state as the
    reason, and later steps leave it out too. ``checkout=False`` leaves the
    DevStack checkout, and the repositories checked out from the LAN cache's git
    mirror, as they are.

    CLI Example:

    .. code-block:: bash

        salt-run devstack.prepare
        salt-run devstack.prepare nodes=cmp1 checkout=False
    """
    lab = _lab()
    checkout = netlab_master.flag(checkout, True, name="checkout")
    return _finish(netlab_waves.prepare(lab, _wave_ops(lab, _timeout(timeout)), nodes=nodes,
                                        sls=sls, checkout=checkout))
