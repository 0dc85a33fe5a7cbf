"""
The master's facilities as collaborators of netlab's pipelines: its event bus,
calls to minions through its local client, power drivers, the lab and node
locks, the NFS exports refresh after a root reset, and the bring-up pipelines
(:mod:`netlab_bringup`) wired to them. Both runners use these (``salt-run
netlab.reimage`` and ``devstack.bring_up`` run the same code, not each other).

Runs only on the master (it imports Salt's client and event modules when used);
``opts`` is the runner's ``__opts__``.
"""

import contextlib
import logging
import os

import netlab_bringup
import netlab_lifecycle
import netlab_lock
import netlab_master
import netlab_power
import netlab_roots
import netlab_roots_keys
import netlab_run
import netlab_slice

log = logging.getLogger(__name__)


def event_bus(opts, listen=True):
    """The master's event bus (``listen``: to read events from it)."""
    import salt.utils.event  # pylint: disable=import-outside-toplevel

    return salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=listen)


def fire(bus, node_id, state, state_dir=None, **data):
    """Fire ``netlab/node/<id>/<state>``; a lost event (the bus refused it or was
    not reachable) is a warning in the log and, with ``state_dir``, in the run
    summary (:func:`netlab_run.fire_checked`)."""
    netlab_run.fire_checked(bus.fire_event, "netlab/node/{}/{}".format(node_id, state),
                            dict(data, node=node_id, state=state), state_dir, log)


def record(lab, bus, node_id, state, **kw):
    """Move a node in the lifecycle and fire ``netlab/node/<id>/<state>``."""
    rec = netlab_lifecycle.set_state(lab, node_id, state, **kw)
    fire(bus, node_id, state, state_dir=lab.netnode.state_dir, result=kw.get("result"),
         reason=kw.get("reason"), generation=rec.get("generation"))
    return rec


def minion_call(opts, timeout=30, lab=None):
    """``call(node, fun, *args)`` through the master's local client (made on first
    use); ``lab`` sets how long a node may take to say its job still runs
    (netlab_master.job_kwargs)."""
    import salt.client  # pylint: disable=import-outside-toplevel

    clients = []

    def call(node_id, fun, *args):
        if not clients:  # made on first use: most drivers never need it
            clients.append(salt.client.get_local_client(mopts=opts))
        client = clients[0]
        if fun in ("system.reboot", "system.poweroff"):
            # the minion may die before it answers: it must answer a ping first,
            # then the shutdown is sent without waiting for a reply
            ping = client.cmd(node_id, "test.ping", timeout=timeout)
            if ping.get(node_id) is not True:
                raise RuntimeError("minion {} did not answer test.ping within {} s".format(
                    node_id, timeout))
            return client.cmd_async(node_id, fun, list(args))
        ret = client.cmd(node_id, fun, list(args), timeout=timeout,
                         **netlab_master.job_kwargs(opts, lab, [node_id]))
        if node_id not in ret:
            raise RuntimeError("minion {} did not answer {} within {} s".format(
                node_id, fun, timeout))
        return ret[node_id]

    return call


def driver(opts, lab, node_id):
    """A node's power driver with the master's minion calls (and qemu, for tests)."""
    kw = {"minion_call": minion_call(opts, lab=lab)}
    if opts.get("netlab_qemu"):
        kw["qemu"] = opts["netlab_qemu"]
    return netlab_power.driver(lab, node_id, **kw)


def take_locks(opts, stack, lab, command, nodes, lab_wide=True):
    """Enter the lab lock (``lab_wide``) and the locks of ``nodes`` on ``stack``
    (a contextlib.ExitStack); a busy lock refuses the run, naming its holder."""
    try:
        if lab_wide:
            stack.enter_context(netlab_lock.hold_lab(lab.netnode.state_dir, command, nodes,
                                                     wait=netlab_master.lock_wait(opts)))
        else:
            for n in sorted(set(nodes)):
                stack.enter_context(netlab_lock.hold(lab.netnode.state_dir, "node-" + n,
                                                     command, wait=netlab_master.lock_wait(opts)))
    except netlab_lock.LockBusy as exc:
        netlab_master.refuse(exc)


def exports_commands(opts, lab):
    """What :func:`refresh_exports` runs around the nfs state: ``(before, after)``
    argv lists. ``before``: master option ``netlab_exports_refresh`` (a user's
    override; default none: the state reloads ganesha itself); ``after``: the
    kernel server's ``exportfs -ra`` and ``exportfs -f`` (flush cached handles)."""
    cmds = opts.get("netlab_exports_refresh") or []
    if cmds and isinstance(cmds[0], str):
        cmds = [cmds]
    post = [["exportfs", "-ra"], ["exportfs", "-f"]] if lab.netnode.nfs_server == "kernel" \
        else []
    return [list(c) for c in cmds], post


def ganesha_outcome(res):
    """How the nfs state refreshed nfs-ganesha, from its state results:
    ``{"reloaded": bool, "restarted": reason or None, "comments": [...]}``. A
    reload that was not confirmed made the state restart ganesha (the fallback)."""
    out = {"reloaded": False, "restarted": None, "comments": []}
    for key, v in sorted((res or {}).items()):
        if not isinstance(v, dict) or not key.startswith("netlab_daemon_|-") or \
                key.rsplit("_|-", 1)[-1] not in ("reloaded", "exports_released"):
            continue
        changes = v.get("changes") or {}
        if changes.get("reloaded"):
            out["reloaded"] = True
        if changes.get("reload_failed"):
            out["restarted"] = changes["reload_failed"]
        if changes:
            out["comments"].append(v.get("comment", ""))
    return out


def refresh_exports(opts, lab):
    """After roots were reset: make the NFS server export the new directories.

    A reset replaces ``<roots_dir>/<node>`` by a new directory (a new inode), and
    a first reimage creates it; the netnode states render a missing root
    commented out. So, in this order:

    1. the commands of master option ``netlab_exports_refresh`` (a list of argv
       lists, a user's override; default: none);
    2. ``state.sls netlab.netnode.nfs`` on the networking node's minion: it
       renders the exports again; nfs-ganesha reloads them (SIGHUP) without a
       restart, a reset root's export in a reload of its own first, so every
       other node's root keeps being served (:mod:`netlab_ganesha`); when a
       reload is not confirmed the state restarts ganesha and this logs a
       warning. Master option ``netlab_exports_apply: false`` skips the state;
    3. kernel server: ``exportfs -ra`` and ``exportfs -f`` (flush cached handles).

    Returns :func:`ganesha_outcome` of the state (``None`` when it was skipped).
    """
    cmds, post = exports_commands(opts, lab)

    def run(cmd):
        rc, out, err = netlab_power._run_cmd(list(cmd), timeout=120)  # pylint: disable=protected-access
        if rc != 0:
            raise RuntimeError("`{}` failed: {}".format(" ".join(cmd), (err or out).strip()))

    for cmd in cmds:
        run(cmd)
    outcome = None
    if opts.get("netlab_exports_apply", True):
        import salt.client  # pylint: disable=import-outside-toplevel

        client = salt.client.get_local_client(mopts=opts)
        ret = client.cmd(lab.netnode.id, "state.sls", ["netlab.netnode.nfs"], timeout=300)
        if lab.netnode.id not in ret:
            raise RuntimeError("the networking node's minion {} did not answer "
                               "state.sls netlab.netnode.nfs".format(lab.netnode.id))
        res = ret[lab.netnode.id]
        if not isinstance(res, dict):
            raise RuntimeError("state.sls netlab.netnode.nfs on {}: {}".format(
                lab.netnode.id, res))
        bad = [v.get("comment", k) for k, v in res.items()
               if isinstance(v, dict) and v.get("result") is False]
        if bad:
            raise RuntimeError("state.sls netlab.netnode.nfs on {} failed: {}".format(
                lab.netnode.id, "; ".join(str(b) for b in bad)))
        outcome = ganesha_outcome(res)
        if outcome["restarted"]:
            log.warning("netlab: nfs-ganesha's reload was not confirmed (%s): it was "
                        "restarted instead", outcome["restarted"])
        elif outcome["reloaded"]:
            log.info("netlab: nfs-ganesha reloaded its exports: %s",
                     "; ".join(outcome["comments"]))
    for cmd in post:
        run(cmd)
    return outcome


def next_start(bus, wait):
    """The node the next ``salt/minion/<id>/start`` event within ``wait`` s names,
    when its data names the same minion (netlab_lifecycle.start_event_node)."""
    ev = bus.get_event(wait=wait, tag="salt/minion/", match_type="startswith", full=True)
    return netlab_lifecycle.start_event_node(ev)


def ping_confirm(opts, timeout=10):
    """``confirm(node)``: True when that minion id answers ``test.ping`` (only the
    holder of the key the master accepted for it can)."""
    import salt.client  # pylint: disable=import-outside-toplevel

    clients = []

    def confirm(node):
        if not clients:
            clients.append(salt.client.get_local_client(mopts=opts))
        try:
            ret = clients[0].cmd(node, "test.ping", timeout=timeout, tgt_type="list")
        except Exception as exc:  # pylint: disable=broad-except
            log.warning("netlab: test.ping to %s failed: %s", node, exc)
            return False
        return ret.get(node) is True

    return confirm


def master_pub(opts):
    """This master's public key, which every root netlab writes pins
    (netlab_roots_keys.write_minion_key); refused when it cannot be read."""
    path = os.path.join(opts["pki_dir"], "master.pub")
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        return netlab_master.refuse("cannot read the master's public key {} ({}): a "
                                    "node's root pins the master by it".format(
                                        path, exc.strerror))


def make_spare(lab, src=None):
    """While reimaged nodes boot: delete the roots they replaced, then make the
    spare root for the next reset (netlab_roots.prepare_spare). A failure is
    logged, not raised: the next reset then clones the image itself."""
    try:
        netlab_roots.remove_old_roots(lab)
        out = netlab_roots.prepare_spare(lab, src)
    except (netlab_roots.RootError, OSError) as exc:
        log.warning("netlab: no spare root made (the next reset clones the image): %s", exc)
        return None
    if out and out["made"]:
        log.info("netlab: spare root %s made (%s, %.1f s)", out["path"], out["method"],
                 out["seconds"])
    return out


def bringup_master(opts, lab, bus, method="auto", src=None, pub=None):
    """The master's side of netlab_bringup: lifecycle + events, roots and keys
    (pinned to ``pub``, this master's key), the NFS exports, minion start events
    confirmed by a ping."""
    builds = {}

    def reset(node, generation):
        key = netlab_roots_keys.gen_minion_keys()
        out = netlab_roots.reset_root(lab, node, netlab_slice.identity(lab, node, generation),
                                      key, method=method, src=src, master_pub=pub,
                                      defer_delete=True)
        netlab_roots_keys.preaccept_key(opts["pki_dir"], node, key[1])
        builds[node] = out.get("build")
        return out

    return netlab_bringup.Master(
        record=lambda node, state, **kw: record(lab, bus, node, state, **kw),
        fire=lambda node, state, **data: fire(bus, node, state,
                                             state_dir=lab.netnode.state_dir, **data),
        next_start=lambda wait: next_start(bus, wait),
        hint=lambda node: hint(lab, node),
        console=lambda node: netlab_power.console_tail(lab, node),
        reset=reset,
        # the new generation and its build are the node's from now on: it boots that
        # build's kernel until the next reimage, and the build is kept
        commit=lambda node, gen, text: netlab_lifecycle.set_state(
            lab, node, "reimaging", generation=gen, result=text, build=builds.get(node)),
        generation=lambda node: netlab_lifecycle.generation(lab, node),
        refresh_exports=lambda: refresh_exports(opts, lab),
        confirm=ping_confirm(opts),
        spare=lambda: make_spare(lab, src))


def drivers(opts, lab, node_ids):
    """Every node's power driver, all checked before anything changes."""
    try:
        return {n: driver(opts, lab, n) for n in node_ids}
    except netlab_power.PowerError as exc:
        return netlab_master.refuse(exc)


def bring_up(opts, lab, action, nodes, timeout, method="auto"):
    """``reimage`` or ``boot`` (netlab_bringup) ``nodes`` with the master's bus;
    a reimage runs under the lab lock and each node's lock. Every check (nodes,
    timeout, power drivers, the image) comes first: :class:`netlab_master.Refused`
    before anything changes. Returns netlab_bringup's outcome."""
    node_ids = netlab_master.node_list(lab, nodes)
    timeout = netlab_master.seconds(timeout)
    drvs = drivers(opts, lab, node_ids)
    src = None
    if action == "reimage" and any(lab.node(n).root_mode == "persistent" for n in node_ids):
        try:
            src = netlab_roots.image_rootfs(lab)
        except netlab_roots.RootError as exc:
            netlab_master.refuse(exc)
    pub = master_pub(opts) if action == "reimage" else None
    with contextlib.ExitStack() as locks:
        if action == "reimage":
            # reset, key, pre-accept, power, wait: a second run is refused, naming this
            take_locks(opts, locks, lab, "salt-run netlab.reimage {}".format(
                ",".join(node_ids)), node_ids)
        bus = event_bus(opts, listen=True)
        try:
            bus.subscribe("salt/minion/")
            pipeline = getattr(netlab_bringup, action)
            return pipeline(bringup_master(opts, lab, bus, method, src, pub), drvs, timeout)
        finally:
            bus.destroy()


def hint(lab, node_id):
    """Where to look when a node's minion does not start."""
    node = lab.node(node_id)
    if node.power_driver == "virtual":
        return "console log: {}".format(os.path.join(lab.netnode.state_dir, "vms", node_id,
                                                     "serial.log"))
    return "check the node's console: did it boot from the network?"
