"""
How each of netlab's daemons is run: the one place ``service_control`` decides.

``netlab:lookup:service_control`` (map.jinja) is

- ``service``: Salt's ``service`` states (a host with systemd; the LAN cache's
  daemons get a unit file first);
- ``process``: ``netlab_daemon`` states run the daemon in the foreground with a
  pid file and a log under ``run_dir`` (no init system: CI, containers, the
  virtual lab in a network namespace);
- ``none``: no daemon is started or stopped (the caller runs them); configs are
  still rendered and checked.

Each function returns daemon specs: ``{mode, service, name, cmd, pidfile, log,
...}`` where ``mode`` is ``service``, ``process`` or ``None`` (nothing to do in
this control mode: e.g. the kernel NFS server has no foreground process, and
rpcbind is not stopped on a host whose init system runs it for others). The SLS
macros in ``netlab/libdaemon.jinja`` turn a spec into its state and branch on
``mode`` only. A daemon's config is checked before it (re)starts by the SLS
(``check_cmd`` or a check state it requires), in every mode.
"""

import os
import shlex

import netlab_params


def _section(params, key):
    """``params[key]``; ``{}`` when map.jinja's data was not passed (a command-line
    report): a daemon's paths are then unknown, its spec still says the mode."""
    return (params or {}).get(key) or {}


def spec(control, service=None, name=None, cmd=None, run_dir=None, pid=None, **extra):
    """One daemon: ``service`` (its init-system unit), ``cmd`` (its foreground
    command line), ``pid`` (the base name of its pid and output files under
    ``run_dir``); ``extra``: further arguments of ``netlab_daemon.running``
    (settle, stop_timeout, unless, env) and of the macros (unit, reload)."""
    if control == "service" and service:
        mode = "service"
    elif control == "process" and (cmd or pid):
        mode = "process"
    else:
        mode = None
    out = dict(extra, mode=mode, service=service, name=name or service, cmd=cmd)
    if pid:
        out["pidfile"] = os.path.join(run_dir, pid + ".pid")
        out["log"] = os.path.join(run_dir, pid + ".out")
    return out


def nginx_main_conf(params):
    """nginx's own main config (it includes netlab's server block) when netlab
    runs nginx itself; ``None`` when the init system's nginx runs with its own."""
    if netlab_params.service_control(params) == "service":
        return None
    return os.path.join(netlab_params.run_dir(params), "nginx.conf")


def ganesha_recovery(params):
    """nfs-ganesha's recovery directory (process mode keeps it under run_dir)."""
    if netlab_params.service_control(params) == "process":
        return os.path.join(netlab_params.run_dir(params), "ganesha-recov")
    return _section(params, "nfs").get("ganesha_recovery")


def netnode(params):
    """The networking node's daemons (``netlab.netnode``), by name: dnsmasq, nginx,
    the kernel NFS server, rpcbind and nfs-ganesha. ``params``: mapdata."""
    control = netlab_params.service_control(params)
    run = netlab_params.run_dir(params)
    dm, ngx, nfs = _section(params, "dnsmasq"), _section(params, "nginx"), _section(params, "nfs")
    main = nginx_main_conf(params)
    return {
        # the state keeps the pid file; dnsmasq writes none (--pid-file= empty): its
        # own unlink + O_EXCL create would race with the state's write
        "dnsmasq": spec(control, dm.get("service"), "dnsmasq",
                        [dm.get("binary"), "-k", "-C", dm.get("conf"), "--pid-file="], run, "dnsmasq"),
        "nginx": spec(control, ngx.get("service"), "nginx",
                      [ngx.get("binary"), "-c", main or "", "-g", "daemon off;"], run, "nginx",
                      main_conf=main,
                      check=" ".join(str(a) for a in [ngx.get("binary"), "-t", "-q"] +
                                    (["-c", main] if main else []))),
        # the kernel's NFS server has no process to run: exportfs is enough
        "nfs_kernel": spec(control, nfs.get("kernel_service"), "nfs-kernel-server",
                           exportfs=control != "none"),
        # klibc's nfsmount (initramfs) speaks NFSv3 only and needs the portmapper
        "rpcbind": spec(control, nfs.get("rpcbind_service"), "rpcbind",
                        [nfs.get("rpcbind_binary"), "-f", "-w"], run, "rpcbind",
                        unless="rpcinfo -p 127.0.0.1"),
        "ganesha": spec(control, nfs.get("ganesha_service"), "nfs-ganesha",
                        [nfs.get("ganesha_binary"), "-F", "-f", nfs.get("ganesha_conf"),
                         "-L", os.path.join(run, "ganesha.log"),
                         "-p", os.path.join(run, "ganesha.daemon.pid")], run, "ganesha",
                        settle=2, stop_timeout=30, recovery=ganesha_recovery(params),
                        # where a reload's "Reread exports complete" shows (netlab_ganesha)
                        reload_log=os.path.join(run, "ganesha.log")
                        if control == "process" else nfs.get("ganesha_log")),
    }


def netnode_clean(params, nfs_server):
    """What ``netlab.netnode.clean`` stops: netlab's own processes in process mode
    (nfs-ganesha, rpcbind, nginx, dnsmasq); in service mode the services netlab
    enabled (ganesha when it is the NFS server, dnsmasq), while nginx, which may
    serve other sites, only reloads without netlab's server block."""
    control = netlab_params.service_control(params)
    run = netlab_params.run_dir(params)
    nfs, main = _section(params, "nfs"), nginx_main_conf(params)
    return {
        "ganesha": spec(control, nfs.get("ganesha_service") if nfs_server == "ganesha" else None,
                        "nfs-ganesha", run_dir=run, pid="ganesha"),
        "rpcbind": spec(control, None, "rpcbind", run_dir=run, pid="rpcbind"),
        "nginx": spec(control, _section(params, "nginx").get("service"), "nginx", run_dir=run,
                      pid="nginx", reload=True, main_conf=main),
        "dnsmasq": spec(control, _section(params, "dnsmasq").get("service"), "dnsmasq",
                        run_dir=run, pid="dnsmasq"),
        "exportfs": nfs_server == "kernel" and control != "none",
    }


def systemd_unit(description, argv, env=None, user=None):
    """A unit file running ``argv`` in the foreground (restarted on failure)."""
    lines = ["[Unit]", "Description={}".format(description),
             "After=network-online.target", "Wants=network-online.target",
             "[Service]",
             "ExecStart={}".format(" \\\n  ".join(shlex.quote(a) for a in argv)),
             "Restart=on-failure"]
    lines += ["Environment={}={}".format(k, v) for k, v in sorted((env or {}).items())]
    if user:
        lines.append("User={}".format(user))
    lines += ["[Install]", "WantedBy=multi-user.target"]
    return "\n".join(lines) + "\n"


def cache(params, data):
    """The LAN cache's daemons (``netlab.cache``): apt-cacher-ng and devpi-server
    (``data``: netlab_cache_config.service_data), plus the Debian package's own
    apt-cacher-ng service, which listens on every interface and is stopped."""
    control = netlab_params.service_control(params)
    c = _section(params, "cache")
    out = {"acng_package": spec(control, c.get("acng_package_service"))}
    for part, user in (("apt", c.get("apt_user")), ("pip", None)):
        part_data = data.get(part) or {}
        if not part_data.get("argv"):
            continue
        service = c.get(part + "_service")
        env = part_data.get("env") or {}
        out[part] = spec(
            control, service, service, part_data["argv"], data["run_dir"], part,
            env=env, settle=2, unit_path="/etc/systemd/system/{}.service".format(service),
            unit=systemd_unit("netlab LAN cache ({}) on the lab network".format(part),
                              part_data["argv"], env, user))
    # a part turned off (netlab:cache:<part>:enabled: false): its daemon is
    # stopped so that no cache keeps listening that the lab no longer uses; under
    # systemd only when netlab installed its unit, which then goes too
    for part in ("apt", "pip"):
        if part in out:
            continue
        service = c.get(part + "_service")
        unit_path = "/etc/systemd/system/{}.service".format(service)
        installed = control != "service" or os.path.exists(unit_path)
        off = spec(control if installed else "none", service, service,
                   None, data.get("run_dir"), part)
        if off["mode"] == "service":
            off["remove_unit"] = unit_path
        out["off_" + part] = off
    return out
