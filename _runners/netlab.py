"""
netlab lifecycle runner: runs on the salt-master, which is the networking node.

The master has what the lifecycle needs: its event bus (minion start events), its
``pki_dir`` (pre-seeded minion keys) and the storage with the node roots. The
logic is in ``_utils/netlab_{roots,power,lifecycle}.py``; this runner reads the
lab, wires the master's facilities in, and fires events under
``netlab/node/<id>/<state>`` (follow them with ``salt-run state.event
'netlab/*' pretty=True``).

The lab pillar: compiled for the master's own id (``<id>_master`` in an
orchestration) and, if that has no ``netlab``, for the networking node's minion
id (master option ``netlab_pillar_id``, default: the master id without
``_master``). Every function also takes ``pillar=`` (the ``netlab`` value).

CLI examples:

.. code-block:: bash

    salt-run netlab.status
    salt-run netlab.reimage nuc2,nuc3 timeout=600
    salt-run netlab.power nuc1 cycle
    salt-run netlab.keys
"""

import contextlib
import functools
import logging
import os
import sys
import time

import salt.client
import salt.pillar
import salt.utils.event

log = logging.getLogger(__name__)

__virtualname__ = "netlab"

try:
    import netlab_lab
    import netlab_lifecycle
    import netlab_lock
    import netlab_power
    import netlab_roots
    import netlab_slice

    HAS_LIBS = True
    IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on sync state
    HAS_LIBS = False
    IMPORT_ERROR = exc


def _import_libs():
    """Import netlab's _utils from the master's extension_modules (after sync)."""
    global HAS_LIBS, IMPORT_ERROR  # pylint: disable=global-statement
    global netlab_lab, netlab_lifecycle, netlab_power, netlab_roots, netlab_slice  # pylint: disable=global-statement,invalid-name
    global netlab_lock  # pylint: disable=global-statement,invalid-name
    utils_dir = os.path.join(__opts__.get("extension_modules", ""), "utils")  # pylint: disable=undefined-variable
    if os.path.isdir(utils_dir) and utils_dir not in sys.path:
        sys.path.append(utils_dir)
    try:
        import netlab_lab  # pylint: disable=import-outside-toplevel,redefined-outer-name
        import netlab_lifecycle  # pylint: disable=import-outside-toplevel,redefined-outer-name
        import netlab_lock  # pylint: disable=import-outside-toplevel,redefined-outer-name
        import netlab_power  # pylint: disable=import-outside-toplevel,redefined-outer-name
        import netlab_roots  # pylint: disable=import-outside-toplevel,redefined-outer-name
        import netlab_slice  # pylint: disable=import-outside-toplevel,redefined-outer-name
    except ImportError as exc:
        IMPORT_ERROR = exc
        return False
    HAS_LIBS = True
    return True


def __virtual__():
    if not HAS_LIBS and not _import_libs():
        return (False, "netlab's _utils are not synced to the master ({}); run "
                       "'salt-run saltutil.sync_all'".format(IMPORT_ERROR))
    return __virtualname__


# --------------------------------------------------------------------------- plumbing
class _Refused(Exception):
    """A request netlab refuses (bad node, bad pillar, no image): reported, not a crash."""


def _fail(message):
    raise _Refused(message)


def _guard(func):
    """Public runner functions: a refusal returns ``{'Error': message, 'retcode': 1}``
    (salt-run prints it and exits 1; an orchestration's ``salt.runner`` fails)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except _Refused as exc:
            __context__["retcode"] = 1  # pylint: disable=undefined-variable
            return {"Error": str(exc), "retcode": 1}

    return wrapper


def _compile_pillar(minion_id):
    opts = __opts__  # pylint: disable=undefined-variable
    pil = salt.pillar.get_pillar(opts, opts.get("grains", {}), minion_id,
                                 saltenv=opts.get("saltenv"),
                                 pillarenv=opts.get("pillarenv"))
    return pil.compile_pillar()


def _lab(pillar=None):
    """The lab model, from ``pillar`` or the master-side pillar."""
    if pillar is not None:
        raw = pillar.get("netlab") if isinstance(pillar, dict) and "netlab" in pillar \
            else pillar
    else:
        raw = None
        my_id = __opts__.get("id", "")  # pylint: disable=undefined-variable
        ids = [i for i in (
            my_id,
            __opts__.get("netlab_pillar_id"),  # pylint: disable=undefined-variable
            my_id[:-len("_master")] if my_id.endswith("_master") else my_id + "_master",
        ) if i]
        for minion_id in dict.fromkeys(ids):
            raw = _compile_pillar(minion_id).get("netlab")
            if raw is not None:
                break
        if raw is None:
            _fail("no 'netlab' pillar for the master (compiled for {}); target the lab "
                  "SLS to '<netnode id>_master' too, or pass pillar=".format(", ".join(ids)))
    try:
        return netlab_lab.load(raw)
    except netlab_lab.LabError as exc:
        _fail(str(exc))
    return None  # pragma: no cover


def _node_list(lab, nodes):
    if nodes is None or nodes == "":
        _fail("name the nodes (a list or comma-separated ids; 'all' for every node)")
    if isinstance(nodes, str):
        nodes = [n.strip() for n in nodes.split(",") if n.strip()]
    if nodes == ["all"]:
        return list(lab.nodes)
    unknown = [n for n in nodes if n not in lab.nodes]
    if unknown:
        _fail("not nodes of this lab: {} (known: {})".format(
            ", ".join(unknown), ", ".join(lab.nodes)))
    return list(dict.fromkeys(nodes))


def _event_bus(listen=True):
    opts = __opts__  # pylint: disable=undefined-variable
    return salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=listen)


def _fire(bus, node_id, state, state_dir=None, **data):
    """A lost event is a warning in the log and (``state_dir``) the run summary."""
    _utils_module("netlab_run").fire_checked(
        bus.fire_event, "netlab/node/{}/{}".format(node_id, state),
        dict(data, node=node_id, state=state), state_dir, log)


def _set(lab, bus, node_id, state, **kw):
    rec = netlab_lifecycle.set_state(lab, node_id, state, **kw)
    _fire(bus, node_id, state, state_dir=lab.netnode.state_dir, result=kw.get("result"),
          reason=kw.get("reason"), generation=rec.get("generation"))
    return rec


def _minion_call(timeout=30):
    clients = []

    def call(node_id, fun, *args):
        if not clients:  # made on first use: most drivers never need it
            clients.append(salt.client.get_local_client(
                mopts=__opts__))  # pylint: disable=undefined-variable
        client = clients[0]
        if fun in ("system.reboot", "system.poweroff"):
            # the minion may die before it answers: it must answer a ping first,
            # then the shutdown is sent without waiting for a reply
            ping = client.cmd(node_id, "test.ping", timeout=timeout)
            if ping.get(node_id) is not True:
                raise RuntimeError("minion {} did not answer test.ping within {} s".format(
                    node_id, timeout))
            return client.cmd_async(node_id, fun, list(args))
        ret = client.cmd(node_id, fun, list(args), timeout=timeout)
        if node_id not in ret:
            raise RuntimeError("minion {} did not answer {} within {} s".format(
                node_id, fun, timeout))
        return ret[node_id]

    return call


def _driver(lab, node_id):
    opts = __opts__  # pylint: disable=undefined-variable
    kw = {"minion_call": _minion_call()}
    if opts.get("netlab_qemu"):
        kw["qemu"] = opts["netlab_qemu"]
    return netlab_power.driver(lab, node_id, **kw)


def _lock_wait():
    """Seconds a run waits for another run's lock (master option netlab_lock_wait)."""
    try:
        return float(__opts__.get("netlab_lock_wait", netlab_lock.DEFAULT_WAIT))  # pylint: disable=undefined-variable
    except (TypeError, ValueError):
        return netlab_lock.DEFAULT_WAIT


def _take_locks(stack, lab, command, nodes, lab_wide=True):
    """Enter the lab lock (``lab_wide``) and the locks of ``nodes`` on ``stack``
    (a contextlib.ExitStack); a busy lock refuses the run, naming its holder."""
    try:
        if lab_wide:
            stack.enter_context(netlab_lock.hold_lab(lab.netnode.state_dir, command, nodes,
                                                     wait=_lock_wait()))
        else:
            for n in sorted(set(nodes)):
                stack.enter_context(netlab_lock.hold(lab.netnode.state_dir, "node-" + n,
                                                     command, wait=_lock_wait()))
    except netlab_lock.LockBusy as exc:
        _fail(str(exc))


def _pki_dir():
    return __opts__["pki_dir"]  # pylint: disable=undefined-variable


def _refresh_exports(lab):
    """After roots were reset: make the NFS server export the new directories.

    A reset replaces ``<roots_dir>/<node>`` by a new directory (a new inode), and
    a first reimage creates it; NFS servers hold an export root by handle and the
    netnode states render a missing root commented out. So, in this order:

    1. the commands of master option ``netlab_exports_refresh`` (a list of argv
       lists; default: ganesha ``[[service, nfs-ganesha, stop]]``, kernel ``[]``);
    2. ``state.sls netlab.netnode.nfs`` on the networking node's minion (renders
       the exports again and (re)starts the server; master option
       ``netlab_exports_apply: false`` skips it);
    3. kernel server: ``exportfs -ra`` and ``exportfs -f`` (flush cached handles).

    NFSv3 clients of other nodes ride over a ganesha restart (hard mounts retry).
    """
    opts = __opts__  # pylint: disable=undefined-variable
    cmds = opts.get("netlab_exports_refresh")
    if cmds is None:
        cmds = [["service", "nfs-ganesha", "stop"]] if lab.netnode.nfs_server == "ganesha" \
            else []
    if cmds and isinstance(cmds[0], str):
        cmds = [cmds]
    if lab.netnode.nfs_server == "kernel":
        post = [["exportfs", "-ra"], ["exportfs", "-f"]]
    else:
        post = []

    def run(cmd):
        rc, out, err = netlab_power._run_cmd(list(cmd), timeout=120)  # pylint: disable=protected-access
        if rc != 0:
            raise RuntimeError("`{}` failed: {}".format(" ".join(cmd), (err or out).strip()))

    for cmd in cmds:
        run(cmd)
    if opts.get("netlab_exports_apply", True):
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
    for cmd in post:
        run(cmd)


# --------------------------------------------------------------------------- views
@_guard
def check(pillar=None):
    """Fail with the full report when the lab pillar is invalid; ``True`` otherwise."""
    _lab(pillar)
    return True


@_guard
def status(as_table=True, pillar=None):
    """
    The lifecycle of every node: node, role, ip, state, generation, since, last result.

    ``as_table=False`` returns the rows as data.

    CLI Example:

    .. code-block:: bash

        salt-run netlab.status
        salt-run netlab.status as_table=False --out=json
    """
    lab = _lab(pillar)
    if as_table:
        return netlab_lifecycle.status_table(lab)
    return netlab_lifecycle.status(lab)


@_guard
def generation(node, pillar=None):
    """The reimage generation of ``node`` (0 if never reimaged)."""
    lab = _lab(pillar)
    _node_list(lab, [node])
    return netlab_lifecycle.generation(lab, node)


@_guard
def set_state(node, state, result=None, reason=None, pillar=None):
    """
    Record a lifecycle state for ``node`` (the deploy orchestration marks
    ``stacking``, ``ready``, ``failed``); fires ``netlab/node/<id>/<state>``.

    CLI Example:

    .. code-block:: bash

        salt-run netlab.set_state nuc1 stacking
    """
    lab = _lab(pillar)
    _node_list(lab, [node])
    bus = _event_bus(listen=False)
    try:
        return _set(lab, bus, node, state, result=result, reason=reason)
    except netlab_lifecycle.LifecycleError as exc:
        _fail(str(exc))
    finally:
        bus.destroy()
    return None  # pragma: no cover


@_guard
def keys(pillar=None):
    """
    Keys on the master seen against the lab: accepted, pending, rejected,
    denied, keys not belonging to a lab node, lab nodes without an accepted key.
    """
    return netlab_roots.key_report(_pki_dir(), _lab(pillar))


@_guard
def enrol(node, pillar=None):
    """
    Give ``node`` a new minion key: generated here, written into its root (or a
    stateless node's identity tree) and pre-accepted on this master. No reimage:
    the root keeps its data; the minion uses the new key after its next restart.

    CLI Example:

    .. code-block:: bash

        salt-run netlab.enrol nuc2
    """
    lab = _lab(pillar)
    _node_list(lab, [node])
    n = lab.node(node)
    root = (netlab_roots.identity_path(lab, node) if n.root_mode == "stateless"
            else netlab_roots.root_path(lab, node))
    if not os.path.isdir(root):
        _fail("node {}: no root at {} yet; reimage it first (salt-run netlab.reimage {})"
              .format(node, root, node))
    key = netlab_roots.gen_minion_keys()
    with contextlib.ExitStack() as locks:
        # the key in the root and the accepted key must come from the same run
        _take_locks(locks, lab, "salt-run netlab.enrol {}".format(node), [node],
                    lab_wide=False)
        try:
            netlab_roots.write_minion_key(root, key)
        except netlab_roots.RootError as exc:
            _fail("node {}: {}".format(node, exc))
        netlab_roots.preaccept_key(_pki_dir(), node, key[1])
    return {"node": node, "root": root, "accepted": True}


# --------------------------------------------------------------------------- power
@_guard
def power(node, action="status", pillar=None):
    """
    Power ``node``: ``on``, ``off``, ``cycle`` or ``status`` through its driver.

    CLI Example:

    .. code-block:: bash

        salt-run netlab.power nuc1 cycle
    """
    lab = _lab(pillar)
    _node_list(lab, [node])
    try:
        return _driver(lab, node).act(action)
    except netlab_power.PowerError as exc:
        _fail(str(exc))
    return None  # pragma: no cover


# --------------------------------------------------------------------------- reimage
def _wait_for_starts(bus, pending, deadline_for):
    """Wait for ``salt/minion/<id>/start`` of every node in ``pending``.

    ``deadline_for[node]`` is the monotonic deadline. Returns
    ``{node: seconds-after-power-on}`` for the nodes that started.
    """
    started = {}
    waiting = set(pending)
    while waiting:
        now = time.monotonic()
        remaining = min(deadline_for[n] for n in waiting) - now
        if remaining <= 0:
            break
        ev = bus.get_event(wait=min(remaining, 5), tag="salt/minion/",
                           match_type="startswith", full=True)
        if not ev:
            continue
        parts = ev.get("tag", "").split("/")
        if len(parts) == 4 and parts[3] == "start" and parts[2] in waiting:
            node = parts[2]
            # a start event after the deadline does not count
            if time.monotonic() <= deadline_for[node]:
                started[node] = time.monotonic()
                waiting.discard(node)
        now = time.monotonic()
        for node in list(waiting):
            if now > deadline_for[node]:
                waiting.discard(node)
    return started


@_guard
def reimage(nodes=None, timeout=600, method="auto", pillar=None):
    """
    Reimage ``nodes``: for each, power off, reset its root from the current image
    (new generation: new machine-id, SSH host keys, OVN system id, minion key
    pre-accepted here), power on, then wait for its minion's start event on this
    master, at most ``timeout`` seconds after power on. Nodes that do not come
    back are left ``failed`` with the reason; the run then fails (retcode 1).

    ``nodes``: a list, comma-separated ids, or ``all``. ``method``: root clone
    method (auto, snapshot, reflink, copy).

    Returns ``{'nodes': {node: {state, generation, method, reset_seconds,
    boot_seconds, seconds, power, result|reason}}, 'failed': [node ids],
    'retcode': 0|1}`` (salt-run exits with ``retcode``).

    CLI Example:

    .. code-block:: bash

        salt-run netlab.reimage nuc2,nuc3 timeout=900
        salt-run state.orchestrate netlab.reimage pillar='{"nodes": ["nuc2"]}'
    """
    lab = _lab(pillar)
    node_ids = _node_list(lab, nodes)
    try:
        timeout = float(timeout)
    except (TypeError, ValueError):
        _fail("timeout must be a number of seconds, not {!r}".format(timeout))
    if timeout <= 0:
        _fail("timeout must be positive")
    # validate every driver before anything changes
    drivers = {}
    for n in node_ids:
        try:
            drivers[n] = _driver(lab, n)
        except netlab_power.PowerError as exc:
            _fail(str(exc))
    try:
        src = netlab_roots.image_rootfs(lab) if any(
            lab.node(n).root_mode == "persistent" for n in node_ids) else None
    except netlab_roots.RootError as exc:
        _fail(str(exc))

    locks = contextlib.ExitStack()
    # the whole reimage (reset, key, pre-accept, power, wait) under the lab lock and
    # each node's lock: a second run is refused, naming this one
    _take_locks(locks, lab, "salt-run netlab.reimage {}".format(",".join(node_ids)),
                node_ids)
    try:
        bus = _event_bus(listen=True)
    except BaseException:
        locks.close()
        raise
    results = {}
    powered = {}
    deadline = {}

    def failed(n, exc):
        reason = str(exc)
        if not reason.startswith("node {}".format(n)):
            reason = "node {}: {}".format(n, reason)
        _set(lab, bus, n, "failed", reason=reason)
        results[n] = {"state": "failed", "reason": reason,
                      "started": results.get(n, {}).get("started", time.monotonic())}

    try:
        bus.subscribe("salt/minion/")
        # 1. every node down, fresh root, new key accepted
        reset_ok = []
        for n in node_ids:
            drv = drivers[n]
            gen = netlab_lifecycle.generation(lab, n) + 1
            results[n] = {"generation": gen, "started": time.monotonic()}
            try:
                _set(lab, bus, n, "reimaging", result="generation {}".format(gen))
                if drv.can_off_on:
                    drv.off()
                ident = netlab_slice.identity(lab, n, gen)
                key = netlab_roots.gen_minion_keys()
                reset = netlab_roots.reset_root(lab, n, ident, key, method=method, src=src)
                netlab_roots.preaccept_key(_pki_dir(), n, key[1])
                results[n].update(method=reset["method"],
                                  reset_seconds=reset["total_seconds"])
                # the new generation is the node's identity from now on
                netlab_lifecycle.set_state(lab, n, "reimaging", generation=gen,
                                           result="root reset ({}, {:.1f} s)".format(
                                               reset["method"], reset["clone_seconds"]))
                reset_ok.append(n)
            except Exception as exc:  # pylint: disable=broad-except
                failed(n, exc)
        # 2. the NFS server exports the new directories (once for all nodes)
        if reset_ok:
            try:
                _refresh_exports(lab)
            except Exception as exc:  # pylint: disable=broad-except
                for n in reset_ok:
                    failed(n, "NFS exports not refreshed: {}".format(exc))
                reset_ok = []
        # 3. power on
        for n in reset_ok:
            drv = drivers[n]
            try:
                _set(lab, bus, n, "booting", result="root reset ({}, {:.1f} s)".format(
                    results[n]["method"], results[n]["reset_seconds"]))
                pw = drv.on() if drv.can_off_on else drv.cycle()
                if not pw["done"]:
                    _fire(bus, n, "action-needed", state_dir=lab.netnode.state_dir,
                          message=pw["message"])
                results[n]["power"] = pw["message"]
                powered[n] = time.monotonic()
                deadline[n] = powered[n] + timeout
            except Exception as exc:  # pylint: disable=broad-except
                failed(n, exc)
        # 4. wait for the minions
        started = _wait_for_starts(bus, list(powered), deadline)
        for n in powered:
            res = results[n]
            if n in started:
                secs = started[n] - powered[n]
                text = "minion started {:.0f} s after power on".format(secs)
                _set(lab, bus, n, "up", result=text)
                res.update(state="up", result=text, boot_seconds=round(secs, 1))
            else:
                reason = ("node {}: no salt/minion/{}/start event within {:.0f} s after "
                          "power on ({})".format(n, n, timeout, _hint(lab, n)))
                _set(lab, bus, n, "failed", reason=reason)
                res.update(state="failed", reason=reason,
                           console_tail=netlab_power.console_tail(lab, n))
        for res in results.values():
            res["seconds"] = round(time.monotonic() - res.pop("started"), 1)
    finally:
        bus.destroy()
        locks.close()
    return _outcome(results)


def _outcome(results):
    """``{'nodes': {id: result}, 'failed': [ids], 'retcode': 0|1}``.

    ``retcode`` makes ``salt-run`` exit non-zero; ``__context__['retcode']`` makes
    an orchestration's ``salt.runner`` state fail.
    """
    failed = sorted(n for n, r in results.items() if r.get("state") == "failed")
    if failed:
        __context__["retcode"] = 1  # pylint: disable=undefined-variable
    return {"nodes": results, "failed": failed, "retcode": 1 if failed else 0}


def _hint(lab, node_id):
    node = lab.node(node_id)
    if node.power_driver == "virtual":
        return "console log: {}".format(os.path.join(lab.netnode.state_dir, "vms", node_id,
                                                     "serial.log"))
    return "check the node's console: did it boot from the network?"


@_guard
def boot(nodes=None, timeout=600, pillar=None):
    """
    Power ``nodes`` on (or cycle them) without touching their roots and wait for
    their minions' start events; ``booting`` -> ``up`` or ``failed``.
    """
    lab = _lab(pillar)
    node_ids = _node_list(lab, nodes)
    try:
        timeout = float(timeout)
        drivers = {n: _driver(lab, n) for n in node_ids}
    except (TypeError, ValueError, netlab_power.PowerError) as exc:
        _fail(str(exc))
    bus = _event_bus(listen=True)
    results, powered, deadline = {}, {}, {}
    try:
        bus.subscribe("salt/minion/")
        for n in node_ids:
            try:
                _set(lab, bus, n, "booting")
                drv = drivers[n]
                on = drv.can_off_on and drv.status() != "on"
                pw = drv.on() if on else drv.cycle()
                if not pw["done"]:
                    _fire(bus, n, "action-needed", state_dir=lab.netnode.state_dir,
                          message=pw["message"])
                powered[n] = time.monotonic()
                deadline[n] = powered[n] + timeout
            except (netlab_power.PowerError, netlab_lifecycle.LifecycleError) as exc:
                _set(lab, bus, n, "failed", reason=str(exc))
                results[n] = {"state": "failed", "reason": str(exc)}
        started = _wait_for_starts(bus, list(powered), deadline)
        for n in powered:
            if n in started:
                text = "minion started {:.0f} s after power on".format(
                    started[n] - powered[n])
                _set(lab, bus, n, "up", result=text)
                results[n] = {"state": "up", "result": text}
            else:
                reason = "node {}: no salt/minion/{}/start event within {:.0f} s ({})".format(
                    n, n, timeout, _hint(lab, n))
                _set(lab, bus, n, "failed", reason=reason)
                results[n] = {"state": "failed", "reason": reason,
                              "console_tail": netlab_power.console_tail(lab, n)}
    finally:
        bus.destroy()
    return _outcome(results)


# --------------------------------------------------------------------------- first contact
def _utils_module(name):
    """Import one of netlab's _utils (synced to the master's extension_modules)."""
    import importlib  # pylint: disable=import-outside-toplevel

    _import_libs()
    return importlib.import_module(name)


def _netlab_raw():
    """The ``netlab`` pillar value compiled for the master (see :func:`_lab`)."""
    my_id = __opts__.get("id", "")  # pylint: disable=undefined-variable
    for minion_id in dict.fromkeys(i for i in (
            my_id, __opts__.get("netlab_pillar_id"),  # pylint: disable=undefined-variable
            my_id[:-len("_master")] if my_id.endswith("_master") else my_id + "_master")
            if i):
        raw = _compile_pillar(minion_id).get("netlab")
        if raw is not None:
            return raw
    return None


def _fileserver_module_hashes():
    """``{'<kind>/<file>': md5}`` of netlab's custom modules on the master's fileserver."""
    import hashlib  # pylint: disable=import-outside-toplevel

    import salt.fileclient  # pylint: disable=import-outside-toplevel

    client = salt.fileclient.FSClient(__opts__)  # pylint: disable=undefined-variable
    out = {}
    try:
        for path in client.file_list("base"):
            kind, _, name = path.partition("/")
            if kind.startswith("_") and kind[1:] in ("modules", "states", "runners", "pillar",
                                                     "utils") and name.endswith(".py") \
                    and "/" not in name:
                local = client.cache_file("salt://" + path, "base")
                with open(local, "rb") as fh:
                    out[kind[1:] + "/" + name] = hashlib.md5(fh.read()).hexdigest()  # nosec
    finally:
        client.destroy()
    return out


def _minion_module_hashes(client, minion_id):
    """Same as :func:`_fileserver_module_hashes` for what a minion has synced."""
    ret = client.cmd(minion_id, "config.get", ["extension_modules"], timeout=30)
    extmods = ret.get(minion_id)
    if not extmods:
        return None
    found = client.cmd(minion_id, "file.find", [extmods],
                       kwarg={"type": "f", "name": "*.py", "print": "path,md5"}, timeout=30)
    out = {}
    for entry in found.get(minion_id) or []:
        if isinstance(entry, (list, tuple)) and len(entry) == 2:
            rel = os.path.relpath(entry[0], extmods)
            if rel.count("/") == 1:
                out[rel] = entry[1]
    return out


def preflight(checks=None, deploy=None, pillar=None):
    """
    Check everything a first deploy needs and report every problem at once:
    Salt versions, custom modules synced, where pillar ``netlab`` reaches, the lab
    interface, netlab's ports, storage space, other DHCP servers vs the DHCP mode,
    the package mirror and PyPI. The checks on the networking node run here: the
    master is the networking node. Also the first step of ``netlab.deploy``.

    ``checks``: a comma-separated subset of salt, modules, pillar, interface, ports,
    storage, dhcp, outside (default: all). ``deploy``: netlab.deploy's options
    (``netlab_deploy``), which choose the checks instead (``preflight: false`` skips
    them). Returns ``{'retcode', 'problems', 'passed'}``; salt-run exits 1 when
    there is a problem.

    CLI Example:

    .. code-block:: bash

        salt-run netlab.preflight
        salt-run netlab.preflight checks=ports,storage
    """
    pf = _utils_module("netlab_preflight")
    dhcp = _utils_module("netlab_dhcp")
    import hashlib  # pylint: disable=import-outside-toplevel

    import salt.version  # pylint: disable=import-outside-toplevel

    try:
        lab = netlab_lab.load(_netlab_raw() if pillar is None else (
            pillar.get("netlab", pillar) if isinstance(pillar, dict) else pillar))
    except netlab_lab.LabError as exc:
        __context__["retcode"] = 1  # pylint: disable=undefined-variable
        return {"Error": "preflight: invalid netlab pillar\n" + str(exc), "retcode": 1}
    opts = __opts__  # pylint: disable=undefined-variable
    if deploy is not None:
        wanted = pf.deploy_checks(deploy, pf.image_published(lab))
        if not wanted:
            return {"retcode": 0, "passed": [], "problems": [],
                    "comment": "preflight skipped (netlab_deploy:preflight is false)"}
    else:
        wanted = pf.CHECKS if not checks else [c.strip() for c in str(checks).split(",")]
    unknown = [c for c in wanted if c not in pf.CHECKS]
    if unknown:
        __context__["retcode"] = 1  # pylint: disable=undefined-variable
        return {"Error": "unknown check(s) {} (known: {})".format(
            ", ".join(unknown), ", ".join(pf.CHECKS)), "retcode": 1}
    netnode = lab.netnode.id
    master_id = opts.get("id", "")
    run = pf.command_runner()
    clients = []

    def local():
        if not clients:
            clients.append(salt.client.get_local_client(mopts=opts))
        return clients[0]

    def salt_check():
        ret = local().cmd(netnode, "test.version", timeout=30)
        return pf.check_salt_versions(salt.version.__version__, {netnode: ret.get(netnode)})

    def modules_check():
        expected = _fileserver_module_hashes()
        on_master = pf.file_hashes(opts["extension_modules"], ("runners", "pillar", "utils"),
                                   hasher=hashlib.md5)
        minion = _minion_module_hashes(local(), netnode)
        return pf.check_modules_synced(
            {k: v for k, v in expected.items() if k.split("/")[0] in
             ("runners", "pillar", "utils")}, {"master": on_master}) + \
            pf.check_modules_synced(
                {k: v for k, v in expected.items() if k.split("/")[0] in
                 ("modules", "states", "utils")}, {netnode: minion})

    def pillar_check():
        # in an orchestration __opts__['pillar'] is the master's own pillar, which
        # Salt merges into every pillar compiled with these opts: leave it out
        clean = {k: v for k, v in opts.items() if k != "pillar"}
        ids = [master_id, netnode] + list(lab.nodes)
        has = {i: salt.pillar.get_pillar(
            clean, clean.get("grains", {}), i, saltenv=clean.get("saltenv"),
            pillarenv=clean.get("pillarenv")).compile_pillar().get("netlab") is not None
            for i in ids}
        return pf.check_pillar_targeting(has, master_id, netnode, list(lab.nodes))

    available = {
        "salt": salt_check,
        "modules": modules_check,
        "pillar": pillar_check,
        "interface": lambda: pf.check_interface(
            lab, pf.interface_state(lab.network.interface, run)),
        "ports": lambda: pf.check_ports(lab, lambda proto, port: pf.listeners(
            proto, port, run)),
        "storage": lambda: pf.check_storage(lab, os.statvfs, pf.fs_type(
            pf.existing_parent(lab.netnode.storage), pf.read_mounts())),
        "dhcp": lambda: pf.check_dhcp(lab, lambda iface, timeout: dhcp.probe(
            iface, timeout=timeout, own=[lab.netnode.ip])),
        "outside": lambda: pf.check_reachable(lab, pf.http_ok),
    }
    report = pf.run([(c, available[c]) for c in wanted])
    out = {"retcode": 0 if report["ok"] else 1, "passed": report["passed"],
           "problems": report["problems"]}
    if not report["ok"]:
        __context__["retcode"] = 1  # pylint: disable=undefined-variable
        out["Error"] = "preflight found {} problem(s); nothing was changed".format(
            len(report["problems"]))
        if deploy is not None:
            # the deploy's summary names it as the run's first failure
            _utils_module("netlab_run").add_failure(
                lab.netnode.state_dir, "preflight", "; ".join(
                    str(p) for p in report["problems"]))
    return out


def discover(log=None, since=None, all_clients=False, pillar=None):
    """
    Machines that PXE-boot on the lab segment but are not in pillar: from
    dnsmasq's log of the DHCP requests it ignored (MAC, vendor class, BIOS/UEFI,
    first and last time seen), with the pillar lines to add them under
    ``netlab:nodes``. Unknown machines still get no boot answer.

    ``log``: a dnsmasq log file (default: ``<run_dir>/dnsmasq.log`` when netlab
    runs dnsmasq itself (``lookup:service_control: process``), else the journal);
    ``since``: journal time filter (e.g. ``"1 hour ago"``); ``all_clients``: also
    machines that are not PXE clients.

    CLI Example:

    .. code-block:: bash

        salt-run netlab.discover
        salt-run netlab.discover log=/var/log/syslog
    """
    disc = _utils_module("netlab_discover")
    raw = _netlab_raw() if pillar is None else (
        pillar.get("netlab", pillar) if isinstance(pillar, dict) else pillar)
    try:
        lab = netlab_lab.load(raw)
    except netlab_lab.LabError as exc:
        __context__["retcode"] = 1  # pylint: disable=undefined-variable
        return {"Error": str(exc), "retcode": 1}
    lookup = (raw or {}).get("lookup") or {}
    if not log and lookup.get("service_control") == "process":
        log = os.path.join(lookup.get("run_dir") or "/run/netlab", "dnsmasq.log")
    if log:
        try:
            with open(log, encoding="utf-8", errors="replace") as fh:
                lines = fh.readlines()
        except OSError as exc:
            __context__["retcode"] = 1  # pylint: disable=undefined-variable
            return {"Error": "cannot read dnsmasq's log {}: {}".format(log, exc),
                    "retcode": 1}
        source = log
    else:
        cmd = disc.journal_command(since)
        rc, out, err = _utils_module("netlab_preflight").command_runner(60)(cmd)
        if rc != 0:
            __context__["retcode"] = 1  # pylint: disable=undefined-variable
            return {"Error": "cannot read dnsmasq's log from the journal ({}): {}; pass "
                             "log=<file>".format(" ".join(cmd), err.strip()), "retcode": 1}
        lines, source = out.splitlines(), "journal"
    machines = disc.unknown(disc.parse_log(lines, pxe_only=not all_clients), lab)
    return {"retcode": 0, "source": source, "unknown": machines,
            "pillar": "\n".join(disc.pillar_lines(machines, lab)) or
                      "(no unknown machine has tried to boot)"}
