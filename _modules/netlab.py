"""
netlab: the lab model, seen from Salt.

Runs on the networking node (which has the whole ``netlab`` pillar). The logic is
in ``_utils/netlab_*.py``; this module only reads pillar, calls it and turns its
errors into ``CommandExecutionError``.
"""

import json
import logging
import os
import socket
import subprocess

from salt.exceptions import CommandExecutionError

try:
    # imported while the loader loads this module: _utils is importable only then
    import netlab_cache
    import netlab_cache_config
    import netlab_cache_refresh
    import netlab_daemons
    import netlab_lab
    import netlab_lifecycle
    import netlab_options
    import netlab_params
    import netlab_roots
    import netlab_saltcompat
    import netlab_slice

    HAS_LIBS = netlab_lab.HAS_NETADDR
    IMPORT_ERROR = None if HAS_LIBS else netlab_lab.NETADDR_MISSING
except ImportError as exc:  # pragma: no cover - depends on sync state
    HAS_LIBS = False
    IMPORT_ERROR = "netlab's _utils are not synced ({}); run saltutil.sync_all".format(exc)

log = logging.getLogger(__name__)

__virtualname__ = "netlab"


def __virtual__():
    if not HAS_LIBS:
        return (False, IMPORT_ERROR)
    return __virtualname__


# --------------------------------------------------------------------------- lab model
def _raw(pillar=None):
    if pillar is not None:
        return pillar.get("netlab") if "netlab" in pillar else pillar
    return __pillar__.get("netlab")  # pylint: disable=undefined-variable


def lab(pillar=None):
    """
    Load and validate the lab; raise ``CommandExecutionError`` listing every problem.

    For other modules (``__salt__['netlab.lab']()`` returns the model object).
    """
    try:
        return netlab_lab.load(_raw(pillar))
    except netlab_lab.LabError as exc:
        raise CommandExecutionError(str(exc), info={"errors": exc.errors}) from None


def _errors(raw):
    """Every problem of the lab pillar ``raw``: the lab model's, and whether Salt
    supports the image's salt-minion (``image:salt_version``) under this master."""
    errors = list(netlab_lab.validate(raw))
    img = raw.get("image") if isinstance(raw, dict) else None
    version = img.get("salt_version") if isinstance(img, dict) else None
    if version is None and isinstance(raw, dict):
        version = netlab_lab.DEFAULT_SALT_VERSION
    if not isinstance(version, str):
        return errors  # no lab, or not a string: the lab model says so
    # compared with the Salt running this check: on the networking node, the master's
    problem = netlab_saltcompat.minion_version_problem(version)
    if problem:
        errors.append(netlab_lab.path("image", "salt_version") + ": " + problem)
    return errors


def validate(pillar=None):
    """
    Check the whole ``netlab`` pillar and report every problem at once.

    Returns ``{'valid': bool, 'errors': [...]}``; each error names its pillar path.
    With ``--retcode-passthrough`` the command exits non-zero when there is a
    problem. ``image:salt_version`` (the node image's salt-minion) must be a Salt
    release from 3006 on and no newer than the Salt running this check, which on
    the networking node is the master's.

    CLI Example:

    .. code-block:: bash

        salt-call netlab.validate --retcode-passthrough
    """
    errors = _errors(_raw(pillar))
    if errors:
        __context__["retcode"] = 1  # pylint: disable=undefined-variable
    return {"valid": not errors, "errors": errors}


def check(pillar=None):
    """
    Raise with the full report when the pillar is invalid; return ``True`` otherwise.

    Every netlab SLS and orchestration calls this first, so nothing is changed
    when the pillar is wrong.

    CLI Example:

    .. code-block:: bash

        salt-call netlab.check
    """
    report = validate(pillar)
    if not report["valid"]:
        raise CommandExecutionError(str(netlab_lab.LabError(report["errors"])),
                                    info={"errors": report["errors"]})
    return True


def nodes(pillar=None):
    """
    The resolved node table: id, hostname, fqdn, mac, ip, role, power driver,
    boot loader, firmware, root mode. No credentials.

    CLI Example:

    .. code-block:: bash

        salt-call netlab.nodes
    """
    return lab(pillar).node_table()


def node_slice(node_id, generation=None, pillar=None):
    """
    What lab node ``node_id`` may see (the ``netlab_node`` pillar its minion gets):
    identity, DevStack checkout settings and its rendered local.conf.

    CLI Example:

    .. code-block:: bash

        salt-call netlab.node_slice nuc2
    """
    model = _lab_with_node(node_id, pillar)
    try:
        return netlab_slice.for_node(model, node_id, generation)
    except ValueError as exc:  # netlab_localconf.LocalConfError
        raise CommandExecutionError(str(exc)) from None


def _lab_with_node(node_id, pillar=None):
    """The lab model; ``CommandExecutionError`` naming ``node_id`` if it is no node."""
    model = lab(pillar)
    try:
        model.node(node_id)
    except KeyError as exc:
        raise CommandExecutionError(str(exc.args[0])) from None
    return model


def orchestration(kind, options=None, pillar=None):
    """
    The normalised options of orchestration ``kind`` (deploy, restack, unstack:
    orchestration pillar ``netlab_<kind>``) and, for restack and unstack, the
    nodes to act on: ``{'error': text or None, 'options': {...}, 'targets': [...],
    'controller': id or None, 'computes': [...]}``. The orchestration SLS files
    render from this instead of deciding in Jinja.

    CLI Example:

    .. code-block:: bash

        salt-call netlab.orchestration restack '{"computes_only": true}'
    """
    out = {"error": None, "options": {}, "targets": [], "controller": None, "computes": []}
    if options is None:
        options = __salt__["pillar.get"]("netlab_" + kind, {})  # pylint: disable=undefined-variable
    try:
        out["options"] = netlab_options.orchestration(kind, options)
    except netlab_options.OptionError as exc:
        out["error"] = str(exc)
        return out
    if kind in ("restack", "unstack"):
        try:
            out.update(netlab_options.targets(lab(pillar), out["options"]["nodes"],
                                              out["options"]["computes_only"]))
        except netlab_options.OptionError as exc:
            out["error"] = "netlab_{}:nodes: {}".format(kind, exc)
    return out


# --------------------------------------------------------------------------- boot (netnode)
# the networking node's boot services: prepared data for the
# netlab.netnode states, and the rogue-DHCP guard.
try:
    import netlab_boot
    import netlab_boot_dhcp
    import netlab_dhcp
    import netlab_netnode
except ImportError:  # pragma: no cover - depends on sync state
    netlab_boot = netlab_boot_dhcp = netlab_dhcp = netlab_netnode = None


def _boot_libs():
    if None in (netlab_boot, netlab_boot_dhcp, netlab_dhcp, netlab_netnode):
        raise CommandExecutionError(
            "netlab's _utils are not synced (netlab_boot, netlab_boot_dhcp, netlab_dhcp, "
            "netlab_netnode); run saltutil.sync_all")


def boot_report(params=None, pillar=None):
    """
    Everything the ``netlab.netnode`` states render, without raising:
    ``{'valid': bool, 'errors': [...], 'data': {...} | None}``. ``params`` is
    map.jinja's ``mapdata`` (paths, service control). The states turn
    ``errors`` into a failing first state, so nothing changes on bad pillar.
    ``errors`` are :func:`validate`'s.

    CLI Example:

    .. code-block:: bash

        salt-call netlab.boot_report
    """
    # One state run renders every netlab.netnode SLS (each asks for the report):
    # it is prepared once per run. Salt gives each state run a context of its own
    # holding that run's file client, which keys the cached copy. The SLS files
    # only read the report, so they share one copy: a deep copy per SLS file was
    # a tenth of the run's time for a 500-node lab (bench/netnode_render.py).
    run = __context__.get("fileclient")  # pylint: disable=undefined-variable
    key = (id(run), json.dumps([params, _raw(pillar)], sort_keys=True, default=str))
    cached = __context__.get("netlab.boot_report")  # pylint: disable=undefined-variable
    if run is not None and cached and cached[0] == key:
        return cached[1]
    report = _boot_report(params, pillar)
    if run is not None:
        __context__["netlab.boot_report"] = (key, report)  # pylint: disable=undefined-variable
    return report


def _boot_report(params, pillar):
    _boot_libs()
    errors = _errors(_raw(pillar))
    if errors:
        return {"valid": False, "errors": errors, "data": None}
    model = netlab_lab.load(_raw(pillar))
    try:
        data = netlab_netnode.prepare(model, params or {})
    except netlab_boot.BootError as exc:
        return {"valid": False, "errors": str(exc).splitlines()[1:] or [str(exc)],
                "data": None}
    return {"valid": True, "errors": [], "data": data}


def boot_data(params=None, pillar=None):
    """
    The prepared netnode data (dnsmasq, nginx, exports, boot scripts); raises
    ``CommandExecutionError`` listing every problem when the pillar is invalid.

    CLI Example:

    .. code-block:: bash

        salt-call netlab.boot_data
    """
    report = boot_report(params, pillar)
    if not report["valid"]:
        raise CommandExecutionError(
            "invalid netlab pillar:\n  " + "\n  ".join(report["errors"]),
            info={"errors": report["errors"]})
    return report["data"]


def storage_layout(pillar=None):
    """
    Whether the node roots are on a filesystem of their own (safe NFS layout):
    ``{'own_filesystem': bool, 'warning': text or None}``. ``netlab.netnode.nfs``
    shows the warning on every apply until the layout is safe.

    CLI Example:

    .. code-block:: bash

        salt-call netlab.storage_layout
    """
    return netlab_roots.storage_layout(netlab_lab.load(_raw(pillar)))


def boot_off_mode(pillar=None):
    """
    The lines to add to an existing DHCP server when ``network:dhcp:mode`` is
    ``off``: ``{'isc_dhcpd': text, 'dnsmasq': text}`` (per MAC, so machines that
    are not lab nodes still get no boot answer).

    CLI Example:

    .. code-block:: bash

        salt-call netlab.boot_off_mode
    """
    _boot_libs()
    return netlab_boot_dhcp.off_mode_snippets(lab(pillar))


def dhcp_probe(interface=None, timeout=None, pillar=None):
    """
    The rogue-DHCP guard: broadcast one DHCPDISCOVER on the lab interface
    (``network:interface`` unless given) and list every DHCP server that offers
    an address, except netlab's own (``netnode:ip`` and this host's addresses).
    Listens ``network:dhcp:probe_timeout`` seconds. Returns
    ``{'interface', 'servers': [{server_id, server_ip, server_mac, offered}]}``.

    CLI Example:

    .. code-block:: bash

        salt-call netlab.dhcp_probe
        salt-call netlab.dhcp_probe interface=br0 timeout=2
    """
    _boot_libs()
    model = None
    if interface is None or timeout is None:
        model = lab(pillar)
    interface = interface or model.network.interface
    timeout = float(timeout if timeout is not None else model.network.probe_timeout)
    own = [model.netnode.ip] if model is not None else []
    try:
        servers = netlab_dhcp.probe(interface, timeout=timeout, own=own)
    except netlab_dhcp.DhcpError as exc:
        raise CommandExecutionError("DHCP probe on {}: {}".format(interface, exc)) from None
    return {"interface": interface, "servers": servers}



# --------------------------------------------------------------------------- lifecycle
# the lifecycle itself runs on the master: _runners/netlab.py. These
# read the state kept on the networking node (whose minion runs this module).
def _lifecycle():
    if not HAS_LIBS:
        raise CommandExecutionError(IMPORT_ERROR)
    return netlab_lifecycle


def generation(node_id, pillar=None):
    """
    The reimage generation of ``node_id`` (0 if it was never reimaged); node
    identity (machine-id, OVN system id) derives from it.

    CLI Example:

    .. code-block:: bash

        salt-call netlab.generation nuc2
    """
    model = _lab_with_node(node_id, pillar)
    return _lifecycle().generation(model, node_id)


def status(as_table=True, pillar=None):
    """
    Every node's lifecycle state: node, role, ip, state, generation, since, last
    result (read from the networking node's state directory).

    CLI Example:

    .. code-block:: bash

        salt-call netlab.status
    """
    mod = _lifecycle()
    model = lab(pillar)
    if not as_table:
        return mod.status(model)
    # resets by copy cost time and space per node: say so under the table
    note = netlab_roots.reset_cost(model)["note"]
    return mod.status_table(model) + ("\n\n" + note if note else "")


def reimage(nodes, timeout=600):
    """
    Reimage ``nodes`` (list or comma-separated ids) through the master's runner
    (``salt-run netlab.reimage``); only works on the networking node, which is
    the salt-master.

    CLI Example:

    .. code-block:: bash

        salt-call netlab.reimage nuc2 timeout=900
    """
    return __salt__["saltutil.runner"](  # pylint: disable=undefined-variable
        "netlab.reimage", arg=[nodes], kwarg={"timeout": timeout})


# --------------------------------------------------------------------------- LAN cache
def cache_report(params=None, pillar=None):
    """
    What the ``netlab.cache`` states render, without raising:
    ``{'valid': bool, 'errors': [...], 'data': {...} | None}``. ``params`` is
    map.jinja's ``mapdata``. With ``cache:apt:offline: auto`` the apt mirrors are
    probed: unreachable, apt-cacher-ng serves from its cache only.

    CLI Example:

    .. code-block:: bash

        salt-call netlab.cache_report
    """
    params = params or {}
    errors = _errors(_raw(pillar))
    if errors:
        return {"valid": False, "errors": errors, "data": None}
    model = netlab_lab.load(_raw(pillar))
    run_dir = os.path.join(netlab_params.run_dir(params), "cache")
    venv = netlab_params.devpi_venv(params)
    data = netlab_cache_config.service_data(
        model, run_dir, venv,
        lambda addr, timeout: socket.create_connection(addr, timeout).close())
    data["daemons"] = netlab_daemons.cache(params, data)
    return {"valid": True, "errors": [], "data": data}


def _run(argv):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, check=False, timeout=1800,
                          env=dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C"))
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def _download(url, dest):
    import urllib.request  # pylint: disable=import-outside-toplevel

    tmp = dest + ".part"
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
            while True:
                block = resp.read(1 << 20)
                if not block:
                    break
                out.write(block)
        os.rename(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cache_refresh(git=True, files=True, pillar=None):
    """
    Refresh the LAN cache: update (or create) every git mirror the lab needs and
    fetch the pillar's files not cached yet. A mirror that cannot be updated keeps
    serving its last good copy. Returns ``{'result': bool, 'comment': text,
    'changes': {...}}``; ``result`` is false when something the lab needs is not
    served at all.

    CLI Example:

    .. code-block:: bash

        salt-call netlab.cache_refresh
    """
    model = lab(pillar)
    git_results = file_results = None
    if git and netlab_cache.enabled(model, "git"):
        git_results = netlab_cache_refresh.refresh_git(model, _run, netlab_cache_refresh.disk_usage)
    if files and netlab_cache.enabled(model, "files"):
        file_results = netlab_cache_refresh.fetch_files(model, _download, netlab_cache_refresh.disk_usage)
    mirrors = os.path.join(model.cache["git"]["dir"], "mirrors")
    ok, comment, changes = netlab_cache_refresh.refresh_report(git_results, file_results, mirrors)
    return {"result": ok, "comment": comment, "changes": changes}


def cache_usage(pillar=None):
    """
    Disk use of each cache part against its bound (``netlab:cache:<part>:max_size``)
    and the git mirrors the lab no longer names.

    CLI Example:

    .. code-block:: bash

        salt-call netlab.cache_usage
    """
    model = lab(pillar)
    return netlab_cache_refresh.usage_report(model)


def cache_prune(pillar=None):
    """
    Bring the apt and pip caches under their bounds: the least recently used
    package files go (they are fetched again when asked for). Returns the removed
    files per part.

    CLI Example:

    .. code-block:: bash

        salt-call netlab.cache_prune
    """
    model = lab(pillar)
    return {part: netlab_cache_refresh.prune(model, part) for part in ("apt", "pip")}
