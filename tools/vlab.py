"""
The virtual lab: netlab end to end on one machine, with qemu VMs as the nodes.

``./vlab up`` (repository root) builds, on a Debian/Ubuntu machine, as root:

- a network namespace of its own, named after the lab directory
  (``netlab-vlab-<hash of --dir>``), with a bridge ``br0`` holding the networking
  node's address and a private ``/run`` for its daemons (a small holder process
  keeps both alive between commands);
- a way out for the networking node only: a veth pair to this machine and NAT,
  filtered to the package sources its image build needs (the Debian mirror and
  the Python package index, resolved here) and to this machine's resolver. The
  lab nodes get no way out unless ``--uplink``;
- a salt-master inside it that is also the networking node: its own minion
  (``netnode``, key made and pre-accepted here, no autosign) applies
  ``netlab.netnode`` (dnsmasq, nginx, nfs-ganesha, rpcbind run as processes) and
  ``netlab.image`` (the image is built by the networking node, in the namespace);
- a lab pillar for a small lab: one controller and one or two computes, power
  driver ``virtual`` (netlab starts diskless qemu VMs on taps in the bridge);

then runs ``salt-run state.orchestrate netlab.deploy`` (the VMs netboot, become
minions, get their local.conf and are stacked), printing progress lines while it
runs; its full output goes to a log file under ``<dir>/logs``. It ends with the
status table and, when something failed, the first failure and its log.
``./vlab down`` removes all of it: only what this lab started (pid files, its own
namespace, links and nftables table), never anything found by a name pattern.

Everything lives under ``--dir`` (default ``/var/lib/netlab-vlab``); two labs
with different directories never touch each other.
"""

import argparse
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
UTILS = os.path.join(REPO, "_utils")
if UTILS not in sys.path:
    sys.path.insert(0, UTILS)
import netlab_cache  # noqa: E402  pylint: disable=wrong-import-position
import netlab_lab_schema  # noqa: E402  pylint: disable=wrong-import-position
import netlab_proc  # noqa: E402  pylint: disable=wrong-import-position

BRIDGE = "br0"
CIDR = "10.98.0.0/24"
NETNODE_IP = "10.98.0.2"
NODES = (("ctl", "10.98.0.11", "52:54:00:98:00:11", "controller"),
         ("cmp1", "10.98.0.12", "52:54:00:98:00:12", "compute"),
         ("cmp2", "10.98.0.13", "52:54:00:98:00:13", "compute"))
# the node image's salt-minion: the lab model's default
SALT_VERSION = netlab_lab_schema.DEFAULT_SALT_VERSION
DEFAULT_DIR = "/var/lib/netlab-vlab"
DEVSTACK_REPO = "https://opendev.org/openstack/devstack"
DEFAULT_PIP_HOSTS = ("pypi.org", "files.pythonhosted.org")
# command -> the Debian package that has it
COMMANDS = {"qemu-system-x86_64": "qemu-system-x86", "dnsmasq": "dnsmasq-base",
            "nginx": "nginx-light", "ganesha.nfsd": "nfs-ganesha", "rpcbind": "rpcbind",
            "mmdebstrap": "mmdebstrap", "zstd": "zstd", "git": "git", "ip": "iproute2",
            "nsenter": "util-linux", "unshare": "util-linux", "nft": "nftables",
            "sysctl": "procps", "mkfs.btrfs": "btrfs-progs", "btrfs": "btrfs-progs"}
# The networking node's storage (images, node roots) is a btrfs filesystem in a
# sparse file under the lab directory: a node's root reset is a reflink copy
# (shares the image's data blocks: a few seconds, not a copy of the image). Not a
# snapshot: the lab's NFS server is nfs-ganesha, which cannot export btrfs
# subvolumes (netlab_roots.snapshots_exportable). The file only takes the space
# the lab writes (DevStack: a few GB per node).
STORAGE_IMAGE = "storage.btrfs"
STORAGE_SIZE = "64G"
APT_PACKAGES = tuple(sorted(set(COMMANDS.values()) | {
    "ipxe-qemu", "ipxe", "ovmf", "nfs-ganesha-vfs", "python3-venv"}))
# ``--cache``: the LAN cache's apt proxy (devpi-server comes from PyPI into a venv
# under the lab directory, made by netlab.cache itself)
CACHE_COMMANDS = {"apt-cacher-ng": "apt-cacher-ng"}
# the LAN cache parts ``--cache`` turns on: the ones whose upstreams the networking
# node reaches (its NAT lets it out to the Debian mirror and PyPI only); the git
# mirrors' (opendev.org) and the files' (test images, etcd) are outside it
VLAB_CACHE_PARTS = ("apt", "pip")


class VlabError(RuntimeError):
    """Something the user must fix; the message says what."""


def _say(text):
    print("vlab: " + text, flush=True)


def _sh(cmd, check=True, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    try:
        res = subprocess.run([str(c) for c in cmd], check=False, **kw)  # pylint: disable=subprocess-run-check
    except FileNotFoundError as exc:
        raise VlabError("command not found: {} (install the Debian package {})".format(
            cmd[0], COMMANDS.get(os.path.basename(str(cmd[0])), "that has it"))) from exc
    if check and res.returncode != 0:
        raise VlabError("command failed ({}): {}\n{}{}".format(
            res.returncode, " ".join(map(str, cmd)), res.stdout or "", res.stderr or ""))
    return res




def _alive(pid):
    return netlab_proc.alive(pid)


def _wait(predicate, timeout, what, interval=1.0):
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            value = predicate()
            if value:
                return value
        if time.monotonic() > deadline:
            raise VlabError("timed out after {} s waiting for {}".format(timeout, what))
        time.sleep(interval)


def names(base):
    """Everything a lab creates outside its directory, derived from the directory:
    two labs in two directories never share a namespace, link, table or address."""
    digest = hashlib.sha256(os.path.abspath(base).encode()).hexdigest()
    tag = digest[:8]
    slot = int(digest[8:14], 16) % 16384  # a /30 in 10.99.0.0/16 for the veth pair
    host_ip = ipaddress.ip_address("10.99.0.0") + slot * 4 + 1
    return {"ns": "netlab-vlab-" + tag, "veth_host": "nlv{}h".format(tag[:6]),
            "veth_ns": "nlv{}n".format(tag[:6]), "table": "netlab_vlab_" + tag,
            "host_ip": str(host_ip), "ns_ip": str(host_ip + 1)}


# --------------------------------------------------------------------------- pillar
def lab_pillar(base, computes=1, devstack_repo=DEVSTACK_REPO, devstack_branch=None,
               memory=1536, uplink=False, mirror=None, image_packages=("git", "sudo"),
               cache=False):
    """The small lab's ``netlab`` pillar (a plain dict; validated by netlab_lab).

    ``cache``: the networking node runs the LAN cache's apt proxy and pip mirror
    (:data:`VLAB_CACHE_PARTS`), the image build and the nodes fetch through them;
    off, every cache part is off."""
    run = os.path.join(base, "run")
    etc = os.path.join(base, "etc")
    virtual = {"driver": "virtual", "bridge": BRIDGE, "memory": int(memory), "cpus": 1}
    nodes = {}
    for node_id, ip, mac, role in NODES[:1 + int(computes)]:
        nodes[node_id] = {"mac": mac, "ip": ip, "role": role, "power": dict(virtual)}
    devstack = {"repo": devstack_repo, "user": "stack", "dest": "/opt/stack",
                "localrc": {"ADMIN_PASSWORD": "vlab-secret",
                            "DATABASE_PASSWORD": "$ADMIN_PASSWORD",
                            "RABBIT_PASSWORD": "$ADMIN_PASSWORD",
                            "SERVICE_PASSWORD": "$ADMIN_PASSWORD",
                            "LOGFILE": "$DEST/logs/stack.sh.log",
                            "LIBVIRT_TYPE": "qemu"}}
    if devstack_branch:
        devstack["branch"] = devstack_branch
    network = {"interface": BRIDGE, "cidr": CIDR, "domain": "vlab.test",
               "dhcp": {"mode": "full", "lease_time": "1h"},
               "dns": {"enabled": True, "upstream": []}}
    if uplink:
        network["gateway"] = NETNODE_IP
    image = {"distro": "debian", "release": "bookworm",
             "packages": sorted(image_packages), "salt_version": SALT_VERSION}
    if mirror:
        image["mirror"] = mirror
    lookup_cache = {}
    if cache:
        # devpi's venv under the lab directory (down removes it); apt-cacher-ng
        # runs as a process of the lab, as root like the lab's other daemons
        lookup_cache = {"devpi_venv": os.path.join(base, "devpi-venv"), "apt_user": "root"}
    return {
        # The LAN cache (netlab:cache): off unless --cache, and then only the parts
        # whose upstreams the networking node reaches (VLAB_CACHE_PARTS)
        "cache": {part: {"enabled": bool(cache) and part in VLAB_CACHE_PARTS}
                  for part in ("apt", "pip", "git", "files")},
        "network": network,
        "netnode": {"id": "netnode", "ip": NETNODE_IP, "storage": os.path.join(base, "srv"),
                    "nfs": {"server": "ganesha"}, "http": {"port": 80}},
        "image": image,
        "devstack": devstack,
        "nodes": nodes,
        "lookup": {
            "service_control": "process", "run_dir": run, "install_packages": False,
            "dnsmasq": {"conf": os.path.join(etc, "dnsmasq.conf"),
                        "leasefile": os.path.join(run, "dnsmasq.leases"), "ra": True},
            "nginx": {"conf": os.path.join(etc, "nginx-netlab.conf")},
            "nfs": {"ganesha_conf": os.path.join(etc, "ganesha.conf")},
            **({"cache": lookup_cache} if lookup_cache else {}),
        },
    }


ACNG_INIT_SCRIPT = "/etc/init.d/apt-cacher-ng"


def acng_package_stop(systemd, init_script):
    """Commands that stop and disable the apt-cacher-ng package's own daemon,
    which its installation starts (``systemd``: this machine runs systemd;
    ``init_script``: the package's SysV script exists)."""
    if systemd:
        return [["systemctl", "disable", "--now", "apt-cacher-ng"]]
    if init_script:
        return [[ACNG_INIT_SCRIPT, "stop"], ["update-rc.d", "apt-cacher-ng", "disable"]]
    return []


# --------------------------------------------------------------------------- package sources
def _resolvers(paths=("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf")):
    """This machine's IPv4 name servers that a namespace can reach through NAT
    (a loopback stub such as systemd-resolved's is replaced by its upstreams)."""
    for path in paths:
        found = []
        with contextlib.suppress(OSError):
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    parts = line.split()
                    if len(parts) >= 2 and parts[0] == "nameserver":
                        with contextlib.suppress(ValueError):
                            addr = ipaddress.ip_address(parts[1])
                            if addr.version == 4 and not addr.is_loopback:
                                found.append(str(addr))
        if found:
            return found
    return []


def package_hosts(lab, pip_settings):
    """Host names the networking node's image build fetches from: the Debian (or
    Ubuntu) mirror of the pillar and the Python package index Salt comes from."""
    hosts = [urllib.parse.urlsplit(lab.image.mirror).hostname]
    indexes = [u for u in [lab.image.pip_index or pip_settings.get("index-url")] +
               list(pip_settings.get("extra-index-url", [])) if u]
    # the pip cache (devpi-server) mirrors PyPI itself, whatever index this
    # machine's pip uses (that one still installs devpi-server into its venv)
    if not (lab.image.pip_index or pip_settings.get("index-url")) or \
            netlab_cache.enabled(lab, "pip"):
        hosts += list(DEFAULT_PIP_HOSTS)
    for url in indexes:
        if url.startswith(("http://", "https://")):
            hosts.append(urllib.parse.urlsplit(url).hostname)
    return [h for h in dict.fromkeys(hosts) if h and not _in_lab(lab, h)]


def _in_lab(lab, host):
    """True when ``host`` is an address on the lab segment: reached inside the
    namespace, never through the way out (e.g. a mirror on the networking node)."""
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(lab.network.cidr)
    except ValueError:
        return False


def resolve(hosts):
    """host -> its IPv4 addresses, resolved on this machine; a host that does not
    resolve is an error (the image build could not reach it either)."""
    out = {}
    for host in hosts:
        try:
            infos = socket.getaddrinfo(host, 443, socket.AF_INET, socket.SOCK_STREAM)
        except OSError as exc:
            raise VlabError("{} does not resolve on this machine ({}): the networking node "
                            "builds the node image from it. Check this machine's network "
                            "and resolver, or point the lab at a mirror it reaches "
                            "(--mirror URL)".format(host, exc)) from exc
        out[host] = sorted({info[4][0] for info in infos})
    return out


def nft_ruleset(n, registries, resolvers, uplink):
    """The lab's own nftables table: NAT out for the networking node's veth address,
    only to the package sources and the resolver; the whole lab only with uplink."""
    lines = ["table ip {} {{".format(n["table"]),
             "  chain forward {",
             "    type filter hook forward priority 0; policy accept;",
             "    oifname \"{}\" ct state established,related accept".format(n["veth_host"])]
    if registries:
        lines.append("    iifname \"{}\" ip saddr {} ip daddr {{ {} }} tcp dport {{ 80, 443 }} "
                     "accept".format(n["veth_host"], n["ns_ip"], ", ".join(registries)))
    if resolvers:
        for proto in ("udp", "tcp"):
            lines.append("    iifname \"{}\" ip saddr {} ip daddr {{ {} }} {} dport 53 "
                         "accept".format(n["veth_host"], n["ns_ip"], ", ".join(resolvers),
                                         proto))
    if uplink:
        lines.append("    iifname \"{}\" ip saddr {} accept".format(n["veth_host"], CIDR))
    lines += ["    iifname \"{}\" drop".format(n["veth_host"]),
              "  }",
              "  chain postrouting {",
              "    type nat hook postrouting priority 100; policy accept;",
              "    ip saddr {} oifname != \"{}\" masquerade".format(n["ns_ip"], n["veth_host"])]
    if uplink:
        lines.append("    ip saddr {} oifname != \"{}\" masquerade".format(CIDR, n["veth_host"]))
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the lab
class Vlab:
    """One virtual lab under ``base``; state in ``<base>/vlab.json``."""

    def __init__(self, base=DEFAULT_DIR, venv_bin=None):
        self.base = os.path.abspath(base)
        self.names = names(self.base)
        self.state_file = os.path.join(self.base, "vlab.json")
        self.master_dir = os.path.join(self.base, "master")
        self.conf_dir = os.path.join(self.master_dir, "etc")
        self.pillar_dir = os.path.join(self.master_dir, "pillar")
        self.minion_dir = os.path.join(self.base, "netnode-minion")
        self.logs_dir = os.path.join(self.base, "logs")
        self.venv_bin = venv_bin or os.path.dirname(sys.executable)
        self.state = self._load()
        self._lock_fh = None

    # ------------------------------------------------------------------ state
    def _load(self):
        try:
            with open(self.state_file, encoding="utf-8") as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return {}

    def _save(self):
        os.makedirs(self.base, exist_ok=True)
        tmp = self.state_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.state, fh, indent=1, sort_keys=True)
        os.replace(tmp, self.state_file)

    @contextlib.contextmanager
    def locked(self, verb):
        """One ``./vlab up``/``down`` at a time per lab; a second one is refused,
        naming the first (the kernel drops the lock when its holder dies). The
        commands that only read or talk to the master do not take it."""
        os.makedirs(os.path.dirname(self.base) or "/", exist_ok=True)
        path = self.base.rstrip("/") + ".lock"
        fh = open(path, "a+", encoding="utf-8")  # pylint: disable=consider-using-with
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another ./vlab command"
            fh.close()
            raise VlabError("the lab in {} is busy: {}; wait for it to end".format(
                self.base, holder)) from None
        fh.seek(0)
        fh.truncate()
        fh.write("./vlab {} (pid {}, since {})\n".format(
            verb, os.getpid(), time.strftime("%Y-%m-%d %H:%M:%S")))
        fh.flush()
        try:
            yield
        finally:
            fh.truncate(0)
            if not os.path.exists(self.base):  # the lab is gone: its lock file goes too
                with contextlib.suppress(OSError):
                    os.unlink(path)
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()

    @property
    def holder(self):
        pid = self.state.get("holder")
        return pid if pid and _alive(pid) and self._in_our_netns(pid) else None

    def _ns_inode(self):
        try:
            return os.stat(os.path.join("/run/netns", self.names["ns"])).st_ino
        except OSError:
            return None

    def _in_our_netns(self, pid):
        ino = self._ns_inode()
        try:
            return ino is not None and os.stat("/proc/{}/ns/net".format(pid)).st_ino == ino
        except OSError:
            return False

    def prefix(self):
        """argv prefix that runs a command in the lab's network + mount namespace."""
        if not self.holder:
            raise VlabError("the virtual lab in {} is not up; ./vlab up".format(self.base))
        return ["nsenter", "-t", str(self.holder), "-m", "-n", "--"]

    def run(self, cmd, check=True, **kw):
        return _sh(self.prefix() + list(cmd), check=check, **kw)

    def salt_cmd(self, tool, *args):
        return self.prefix() + [os.path.join(self.venv_bin, tool), "-c", self.conf_dir] + [
            str(a) for a in args]

    def salt(self, tool, *args, check=True, timeout=None):
        """``salt``/``salt-run``/``salt-key`` against the lab's master, inside the lab."""
        proc = subprocess.run(self.salt_cmd(tool, *args), check=False, capture_output=True,  # pylint: disable=subprocess-run-check
                              text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise VlabError("{} {} failed ({})\n{}{}".format(
                tool, " ".join(map(str, args)), proc.returncode, proc.stdout, proc.stderr))
        return proc

    # ------------------------------------------------------------------ preflight
    @staticmethod
    def missing_commands(cache=False):
        wanted = dict(COMMANDS, **(CACHE_COMMANDS if cache else {}))
        return sorted(c for c in wanted if not shutil.which(c) and not any(
            os.path.exists(os.path.join(d, c)) for d in ("/usr/sbin", "/sbin")))

    def preflight(self, install=True, cache=False):
        if os.geteuid() != 0:
            raise VlabError("run as root (network namespaces, bridges, qemu, NFS)")
        missing = self.missing_commands(cache)
        packages = dict(COMMANDS, **CACHE_COMMANDS)
        if missing and install:
            if not shutil.which("apt-get"):
                raise VlabError("missing commands: {}; this machine has no apt-get: install "
                                "them by hand".format(", ".join(missing)))
            wanted = list(APT_PACKAGES) + sorted(
                {CACHE_COMMANDS[c] for c in missing if c in CACHE_COMMANDS})
            _say("installing packages: " + " ".join(wanted))
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            for cmd in (["apt-get", "update", "-q"],
                        ["apt-get", "install", "-y", "-q", "--no-install-recommends"] +
                        wanted):
                res = _sh(cmd, check=False, env=env)
                if res.returncode != 0:
                    raise VlabError("{} failed ({}):\n{}".format(
                        " ".join(cmd[:2]), res.returncode,
                        "\n".join((res.stderr or res.stdout).strip().splitlines()[-8:])))
            if "apt-cacher-ng" in missing:
                # the package starts its own apt-cacher-ng on every interface of
                # this machine (an open proxy nobody asked for): the lab runs its
                # own, on the lab IP inside its namespace
                for cmd in acng_package_stop(os.path.isdir("/run/systemd/system"),
                                             os.path.exists(ACNG_INIT_SCRIPT)):
                    _sh(cmd, check=False)
            missing = self.missing_commands(cache)
        if missing:
            raise VlabError("missing commands: {} (Debian/Ubuntu packages: {})".format(
                ", ".join(missing), " ".join(sorted({packages[c] for c in missing}))))
        if not os.path.exists("/dev/net/tun"):
            raise VlabError("/dev/net/tun is missing: the VMs need tap devices "
                            "(modprobe tun)")

    # ------------------------------------------------------------------ network
    def _namespace(self, lab, uplink, mirror_hosts):
        n = self.names
        if self.holder:
            if bool(self.state.get("uplink")) != bool(uplink):
                raise VlabError("the lab runs {} --uplink; ./vlab down first to change "
                                "that".format("with" if self.state.get("uplink") else
                                              "without"))
            new = [h for h in mirror_hosts if h not in self.state.get("hosts", mirror_hosts)]
            if new:
                # the NAT's allowed addresses were resolved when the lab was made
                raise VlabError("the lab's way out was made without {} (now needed, e.g. "
                                "by --cache); ./vlab down first".format(", ".join(new)))
            self._forwarding_on()
            return
        if self._ns_inode() is not None:
            pids = _sh(["ip", "netns", "pids", n["ns"]], check=False).stdout.split()
            if pids:
                raise VlabError("namespace {} exists and runs processes ({}) but this lab "
                                "({}) did not start them: ./vlab --dir {} down".format(
                                    n["ns"], " ".join(pids[:5]), self.base, self.base))
            _sh(["ip", "netns", "delete", n["ns"]])  # left by an up that crashed
        taken = _sh(["ip", "-4", "-o", "addr", "show"], check=False).stdout
        for word in (n["host_ip"] + "/", " " + n["veth_host"] + " "):
            if word in taken and not self.state.get("veth"):
                raise VlabError("{} is in use on this machine: another lab or a leftover "
                                "({}); ./vlab --dir {} down".format(
                                    word.strip(" /"), n["veth_host"], self.base))
        resolvers = _resolvers()
        if not resolvers:
            raise VlabError("no IPv4 name server in /etc/resolv.conf the lab can reach "
                            "(a loopback resolver is not reachable from a namespace)")
        registries = sorted({a for addrs in resolve(mirror_hosts).values() for a in addrs})
        # record before creating, so a failure half-way is undone by down
        self.state.update(ns=n["ns"], veth=n["veth_host"], table=n["table"],
                          uplink=bool(uplink), registries=registries, resolvers=resolvers,
                          hosts=list(mirror_hosts))
        self._save()
        _sh(["ip", "netns", "add", n["ns"]])
        ns = ["ip", "-n", n["ns"]]
        _sh(ns + ["link", "set", "lo", "up"])
        _sh(ns + ["link", "add", BRIDGE, "type", "bridge"])
        _sh(ns + ["addr", "add", NETNODE_IP + "/24", "dev", BRIDGE])
        # an IPv6 prefix for router advertisements: iPXE does not wait for IPv6 then
        _sh(ns + ["addr", "add", "fd00:98::2/64", "dev", BRIDGE, "nodad"])
        _sh(ns + ["link", "set", BRIDGE, "up"])
        _sh(["ip", "link", "add", n["veth_host"], "type", "veth", "peer", "name", n["veth_ns"],
             "netns", n["ns"]])
        _sh(["ip", "addr", "add", n["host_ip"] + "/30", "dev", n["veth_host"]])
        _sh(["ip", "link", "set", n["veth_host"], "up"])
        _sh(ns + ["addr", "add", n["ns_ip"] + "/30", "dev", n["veth_ns"]])
        _sh(ns + ["link", "set", n["veth_ns"], "up"])
        _sh(ns + ["route", "add", "default", "via", n["host_ip"]])
        # lab nodes are routed out only with --uplink
        _sh(["ip", "netns", "exec", n["ns"], "sysctl", "-qw",
             "net.ipv4.ip_forward={}".format(1 if uplink else 0)])
        _sh(["nft", "-f", "-"], input=nft_ruleset(n, registries, resolvers, uplink))
        self._forwarding_on()  # after the table: another user's release then sees it
        self._start_holder(resolvers)

    def _forwarding_on(self):
        """The lab's way out needs this machine's IPv4 forwarding: switched on when
        the lab is made and again by every ``up`` of a running lab, because
        something else may have switched it off since (the image build then fails
        to resolve its mirror)."""
        if forwarding_acquire() and self.holder:
            print("vlab: IPv4 forwarding on this machine was switched off since the lab "
                  "was made; switched on again for the lab's way out")

    def _start_holder(self, resolvers):
        """The process that keeps the namespace's private ``/run`` (and, when the host's
        resolv.conf points into /run or at a loopback stub, the lab's own) alive."""
        resolv = os.path.join(self.base, "etc", "resolv.conf")
        os.makedirs(os.path.dirname(resolv), exist_ok=True)
        with open(resolv, "w", encoding="utf-8") as fh:
            fh.write("".join("nameserver {}\n".format(r) for r in resolvers))
        target = os.path.realpath("/etc/resolv.conf")
        script = "mount -t tmpfs -o mode=755 netlab-vlab-run /run && mkdir -p /run/lock && "
        if target.startswith("/run/"):
            script += 'mkdir -p "$(dirname {0})" && cp {1} {0} && '.format(target, resolv)
        else:
            script += "mount --bind {} /etc/resolv.conf && ".format(resolv)
        script += "echo ready && exec sleep 2147483647"
        holder = subprocess.Popen(  # pylint: disable=consider-using-with
            ["ip", "netns", "exec", self.names["ns"], "unshare", "-m", "--propagation",
             "private", "sh", "-c", script],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        if holder.stdout.readline().strip() != "ready":
            raise VlabError("private /run for the lab failed: " + holder.stderr.read())
        self.state["holder"] = _wait(self._find_holder, 10, "namespace holder", 0.1)
        self._save()

    def _find_holder(self):
        for pid in _sh(["ip", "netns", "pids", self.names["ns"]], check=False).stdout.split():
            with contextlib.suppress(OSError):
                with open("/proc/{}/cmdline".format(pid), "rb") as fh:
                    if fh.read().startswith(b"sleep\x002147483647"):
                        return int(pid)
        return None

    # ------------------------------------------------------------------ salt
    def _storage(self, lab):
        """``netnode:storage`` on a loop-mounted btrfs (see :data:`STORAGE_IMAGE`)."""
        storage = lab.netnode.storage
        if _fs_type(storage) == "btrfs":
            return storage
        if os.path.isdir(storage) and os.listdir(storage):
            raise VlabError("{} is not empty and not on btrfs: remove the lab first "
                            "(./vlab down)".format(storage))
        image = os.path.join(self.base, STORAGE_IMAGE)
        os.makedirs(storage, exist_ok=True)
        if not os.path.exists(image):
            with open(image, "wb") as fh:
                fh.truncate(_size_bytes(STORAGE_SIZE))
            _sh(["mkfs.btrfs", "-q", "-L", "netlab-vlab", image])
        _sh(["mount", "-o", "loop", image, storage])
        _say("networking node storage: btrfs in {} (sparse, up to {}) on {}: node root "
             "resets are reflink copies".format(image, STORAGE_SIZE, storage))
        return storage

    def _configure(self, raw):
        import yaml  # pylint: disable=import-outside-toplevel

        for d in (self.conf_dir, os.path.join(self.pillar_dir, "netlab"),
                  os.path.join(self.master_dir, "pki"), os.path.join(self.base, "etc"),
                  os.path.join(self.base, "run"), self.logs_dir):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.base, 0o755)  # nginx's worker user reads the HTTP tree under it
        with open(os.path.join(self.pillar_dir, "top.sls"), "w", encoding="utf-8") as fh:
            fh.write("base:\n  'L@netnode,netnode_master':\n    - netlab.lab\n")
        with open(os.path.join(self.pillar_dir, "netlab", "lab.sls"), "w",
                  encoding="utf-8") as fh:
            yaml.safe_dump({"netlab": raw}, fh, default_flow_style=False)
        opts = {
            "id": "netnode_master", "interface": "0.0.0.0", "root_dir": self.master_dir,
            "pki_dir": os.path.join(self.master_dir, "pki"),
            "sock_dir": os.path.join(self.master_dir, "sock"),
            "cachedir": os.path.join(self.master_dir, "cache"),
            "pidfile": os.path.join(self.master_dir, "master.pid"),
            "log_file": os.path.join(self.master_dir, "master.log"),
            "log_level_logfile": "info", "user": "root",
            "auto_accept": False, "open_mode": False,
            "file_roots": {"base": [REPO]}, "pillar_roots": {"base": [self.pillar_dir]},
            "ext_pillar": [{"netlab": {"sls": "netlab.lab"}}],
            "netlab_pillar_id": "netnode",
            # a reimage's exports refresh: no command before the nfs state, which
            # reloads ganesha (SIGHUP by its pid file) and restarts it only when a
            # reload is not confirmed; the running VMs' roots never pause
            "netlab_exports_refresh": [],
            # TCG guests answer slowly, most of all right after their minion starts
            "timeout": 300, "gather_job_timeout": 120, "worker_threads": 4,
        }
        with open(os.path.join(self.conf_dir, "master"), "w", encoding="utf-8") as fh:
            yaml.safe_dump(opts, fh, default_flow_style=False)
        return opts

    def _start_master(self):
        if self.state.get("master") and _alive(self.state["master"]):
            return
        with open(os.path.join(self.master_dir, "master.stderr"), "ab") as log:
            proc = subprocess.Popen(  # pylint: disable=consider-using-with
                self.prefix() + [os.path.join(self.venv_bin, "salt-master"), "-c",
                                 self.conf_dir, "-l", "warning"],
                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        self.state["master"] = proc.pid
        self._save()
        _wait(lambda: self.salt("salt-run", "manage.present", check=False).returncode == 0,
              DAEMON_WAIT, "the salt-master to answer (log: {})".format(
                  os.path.join(self.master_dir, "master.log")))
        self.salt("salt-run", "saltutil.sync_all")

    def _start_minion(self):
        import yaml  # pylint: disable=import-outside-toplevel
        import netlab_roots_keys  # pylint: disable=import-outside-toplevel

        if self.state.get("minion") and _alive(self.state["minion"]):
            return
        pki = os.path.join(self.minion_dir, "pki")
        if not os.path.exists(os.path.join(pki, "minion.pem")):
            os.makedirs(pki, exist_ok=True)
            priv, pub = netlab_roots_keys.gen_minion_keys()
            with open(os.path.join(pki, "minion.pem"), "w", encoding="utf-8") as fh:
                fh.write(priv)
            os.chmod(os.path.join(pki, "minion.pem"), 0o400)
            with open(os.path.join(pki, "minion.pub"), "w", encoding="utf-8") as fh:
                fh.write(pub)
            netlab_roots_keys.preaccept_key(os.path.join(self.master_dir, "pki"), "netnode", pub)
        conf = {"id": "netnode", "master": "127.0.0.1", "root_dir": self.minion_dir,
                "pki_dir": pki, "cachedir": os.path.join(self.minion_dir, "cache"),
                "sock_dir": os.path.join(self.minion_dir, "sock"),
                "pidfile": os.path.join(self.minion_dir, "minion.pid"),
                "log_file": os.path.join(self.minion_dir, "minion.log"),
                "log_level_logfile": "info", "user": "root", "grains_cache": False,
                "enable_fqdns_grains": False}
        os.makedirs(os.path.join(self.minion_dir, "etc"), exist_ok=True)
        with open(os.path.join(self.minion_dir, "etc", "minion"), "w", encoding="utf-8") as fh:
            yaml.safe_dump(conf, fh)
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            self.prefix() + [os.path.join(self.venv_bin, "salt-minion"), "-c",
                             os.path.join(self.minion_dir, "etc"), "-l", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.state["minion"] = proc.pid
        self._save()
        _wait(lambda: "netnode" in json.loads(self.salt(
            "salt", "--out=json", "--static", "-t", "10", "netnode", "test.ping",
            check=False).stdout or "{}"), DAEMON_WAIT,
              "the networking node's minion (log: {})".format(
                  os.path.join(self.minion_dir, "minion.log")))

    # ------------------------------------------------------------------ DevStack
    def _serve_repo(self, lab, path):
        """Copy the repository at ``path`` into the HTTP tree; its URL for nodes."""
        src = path[len("file://"):] if path.startswith("file://") else path
        if not os.path.isdir(src):
            raise VlabError("--devstack-repo {} is neither a URL nor a directory".format(path))
        dest = os.path.join(lab.netnode.http_root, "git", "devstack.git")
        if os.path.exists(dest):
            shutil.rmtree(dest)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        res = _sh(["git", "-c", "safe.directory=*", "clone", "-q", "--bare", "--mirror", src,
                   dest], check=False)
        if res.returncode != 0:
            raise VlabError("--devstack-repo {} is not a git repository: {}".format(
                path, res.stderr.strip()))
        _sh(["git", "-c", "safe.directory=*", "-C", dest, "update-server-info"])
        _sh(["chmod", "-R", "a+rX", os.path.join(lab.netnode.http_root, "git")])
        return "http://{}:{}/git/devstack.git".format(lab.netnode.ip, lab.netnode.http_port)

    def _devstack_reachable(self, url, uplink):
        """Whether the lab nodes can clone ``url``: one served by the networking node
        can; without ``--uplink`` the nodes have no way out, so no other can (and it is
        not even tried: nothing leaves this machine for it)."""
        if url.startswith("http://{}".format(NETNODE_IP)):
            return True
        if not uplink:
            return False
        res = self.run(["timeout", "30", "git", "ls-remote", "--heads", url], check=False)
        return res.returncode == 0

    # ------------------------------------------------------------------ verbs
    def up(self, computes=1, devstack_repo=None, devstack_branch=None, memory=1536,
           uplink=False, image_dir=None, install=True, boot_timeout=1500, mirror=None,
           verbose=False, cache=False):
        import netlab_image  # pylint: disable=import-outside-toplevel
        import netlab_lab  # pylint: disable=import-outside-toplevel

        self.preflight(install=install, cache=cache)
        _say("lab directory {} (namespace {})".format(self.base, self.names["ns"]))
        os.makedirs(self.base, exist_ok=True)
        repo = devstack_repo or DEVSTACK_REPO
        local_repo = not repo.startswith(("http://", "https://", "git://", "ssh://"))
        raw = lab_pillar(self.base, computes=computes, devstack_repo=repo,
                         devstack_branch=devstack_branch, memory=memory, uplink=uplink,
                         mirror=mirror, cache=cache)
        if local_repo:  # replaced by its URL on the networking node below
            raw["devstack"]["repo"] = "http://{}/git/devstack.git".format(NETNODE_IP)
        try:
            lab = netlab_lab.load(raw)
        except netlab_lab.LabError as exc:
            raise VlabError("the options make an invalid lab: {}".format(exc)) from exc
        hosts = package_hosts(lab, netlab_image.host_pip_settings())
        # Mounted before the namespace's private mount namespace is made: that
        # copies the host's mounts when it starts; made first, the lab's daemons
        # would write under the mount point and the host would see an empty btrfs.
        self._storage(lab)
        self._namespace(lab, uplink, hosts)
        _say("the networking node reaches its package sources ({}) through NAT; the lab "
             "nodes {}".format(", ".join(hosts), "too (--uplink)" if uplink else
                               "have no way out (--uplink to give them one)"))
        if cache:
            _say("LAN cache on the networking node: the image build and the lab nodes "
                 "fetch Debian packages through apt-cacher-ng (http://{0}:3142) and "
                 "Python packages through devpi-server (http://{0}:3141)".format(
                     NETNODE_IP))
        if local_repo:
            raw["devstack"]["repo"] = self._serve_repo(lab, repo)
        self._configure(raw)
        _say("salt-master + networking node minion in namespace {}".format(self.names["ns"]))
        self._start_master()
        self._start_minion()
        options = {"boot_timeout": int(boot_timeout)}
        if image_dir:
            self._link_image(lab, image_dir, netlab_image)
            options["image"] = False
        reachable = self._devstack_reachable(raw["devstack"]["repo"], uplink)
        if not reachable:
            options.update(checkout=False, stack=False)
            _say("DevStack's repository {} cannot be reached from the lab nodes: the deploy "
                 "stops after the nodes are up and have their local.conf".format(
                     raw["devstack"]["repo"]))
        self.state.update(computes=computes, repo=raw["devstack"]["repo"], up=time.time())
        self._save()
        rc = self._deploy(options, verbose)
        rows = self._status_rows()
        self._print_table(rows)
        import netlab_run  # pylint: disable=import-outside-toplevel

        record = netlab_run.read(lab.netnode.state_dir) or {}
        failures = record.get("failures") or []
        if rc == 0 and not failures:
            want = "ready" if reachable else "up"
            if all(r.get("state") in (want, "ready") for r in rows) and len(rows) == len(
                    lab.nodes):
                if not reachable:
                    _say("DevStack was not stacked: {} is unreachable from the lab nodes. "
                         "Point devstack:repo at a mirror the lab can reach, e.g. a local "
                         "clone: ./vlab up --devstack-repo /path/to/devstack (served to the "
                         "nodes by the networking node), or give the lab an uplink: "
                         "./vlab up --uplink".format(raw["devstack"]["repo"]))
                _say("done: every node {}".format(want))
                return 0
        self._print_failure(record, rc)
        return 1

    def _deploy(self, options, verbose):
        """The deploy, its whole output into a log file, progress lines on screen."""
        os.makedirs(self.logs_dir, exist_ok=True)
        logfile = os.path.join(self.logs_dir, "deploy-{}.log".format(
            time.strftime("%Y%m%dT%H%M%S")))
        self.state["last_log"] = logfile
        self._save()
        _say("salt-run state.orchestrate netlab.deploy (full output: {})".format(logfile))
        _say("networking node services, then the node image (a first build takes 5-10 "
             "minutes), then the nodes")
        cmd = self.salt_cmd("salt-run", "-l", "error", "--state-output=full",
                            "--no-color", "state.orchestrate", "netlab.deploy",
                            "pillar=" + json.dumps({"netlab_deploy": options}))
        with open(logfile, "w", encoding="utf-8") as log, self._progress():
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,  # pylint: disable=consider-using-with
                                    text=True)
            for line in proc.stdout:
                log.write(line)
                log.flush()
                if verbose:
                    sys.stdout.write(line)
            rc = proc.wait()
        return rc

    def _status_rows(self):
        proc = self.salt("salt-run", "-l", "quiet", "--out=json", "netlab.status",
                         "as_table=False", check=False)
        try:
            rows = json.loads(proc.stdout)
        except ValueError:
            return []
        return rows if isinstance(rows, list) else []

    @staticmethod
    def _print_table(rows):
        print("{:<8} {:<10} {:<22} {}".format("node", "state", "since", "last"))
        for r in rows:
            print("{:<8} {:<10} {:<22} {}".format(
                r.get("node", ""), r.get("state", ""), time.strftime(
                    "%Y-%m-%d %H:%M:%S", time.localtime(r["since"])) if r.get("since") else "-",
                (r.get("reason") or r.get("result") or "")[:100]))
        sys.stdout.flush()

    def _print_failure(self, record, rc):
        import netlab_run  # pylint: disable=import-outside-toplevel

        failures = record.get("failures") or []
        first = netlab_run.first_failure(record)
        if first:
            _say("FAILED: " + netlab_run.describe(first))
            if first.get("log"):
                _say("  log: {}".format(first["log"]))
            for line in (first.get("log_tail") or "").splitlines()[-10:]:
                print("  | " + line)
            for other in failures:
                if other is not first:
                    _say("  also: {} failed on {}".format(
                        other["step"], other.get("node") or "the networking node"))
        else:
            _say("FAILED: the deploy did not reach every node (exit {})".format(rc))
        _say("full output: {}".format(self.state.get("last_log")))

    @contextlib.contextmanager
    def _progress(self):
        """Print netlab's events and the networking node's state runs as lines."""
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            self.salt_cmd("salt-run", "-l", "quiet", "state.event", "*"),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True)
        thread = threading.Thread(target=_pump, args=(proc.stdout,), daemon=True)
        thread.start()
        try:
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)

    def _link_image(self, lab, image_dir, netlab_image):
        """Use an already built image (``<dir>`` holding ``rootfs/``, kernel, initrd)."""
        images = lab.netnode.images_dir
        os.makedirs(images, exist_ok=True)
        image_dir = os.path.realpath(image_dir)
        if not os.path.isdir(os.path.join(image_dir, "rootfs")):
            raise VlabError("--image {}: not an image build (no rootfs/ in it)".format(
                image_dir))
        build_id = os.path.basename(image_dir)
        link = os.path.join(images, build_id)
        if not os.path.lexists(link) and _fs_type(images) == "btrfs":
            # imported once into the lab's btrfs, so that every node root reset
            # is a reflink of it (a link to a tree on another filesystem is
            # copied byte for byte on each reset); a plain directory, not a
            # subvolume, which nfs-ganesha could not export to stateless nodes
            _say("importing the image {} into the lab's btrfs storage".format(image_dir))
            tmp = os.path.join(images, ".import-" + build_id)
            _sh(["rm", "-rf", "--one-file-system", tmp], check=False)
            os.makedirs(tmp)
            _sh(["cp", "-a", "--reflink=auto", "-T", os.path.join(image_dir, "rootfs"),
                 os.path.join(tmp, "rootfs")])
            for name in os.listdir(image_dir):
                if name != "rootfs" and os.path.isfile(os.path.join(image_dir, name)):
                    shutil.copy2(os.path.join(image_dir, name), os.path.join(tmp, name))
            os.rename(tmp, link)
        if not os.path.lexists(link):
            os.symlink(image_dir, link)
        cur = os.path.join(images, "current")
        if os.path.lexists(cur):
            os.unlink(cur)
        os.symlink(build_id, cur)
        netlab_image.publish(lab, build_id)
        _say("using the image in {}".format(image_dir))

    def status(self):
        if not self.holder:
            _say("not up ({})".format(self.base))
            return 1
        rows = self._status_rows()
        self._print_table(rows)
        return 0

    def passthrough(self, tool, args):
        """``./vlab salt|salt-run|salt-key ARGS``: the lab's master, inside the lab."""
        if not self.holder:
            raise VlabError("the virtual lab in {} is not up; ./vlab up".format(self.base))
        return subprocess.run(self.salt_cmd(tool, *args), check=False).returncode  # pylint: disable=subprocess-run-check

    # ------------------------------------------------------------------ down
    def _our_pids(self):
        """Processes this lab started: its pid files and state, then whatever runs in
        its own namespace -- each checked to be in that namespace (a reused pid of
        some other process is never signalled)."""
        pids = []
        for d in (os.path.join(self.base, "srv", "state", "vms"),):
            for node in _listdir(d):
                pids.append(_read_pid(os.path.join(d, node, "qemu.pid")))
        run_dir = os.path.join(self.base, "run")
        for name in _listdir(run_dir):
            if name.endswith(".pid"):
                pids.append(_read_pid(os.path.join(run_dir, name)))
        pids += [self.state.get(k) for k in ("master", "minion")]
        if self._ns_inode() is not None:
            pids += [int(p) for p in _sh(["ip", "netns", "pids", self.names["ns"]],
                                         check=False).stdout.split()]
        pids.append(self.state.get("holder"))
        return [p for p in dict.fromkeys(pids) if p and _alive(p) and self._in_our_netns(p)]

    def down(self, keep=False):
        """Stop every VM and daemon of the lab, remove its namespace, link and table."""
        n = self.names
        pids = [p for p in netlab_proc.stop_all(self._our_pids(), timeout=20) if _alive(p)]
        if pids:
            raise VlabError("processes of the lab do not stop: {}".format(pids))
        _sh(["nft", "delete", "table", "ip", n["table"]], check=False)
        _sh(["ip", "link", "delete", n["veth_host"]], check=False)
        _sh(["ip", "netns", "delete", n["ns"]], check=False)
        forwarding_release(n["table"], fallback=self.state.get("host_ip_forward"))
        for mnt in reversed(_mounts_under(self.base)):
            # (the storage btrfs among them: a plain umount frees its loop device at
            # once; lazy only when something still holds it)
            if _sh(["umount", mnt], check=False).returncode != 0:
                _sh(["umount", "-l", mnt], check=False)
        if not keep and os.path.isdir(self.base):
            _sh(["rm", "-rf", "--one-file-system", self.base], check=False)
        elif os.path.isdir(self.base):
            self.state = {}
            self._save()
        self.state = {}
        _say("virtual lab removed" + (" (directory kept: {})".format(self.base) if keep else ""))
        return 0


# --------------------------------------------------------------------------- helpers
def _fs_type(path):
    """Filesystem type of ``path`` (or of its nearest existing parent)."""
    while not os.path.exists(path) and path not in ("", "/"):
        path = os.path.dirname(path)
    res = _sh(["stat", "-f", "-c", "%T", path or "/"], check=False)
    return res.stdout.strip() if res.returncode == 0 else "unknown"


def _size_bytes(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def _pump(stream):
    """One line per netlab event and per state run of the networking node."""
    for line in stream:
        tag, _, data = line.partition("\t")
        tag = tag.strip()
        try:
            data = json.loads(data)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        if tag.startswith("netlab/"):
            if isinstance(data.get("data"), dict):
                data = data["data"]  # a node's event.send wraps its payload
            keys = ("state", "result", "reason", "duration", "comment", "message", "cause")
            extra = ", ".join("{}={}".format(k, data[k]) for k in keys
                              if data.get(k) not in (None, ""))
            _say("event {}{}".format(tag, "  " + extra if extra else ""))
        elif tag.startswith("salt/job/") and "/ret/" in tag and data.get("fun") in (
                "state.sls", "state.apply") and data.get("id") == "netnode":
            ret = data.get("return")
            sls = ",".join(str(a) for a in data.get("fun_args", []) if isinstance(a, str))
            if isinstance(ret, dict):
                bad = [v for v in ret.values() if isinstance(v, dict) and v.get("result") is False]
                _say("networking node: {}: {} states, {}".format(
                    sls, len(ret), "{} FAILED".format(len(bad)) if bad else "all ok"))
            else:
                _say("networking node: {}: FAILED (no state results)".format(sls))


def _read_pid(path):
    return netlab_proc.read_pid(path)


def _listdir(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _mounts_under(base):
    out = []
    with contextlib.suppress(OSError):
        with open("/proc/self/mounts", encoding="utf-8") as fh:
            for line in fh:
                mnt = line.split()[1].replace("\\040", " ")
                if mnt == base or mnt.startswith(base.rstrip("/") + "/"):
                    out.append(mnt)
    return sorted(out)


# IPv4 forwarding on this machine is shared by everything netlab routes out through
# it: virtual labs' ways out and the test suite's uplinks (test/lib/uplink.py), each
# an nftables table named with one of these prefixes. Whoever switches forwarding on
# keeps the value before in FORWARD_BEFORE; the last one to go puts it back. (Each
# putting back its own value cut a running lab off its package sources in the
# middle of its image build when a test's uplink went away.)
FORWARDING_TABLES = ("netlab_vlab_", "netlab_uplink_")

FORWARD_BEFORE = "/run/netlab-ip-forward-before"
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"

# How long the lab's salt-master and the networking node's minion may take to answer
# after they start: a few seconds on an idle machine, but a first start on a busy
# 2-core machine (Salt's imports, the minion's key exchange) took over 120 s once.
DAEMON_WAIT = 300


def _nft_tables():
    out = _sh(["nft", "list", "tables", "ip"], check=False).stdout
    return [line.split()[-1] for line in out.splitlines() if line.startswith("table ip ")]


def forwarding_users(own_table=None, tables=_nft_tables):
    """The NAT tables of virtual labs and test uplinks that need IPv4 forwarding
    right now, ``own_table`` left out."""
    return [t for t in tables() if t.startswith(FORWARDING_TABLES) and t != own_table]


def _read(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read().strip()


def _write(path, text):
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")


def forwarding_acquire(proc=IP_FORWARD, before=FORWARD_BEFORE):
    """Switch IPv4 forwarding on; True when it was off (its value is kept in
    ``before`` unless an earlier user kept it already)."""
    if _read(proc) == "1":
        return False
    if not os.path.exists(before):
        _write(before, _read(proc))
    _write(proc, "1")
    return True


def forwarding_release(own_table, fallback=None, proc=IP_FORWARD, before=FORWARD_BEFORE,
                       tables=_nft_tables):
    """After ``own_table`` is gone: when no other lab or uplink needs forwarding,
    put back the value from before netlab switched it on (``fallback``: what a lab
    made before ``before`` existed recorded itself)."""
    if forwarding_users(own_table, tables):
        return False
    try:
        value = _read(before)
    except FileNotFoundError:
        value = fallback
    if value is None:
        return False
    _write(proc, value)
    if os.path.exists(before):
        os.unlink(before)
    return True


# --------------------------------------------------------------------------- CLI
class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print("vlab: error: {}".format(message), file=sys.stderr)
        sys.exit(2)


def _positive(value):
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number: {!r}".format(value)) from None
    if number <= 0:
        raise argparse.ArgumentTypeError("must be positive: {}".format(number))
    return number


def _memory(value):
    number = _positive(value)
    if number < 768:
        raise argparse.ArgumentTypeError("at least 768 MiB per VM (the node boots its "
                                         "whole root over NFS), not {}".format(number))
    return number


def parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", default=argparse.SUPPRESS,
                        help="where the lab lives (default {}, or $NETLAB_VLAB_DIR)".format(
                            DEFAULT_DIR))
    top = _Parser(
        prog="vlab", parents=[common],
        description="netlab's virtual lab: qemu VMs netbooted and stacked by netlab on "
        "this machine (see docs/virtual-lab.rst)")
    sub = top.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    up = sub.add_parser("up", parents=[common],
                        help="create the lab (or deploy again on it) and deploy DevStack")
    up.add_argument("--computes", type=int, choices=(1, 2), default=1)
    up.add_argument("--devstack-repo", default=None,
                    help="DevStack repository: a URL the lab reaches, or a local "
                    "repository path served to the nodes (default: " + DEVSTACK_REPO + ")")
    up.add_argument("--devstack-branch", default=None)
    up.add_argument("--memory", type=_memory, default=1536, help="MiB per VM")
    up.add_argument("--mirror", default=None,
                    help="Debian mirror for the node image (default: pillar's default, "
                    "http://deb.debian.org/debian)")
    up.add_argument("--uplink", action="store_true",
                    help="route the lab nodes to the internet through this machine (NAT)")
    up.add_argument("--cache", action="store_true",
                    help="run the LAN cache's apt proxy and pip mirror on the networking "
                    "node: the image build and the nodes fetch through it")
    up.add_argument("--image", default=None,
                    help="an image built before (a build directory) instead of building")
    up.add_argument("--no-install", action="store_true",
                    help="do not apt-get install missing packages")
    up.add_argument("--boot-timeout", type=_positive, default=1500)
    up.add_argument("--verbose", action="store_true",
                    help="print the deploy's full output too (it always goes to a log)")
    down = sub.add_parser("down", parents=[common], help="remove the lab completely")
    down.add_argument("--keep", action="store_true", help="keep the lab directory")
    sub.add_parser("status", parents=[common], help="every node's lifecycle state")
    sub.add_parser("events", parents=[common], help="follow netlab's events")
    for tool in ("salt", "salt-run", "salt-key"):
        sub.add_parser(tool, parents=[common], add_help=False,
                       help="{} ARGS... against the lab's master, inside the lab".format(tool))
    return top


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    # salt/salt-run/salt-key take every argument after them as theirs
    split = next((i for i, a in enumerate(argv) if a in ("salt", "salt-run", "salt-key")),
                 None)
    passthrough = argv[split + 1:] if split is not None else []
    args = parser().parse_args(argv[:split + 1] if split is not None else argv)
    base = getattr(args, "dir", None) or os.environ.get("NETLAB_VLAB_DIR") or DEFAULT_DIR
    sys.path.insert(0, UTILS)
    lab = Vlab(base)
    try:
        if args.verb in ("salt", "salt-run", "salt-key"):
            return lab.passthrough(args.verb, passthrough)
        if args.verb == "status":
            return lab.status()
        if args.verb == "events":
            return lab.passthrough("salt-run", ["state.event", "netlab/*", "pretty=True"])
        with lab.locked(args.verb):
            if args.verb == "down":
                return lab.down(keep=args.keep)
            return lab.up(computes=args.computes, devstack_repo=args.devstack_repo,
                          devstack_branch=args.devstack_branch, memory=args.memory,
                          uplink=args.uplink, image_dir=args.image,
                          install=not args.no_install, boot_timeout=args.boot_timeout,
                          mirror=args.mirror, verbose=args.verbose, cache=args.cache)
    except VlabError as exc:
        print("vlab: error: {}".format(exc), file=sys.stderr)
        if args.verb == "up":
            print("vlab: ./vlab{} down removes what this run made".format(
                "" if base == DEFAULT_DIR else " --dir " + base), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vlab: interrupted; ./vlab down removes what was made", file=sys.stderr)
        return 130
    except (OSError, subprocess.SubprocessError) as exc:
        # the machine refused something (disk full, permissions, a command that
        # hung): say what, without a traceback
        print("vlab: error: {}".format(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
