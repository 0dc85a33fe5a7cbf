"""
Daemons without an init system, and the networking node's DHCP guard.

``service_control: process`` (map.jinja) makes the ``netlab.netnode`` states run
dnsmasq, nginx, rpcbind and nfs-ganesha with this state instead of Salt's
``service`` states: on hosts without systemd (CI, containers, the virtual lab in
a network namespace). Each daemon runs in the foreground of its own session; its
PID goes to ``pidfile``; ``watch`` restarts it (SIGTERM, wait, start) once when a
watched config changed.

.. code-block:: yaml

    netlab-dnsmasq:
      netlab_daemon.running:
        - cmd: [/usr/sbin/dnsmasq, -k, -C, /etc/dnsmasq.d/netlab.conf]
        - pidfile: /run/netlab/dnsmasq.pid
        - log: /run/netlab/dnsmasq.out
        - watch:
          - file: netlab-dnsmasq-conf

``exports_released`` and ``reloaded`` refresh nfs-ganesha's exports without a
restart (SIGHUP, then the log's "Reread exports complete"; see
:mod:`netlab_ganesha`); they take the daemon's spec (``netlab_daemons``), so they
work for a service and for a process alike, and fall back to a restart when a
reload is not confirmed.

``dhcp_guard`` is the rogue-DHCP guard that runs before ``full`` mode is turned on.
"""

import logging
import os
import shlex
import signal
import subprocess

try:
    import netlab_boot_dhcp
    import netlab_dhcp
    import netlab_ganesha
    import netlab_lab
    import netlab_proc
    import netlab_safefs

    HAS_LIBS = True
except ImportError:  # pragma: no cover
    HAS_LIBS = False

__virtualname__ = "netlab_daemon"

log = logging.getLogger(__name__)


def __virtual__():
    if not HAS_LIBS:
        return (False, "netlab's _utils are not synced; run saltutil.sync_all")
    return __virtualname__


# --------------------------------------------------------------------------- helpers
def _argv(cmd):
    if isinstance(cmd, str):
        return shlex.split(cmd)
    return [str(c) for c in cmd]


def _unless(cmd):
    if not cmd:
        return False
    return subprocess.run(cmd, shell=isinstance(cmd, str), check=False,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


# --------------------------------------------------------------------------- states
def running(name, cmd, pidfile, log=None, settle=1.0, stop_timeout=15, unless=None, env=None):
    """
    Make sure daemon ``name`` runs as ``cmd`` (argv list or string; run in the
    foreground, e.g. ``dnsmasq -k``, ``nginx -g 'daemon off;'``, ``ganesha.nfsd -F``).

    pidfile
        where its PID is kept (written by this state).
    log
        file for its stdout/stderr (default: discarded).
    settle
        seconds it must stay up after start to count as started.
    stop_timeout
        seconds to wait after SIGTERM before SIGKILL (ganesha starts slowly when
        killed hard).
    unless
        a command; when it succeeds the daemon counts as provided elsewhere (e.g.
        a system rpcbind) and nothing is done.

    A daemon running with a different command line (config path, options) is
    restarted with the new one.
    """
    argv = _argv(cmd)
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    if _unless(unless):
        ret["comment"] = "{}: provided elsewhere (unless command succeeded)".format(name)
        return ret
    pid, matches = netlab_proc.status(pidfile, argv)
    if pid and matches:
        ret["comment"] = "{} is running (pid {})".format(name, pid)
        return ret
    if __opts__["test"]:  # pylint: disable=undefined-variable
        ret["result"] = None
        ret["changes"] = {"started": name} if not pid else {"restarted": name}
        ret["comment"] = "{} would be {}".format(name, "started" if not pid else
                                                "restarted with a new command line")
        return ret
    return _replace(ret, pid, argv, pidfile, {"stop_timeout": stop_timeout, "log": log,
                                              "settle": settle, "env": env},
                    "started" if not pid else "restarted", "started")


def mod_watch(name, sfun=None, **kwargs):
    """``running``: restart once when a watched state changed (the daemon was
    already running); ``reloaded``: reload (see :func:`reloaded`)."""
    if sfun == "reloaded":
        return _mod_watch_reloaded(name, **kwargs)
    if sfun not in ("running", None):
        return {"name": name, "changes": {}, "result": True,
                "comment": "watch has no effect on netlab_daemon.{}".format(sfun)}
    argv = _argv(kwargs["cmd"])
    pidfile = kwargs["pidfile"]
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    if _unless(kwargs.get("unless")):
        ret["comment"] = "{}: provided elsewhere".format(name)
        return ret
    if __opts__["test"]:  # pylint: disable=undefined-variable
        ret.update(result=None, changes={"restarted": name},
                   comment="{} would be restarted".format(name))
        return ret
    pid, _ = netlab_proc.status(pidfile, argv)
    return _replace(ret, pid, argv, pidfile, kwargs, "restarted", "restarted")


def _replace(ret, pid, argv, pidfile, opts, change, said):
    """Stop ``pid`` (if any), start ``argv``: the state's return, ``change`` naming
    the change and ``said`` the comment's verb."""
    if pid:
        netlab_proc.stop(pid, opts.get("stop_timeout", 15))
    new, err = netlab_proc.start(argv, pidfile, opts.get("log"), opts.get("settle", 1.0),
                                 opts.get("env"))
    if err:
        ret.update(result=False, comment="{}: {}".format(ret["name"], err))
        return ret
    ret["changes"] = {change: ret["name"], "pid": new}
    ret["comment"] = "{} {} (pid {})".format(ret["name"], said, new)
    return ret


def dead(name, pidfile, stop_timeout=15, **_kwargs):
    """Stop the daemon of ``pidfile`` (SIGTERM, wait) and remove the pidfile."""
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    pid = netlab_proc.ours(pidfile)  # a pid reused by another process is not ours
    if pid is None:
        if os.path.exists(pidfile) and not __opts__["test"]:  # pylint: disable=undefined-variable
            os.unlink(pidfile)
        ret["comment"] = "{} is not running".format(name)
        return ret
    if __opts__["test"]:  # pylint: disable=undefined-variable
        ret.update(result=None, changes={"stopped": name},
                   comment="{} would be stopped".format(name))
        return ret
    netlab_proc.stop(pid, stop_timeout)
    netlab_proc.remove_pidfile(pidfile)
    ret.update(changes={"stopped": name, "pid": pid}, comment="{} stopped".format(name))
    return ret


# --------------------------------------------------------------------------- reloads
# __context__ key: the config text ganesha ran with before this run rewrote it
_RUNNING_CONFIG = "netlab_daemon.running_config"


def _daemon_pid(daemon):
    """The pid of a daemon spec's running process (process mode), else ``None``."""
    pid, _ = netlab_proc.status(daemon["pidfile"], _argv(daemon["cmd"]))
    return pid


def _is_running(daemon):
    if daemon.get("mode") == "service":
        return bool(__salt__["service.status"](daemon["service"]))  # pylint: disable=undefined-variable
    return _daemon_pid(daemon) is not None


def _send_reload(daemon):
    """SIGHUP to the daemon: ``service.reload`` (systemd: the unit's ExecReload,
    ``kill -HUP $MAINPID`` for Debian's nfs-ganesha), or to its pid."""
    if daemon.get("mode") == "service":
        if __salt__["service.reload"](daemon["service"]) is not True:  # pylint: disable=undefined-variable
            raise netlab_ganesha.ReloadError("service.reload {} failed".format(
                daemon["service"]))
        return
    pid = _daemon_pid(daemon)
    if pid is None:
        raise netlab_ganesha.ReloadError("{} is not running".format(daemon["name"]))
    os.kill(pid, signal.SIGHUP)


def _restart(ret, daemon):
    """The fallback: stop and start the daemon (it then reads the config anew)."""
    if daemon.get("mode") == "service":
        ok = __salt__["service.restart"](daemon["service"])  # pylint: disable=undefined-variable
        if ok is not True:
            ret.update(result=False, comment="{}: service.restart failed".format(daemon["name"]))
        return ret
    return _replace(ret, _daemon_pid(daemon), _argv(daemon["cmd"]), daemon["pidfile"],
                    daemon, "restarted", "restarted")


def _reload_or_restart(ret, daemon, what):
    """Reload ``daemon`` and wait for its reread; restart it when that fails.
    ``ret`` gets ``changes`` (``reloaded`` with the seconds, or ``restarted`` with
    ``reload_failed``) and the comment says which."""
    name = daemon["name"]
    if not _is_running(daemon):
        ret["comment"] = "{} is not running: it reads the new config when it starts".format(
            name)
        return ret
    try:
        took = netlab_ganesha.reload(lambda: _send_reload(daemon), daemon["reload_log"],
                                     timeout=daemon.get("reload_timeout",
                                                        netlab_ganesha.RELOAD_TIMEOUT))
    except (netlab_ganesha.ReloadError, OSError) as exc:
        log.warning("netlab: %s: reload failed (%s): restarting it instead", name, exc)
        _restart(ret, daemon)
        ret["changes"]["reload_failed"] = str(exc)
        ret["changes"].setdefault("restarted", name)
        if ret["result"] is not False:
            ret["comment"] = "{}: {}; reload failed ({}), restarted instead".format(
                name, what, exc)
        return ret
    ret["changes"] = {"reloaded": name, "seconds": round(took, 2)}
    ret["comment"] = "{}: {}; reloaded (reread confirmed in {:.1f} s)".format(name, what, took)
    return ret


def config_valid(name, check):
    """
    The daemon's configuration on disk passes the daemon's own check
    (``nginx -t``): no changes when it does, a failure with the check's output
    when it does not. It runs on every apply, not only when a file changed, so a
    configuration the daemon refused fails every later run too (the daemon keeps
    running what it loaded before) until it passes. In test mode the new files
    are not written yet: nothing is checked and no change is predicted.

    .. code-block:: yaml

        netlab-netnode-http-netlab_daemon-config_valid:
          netlab_daemon.config_valid:
            - name: nginx
            - check: /usr/sbin/nginx -t -q
    """
    ret = {"name": name, "changes": {}, "result": True}
    if __opts__["test"]:  # pylint: disable=undefined-variable
        ret["comment"] = "{}'s configuration will be checked with `{}`".format(name, check)
        return ret
    try:
        proc = subprocess.run(_argv(check), capture_output=True, text=True, check=False,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        ret.update(result=False, comment="{}: `{}` could not run: {}".format(name, check, exc))
        return ret
    if proc.returncode:
        ret.update(result=False, comment="{}'s configuration is refused by `{}` (exit {}); "
                   "{} keeps running what it loaded before:\n{}".format(
                       name, check, proc.returncode, name,
                       (proc.stderr + proc.stdout).strip()[-2000:]))
    else:
        ret["comment"] = "{}'s configuration passes `{}`".format(name, check)
    return ret


def exports_released(name, exports, daemon):
    """
    Before nfs-ganesha's config ``name`` is rendered anew: unexport the roots
    that are new directories at the same path (a root reset), so that the reread
    of the new config exports the new directories (an export ganesha keeps
    holds its root by handle: the old directory).

    exports
        the exports the new config will have (``netlab.boot_report``'s list:
        ``id``, ``inode``, ``exists``)
    daemon
        nfs-ganesha's spec (``netlab_daemons.netnode``)

    Writes the running config without those EXPORT blocks and reloads (every
    other export untouched); nothing to do when no root was renewed or ganesha
    is not running. A reload that is not confirmed restarts ganesha instead.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    text = netlab_ganesha.read_config(name) or ""
    # the config ganesha runs with, for ``reloaded`` after the new one is written
    __context__[_RUNNING_CONFIG] = text  # pylint: disable=undefined-variable
    paths, intermediate = netlab_ganesha.release(text, exports)
    if not paths:
        ret["comment"] = "no exported root was replaced"
        return ret
    if not _is_running(daemon):
        ret["comment"] = "{} is not running: it exports the new roots when it starts".format(
            daemon["name"])
        return ret
    if __opts__["test"]:  # pylint: disable=undefined-variable
        ret.update(result=None, changes={"released": paths},
                   comment="replaced roots would be unexported before the new config: "
                           "{}".format(", ".join(paths)))
        return ret
    netlab_safefs.write_file(os.path.dirname(name), os.path.basename(name), intermediate,
                             mode=os.stat(name).st_mode & 0o7777)
    _reload_or_restart(ret, daemon, "replaced roots unexported ({})".format(", ".join(paths)))
    ret["changes"]["released"] = paths
    return ret


def reloaded(name, daemon, config=None):
    """
    Nothing by itself; ``watch`` a daemon's config and, when it changed, the
    daemon rereads it: SIGHUP and its log's reread marker within
    ``daemon:reload_timeout`` seconds, else (or when the reload cannot be sent) a
    restart, said in the comment. A daemon that is not running is left to the
    state that starts it; one that started after ``config`` was written (process
    mode: this run started it) already runs with it.
    """
    return {"name": name, "changes": {}, "result": True,
            "comment": "{}: nothing to reload (no watched change)".format(daemon["name"])}


def _started_after(daemon, config):
    """True when the daemon's process started after ``config`` was last written."""
    if not config or daemon.get("mode") == "service":
        return False
    if _daemon_pid(daemon) is None:
        return False
    try:  # the pid file is written as the process starts (netlab_proc.start)
        return os.path.getmtime(daemon["pidfile"]) > os.path.getmtime(config)
    except OSError:
        return False


def _mod_watch_reloaded(name, daemon, config=None, **_kwargs):
    """Helper of :func:`mod_watch` for ``reloaded``."""
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    if not __opts__["test"] and _started_after(daemon, config):  # pylint: disable=undefined-variable
        ret["comment"] = "{} started on this config: nothing to reload".format(daemon["name"])
        return ret
    new_text = netlab_ganesha.read_config(config) if config else None
    how = netlab_ganesha.decide(_is_running(daemon),
                                __context__.get(_RUNNING_CONFIG),  # pylint: disable=undefined-variable
                                new_text)
    if how == "restart":
        # NFS_CORE_PARAM and the like: a reread applies EXPORT blocks only
        if __opts__["test"]:  # pylint: disable=undefined-variable
            ret.update(result=None, changes={"restarted": daemon["name"]},
                       comment="{} would be restarted (settings outside its exports "
                               "changed)".format(daemon["name"]))
            return ret
        _restart(ret, daemon)
        ret["changes"].setdefault("restarted", daemon["name"])
        if ret["result"] is not False:
            ret["comment"] = ("{} restarted: settings outside its exports changed, which "
                              "a reload does not apply".format(daemon["name"]))
        return ret
    if __opts__["test"]:  # pylint: disable=undefined-variable
        if not _is_running(daemon):  # the state that starts it comes first
            ret["comment"] = "{} is not running: it starts on the new config".format(
                daemon["name"])
            return ret
        ret.update(result=None, changes={"reloaded": daemon["name"]},
                   comment="{} would reload its config".format(daemon["name"]))
        return ret
    return _reload_or_restart(ret, daemon, "config changed")


def dhcp_guard(name, interface, timeout=3, own=None, allow_other_servers=False):
    """
    The rogue-DHCP guard: before netlab serves DHCP in ``full`` mode, broadcast a
    DHCPDISCOVER on ``interface`` and fail, naming every other server that offers
    an address and suggesting ``proxy`` mode. ``allow_other_servers`` (pillar
    ``network:dhcp:allow_other_servers``) turns the refusal into a warning. Runs
    in test mode too (it only listens for offers; it never requests a lease).
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        servers = netlab_dhcp.probe(interface, timeout=timeout, own=own or [])
    except netlab_dhcp.DhcpError as exc:
        ret.update(result=False, comment="rogue-DHCP guard could not probe {}: {}".format(
            interface, exc))
        return ret
    if not servers:
        ret["comment"] = "no other DHCP server answers on {}".format(interface)
        return ret
    text = netlab_dhcp.describe(servers)
    if allow_other_servers:
        # a warning in Salt's terms: the highstate output shows it in its own line
        # and counts it in the summary, so it is not lost among passing states
        ret["comment"] = ("other DHCP server(s) on {}: {}; serving full DHCP anyway "
                          "(network:dhcp:allow_other_servers is true)".format(interface, text))
        ret["warnings"] = [ret["comment"]]
        return ret
    ret.update(result=False, comment=(
        "refusing network:dhcp:mode full: another DHCP server answers on {}: {}. Two "
        "DHCP servers on one segment hand out conflicting addresses. Use "
        "network:dhcp:mode proxy (netlab then answers only PXE boot requests of the "
        "lab nodes and leaves addresses to that server), or set "
        "network:dhcp:allow_other_servers: true if you know what you are doing."
        .format(interface, text)))
    return ret


def leases_pruned(name, pillar=None):
    """
    Drop leases of machines that are no longer lab nodes from dnsmasq's lease
    file ``name`` (a removed node loses its lease with its dhcp-host line).
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    if not os.path.exists(name):
        ret["comment"] = "no lease file {}".format(name)
        return ret
    raw = __pillar__.get("netlab") if pillar is None else pillar.get("netlab", pillar)  # pylint: disable=undefined-variable
    try:
        lab = netlab_lab.load(raw)
    except netlab_lab.LabError as exc:
        ret.update(result=False, comment=str(exc))
        return ret
    with open(name, encoding="utf-8") as fh:
        text = fh.read()
    kept, removed = netlab_boot_dhcp.prune_leases(text, lab)
    if not removed:
        ret["comment"] = "no stale leases in {}".format(name)
        return ret
    ret["changes"] = {"removed": removed}
    if __opts__["test"]:  # pylint: disable=undefined-variable
        ret.update(result=None, comment="{} stale lease(s) would be removed".format(
            len(removed)))
        return ret
    tmp = name + ".netlab-tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(kept)
    os.replace(tmp, name)
    ret["comment"] = "{} stale lease(s) removed".format(len(removed))
    return ret
