"""
Bringing nodes up: the reimage and boot pipelines the ``netlab`` runner runs on
the master, with everything that touches the master passed in.

Both end the same way: power on, then wait for each minion's start event (at
most ``timeout`` seconds after its power on); a node whose minion starts is
``up``, the others ``failed`` with the reason. :func:`reimage` first resets every
node's root (new generation, new key) and has the NFS server export the new
roots once for all of them.

The collaborators (:class:`Master`) are plain callables, so the pipelines are
unit-tested with fakes; the runner builds them from the master's event bus,
pki_dir and local client.
"""

import time

import netlab_lifecycle


class Master:
    """What the pipelines use of the master.

    ``record(node, state, result=None, reason=None)``: lifecycle state + event;
    ``fire(node, state, **data)``: an event only (``action-needed``);
    ``reset(node, generation)``: new root and accepted key, returns
    ``{method, total_seconds, clone_seconds}``; ``commit(node, generation, text)``:
    the new generation is the node's identity from now on;
    ``generation(node)``: the current one; ``refresh_exports()``: the NFS server
    exports the new roots; ``next_start(wait)``: the node id of the next
    ``salt/minion/<id>/start`` event within ``wait`` seconds, or ``None``;
    ``hint(node)``: where to look when a node does not come up; ``console(node)``:
    the last lines of its console, or None; ``clock``: a monotonic clock;
    ``confirm(node)``: True when that minion id answers a ``test.ping`` (a start
    event alone can be fired by any minion; see netlab_lifecycle.wait_for_starts).
    Without ``confirm`` the start event counts. ``spare()``: delete the roots the
    resets replaced and make the spare root the next reset takes
    (netlab_roots_spare), called while the powered nodes boot; it reports its own
    failures (a reset without a spare just clones).
    """

    def __init__(self, record, fire, next_start, hint, reset=None, commit=None,
                 generation=None, refresh_exports=None, clock=time.monotonic, confirm=None,
                 console=None, spare=None):
        self.record, self.fire, self.next_start, self.hint = record, fire, next_start, hint
        self.reset, self.commit, self.generation = reset, commit, generation
        self.refresh_exports, self.clock = refresh_exports, clock
        self.confirm = confirm
        self.console = console or (lambda node: None)
        self.spare = spare or (lambda: None)


def wait_for_starts(master, deadline_for):
    """Wait for every node in ``deadline_for`` (node -> monotonic deadline) to start:
    its start event, then its answer to ``master.confirm``. Returns ``{node:
    monotonic time it was confirmed}``; nothing after the node's deadline counts."""
    return netlab_lifecycle.wait_for_starts(
        master.next_start, list(deadline_for), deadline_for,
        master.confirm or (lambda node: True), clock=master.clock)


def _power_up(master, node, driver, on):
    """Power ``node`` on (``on``) or cycle it; an action a person must take is
    fired as ``action-needed``. Returns the driver's message."""
    pw = driver.on() if on else driver.cycle()
    if not pw["done"]:
        master.fire(node, "action-needed", message=pw["message"])
    return pw["message"]


def _await(master, results, powered, timeout, after="after power on"):
    """The common tail: wait for the powered nodes, record ``up`` or ``failed``."""
    deadline = {n: t + timeout for n, t in powered.items()}
    started = wait_for_starts(master, deadline)
    for node, t_on in powered.items():
        res = results.setdefault(node, {})
        if node in started:
            secs = started[node] - t_on
            text = "minion started {:.0f} s after power on".format(secs)
            master.record(node, "up", result=text)
            res.update(state="up", result=text)
            if "generation" in res:
                res["boot_seconds"] = round(secs, 1)
        else:
            reason = "node {}: no salt/minion/{}/start event within {:.0f} s{} ({})".format(
                node, node, timeout, " " + after if after else "", master.hint(node))
            master.record(node, "failed", reason=reason)
            res.update(state="failed", reason=reason, console_tail=master.console(node))


def outcome(results):
    """``{'nodes': {id: result}, 'failed': [ids], 'retcode': 0|1}``."""
    failed = sorted(n for n, r in results.items() if r.get("state") == "failed")
    return {"nodes": results, "failed": failed, "retcode": 1 if failed else 0}


def boot(master, drivers, timeout):
    """Power on (or cycle) every node of ``drivers`` without touching its root, then
    wait for its minion: ``booting`` -> ``up`` or ``failed``. ``drivers``: node ->
    power driver. Returns :func:`outcome`."""
    results, powered = {}, {}
    for node, drv in drivers.items():
        try:
            master.record(node, "booting")
            _power_up(master, node, drv, drv.can_off_on and drv.status() != "on")
            powered[node] = master.clock()
        except Exception as exc:  # pylint: disable=broad-except
            master.record(node, "failed", reason=str(exc))
            results[node] = {"state": "failed", "reason": str(exc)}
    _await(master, results, powered, timeout, after="")
    return outcome(results)


def reimage(master, drivers, timeout):
    """Reimage every node of ``drivers`` (node -> power driver): power off, new root
    of a new generation, NFS exports refreshed once, power on, wait for the minion.
    A node that fails at any step is ``failed`` with the reason, the others go on.
    Returns :func:`outcome` with per node ``generation, method, reset_seconds,
    power, boot_seconds, seconds`` and ``result`` or ``reason``."""
    results = {}
    t0 = {}

    def failed(node, exc):
        reason = str(exc)
        if not reason.startswith("node {}".format(node)):
            reason = "node {}: {}".format(node, reason)
        master.record(node, "failed", reason=reason)
        results[node] = {"state": "failed", "reason": reason}

    reset_ok = []
    for node, drv in drivers.items():  # 1. every node down, fresh root, new key
        gen = master.generation(node) + 1
        t0[node] = master.clock()
        results[node] = {"generation": gen}
        try:
            master.record(node, "reimaging", result="generation {}".format(gen))
            if drv.can_off_on:
                drv.off()
            reset = master.reset(node, gen)
            results[node].update(method=reset["method"], reset_seconds=reset["total_seconds"])
            master.commit(node, gen, "root reset ({}, {:.1f} s)".format(
                reset["method"], reset["clone_seconds"]))
            reset_ok.append(node)
        except Exception as exc:  # pylint: disable=broad-except
            failed(node, exc)
    was_reset = list(reset_ok)
    if reset_ok:  # 2. the NFS server exports the new directories (once for all)
        try:
            master.refresh_exports()
        except Exception as exc:  # pylint: disable=broad-except
            for node in reset_ok:
                failed(node, "NFS exports not refreshed: {}".format(exc))
            reset_ok = []
    powered = {}
    for node in reset_ok:  # 3. power on
        drv, res = drivers[node], results[node]
        try:
            master.record(node, "booting", result="root reset ({}, {:.1f} s)".format(
                res["method"], res["reset_seconds"]))
            res["power"] = _power_up(master, node, drv, drv.can_off_on)
            powered[node] = master.clock()
        except Exception as exc:  # pylint: disable=broad-except
            failed(node, exc)
    if was_reset:  # old roots deleted, the next reset's root made, while nodes boot
        master.spare()
    _await(master, results, powered, timeout)  # 4. wait for the minions
    for node, res in results.items():
        res["seconds"] = round(master.clock() - t0[node], 1)
    return outcome(results)
