"""
The virtual lab: netlab end to end on one machine, with qemu VMs as the nodes.

``./vlab up`` (repository root) builds, on a Debian/Ubuntu machine, as root:

- a network namespace the command owns (``netlab-vlab``) with a bridge
  ``br0`` holding the networking node's address, and a private ``/run`` for its
  daemons (a small holder process keeps both alive between commands);
- a salt-master inside it that is also the networking node: its own minion
  (``netnode``, key made and pre-accepted here, no autosign) applies
  ``netlab.netnode`` (dnsmasq, nginx, nfs-ganesha, rpcbind run as processes) and
  ``netlab.image``;
- a lab pillar for a small lab: one controller and one or two computes, power
  driver ``virtual`` (netlab starts diskless qemu VMs on taps in the bridge);

then runs ``salt-run state.orchestrate netlab.deploy`` for real (the VMs netboot,
become minions, get their local.conf and are stacked) and ends with
``salt-run netlab.status``. ``./vlab down`` removes all of it.

DevStack comes from its real repository unless ``--devstack-repo`` says
otherwise; a local repository path (e.g. netlab's stand-in) is served to the VMs
over HTTP by the networking node's nginx. When the repository cannot be reached
from the lab (the namespace has no uplink unless ``--uplink``), the deploy stops
after the nodes are up and have their local.conf, and says how to point
``devstack:repo`` at a mirror.

Everything lives under ``--dir`` (default ``/var/lib/netlab-vlab``); nothing
outside the namespace is touched except the packages it installs and, with
``--uplink``, one veth pair and a NAT rule (removed by ``down``).
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

NS = "netlab-vlab"
BRIDGE = "br0"
CIDR = "10.98.0.0/24"
NETNODE_IP = "10.98.0.2"
UPLINK = ("vlab-host", "vlab-ns", "10.98.255.1", "10.98.255.2")
NODES = (("ctl", "10.98.0.11", "52:54:00:98:00:11", "controller"),
         ("cmp1", "10.98.0.12", "52:54:00:98:00:12", "compute"),
         ("cmp2", "10.98.0.13", "52:54:00:98:00:13", "compute"))
SALT_VERSION = "3008.3"
DEFAULT_DIR = "/var/lib/netlab-vlab"
DEVSTACK_REPO = "https://opendev.org/openstack/devstack"
APT_PACKAGES = ("qemu-system-x86", "ipxe-qemu", "ipxe", "ovmf", "dnsmasq-base", "nginx-light",
                "nfs-ganesha", "nfs-ganesha-vfs", "rpcbind", "mmdebstrap", "zstd", "git",
                "python3-venv", "iproute2", "util-linux")
COMMANDS = ("qemu-system-x86_64", "dnsmasq", "nginx", "ganesha.nfsd", "rpcbind",
            "mmdebstrap", "git", "ip", "nsenter", "unshare")


class VlabError(RuntimeError):
    """Something the user must fix; the message says what."""


def _say(text):
    print("vlab: " + text, flush=True)


def _sh(cmd, check=True, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    res = subprocess.run([str(c) for c in cmd], check=False, **kw)  # pylint: disable=subprocess-run-check
    if check and res.returncode != 0:
        raise VlabError("command failed ({}): {}\n{}{}".format(
            res.returncode, " ".join(map(str, cmd)), res.stdout or "", res.stderr or ""))
    return res


def _alive(pid):
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        with open("/proc/{}/stat".format(pid), encoding="utf-8") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


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


# --------------------------------------------------------------------------- pillar
def lab_pillar(base, computes=1, devstack_repo=DEVSTACK_REPO, devstack_branch=None,
               memory=1536, uplink=False, image_packages=("git", "sudo")):
    """The small lab's ``netlab`` pillar (a plain dict; validated by netlab_lab)."""
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
    return {
        "network": network,
        "netnode": {"id": "netnode", "ip": NETNODE_IP, "storage": os.path.join(base, "srv"),
                    "nfs": {"server": "ganesha"}, "http": {"port": 80}},
        "image": {"distro": "debian", "release": "bookworm",
                  "packages": sorted(image_packages), "salt_version": SALT_VERSION},
        "devstack": devstack,
        "nodes": nodes,
        "lookup": {
            "service_control": "process", "run_dir": run, "install_packages": False,
            "dnsmasq": {"conf": os.path.join(etc, "dnsmasq.conf"),
                        "leasefile": os.path.join(run, "dnsmasq.leases"), "ra": True},
            "nginx": {"conf": os.path.join(etc, "nginx-netlab.conf")},
            "nfs": {"ganesha_conf": os.path.join(etc, "ganesha.conf")},
        },
    }


# --------------------------------------------------------------------------- the lab
class Vlab:
    """One virtual lab under ``base``; state in ``<base>/vlab.json``."""

    def __init__(self, base=DEFAULT_DIR, venv_bin=None):
        self.base = os.path.abspath(base)
        self.state_file = os.path.join(self.base, "vlab.json")
        self.master_dir = os.path.join(self.base, "master")
        self.conf_dir = os.path.join(self.master_dir, "etc")
        self.pillar_dir = os.path.join(self.master_dir, "pillar")
        self.minion_dir = os.path.join(self.base, "netnode-minion")
        self.venv_bin = venv_bin or os.path.dirname(sys.executable)
        self.state = self._load()

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

    @property
    def holder(self):
        pid = self.state.get("holder")
        return pid if pid and _alive(pid) else None

    def prefix(self):
        """argv prefix that runs a command in the lab's network + mount namespace."""
        if not self.holder:
            raise VlabError("the virtual lab is not up (no namespace holder); ./vlab up")
        return ["nsenter", "-t", str(self.holder), "-m", "-n", "--"]

    def run(self, cmd, check=True, **kw):
        return _sh(self.prefix() + list(cmd), check=check, **kw)

    def salt(self, tool, *args, check=True, stream=False, timeout=None):
        """``salt``/``salt-run``/``salt-key`` against the lab's master, inside the lab."""
        cmd = self.prefix() + [os.path.join(self.venv_bin, tool), "-c", self.conf_dir] + [
            str(a) for a in args]
        if stream:
            proc = subprocess.run(cmd, check=False, timeout=timeout)  # pylint: disable=subprocess-run-check
        else:
            proc = subprocess.run(cmd, check=False, capture_output=True, text=True,  # pylint: disable=subprocess-run-check
                                  timeout=timeout)
        if check and proc.returncode != 0:
            raise VlabError("{} {} failed ({})\n{}{}".format(
                tool, " ".join(map(str, args)), proc.returncode,
                getattr(proc, "stdout", "") or "", getattr(proc, "stderr", "") or ""))
        return proc

    # ------------------------------------------------------------------ preflight
    @staticmethod
    def preflight(install=True):
        if os.geteuid() != 0:
            raise VlabError("run as root (network namespaces, bridges, qemu, NFS)")
        missing = [c for c in COMMANDS if not shutil.which(c) and not os.path.exists(
            os.path.join("/usr/sbin", c))]
        if missing and install and shutil.which("apt-get"):
            _say("installing packages: " + " ".join(APT_PACKAGES))
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            _sh(["apt-get", "update"], env=env)
            _sh(["apt-get", "install", "-y", "--no-install-recommends"] + list(APT_PACKAGES),
                env=env)
            missing = [c for c in COMMANDS if not shutil.which(c) and not os.path.exists(
                os.path.join("/usr/sbin", c))]
        if missing:
            raise VlabError("missing commands: {} (Debian/Ubuntu packages: {})".format(
                ", ".join(missing), " ".join(APT_PACKAGES)))

    # ------------------------------------------------------------------ network
    def _namespace(self, uplink):
        if self.holder:
            return
        _sh(["ip", "netns", "delete", NS], check=False)
        _sh(["ip", "netns", "add", NS])
        _sh(["ip", "-n", NS, "link", "set", "lo", "up"])
        _sh(["ip", "-n", NS, "link", "add", BRIDGE, "type", "bridge"])
        _sh(["ip", "-n", NS, "addr", "add", NETNODE_IP + "/24", "dev", BRIDGE])
        # an IPv6 prefix for router advertisements: iPXE does not wait for IPv6 then
        _sh(["ip", "-n", NS, "addr", "add", "fd00:98::2/64", "dev", BRIDGE, "nodad"])
        _sh(["ip", "-n", NS, "link", "set", BRIDGE, "up"])
        holder = subprocess.Popen(  # pylint: disable=consider-using-with
            ["ip", "netns", "exec", NS, "unshare", "-m", "--propagation", "private",
             "sh", "-c", "mount -t tmpfs -o mode=755 netlab-vlab-run /run && "
             "mkdir -p /run/lock && echo ready && exec sleep 2147483647"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        if holder.stdout.readline().strip() != "ready":
            raise VlabError("private /run for the lab failed: " + holder.stderr.read())
        self.state["holder"] = _wait(lambda: self._find_holder(), 10, "namespace holder", 0.1)
        self.state["ns"] = NS
        self._save()
        if uplink:
            self._uplink()

    @staticmethod
    def _find_holder():
        pids = _sh(["ip", "netns", "pids", NS], check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(OSError):
                with open("/proc/{}/cmdline".format(pid), "rb") as fh:
                    if fh.read().startswith(b"sleep\x002147483647"):
                        return int(pid)
        return None

    def _uplink(self):
        host, inner, host_ip, inner_ip = UPLINK
        _sh(["ip", "link", "add", host, "type", "veth", "peer", "name", inner, "netns", NS])
        _sh(["ip", "addr", "add", host_ip + "/30", "dev", host])
        _sh(["ip", "link", "set", host, "up"])
        _sh(["ip", "-n", NS, "addr", "add", inner_ip + "/30", "dev", inner])
        _sh(["ip", "-n", NS, "link", "set", inner, "up"])
        _sh(["ip", "-n", NS, "route", "add", "default", "via", host_ip])
        _sh(["ip", "netns", "exec", NS, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        _sh(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        _sh(["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", CIDR, "!", "-o", host,
             "-j", "MASQUERADE"])
        _sh(["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", inner_ip, "!", "-o", host,
             "-j", "MASQUERADE"])
        self.state["uplink"] = True
        self._save()

    # ------------------------------------------------------------------ salt
    def _configure(self, raw):
        import yaml  # pylint: disable=import-outside-toplevel

        for d in (self.conf_dir, os.path.join(self.pillar_dir, "netlab"),
                  os.path.join(self.master_dir, "pki"), os.path.join(self.base, "etc"),
                  os.path.join(self.base, "run")):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.base, 0o755)  # nginx's worker user reads the HTTP tree under it
        with open(os.path.join(self.pillar_dir, "top.sls"), "w", encoding="utf-8") as fh:
            fh.write("base:\n  'L@netnode,netnode_master':\n    - netlab.lab\n")
        with open(os.path.join(self.pillar_dir, "netlab", "lab.sls"), "w",
                  encoding="utf-8") as fh:
            yaml.safe_dump({"netlab": raw}, fh, default_flow_style=False)
        stop_ganesha = os.path.join(self.base, "stop-ganesha.sh")
        with open(stop_ganesha, "w", encoding="utf-8") as fh:
            fh.write("#!/bin/sh\npid=$(cat {0}/ganesha.pid 2>/dev/null) || exit 0\n"
                     "kill -TERM \"$pid\" 2>/dev/null || exit 0\ni=0\n"
                     "while kill -0 \"$pid\" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; "
                     "i=$((i+1)); done\nrm -f {0}/ganesha.pid\n".format(
                         os.path.join(self.base, "run")))
        os.chmod(stop_ganesha, 0o755)
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
            "netlab_exports_refresh": [["sh", stop_ganesha]],
            # TCG guests answer slowly, most of all right after their minion starts
            "timeout": 300, "gather_job_timeout": 120, "worker_threads": 4,
        }
        with open(os.path.join(self.conf_dir, "master"), "w", encoding="utf-8") as fh:
            yaml.safe_dump(opts, fh, default_flow_style=False)
        return opts

    def _start_master(self):
        if self.state.get("master") and _alive(self.state["master"]):
            return
        log = open(os.path.join(self.master_dir, "master.stderr"), "ab")  # pylint: disable=consider-using-with
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            self.prefix() + [os.path.join(self.venv_bin, "salt-master"), "-c",
                             self.conf_dir, "-l", "warning"],
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        self.state["master"] = proc.pid
        self._save()
        _wait(lambda: self.salt("salt-run", "manage.present", check=False).returncode == 0,
              120, "the salt-master to answer")
        self.salt("salt-run", "saltutil.sync_all")

    def _start_minion(self):
        import yaml  # pylint: disable=import-outside-toplevel
        import netlab_roots  # pylint: disable=import-outside-toplevel

        if self.state.get("minion") and _alive(self.state["minion"]):
            return
        pki = os.path.join(self.minion_dir, "pki")
        if not os.path.exists(os.path.join(pki, "minion.pem")):
            os.makedirs(pki, exist_ok=True)
            priv, pub = netlab_roots.gen_minion_keys()
            with open(os.path.join(pki, "minion.pem"), "w", encoding="utf-8") as fh:
                fh.write(priv)
            os.chmod(os.path.join(pki, "minion.pem"), 0o400)
            with open(os.path.join(pki, "minion.pub"), "w", encoding="utf-8") as fh:
                fh.write(pub)
            netlab_roots.preaccept_key(os.path.join(self.master_dir, "pki"), "netnode", pub)
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
            check=False).stdout or "{}"), 120, "the networking node's minion")

    # ------------------------------------------------------------------ DevStack
    def _serve_repo(self, lab, path):
        """Copy the bare repository at ``path`` into the HTTP tree; its URL for nodes."""
        src = path[len("file://"):] if path.startswith("file://") else path
        if not os.path.isdir(src):
            raise VlabError("--devstack-repo {} is neither a URL nor a directory".format(path))
        dest = os.path.join(lab.netnode.http_root, "git", "devstack.git")
        if os.path.exists(dest):
            shutil.rmtree(dest)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        _sh(["git", "-c", "safe.directory=*", "clone", "-q", "--bare", "--mirror", src, dest])
        _sh(["git", "-c", "safe.directory=*", "-C", dest, "update-server-info"])
        _sh(["chmod", "-R", "a+rX", os.path.join(lab.netnode.http_root, "git")])
        return "http://{}:{}/git/devstack.git".format(lab.netnode.ip, lab.netnode.http_port)

    def _reachable(self, url):
        if url.startswith("http://{}".format(NETNODE_IP)):
            return True  # served by the networking node itself
        res = self.run(["timeout", "30", "git", "ls-remote", "--heads", url], check=False)
        return res.returncode == 0

    # ------------------------------------------------------------------ verbs
    def up(self, computes=1, devstack_repo=None, devstack_branch=None, memory=1536,
           uplink=False, image_dir=None, install=True, boot_timeout=1500):
        sys.path.insert(0, HERE)
        import netlab_image  # pylint: disable=import-outside-toplevel
        import netlab_lab  # pylint: disable=import-outside-toplevel

        self.preflight(install=install)
        _say("lab directory {}".format(self.base))
        os.makedirs(self.base, exist_ok=True)
        self._namespace(uplink)
        repo = devstack_repo or DEVSTACK_REPO
        local_repo = not repo.startswith(("http://", "https://", "git://", "ssh://"))
        raw = lab_pillar(self.base, computes=computes, devstack_repo=repo,
                         devstack_branch=devstack_branch, memory=memory, uplink=uplink)
        lab = netlab_lab.load(raw)
        if local_repo:
            raw["devstack"]["repo"] = self._serve_repo(lab, repo)
            lab = netlab_lab.load(raw)
        self._configure(raw)
        _say("salt-master + networking node minion in namespace {}".format(NS))
        self._start_master()
        self._start_minion()
        options = {"boot_timeout": int(boot_timeout)}
        if image_dir:
            self._link_image(lab, image_dir, netlab_image)
            options["image"] = False
        reachable = self._reachable(raw["devstack"]["repo"])
        if not reachable:
            options.update(checkout=False, stack=False)
            _say("DevStack's repository {} cannot be reached from the lab: the deploy "
                 "stops after the nodes are up and have their local.conf".format(
                     raw["devstack"]["repo"]))
        self.state.update(computes=computes, repo=raw["devstack"]["repo"], up=time.time())
        self._save()
        _say("salt-run state.orchestrate netlab.deploy")
        with self._progress():
            proc = self.salt("salt-run", "-l", "error", "--state-output=mixed", "state.orchestrate",
                             "netlab.deploy",
                             "pillar=" + json.dumps({"netlab_deploy": options}),
                             check=False, stream=True)
        _say("salt-run netlab.status")
        self.salt("salt-run", "-l", "error", "netlab.status", check=False, stream=True)
        if not reachable:
            _say("DevStack was not stacked: {} is unreachable from the lab. Point "
                 "devstack:repo at a mirror the lab can reach, e.g. a local clone: "
                 "./vlab up --devstack-repo /path/to/devstack (served to the nodes by the "
                 "networking node), or give the lab an uplink: ./vlab up --uplink "
                 "(pillar: {})".format(raw["devstack"]["repo"],
                                       os.path.join(self.pillar_dir, "netlab", "lab.sls")))
        return proc.returncode

    @contextlib.contextmanager
    def _progress(self):
        """Print netlab's events (``netlab/...``) as one line each while a step runs."""
        import threading  # pylint: disable=import-outside-toplevel

        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            self.prefix() + [os.path.join(self.venv_bin, "salt-run"), "-c", self.conf_dir,
                             "-l", "quiet", "state.event", "netlab/*"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True)

        def pump():
            for line in proc.stdout:
                tag, _, data = line.partition("\t")
                if not tag.startswith("netlab/"):
                    continue
                try:
                    data = json.loads(data)
                except ValueError:
                    data = {}
                if isinstance(data, dict) and isinstance(data.get("data"), dict):
                    data = data["data"]  # a node's event.send wraps its payload
                keys = ("state", "result", "reason", "duration", "comment", "message")
                extra = ", ".join("{}={}".format(k, data[k]) for k in keys
                                  if isinstance(data, dict) and data.get(k) not in (None, ""))
                _say("event {}{}".format(tag.strip(), "  " + extra if extra else ""))

        thread = threading.Thread(target=pump, daemon=True)
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
        build_id = os.path.basename(image_dir)
        link = os.path.join(images, build_id)
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
            _say("not up")
            return 1
        return self.salt("salt-run", "-l", "error", "netlab.status", check=False,
                         stream=True).returncode

    def events(self):
        return self.salt("salt-run", "state.event", "netlab/*", "pretty=True",
                         check=False, stream=True).returncode

    def down(self, keep=False):
        """Stop every VM and daemon of the lab, delete the namespace (and the directory)."""
        vms = os.path.join(self.base, "srv", "state", "vms")
        if os.path.isdir(vms):
            for node in os.listdir(vms):
                pidfile = os.path.join(vms, node, "qemu.pid")
                with contextlib.suppress(OSError, ValueError):
                    with open(pidfile, encoding="utf-8") as fh:
                        _stop_pid(int(fh.read().strip()))
        pids = [int(p) for p in _sh(["ip", "netns", "pids", NS], check=False).stdout.split()]
        for pid in list(pids) + [self.state.get(k) for k in ("master", "minion", "holder")]:
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.2)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.state.get("uplink"):
            host, _, host_ip, inner_ip = UPLINK
            del host_ip
            _sh(["iptables", "-t", "nat", "-D", "POSTROUTING", "-s", CIDR, "!", "-o", host,
                 "-j", "MASQUERADE"], check=False)
            _sh(["iptables", "-t", "nat", "-D", "POSTROUTING", "-s", inner_ip, "!", "-o",
                 host, "-j", "MASQUERADE"], check=False)
            _sh(["ip", "link", "delete", host], check=False)
        _sh(["ip", "netns", "delete", NS], check=False)
        if not keep and os.path.isdir(self.base):
            _sh(["rm", "-rf", "--one-file-system", self.base], check=False)
        self.state = {}
        _say("virtual lab removed" + (" (directory kept: {})".format(self.base) if keep else ""))
        return 0


def _stop_pid(pid, timeout=15):
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- CLI
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="vlab", description="netlab's virtual lab: qemu VMs netbooted and stacked "
        "by netlab on this machine (see docs/virtual-lab.rst)")
    parser.add_argument("--dir", default=os.environ.get("NETLAB_VLAB_DIR", DEFAULT_DIR),
                        help="where the lab lives (default %(default)s)")
    sub = parser.add_subparsers(dest="verb", required=True)
    up = sub.add_parser("up", help="create the lab and deploy DevStack on it")
    up.add_argument("--computes", type=int, choices=(1, 2), default=1)
    up.add_argument("--devstack-repo", default=None,
                    help="DevStack repository: a URL the lab reaches, or a local "
                    "repository path served to the nodes (default: " + DEVSTACK_REPO + ")")
    up.add_argument("--devstack-branch", default=None)
    up.add_argument("--memory", type=int, default=1536, help="MiB per VM")
    up.add_argument("--uplink", action="store_true",
                    help="route the lab to the internet through this machine (NAT)")
    up.add_argument("--image", default=None,
                    help="an image built before (a build directory) instead of building")
    up.add_argument("--no-install", action="store_true",
                    help="do not apt-get install missing packages")
    up.add_argument("--boot-timeout", type=int, default=1500)
    down = sub.add_parser("down", help="remove the lab completely")
    down.add_argument("--keep", action="store_true", help="keep the lab directory")
    sub.add_parser("status", help="salt-run netlab.status")
    sub.add_parser("events", help="follow netlab's events")
    args = parser.parse_args(argv)
    lab = Vlab(args.dir)
    try:
        if args.verb == "up":
            return lab.up(computes=args.computes, devstack_repo=args.devstack_repo,
                          devstack_branch=args.devstack_branch, memory=args.memory,
                          uplink=args.uplink, image_dir=args.image,
                          install=not args.no_install, boot_timeout=args.boot_timeout)
        if args.verb == "down":
            return lab.down(keep=args.keep)
        if args.verb == "status":
            return lab.status()
        return lab.events()
    except VlabError as exc:
        print("vlab: error: {}".format(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
