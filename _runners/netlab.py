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
import importlib
import logging
import os
import sys

log = logging.getLogger(__name__)

__virtualname__ = "netlab"

try:
    import netlab_cache
    import netlab_cache_refresh
    import netlab_lab
    import netlab_lifecycle
    import netlab_master
    import netlab_master_ops
    import netlab_power
    import netlab_roots
    import netlab_roots_keys
except ImportError:  # pragma: no cover - synced after this master started: __virtual__
    pass

_LIBS = ("netlab_cache", "netlab_cache_refresh", "netlab_lab", "netlab_lifecycle",
         "netlab_master", "netlab_master_ops", "netlab_power", "netlab_roots",
         "netlab_roots_keys", "netlab_master_preflight", "netlab_preflight", "netlab_dhcp",
         "netlab_discover", "netlab_run")


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


# --------------------------------------------------------------------------- plumbing
def _fail(message):
    netlab_master.refuse(message)


def _guard(func):
    """A refusal returns ``{'Error': message, 'retcode': 1}`` (netlab_master.guard)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return netlab_master.guard(func)(*args, **kwargs)

    return wrapper


def _lab(pillar=None):
    """The lab model, from ``pillar`` or the master-side pillar."""
    return netlab_master.load_lab(__opts__, pillar)  # pylint: disable=undefined-variable


def _node_list(lab, nodes):
    return netlab_master.node_list(lab, nodes)


def _refusal(message):
    return netlab_master.refusal(__context__, message)  # pylint: disable=undefined-variable


def _opts():
    return __opts__  # pylint: disable=undefined-variable


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
        table = netlab_lifecycle.status_table(lab)
        if netlab_cache.any_enabled(lab):
            # the LAN cache lives on this machine (the networking node)
            table += "\n\n" + netlab_cache_refresh.usage_table(
                netlab_cache_refresh.usage(lab, netlab_cache_refresh.disk_usage))
        # resets by copy cost time and space per node: say so under the table
        note = netlab_roots.reset_cost(lab)["note"]
        return table + "\n\n" + note if note else table
    return netlab_lifecycle.status(lab)


@_guard
def cache_usage(pillar=None):
    """
    The LAN cache: each part's disk use against its bound (``netlab:cache:<part>:
    max_size``), where it is, and the git mirrors the lab no longer names.

    CLI Example:

    .. code-block:: bash

        salt-run netlab.cache_usage
    """
    lab = _lab(pillar)
    return netlab_cache_refresh.usage_report(lab)


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
    bus = netlab_master_ops.event_bus(_opts(), listen=False)
    try:
        return netlab_master_ops.record(lab, bus, node, state, result=result, reason=reason)
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
    return netlab_roots_keys.key_report(_opts()["pki_dir"], _lab(pillar))


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
    key = netlab_roots_keys.gen_minion_keys()
    pub = netlab_master_ops.master_pub(_opts())
    with contextlib.ExitStack() as locks:
        # the key in the root and the accepted key must come from the same run
        netlab_master_ops.take_locks(_opts(), locks, lab, "salt-run netlab.enrol {}".format(
            node), [node], lab_wide=False)
        try:
            netlab_roots_keys.write_minion_key(root, key, pub)
        except netlab_roots.RootError as exc:
            _fail("node {}: {}".format(node, exc))
        netlab_roots_keys.preaccept_key(_opts()["pki_dir"], node, key[1])
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
        return netlab_master_ops.driver(_opts(), lab, node).act(action)
    except netlab_power.PowerError as exc:
        _fail(str(exc))
    return None  # pragma: no cover


# --------------------------------------------------------------------------- reimage
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
    return _bring_up("reimage", nodes, timeout, pillar, method=method)


def _bring_up(action, nodes, timeout, pillar, **kw):
    ret = netlab_master_ops.bring_up(_opts(), _lab(pillar), action, nodes, timeout, **kw)
    return netlab_master.finish(__context__, ret, ok=not ret["failed"])  # pylint: disable=undefined-variable


@_guard
def boot(nodes=None, timeout=600, pillar=None):
    """
    Power ``nodes`` on (or cycle them) without touching their roots and wait for
    their minions' start events; ``booting`` -> ``up`` or ``failed``.

    CLI Example:

    .. code-block:: bash

        salt-run netlab.boot nuc2,nuc3 timeout=900
    """
    return _bring_up("boot", nodes, timeout, pillar)


# --------------------------------------------------------------------------- first contact
def _utils_module(name):
    """Import one of netlab's _utils (synced to the master's extension_modules)."""
    return netlab_master.import_utils([name], _opts())[name]


@_guard
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
    mp = _utils_module("netlab_master_preflight")
    try:
        lab = netlab_lab.load(netlab_master.raw_lab(_opts(), pillar))
    except netlab_lab.LabError as exc:
        return _refusal("preflight: invalid netlab pillar\n" + str(exc))
    out = mp.preflight(lab, lambda names: mp.run(_opts(), lab, names), checks, deploy,
                       lambda step, cause: _utils_module("netlab_run").add_failure(
                           lab.netnode.state_dir, step, cause))
    return netlab_master.finish(__context__, out, ok=out.pop("ok"))  # pylint: disable=undefined-variable


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
    raw = netlab_master.raw_lab(__opts__, pillar)  # pylint: disable=undefined-variable
    try:
        lab = netlab_lab.load(raw)
        ret = disc.report(lab, (raw or {}).get("lookup"), _read_lines,
                          _utils_module("netlab_preflight").command_runner(60),
                          log=log, since=since, all_clients=all_clients)
    except (netlab_lab.LabError, disc.DiscoverError) as exc:
        return _refusal(exc)
    return dict(ret, retcode=0)


def _read_lines(path):
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.readlines()
