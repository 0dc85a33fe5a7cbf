"""
A stack wave: ``stack.sh`` on several nodes at once, the pipeline behind
``salt-run devstack.stack`` (and ``unstack.sh``'s, behind ``devstack.unstack``),
with everything that touches Salt passed in.

Which nodes (:func:`netlab_stack.wave` and :func:`netlab_stack.plan`), leaving
out the nodes that failed earlier in this run, refusing to stack computes before
their controller is ready, marking the answering nodes ``stacking``, one job for
all of them, then each node's outcome recorded (``ready`` or ``failed`` with the
log tail) once every node of the wave has ended.
"""

import time

import netlab_run
import netlab_stack

# lifecycle states from which a node is first marked ``up`` (its minion answered)
# before it can go to ``stacking``
NOT_YET_UP = ("registered", "booting", "reimaging")


class Ops:
    """What a wave uses of the master.

    ``states()``: node -> lifecycle state; ``excluded()``: nodes that failed
    earlier in this run; ``ping(nodes)``: the nodes whose minion answers;
    ``publish(nodes, fun, kwarg)``: one job, node -> return (``None``: no
    answer); ``record(node, state, result=None, reason=None)``: lifecycle state
    + event; ``failure(step, cause, node, log, log_tail)``: into the run record;
    ``progress(text)``: a line on the console; ``fire(tag, data)``: an event;
    ``sync(nodes)``: sync netlab's modules to them and refresh their pillar.
    """

    def __init__(self, states, excluded, ping, publish, record, failure, progress, fire,
                 sync=None, clock=time.time):
        self.states, self.excluded, self.ping, self.publish = states, excluded, ping, publish
        self.record, self.failure, self.progress, self.fire = record, failure, progress, fire
        self.sync, self.clock = sync, clock


def _blocked(lab, ops, ret, to_stack, ready, states, excluded):
    """The comment when nothing can be stacked now (``None``: go on)."""
    if not to_stack:
        return "nothing to stack: {} ready{}".format(
            ", ".join(ready) or "no node", "; left out (failed earlier): " +
            ", ".join(ret["left_out"]) if ret["left_out"] else "")
    ctl = lab.controller.id
    if ctl not in to_stack and states.get(ctl) != netlab_stack.READY:
        # computes register with the controller's services: stack it first
        why = "failed earlier in this run" if ctl in excluded else \
            "is not ready ({})".format(states.get(ctl, "registered"))
        ret.update(result=False, skipped=to_stack + ready)
        return "not stacking {}: the controller {} {}".format(", ".join(to_stack), ctl, why)
    return None


def _run(lab, ops, to_stack, ready, states, wave_name, lines):
    """Mark, publish, collect: ``{node: outcome}`` of every node of ``to_stack``."""
    answering = ops.ping(to_stack)
    outcomes = {}
    for node_id in to_stack:
        if node_id not in answering:
            outcomes[node_id] = netlab_stack.outcome(node_id, None, lab.node(node_id).role)
            continue
        if states.get(node_id) in NOT_YET_UP:
            ops.record(node_id, "up", result="minion answers")
        ops.record(node_id, "stacking", result="stack.sh running")
    running = [n for n in to_stack if n in answering]
    ops.progress("stacking {} ({} wave){}".format(
        ", ".join(running) or "nothing", wave_name,
        "; skipping ready: " + ", ".join(ready) if ready else ""))
    ops.fire("netlab/stack/{}/started".format(wave_name),
             {"nodes": running, "skipped": ready, "started": ops.clock()})
    if running:
        for node_id, data in ops.publish(running, "devstack.stack",
                                         {"lines": int(lines)}).items():
            outcomes[node_id] = netlab_stack.outcome(node_id, data, lab.node(node_id).role,
                                                     secrets=netlab_stack.node_secrets(
                                                         lab, node_id))
    return outcomes


def _record(lab, ops, ret, to_stack, outcomes):
    for node_id in to_stack:
        out = outcomes[node_id]
        ret["nodes"][node_id] = out
        if out["result"]:
            ret["stacked"].append(node_id)
            ops.record(node_id, "ready", result=netlab_stack.result_text(out))
            ops.progress("{}: ready ({})".format(node_id, netlab_stack.result_text(out)))
        else:
            ret["failed"].append(node_id)
            ops.record(node_id, "failed", reason=out["reason"])
            ops.failure("stack.sh", out["reason"], node_id, out.get("log"),
                        out.get("log_tail"))
            ops.progress("{}: FAILED: {}".format(node_id, out["reason"]))
    netlab_stack.save_results(lab.netnode.state_dir, list(outcomes.values()))


def stack(lab, ops, role=None, nodes=None, force=False, lines=25):
    """Run one wave (``role``: controller, compute or all; or explicit ``nodes``;
    ``force``: ready nodes too). Returns ``{result, stacked, failed, skipped,
    left_out, nodes: {id: outcome}, comment}``."""
    targets = netlab_stack.wave(lab, role=role, nodes=nodes)
    states = ops.states()
    to_stack, ready = netlab_stack.plan(targets, states, force=force)
    excluded = ops.excluded()  # failed earlier in this run: left out
    ret = {"result": True, "stacked": [], "failed": [], "skipped": ready, "nodes": {},
           "left_out": [n for n in to_stack if n in excluded]}
    to_stack = [n for n in to_stack if n not in excluded]
    ret["comment"] = _blocked(lab, ops, ret, to_stack, ready, states, excluded)
    if ret["comment"]:
        ops.progress(ret["comment"])
        return ret
    wave_name = role or ("nodes" if nodes else "all")
    outcomes = _run(lab, ops, to_stack, ready, states, wave_name, lines)
    _record(lab, ops, ret, to_stack, outcomes)
    ops.fire("netlab/stack/{}/finished".format(wave_name),
             {"stacked": ret["stacked"], "failed": ret["failed"], "skipped": ready})
    ret["result"] = not ret["failed"]
    ret["comment"] = "stack.sh failed on {}".format(", ".join(ret["failed"])) \
        if ret["failed"] else "stacked {}".format(", ".join(ret["stacked"]))
    if ret["left_out"]:
        ret["comment"] += "; left out (failed earlier): " + ", ".join(ret["left_out"])
    return ret


def unstack(lab, ops, role=None, nodes=None, lines=25):
    """``unstack.sh`` on a wave of nodes at once (``role`` or explicit ``nodes``).
    Unstacked nodes go back to ``up``; a node whose ``unstack.sh`` failed (or that
    did not answer) is a failure of the run, so a restack leaves it out of its
    checkout and ``stack.sh`` steps (``stack.sh`` over services ``unstack.sh``
    could not stop) and the summary names it with its log. Returns ``{result,
    unstacked, failed, nodes: {id: return}}``."""
    targets = netlab_stack.wave(lab, role=role, nodes=nodes)
    answering = ops.ping(targets)
    returns = ops.publish(answering, "devstack.unstack", {"lines": int(lines)}) \
        if answering else {}
    states = ops.states()
    ret = {"result": True, "unstacked": [], "failed": [], "nodes": {}}
    for node_id in targets:
        data = returns.get(node_id)
        if isinstance(data, dict) and data.get("result"):
            ret["unstacked"].append(node_id)
            if states.get(node_id) in (netlab_stack.READY, "stacking", "failed"):
                ops.record(node_id, "up", result="unstacked")
            ret["nodes"][node_id] = data
            continue
        ret["failed"].append(node_id)
        out = netlab_stack.outcome(node_id, data, script="unstack.sh",
                                   secrets=netlab_stack.node_secrets(lab, node_id))
        ret["nodes"][node_id] = dict(data if isinstance(data, dict) else {}, result=False,
                                     comment=out["reason"], log_tail=out["log_tail"])
        ops.failure("unstack.sh", out["reason"], node_id, out["log"], out["log_tail"])
    ops.progress("unstacked {}{}".format(", ".join(ret["unstacked"]) or "nothing",
                                         "; failed: " + ", ".join(ret["failed"])
                                         if ret["failed"] else ""))
    ret["result"] = not ret["failed"]
    return ret


def _apply(ops, ret, answering, sls, checkout):
    """``sls`` on every answering node in one job; each node's result into ``ret``."""
    ops.sync(answering)
    kwarg = {"mods": sls}
    if not checkout:
        kwarg["pillar"] = {"netlab_checkout": False}
    ops.progress("applying {} on {}".format(sls, ", ".join(answering)))
    ops.fire("netlab/prepare/started", {"nodes": answering, "sls": sls})
    returns = ops.publish(answering, "state.apply", kwarg)
    for node_id in answering:
        failures = netlab_run.state_failures(returns.get(node_id))
        if failures:
            reason = "{}: state {}: {}".format(sls, failures[0]["id"],
                                               failures[0]["comment"].splitlines()[0]
                                               if failures[0]["comment"] else "")
            ret["failed"].append(node_id)
            ret["nodes"][node_id] = {"result": False, "reason": reason, "failures": failures}
        else:
            ret["prepared"].append(node_id)
            ret["nodes"][node_id] = {"result": True}
            ops.fire("netlab/node/{}/prepared".format(node_id),
                     {"node": node_id, "result": "{} applied".format(sls)})


def prepare(lab, ops, nodes=None, sls="netlab.node", checkout=True):
    """The node step of a deploy: ``sls`` (stack user, DevStack checkout,
    local.conf) on every node that is up, in one job, after syncing modules and
    pillar. Nodes that failed earlier in this run are left out; a node whose
    states fail or whose minion does not answer is ``failed`` (first failing state
    as the reason) and recorded in the run. Returns ``{result, prepared, failed,
    left_out, nodes, comment}``."""
    targets = netlab_stack.wave(lab, nodes=nodes)
    excluded = ops.excluded()
    ret = {"result": True, "prepared": [], "failed": [], "nodes": {},
           "left_out": [n for n in targets if n in excluded]}
    targets = [n for n in targets if n not in excluded]
    answering = ops.ping(targets)
    for node_id in targets:
        if node_id not in answering:
            ret["failed"].append(node_id)
            ret["nodes"][node_id] = {"result": False, "reason": "no answer from the minion "
                                     "(is it up? `salt {} test.ping`)".format(node_id)}
    if answering:
        _apply(ops, ret, answering, sls, checkout)
    for node_id in ret["failed"]:
        reason = ret["nodes"][node_id]["reason"]
        ops.record(node_id, "failed", reason=reason)
        detail = "\n".join("{}: {}".format(f["id"], f["comment"])
                           for f in ret["nodes"][node_id].get("failures", []))
        ops.failure("node states", reason, node_id, None, detail)
        ops.progress("{}: FAILED: {}".format(node_id, reason))
    ret["result"] = not ret["failed"]
    ret["comment"] = "{} applied on {}{}{}".format(
        sls, ", ".join(ret["prepared"]) or "no node",
        "; failed: " + ", ".join(ret["failed"]) if ret["failed"] else "",
        "; left out (failed earlier): " + ", ".join(ret["left_out"]) if ret["left_out"]
        else "")
    ops.progress(ret["comment"])
    return ret


def _bring_up_action(ops, ret, action, nodes, run):
    """``run(action, nodes)`` (netlab.reimage or netlab.boot); every node of
    ``nodes`` that did not come up is recorded as a failure of this run."""
    try:
        ret[action] = run(action, nodes)
    except Exception as exc:  # pylint: disable=broad-except
        # one failed action must not keep the other nodes from being brought up
        ret[action] = {"error": str(exc)}
        ret["result"] = False
        ops.progress("{} of {} failed: {}".format(action, ", ".join(nodes), exc))
    out = ret[action] or {}
    nodes_ret = out.get("nodes") or {}
    for node_id in nodes:
        res = nodes_ret.get(node_id) or {}
        if res.get("state") != "up":
            ops.failure(action, res.get("reason") or out.get("error") or out.get("Error")
                        or "did not come up", node_id, None, None)


def bring_up(lab, ops, run, results, dry_run=False):
    """Get every node up as a deploy needs it: reimage nodes that are new or whose
    role changed since they were stacked (``results``: netlab_stack's saved
    outcomes), boot known nodes that do not answer, leave answering ones alone.
    ``run(action, nodes)`` does one reimage or boot and returns its outcome
    (``{nodes: {id: {state, reason}}}``). Returns ``{plan, reimage, boot, result,
    comment}``; ``result`` is False when a node did not come up. ``dry_run``:
    only the plan (which node would be reimaged or booted, and why); nothing is
    powered, reset or recorded."""
    states = ops.states()
    todo = netlab_stack.bring_up_plan(lab, states, ops.ping(list(lab.nodes)),
                                      netlab_stack.stacked_roles(results))
    would = ["{}: {} ({})".format(n, "reimage" if n in todo["reimage"] else "boot",
                                  todo["reasons"][n]) for n in todo["reimage"] + todo["boot"]]
    if dry_run:
        return {"plan": todo, "result": True, "dry_run": True,
                "comment": "dry run, nothing changed. up: {}; would reimage: {}; "
                           "would boot: {}".format(", ".join(todo["up"]) or "-",
                                                   ", ".join(todo["reimage"]) or "-",
                                                   ", ".join(todo["boot"]) or "-"),
                "would": would}
    for node_id in todo["up"]:
        if states.get(node_id) in NOT_YET_UP:
            ops.record(node_id, "up", result="minion answers")
    ret = {"plan": todo, "result": True}
    for line in would:
        ops.progress(line)
    for action in ("reimage", "boot"):
        if todo[action]:
            _bring_up_action(ops, ret, action, todo[action], run)
    down = [n for n, st in ops.states().items()
            if n in todo["reimage"] + todo["boot"] and st not in ("up", "ready")]
    if down:
        ret["result"] = False
    ret["comment"] = "up: {}; reimaged: {}; booted: {}{}".format(
        ", ".join(todo["up"]) or "-", ", ".join(todo["reimage"]) or "-",
        ", ".join(todo["boot"]) or "-",
        "; NOT up: " + ", ".join(down) if down else "")
    ops.progress(ret["comment"])
    return ret
