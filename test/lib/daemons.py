"""
Real daemons for tests, inside a :class:`lib.netns.Namespace`, stopped cleanly.

Two ways a test gets daemons:

* the netnode states start them (``service_control: process``, run with
  ``SaltLocal(prefix=segment.server.prefix)``): :func:`stop_pidfiles` stops those
  (SIGTERM, wait) in a finalizer;
* the test starts a helper daemon itself with :class:`Daemons` (e.g. a second
  dnsmasq playing the home router)::

      daemons = Daemons()
      try:
          router = daemons.start(router_ns, "router-dnsmasq",
                                 ["dnsmasq", "-k", "-C", conf], log=tmp / "router.log",
                                 ready=lambda: port_open(router_ns, 67, "udp"))
          ...
      finally:
          daemons.stop_all()

Namespaces with ``private_mounts`` give the daemons a private ``/run`` (rpcbind
and nfs-ganesha keep sockets and state there), so parallel test runs and the
host never share one. Stopping is SIGTERM and wait (``stop_timeout``): killing
ganesha at once leaves the next start slow.
"""

import contextlib
import os
import signal
import subprocess
import time

import netlab_proc


class DaemonError(RuntimeError):
    pass


def alive(pid):
    """True while ``pid`` runs (a zombie nobody reaped yet does not count)."""
    return netlab_proc.alive(pid)


def stop_pid(pid, timeout=15):
    """SIGTERM ``pid``, wait up to ``timeout`` s, then SIGKILL. True if it ran."""
    return netlab_proc.stop(pid, timeout)


def read_pid(pidfile):
    return netlab_proc.read_pid(pidfile)


def stop_pidfiles(run_dir, names=("nfs-ganesha", "ganesha", "nginx", "dnsmasq", "rpcbind"),
                  timeout=30):
    """Stop the daemons the netnode states started (pid files ``<run_dir>/<name>.pid``)."""
    stopped = []
    for name in names:
        pid = read_pid(os.path.join(str(run_dir), name + ".pid"))
        if stop_pid(pid, timeout):
            stopped.append(name)
    return stopped


def port_open(ns, port, proto="tcp"):
    """True when something listens on ``port`` inside namespace ``ns``."""
    flag = "-ltn" if proto == "tcp" else "-lun"
    out = ns.run(["ss", "-H", flag, "sport", "= :{}".format(port)], check=False).stdout
    return bool(out.strip())


def wait_for(cond, timeout=20, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise DaemonError("timed out after {} s waiting for {}".format(timeout, what))


class Daemon:
    """One foreground process in a namespace (``popen``), with its log file."""

    def __init__(self, ns, name, argv, log=None):
        self.ns, self.name, self.argv, self.log = ns, name, list(argv), log
        self.proc = None

    def start(self, ready=None, timeout=20):
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # pylint: disable=consider-using-with
        try:
            self.proc = self.ns.popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            if self.log:
                out.close()
        if ready is not None:
            try:
                wait_for(lambda: self.proc.poll() is None and ready(), timeout,
                         "{} to get ready".format(self.name))
            except DaemonError:
                self.stop()
                raise DaemonError("{} did not get ready: {}".format(self.name, self.tail()))
        return self

    @property
    def pid(self):
        """The daemon's pid (the child of ``ip netns exec`` / ``nsenter``)."""
        return self.proc.pid if self.proc else None

    def tail(self, n=2000):
        if not self.log or not os.path.exists(self.log):
            return ""
        with open(self.log, "rb") as fh:
            return fh.read()[-n:].decode(errors="replace")

    def stop(self, timeout=15):
        if self.proc is None or self.proc.poll() is not None:
            return
        # nsenter/ip-netns-exec exec the command, so the pid is the daemon itself
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


class Daemons:
    """A registry of started daemons; ``stop_all()`` in reverse start order."""

    def __init__(self):
        self.started = []

    def start(self, ns, name, argv, log=None, ready=None, timeout=20):
        d = Daemon(ns, name, argv, log)
        self.started.append(d)
        return d.start(ready=ready, timeout=timeout)

    def stop_all(self):
        for d in reversed(self.started):
            d.stop()
        self.started.clear()


def router_dnsmasq_conf(path, interface, start, end, netmask="255.255.255.0",
                        leasefile=None, router=None, hostsfile=None):
    """Write a plain dnsmasq config playing a home router's DHCP server (hands out
    addresses from ``start``-``end`` to anyone; no PXE). ``hostsfile``: its address
    reservations (``<mac>,<ip>`` lines, re-read on SIGHUP)."""
    text = [
        "interface={}".format(interface), "bind-interfaces", "port=0", "log-dhcp",
        "dhcp-range={},{},{},1h".format(start, end, netmask),
        "dhcp-leasefile={}".format(leasefile or str(path) + ".leases"),
        "dhcp-authoritative",
    ]
    if router:
        text.append("dhcp-option=option:router,{}".format(router))
    if hostsfile:
        text.append("dhcp-hostsfile={}".format(hostsfile))
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(text) + "\n")
    return str(path)
