"""
devstack: a lab node's DevStack, seen from Salt.

Two places call it:

- the networking node (pillar ``netlab``: the whole lab) renders any node's
  ``local.conf`` from the lab model (``_utils/netlab_localconf.py``);
- a lab node (pillar ``netlab_node``: only its own slice, from netlab's
  ext_pillar) returns the local.conf rendered for it on the master, and nothing
  of any other node.

The logic lives in ``_utils``; this module reads pillar, calls it and turns
its errors into ``CommandExecutionError``.
"""

import logging

from salt.exceptions import CommandExecutionError

try:
    import netlab_cache
    import netlab_lab
    import netlab_localconf
    import netlab_slice

    HAS_LIBS = netlab_lab.HAS_NETADDR
    IMPORT_ERROR = None if HAS_LIBS else netlab_lab.NETADDR_MISSING
except ImportError as exc:  # pragma: no cover - depends on sync state
    HAS_LIBS = False
    IMPORT_ERROR = "netlab's _utils are not synced ({}); run saltutil.sync_all".format(exc)

log = logging.getLogger(__name__)

__virtualname__ = "devstack"

SLICE_KEY = "netlab_node"
# what a node's settings look like when nothing else says otherwise
SETTING_KEYS = ("repo", "branch", "user", "dest", "git_base")


def __virtual__():
    if not HAS_LIBS:
        return (False, IMPORT_ERROR)
    return __virtualname__


# --------------------------------------------------------------------------- helpers
def _pillar(pillar=None):
    """The pillar to read: ``pillar`` when given, else this minion's."""
    if pillar is not None:
        if not isinstance(pillar, dict):
            raise CommandExecutionError("pillar must be a mapping")
        return pillar
    return __pillar__  # pylint: disable=undefined-variable


def _mode(pillar):
    """``('lab', raw netlab)`` on the networking node, ``('slice', netlab_node)`` on
    a lab node; raise when this minion has neither."""
    if "netlab" in pillar:
        return "lab", pillar["netlab"]
    if SLICE_KEY in pillar:
        return "slice", pillar[SLICE_KEY]
    if "nodes" in pillar and "network" in pillar:
        return "lab", pillar  # the value of pillar `netlab` itself was given
    raise CommandExecutionError(
        "this minion has neither pillar 'netlab' (the networking node) nor "
        "'netlab_node' (a lab node's slice from netlab's ext_pillar); check the "
        "pillar top file and the master's ext_pillar configuration")


def _load(raw):
    try:
        return netlab_lab.load(raw)
    except netlab_lab.LabError as exc:
        raise CommandExecutionError(str(exc), info={"errors": exc.errors}) from None


def _slice(data, node_id):
    """A lab node's own slice, checked; ``node_id`` must be omitted or its own."""
    if not isinstance(data, dict):
        raise CommandExecutionError("pillar netlab_node must be a mapping")
    if data.get("error"):
        raise CommandExecutionError("pillar netlab_node: {}".format(data["error"]))
    own = data.get("id")
    if not own:
        raise CommandExecutionError("pillar netlab_node has no 'id'; refresh pillar "
                                    "(saltutil.refresh_pillar)")
    if node_id not in (None, "", own):
        raise CommandExecutionError(
            "this minion is lab node {own} and only has its own settings; {other} is "
            "another node, ask the networking node (salt-call devstack.local_conf "
            "{other} there)".format(own=own, other=node_id))
    return data


def _lab_node_id(lab, node_id):
    if node_id in (None, ""):
        own = __opts__.get("id")  # pylint: disable=undefined-variable
        if own in lab.nodes:
            return own
        raise CommandExecutionError(
            "node_id is required on the networking node (lab nodes: {})".format(
                ", ".join(lab.nodes)))
    try:
        lab.node(node_id)
    except KeyError as exc:
        raise CommandExecutionError(str(exc.args[0])) from None
    return node_id




# --------------------------------------------------------------------------- local.conf
def local_conf(node_id=None, pillar=None, generation=None):
    """
    A lab node's DevStack ``local.conf`` text.

    On the networking node (pillar ``netlab``) it is rendered from the lab model
    for ``node_id`` (default: this minion, if it is a lab node) at the node's
    reimage ``generation`` (default: ``netlab.generation`` when the lifecycle is
    installed, else 0). On a lab node (pillar ``netlab_node`` only) it is the text
    the master rendered for this node; ``node_id`` may be omitted or this node's
    own id, asking for another node's is an error.

    CLI Example:

    .. code-block:: bash

        salt-call devstack.local_conf nuc2      # on the networking node
        salt nuc2 devstack.local_conf           # a lab node's own
    """
    mode, data = _mode(_pillar(pillar))
    if mode == "slice":
        own = _slice(data, node_id)
        text = own.get("local_conf")
        if not isinstance(text, str) or not text:
            raise CommandExecutionError(
                "pillar netlab_node:local_conf is missing; refresh pillar "
                "(saltutil.refresh_pillar) and check the master's netlab ext_pillar")
        return text
    lab = _load(data)
    node_id = _lab_node_id(lab, node_id)
    if generation is None:
        generation = netlab_slice.generation(lab, node_id)
    try:
        return netlab_localconf.render(lab, node_id, generation=int(generation))
    except netlab_localconf.LocalConfError as exc:
        raise CommandExecutionError(str(exc)) from None


def settings(node_id=None, pillar=None):
    """
    A lab node's DevStack checkout settings: ``id``, ``repo``, ``branch``, ``user``,
    ``dest``, ``git_base``, ``local_conf_path`` (``<dest>/devstack/local.conf``)
    and ``projects``: the repositories checked out from the networking node's git
    mirror into ``dest`` before stack.sh (``[{name, target, repo, branch}]``,
    empty with the git cache off). Same rules as :py:func:`local_conf` for where
    they come from.

    CLI Example:

    .. code-block:: bash

        salt nuc2 devstack.settings
    """
    mode, data = _mode(_pillar(pillar))
    if mode == "slice":
        own = _slice(data, node_id)
        node = own.get("devstack") or {}
        out = {"id": own["id"]}
        projects = node.get("projects") or []
    else:
        lab = _load(data)
        node_id = _lab_node_id(lab, node_id)
        node = lab.node(node_id).devstack
        out = {"id": node_id}
        projects = netlab_cache.node_checkouts(lab, node_id)
    for key in SETTING_KEYS:
        value = node.get(key)
        out[key] = value if value is not None else netlab_lab.DEVSTACK_DEFAULTS[key]
    out["local_conf_path"] = out["dest"].rstrip("/") + "/devstack/local.conf"
    out["projects"] = [dict(p) for p in projects]
    return out


def node_problems(pillar=None):
    """
    What keeps this minion from being set up as a lab node, as a list of messages
    (empty when nothing does). On the networking node it is the lab's validation
    report.

    CLI Example:

    .. code-block:: bash

        salt nuc2 devstack.node_problems
    """
    try:
        mode, data = _mode(_pillar(pillar))
    except CommandExecutionError as exc:
        return [str(exc)]
    if mode == "lab":
        return netlab_lab.validate(data)
    try:
        own = _slice(data, None)
    except CommandExecutionError as exc:
        return [str(exc)]
    problems = []
    if not isinstance(own.get("local_conf"), str) or not own.get("local_conf"):
        problems.append("pillar netlab_node:local_conf is missing")
    ds = own.get("devstack")
    if not isinstance(ds, dict):
        problems.append("pillar netlab_node:devstack is missing")
    return problems


# Shown to humans (state diffs, logs): secret values masked.
def masked(text):
    """
    ``text`` (a local.conf or a diff of one) with password, secret and token values
    replaced by ``******``.

    CLI Example:

    .. code-block:: bash

        salt-call devstack.masked "$(cat /opt/stack/devstack/local.conf)"
    """
    return netlab_localconf.mask(text)


# --- stack lifecycle (stack, unstack, discover) ---

# Runs on a lab node. Everything comes from the node's slice (pillar
# ``netlab_node``): the stack user and DevStack's ``dest``. The scripts run as the
# stack user in ``<dest>/devstack``; their output is kept on the node under
# ``<dest>/logs/`` (``netlab-stack.log``, the previous run as ``.1``). Progress goes
# to the master's event bus as ``netlab/node/<id>/stack/started|finished|failed``.
import json as _stk_json  # noqa: E402  pylint: disable=wrong-import-position
import os as _stk_os  # noqa: E402  pylint: disable=wrong-import-position
import pwd as _stk_pwd  # noqa: E402  pylint: disable=wrong-import-position
import shlex as _stk_shlex  # noqa: E402  pylint: disable=wrong-import-position
import time as _stk_time  # noqa: E402  pylint: disable=wrong-import-position

try:
    import netlab_stack as _stk  # noqa: E402  pylint: disable=wrong-import-position
except ImportError:  # pragma: no cover - reported when a stack function is used
    _stk = None


def _stk_settings(need_user=True):
    """The node's stack user and paths (from :func:`settings`); clear errors."""
    if _stk is None:
        raise CommandExecutionError(
            "netlab's _utils are not synced to this minion; run saltutil.sync_all")
    ds = settings()
    cfg = dict(_stk.paths(ds), user=ds["user"], node=ds["id"], devstack=ds)
    if need_user:
        try:
            pw = _stk_pwd.getpwnam(ds["user"])
        except KeyError:
            raise CommandExecutionError(
                "stack user {} (netlab:devstack:user) does not exist on {}; apply "
                "netlab.node.prepare first".format(ds["user"], ds["id"])) from None
        cfg.update(uid=pw.pw_uid, gid=pw.pw_gid, home=pw.pw_dir)
    return cfg


def _stk_event(node_id, what, data, lost):
    """Fire ``netlab/node/<id>/<what>`` on the master's bus. A lost event does not
    stop the script (stack.sh's outcome matters more), but it is no silent line:
    a warning in this minion's log and, appended to ``lost`` (the step's
    ``events_lost``), a warning in the master's run record and summary."""
    tag = "netlab/node/{}/{}".format(node_id, what)
    try:
        # event.send answers False when it cannot send (e.g. no master: --local)
        sent = __salt__["event.send"](tag, data) is not False  # pylint: disable=undefined-variable
        why = "the minion could not send it to the master"
    except Exception as exc:  # pylint: disable=broad-except
        sent, why = False, str(exc) or type(exc).__name__
    if not sent:
        text = "event {} was not fired: {}".format(tag, why)
        log.warning("netlab: %s", text)
        lost.append(text)


def _stk_logfile(cfg, path):
    """Create ``path`` for the stack user (previous one kept as ``.1``)."""
    _stk_os.makedirs(cfg["logs"], exist_ok=True)
    _stk_os.chown(cfg["logs"], cfg["uid"], cfg["gid"])
    if _stk_os.path.exists(path):
        _stk_os.replace(path, path + ".1")
    with open(path, "w", encoding="utf-8"):
        pass
    _stk_os.chown(path, cfg["uid"], cfg["gid"])
    _stk_os.chmod(path, 0o640)


def _stk_secrets(cfg):
    """The literal secret values the scripts ran with: a lab node has no pillar
    localrc, so they are read from the localrc section of its local.conf."""
    cfg = cfg or {}
    try:
        with open(cfg["local_conf"], encoding="utf-8") as fh:
            text = fh.read()
    except (KeyError, OSError, UnicodeDecodeError):
        text = ""
    return netlab_localconf.localrc_secrets(text) | netlab_localconf.secret_values(
        (cfg.get("devstack") or {}).get("localrc"))


def _stk_read_tail(path, lines, cfg=None):
    """The last ``lines`` lines of a log, secrets masked (the tail goes into events,
    the job cache and the master's devstack.json)."""
    secrets = _stk_secrets(cfg)
    try:
        with open(path, "rb") as fh:
            fh.seek(0, _stk_os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return netlab_localconf.mask_log(_stk.tail(text, int(lines)), secrets)


def _stk_run(cfg, script, log_path, what, timeout=None):
    """Run ``script`` (relative to the checkout) as the stack user, output to
    ``log_path``; ``events_lost`` of the return collects the events that could not
    be fired (the caller fires the last one into the same list)."""
    if not _stk_os.path.isfile(_stk_os.path.join(cfg["checkout"], script)):
        raise CommandExecutionError(
            "{} not found in {}: is DevStack checked out (netlab.node.prepare)?".format(
                script, cfg["checkout"]))
    _stk_logfile(cfg, log_path)
    # A login shell of the stack user, like DevStack's own `sudo -u stack -i`
    # (runuser: no password, no sudo needed, and not Salt's runas, which needs
    # the stack user to be able to run Salt's own Python).
    inner = "cd {} && exec ./{} >> {} 2>&1".format(
        _stk_shlex.quote(cfg["checkout"]), script, _stk_shlex.quote(log_path))
    started = _stk_time.time()
    lost = []
    _stk_event(cfg["node"], what + "/started", {"node": cfg["node"], "started": started,
                                               "log": log_path}, lost)
    ret = __salt__["cmd.run_all"](  # pylint: disable=undefined-variable
        ["runuser", "-l", cfg["user"], "-c", inner], python_shell=False,
        output_loglevel="quiet", ignore_retcode=True, timeout=timeout)
    finished = _stk_time.time()
    return {
        "node": cfg["node"], "result": ret["retcode"] == 0, "retcode": ret["retcode"],
        "started": started, "finished": finished,
        "duration": round(finished - started, 3), "log": log_path, "events_lost": lost,
    }


def stack(lines=25, timeout=None):
    """
    Run DevStack's ``stack.sh`` on this node as the stack user.

    Runs in ``<dest>/devstack`` (the checkout of ``devstack:repo``/``branch``,
    with this node's local.conf); the whole output goes to
    ``<dest>/logs/netlab-stack.log`` on the node (the previous run's log is kept
    as ``netlab-stack.log.1``). Fires ``netlab/node/<id>/stack/started`` and then
    ``.../finished`` or ``.../failed`` with the duration, and records the outcome
    in ``<dest>/logs/netlab-stack.json``.

    Returns ``{node, result, retcode, duration, started, finished, log,
    log_tail, events_lost}`` (``log_tail``: the last ``lines`` lines;
    ``events_lost``: the events that could not be fired, each also a warning in
    the minion's log); a failed stack.sh also sets the job's return code.

    CLI Example:

    .. code-block:: bash

        salt nuc2 devstack.stack
    """
    cfg = _stk_settings()
    if not _stk_os.path.isfile(cfg["local_conf"]):
        raise CommandExecutionError(
            "{} is missing: apply netlab.node (local.conf) first".format(cfg["local_conf"]))
    out = _stk_run(cfg, "stack.sh", cfg["stack_log"], "stack", timeout=timeout)
    out["log_tail"] = _stk_read_tail(cfg["stack_log"], lines, cfg)
    with open(cfg["last"] + ".tmp", "w", encoding="utf-8") as fh:
        _stk_json.dump(out, fh, indent=1, sort_keys=True)
    _stk_os.replace(cfg["last"] + ".tmp", cfg["last"])
    event = {k: out[k] for k in ("node", "result", "retcode", "duration", "log")}
    if out["result"]:
        _stk_event(cfg["node"], "stack/finished", event, out["events_lost"])
    else:
        event["log_tail"] = _stk.tail(out["log_tail"], 10)
        _stk_event(cfg["node"], "stack/failed", event, out["events_lost"])
        __context__["retcode"] = 1  # pylint: disable=undefined-variable
    return out


def unstack(lines=25, timeout=None):
    """
    Run DevStack's ``unstack.sh`` on this node as the stack user (output in
    ``<dest>/logs/netlab-unstack.log``). Fires ``netlab/node/<id>/unstack/...``.

    CLI Example:

    .. code-block:: bash

        salt nuc2 devstack.unstack

    A node without a DevStack checkout (a fresh root after a reimage) has nothing
    running to stop: that is a success with ``skipped``, so the daily reimage ->
    restack loop does not fail at its unstack step.
    """
    cfg = _stk_settings()
    if not _stk_os.path.isfile(_stk_os.path.join(cfg["checkout"], "unstack.sh")):
        return {"node": cfg["node"], "result": True, "skipped": True, "retcode": 0,
                "duration": 0.0, "log": None, "log_tail": "", "events_lost": [],
                "comment": "nothing to unstack: no DevStack checkout in {} (a fresh "
                           "root)".format(cfg["checkout"])}
    return _stk_script("unstack.sh", "unstack", lines, timeout)


def discover(lines=25, timeout=None):
    """
    Run DevStack's ``tools/discover_hosts.sh`` (nova cell host discovery) as the
    stack user; meant for the controller after computes were stacked. Output in
    ``<dest>/logs/netlab-discover.log``. Fires ``netlab/node/<id>/discover/...``.

    CLI Example:

    .. code-block:: bash

        salt nuc1 devstack.discover
    """
    return _stk_script("tools/discover_hosts.sh", "discover", lines, timeout)


def _stk_script(script, what, lines, timeout):
    """Run a DevStack ``script`` as the stack user (log ``<what>_log``), with its
    log tail, the ``<what>/finished|failed`` event and the job's retcode."""
    cfg = _stk_settings()
    out = _stk_run(cfg, script, cfg[what + "_log"], what, timeout=timeout)
    out["log_tail"] = _stk_read_tail(cfg[what + "_log"], lines, cfg)
    _stk_event(cfg["node"], what + ("/finished" if out["result"] else "/failed"),
               {k: out[k] for k in ("node", "result", "retcode", "duration", "log")},
               out["events_lost"])
    if not out["result"]:
        __context__["retcode"] = 1  # pylint: disable=undefined-variable
    return out


def last_stack():
    """
    The outcome of this node's last ``devstack.stack`` (``None`` if never run).

    CLI Example:

    .. code-block:: bash

        salt '*' devstack.last_stack
    """
    cfg = _stk_settings()
    try:
        with open(cfg["last"], encoding="utf-8") as fh:
            return _stk_json.load(fh)
    except (OSError, ValueError):
        return None


def log_tail(lines=25, log="stack"):
    """
    The last ``lines`` lines of this node's ``stack`` (default), ``unstack`` or
    ``discover`` log.

    CLI Example:

    .. code-block:: bash

        salt nuc2 devstack.log_tail 50
    """
    cfg = _stk_settings()
    key = {"stack": "stack_log", "unstack": "unstack_log", "discover": "discover_log"}
    if log not in key:
        raise CommandExecutionError("log must be stack, unstack or discover")
    return _stk_read_tail(cfg[key[log]], lines, cfg)


def checkout_source():
    """
    Where this node's DevStack checkout comes from: ``{repo, branch, target,
    user, dest, projects}`` (``devstack:repo``, or
    ``<git_base>/openstack/devstack.git`` when ``git_base`` is set and ``repo`` is
    left at its default; ``projects``: see :py:func:`settings`). Used by
    ``netlab.node.prepare``.

    CLI Example:

    .. code-block:: bash

        salt nuc2 devstack.checkout_source
    """
    cfg = _stk_settings(need_user=False)
    src = _stk.checkout_source(cfg["devstack"])
    return dict(src, target=cfg["checkout"], user=cfg["devstack"]["user"],
                dest=cfg["dest"], projects=cfg["devstack"]["projects"])
