"""
Network namespaces for tests: a lab segment the test creates and removes.

Nothing here touches the host's own interfaces: every link is created directly
inside namespaces the test owns, names carry a per-run random suffix, and
:meth:`Segment.destroy` (call it from a fixture finalizer) kills every process
left in those namespaces and deletes them, also after a failure.

Typical use (see ``test/e2e/conftest.py`` for the fixtures)::

    seg = Segment(cidr="10.77.0.0/24", server_ip="10.77.0.2")  # ns + bridge
    try:
        cli = seg.add_client("nuc1", mac="52:54:00:77:00:11")     # ns + veth eth0
        seg.server.run(["dnsmasq", "--test"])                     # in the server ns
        cli.run(["udhcpc", "-i", "eth0", "-n", "-q"])             # in the client ns
        tap = seg.add_tap("vm1")          # a tap on the bridge for qemu (the test VMs)
    finally:
        seg.destroy()

:class:`Namespace` can also hold a **private mount namespace** (``private_mounts``:
a tiny holder process made with ``unshare -m`` that mounts a fresh tmpfs on
``/run``). Commands run through :meth:`Namespace.run` then share that mount
namespace: daemons get their own ``/run`` (rpcbind, ganesha), NFS mounts made by a
client stay mounted between commands and vanish with the holder.
"""

import contextlib
import ipaddress
import os
import secrets
import signal
import subprocess
import time

IP = "ip"


def unique(prefix="nl"):
    """A short name unique to this test run (for namespaces, bridges)."""
    return "{}{}".format(prefix, secrets.token_hex(3))


def _sh(cmd, check=True, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    res = subprocess.run(cmd, check=False, **kw)  # pylint: disable=subprocess-run-check
    if check and res.returncode != 0:
        raise RuntimeError("command failed ({}): {}\nstdout: {}\nstderr: {}".format(
            res.returncode, " ".join(map(str, cmd)), res.stdout, res.stderr))
    return res


class Namespace:
    """One network namespace (``ip netns``), optionally with a private mount namespace.

    ``run(cmd)`` / ``popen(cmd)`` execute inside it. ``pids()`` lists its processes;
    ``delete()`` stops them (SIGTERM, then SIGKILL) and removes the namespace.
    """

    def __init__(self, name, private_mounts=False):
        self.name = name
        self.private_mounts = private_mounts
        self.holder = None
        _sh([IP, "netns", "add", name])
        try:
            _sh([IP, "-n", name, "link", "set", "lo", "up"])
            if private_mounts:
                self._start_holder()
        except Exception:
            self.delete()
            raise

    def _start_holder(self):
        # the holder lives in the netns and in its own mount namespace with a
        # private /run; every later command enters both through nsenter.
        self.holder = subprocess.Popen(  # pylint: disable=consider-using-with
            [IP, "netns", "exec", self.name, "unshare", "-m", "--propagation", "private",
             "sh", "-c", "mount -t tmpfs -o mode=755 netlab-run /run && "
             "mkdir -p /run/lock && echo ready && exec sleep 2147483647"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        line = self.holder.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError("private mount namespace for {} failed: {}".format(
                self.name, self.holder.stderr.read()))
        # `ip netns exec` forks the real holder (sleep) as a child of unshare's exec
        self.holder_pid = self._find_sleep()

    def _find_sleep(self):
        for _ in range(50):
            for pid in self.pids():
                try:
                    with open("/proc/{}/cmdline".format(pid), "rb") as fh:
                        if fh.read().startswith(b"sleep\x002147483647"):
                            return pid
                except OSError:
                    continue
            time.sleep(0.05)
        raise RuntimeError("holder process of {} not found".format(self.name))

    @property
    def prefix(self):
        """The argv prefix that runs a command inside this namespace."""
        if self.holder is not None:
            return ["nsenter", "-t", str(self.holder_pid), "-m", "-n", "--"]
        return [IP, "netns", "exec", self.name]

    def run(self, cmd, check=True, **kw):
        """Run ``cmd`` (argv list) inside; returns the CompletedProcess (text)."""
        return _sh(self.prefix + [str(c) for c in cmd], check=check, **kw)

    def popen(self, cmd, **kw):
        return subprocess.Popen(self.prefix + [str(c) for c in cmd],  # pylint: disable=consider-using-with
                                **kw)

    def pids(self):
        res = _sh([IP, "netns", "pids", self.name], check=False)
        return [int(p) for p in res.stdout.split()]

    def kill_all(self, timeout=10):
        """SIGTERM every process in the namespace, wait, then SIGKILL the rest."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pids():
            time.sleep(0.1)
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.holder is not None:
            with contextlib.suppress(Exception):
                self.holder.wait(timeout=5)

    def delete(self):
        self.kill_all()
        _sh([IP, "netns", "delete", self.name], check=False)

    def addresses(self, ifname):
        res = self.run([IP, "-4", "-o", "addr", "show", "dev", ifname], check=False)
        return [line.split()[3] for line in res.stdout.splitlines()]


class Segment:
    """A lab segment: a server namespace holding a bridge, plus client namespaces.

    ``cidr``/``server_ip`` give the bridge's address (the networking node's lab IP;
    pass ``server_ip=None`` for a bridge without address). ``bridge`` is the bridge
    name inside the server namespace (it is the netnode's ``network:interface``).
    ``ipv6`` puts a ULA address on the bridge (for dnsmasq's router advertisement
    trick that saves iPXE ~13 s on VMs). The server namespace has a private mount
    namespace (private ``/run``) unless ``server_private_mounts=False``.
    """

    def __init__(self, cidr="10.77.0.0/24", server_ip="10.77.0.2", bridge="br0",
                 ipv6=False, server_private_mounts=True, prefix=None):
        self.tag = prefix or unique()
        self.cidr = ipaddress.ip_network(cidr)
        self.server_ip = server_ip
        self.bridge = bridge
        self.clients = {}
        self._n = 0
        self.server = Namespace(self.tag + "-srv", private_mounts=server_private_mounts)
        try:
            self.server.run([IP, "link", "add", bridge, "type", "bridge"])
            self.server.run([IP, "link", "set", bridge, "type", "bridge",
                             "forward_delay", "0"], check=False)
            if server_ip:
                self.server.run([IP, "addr", "add", "{}/{}".format(
                    server_ip, self.cidr.prefixlen), "dev", bridge])
            if ipv6:
                self.server.run([IP, "-6", "addr", "add", "fd00:6e6c::1/64", "dev", bridge,
                                 "nodad"])
            self.server.run([IP, "link", "set", bridge, "up"])
        except Exception:
            self.destroy()
            raise

    def add_client(self, name, mac, ip=None, private_mounts=False, ifname="eth0"):
        """A client namespace joined to the bridge by a veth pair.

        Inside it the interface is ``ifname`` with ``mac``; with ``ip`` it gets that
        address statically (else none: the test runs a DHCP client). Returns the
        :class:`Namespace` (also in ``self.clients[name]``).
        """
        self._n += 1
        ns = Namespace("{}-{}".format(self.tag, name), private_mounts=private_mounts)
        self.clients[name] = ns
        host_end = "v{}{}".format(self.tag[-6:], self._n)[:15]
        _sh([IP, "link", "add", host_end, "netns", self.server.name, "type", "veth",
             "peer", "name", ifname, "netns", ns.name])
        ns.run([IP, "link", "set", ifname, "address", mac])
        self.server.run([IP, "link", "set", host_end, "master", self.bridge])
        self.server.run([IP, "link", "set", host_end, "up"])
        ns.run([IP, "link", "set", ifname, "up"])
        if ip:
            ns.run([IP, "addr", "add", "{}/{}".format(ip, self.cidr.prefixlen),
                    "dev", ifname])
        return ns

    def set_client_ip(self, name, ip, ifname="eth0"):
        """Replace the client's IPv4 address (e.g. to impersonate another node)."""
        ns = self.clients[name]
        ns.run([IP, "addr", "flush", "dev", ifname])
        ns.run([IP, "addr", "add", "{}/{}".format(ip, self.cidr.prefixlen), "dev", ifname])

    def add_tap(self, name):
        """A tap device on the bridge in the server namespace (for ``qemu -netdev tap``)."""
        self.server.run([IP, "tuntap", "add", "dev", name, "mode", "tap"])
        self.server.run([IP, "link", "set", name, "master", self.bridge])
        self.server.run([IP, "link", "set", name, "up"])
        return name

    def destroy(self):
        """Stop every process of every namespace and delete them (idempotent)."""
        for ns in list(self.clients.values()):
            ns.delete()
        self.clients.clear()
        if getattr(self, "server", None) is not None:
            self.server.delete()
