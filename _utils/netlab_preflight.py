"""
Preflight: everything a first deploy needs, checked before anything changes.

Each check is a pure function that takes the lab model and the facts it needs
(or a collaborator that fetches them: a command runner, a DHCP probe, a URL
opener, ``os.statvfs``) and returns a list of problems (plain sentences that say
what is wrong and what to do). :func:`run` runs every check, also after one
failed, so the user sees all problems at once; a check that cannot run at all
(e.g. the probe needs root) is a problem too, never a crash.

The runner face is ``salt-run netlab.preflight`` (``_runners/netlab.py``); it is
also the first step of ``netlab.deploy``.
"""

import os
import re
import subprocess
import urllib.error
import urllib.request

import netlab_options

# Salt releases netlab is tested with (major versions): 3006 LTS, 3007, 3008
SUPPORTED_SALT = (3006, 3007, 3008)

# storage estimate (see docs/hardware.rst): the image build plus one published
# image; per node its root (a copy unless the filesystem shares extents) and
# what DevStack puts into it (git trees, a venv, logs)
GIB = 1024 ** 3
IMAGE_BYTES = 3 * GIB
ROOT_COPY_BYTES = 1 * GIB
STACK_BYTES = 6 * GIB
COW_FILESYSTEMS = ("btrfs", "xfs")

# processes that may hold netlab's ports: its own daemons
NETLAB_DAEMONS = ("dnsmasq", "nginx", "ganesha.nfsd", "rpcbind")

PYPI_DEFAULT = "https://pypi.org/simple/"

# the custom module directories netlab syncs (saltutil.sync_all)
EXTMOD_DIRS = ("modules", "states", "runners", "pillar", "utils")


# --------------------------------------------------------------------------- salt
def _major(version):
    match = re.match(r"\s*(\d+)", str(version or ""))
    return int(match.group(1)) if match else None


def _version_tuple(version):
    return tuple(int(x) for x in re.findall(r"\d+", str(version))[:3])


def check_salt_versions(master_version, minion_versions):
    """``minion_versions``: ``{minion id: version string or None (did not answer)}``."""
    problems = []
    if _major(master_version) not in SUPPORTED_SALT:
        problems.append("salt-master {} is not a supported Salt release (supported: {}.x)"
                        .format(master_version, ".x, ".join(map(str, SUPPORTED_SALT))))
    for mid, version in sorted(minion_versions.items()):
        if version is None:
            problems.append("minion {} did not answer (is salt-minion running and its key "
                            "accepted? 'salt-key -L')".format(mid))
        elif _major(version) not in SUPPORTED_SALT:
            problems.append("minion {} runs Salt {}, not a supported release (supported: "
                            "{}.x)".format(mid, version, ".x, ".join(map(str, SUPPORTED_SALT))))
        elif _version_tuple(version) > _version_tuple(master_version):
            problems.append("minion {} runs Salt {}, newer than the master's {} (Salt needs "
                            "the master at least as new as its minions)".format(
                                mid, version, master_version))
    return problems


def check_modules_synced(expected, synced):
    """``expected``: ``{'<dir>/<file>': hash}`` of netlab's custom modules on the
    fileserver; ``synced``: ``{where: {'<dir>/<file>': hash} or None}`` (None: could
    not be read). A missing or different file means ``saltutil.sync_all`` was not run
    since the checkout changed."""
    problems = []
    if not expected:
        return ["netlab's custom modules are not on the master's fileserver (file_roots "
                "or gitfs must serve the netlab checkout: _modules/, _runners/, ...)"]
    for where, have in sorted(synced.items()):
        if have is None:
            problems.append("could not list the custom modules synced to {}".format(where))
            continue
        missing = sorted(f for f in expected if f not in have)
        stale = sorted(f for f in expected if f in have and have[f] != expected[f])
        if missing or stale:
            what = []
            if missing:
                what.append("missing {}".format(", ".join(missing)))
            if stale:
                what.append("out of date {}".format(", ".join(stale)))
            fix = "salt-run saltutil.sync_all" if where == "master" else \
                "salt {} saltutil.sync_all".format(where)
            problems.append("custom modules on {} are not synced ({}): run '{}'".format(
                where, "; ".join(what), fix))
    return problems


# --------------------------------------------------------------------------- pillar
def check_pillar_targeting(has_netlab, master_id, netnode_id, node_ids):
    """``has_netlab``: ``{minion id: bool}`` -- whether pillar ``netlab`` (the whole
    lab, with BMC credentials) is compiled for that id."""
    problems = []
    for mid, why in ((master_id, "the master's own id, for orchestration"),
                     (netnode_id, "the networking node's minion")):
        if not has_netlab.get(mid):
            problems.append("pillar 'netlab' does not reach {} ({}): target the lab SLS "
                            "to it in top.sls".format(mid, why))
    leaked = sorted(n for n in node_ids if has_netlab.get(n))
    if leaked:
        problems.append("pillar 'netlab' (the whole lab with its secrets) reaches lab "
                        "node(s) {}: target it in top.sls to {} and {} only; lab nodes get "
                        "their own slice from netlab's ext_pillar".format(
                            ", ".join(leaked), netnode_id, master_id))
    return problems


# --------------------------------------------------------------------------- interface
def interface_state(interface, run):
    """``(exists, up, ['addr/prefix', ...])`` of ``interface`` from ``ip -o addr``."""
    rc, out, _err = run(["ip", "-o", "-4", "addr", "show", "dev", interface])
    if rc != 0:
        return False, False, []
    rc, link, _err = run(["ip", "-o", "-d", "link", "show", "dev", interface])
    flags = re.search(r"<([^>]*)>", link or "")
    flags = flags.group(1).split(",") if flags else []
    # a bridge has no carrier until a port is up (a virtual lab's taps come with
    # its VMs): administratively up is enough there; a NIC needs its link
    bridge = bool(re.search(r"\sbridge\s", link or ""))
    up = "UP" in flags and ("LOWER_UP" in flags or bridge)
    addrs = [line.split()[3] for line in out.splitlines() if len(line.split()) > 3]
    return True, up, addrs


def check_interface(lab, state):
    """``state``: :func:`interface_state`'s triple."""
    net, ip = lab.network, lab.netnode.ip
    exists, up, addrs = state
    if not exists:
        return ["network:interface {} does not exist on the networking node".format(
            net.interface)]
    problems = []
    if not up:
        problems.append("network:interface {} is not up (no link: cable, switch port, "
                        "'ip link set {} up')".format(net.interface, net.interface))
    want = "{}/{}".format(ip, net.prefixlen)
    if want not in addrs:
        problems.append("network:interface {} does not have the networking node's address "
                        "{} (netlab:netnode:ip with the prefix of network:cidr); it has: {}"
                        .format(net.interface, want, ", ".join(addrs) or "no IPv4 address"))
    return problems


# --------------------------------------------------------------------------- ports
def needed_ports(lab):
    """``[(proto, port, what)]`` netlab's daemons bind on the networking node."""
    ports = []
    if lab.network.dhcp_mode != "off":
        ports.append(("udp", 67, "DHCP (dnsmasq)"))
    ports.append(("udp", 69, "TFTP (dnsmasq)"))
    ports.append(("tcp", int(lab.netnode.http_port), "HTTP boot (nginx)"))
    ports.append(("tcp", 2049, "NFS"))
    ports.append(("tcp", 111, "rpcbind (NFS)"))
    ports.append(("udp", 111, "rpcbind (NFS)"))
    return ports


_USERS = re.compile(r'\("([^"]+)",pid=(\d+)')


def listeners(proto, port, run):
    """Who listens on ``proto``/``port``: ``[(local address, [(process, pid)])]``
    (an empty process list: a kernel socket, e.g. the kernel NFS server), from ``ss``."""
    flag = "-Hlntp" if proto == "tcp" else "-Hlnup"
    rc, out, err = run(["ss", flag, "sport", "= :{}".format(port)])
    if rc != 0:
        raise RuntimeError("ss failed: {}".format(err.strip()))
    found = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        local = fields[3]
        addr = local.rsplit(":", 1)[0].strip("[]")
        found.append((addr, [(n, int(p)) for n, p in _USERS.findall(line)]))
    return found


def check_ports(lab, holders):
    """``holders(proto, port)`` -> :func:`listeners`' list. A port is fine when it
    is free or held only by netlab's own daemons (or the kernel NFS server on 2049
    with ``netnode:nfs:server: kernel``); a listener on another address of the
    host does not collide (netlab's daemons bind the lab address), except on 67:
    dnsmasq's DHCP socket is the wildcard one."""
    problems = []
    ip = lab.netnode.ip
    for proto, port, what in needed_ports(lab):
        try:
            found = holders(proto, port)
        except Exception as exc:  # pylint: disable=broad-except
            problems.append("could not check {}/{}: {}".format(proto, port, exc))
            continue
        for addr, procs in found:
            if port != 67 and addr not in ("0.0.0.0", "*", "::", ip, "%s%%" % ip):
                if not addr.startswith(ip + "%"):
                    continue
            if procs and all(name in NETLAB_DAEMONS for name, _pid in procs):
                continue
            if not procs and port == 2049 and lab.netnode.nfs_server == "kernel":
                continue
            if not procs and port in (111, 2049):
                who = "the kernel (nfs-kernel-server?)"
            else:
                who = ", ".join("{} (pid {})".format(n, p) for n, p in procs) or "unknown"
            problems.append("port {}/{} for {} is in use on {} by {}: stop it or move it "
                            "off {}".format(proto, port, what, addr, who, ip))
    return problems


# --------------------------------------------------------------------------- storage
def fs_type(path, mounts_text):
    """Filesystem type of ``path`` from ``/proc/self/mounts`` text (longest mount
    point that contains it)."""
    best, kind = "", "unknown"
    path = os.path.abspath(path)
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        mnt = fields[1].replace("\\040", " ")
        if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, kind = mnt, fields[2]
    return kind


def existing_parent(path):
    """The deepest existing directory on the way to ``path``."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and path != "/":
        path = os.path.dirname(path)
    return path


def image_published(lab, exists=os.path.exists):
    return exists(os.path.join(lab.netnode.http_root, "images", "current"))


def storage_needed(lab, cow, exists=os.path.exists):
    """Bytes the deploy will still write: the image unless one is published, and
    for each node without a root yet its copy (none on a CoW filesystem) and
    DevStack's share."""
    nn = lab.netnode
    image = 0 if image_published(lab, exists) else IMAGE_BYTES
    new = [n for n in lab.nodes if not exists(os.path.join(nn.roots_dir, n))]
    return image + len(new) * (STACK_BYTES + (0 if cow else ROOT_COPY_BYTES)), len(new)


def check_storage(lab, statvfs, kind, exists=os.path.exists):
    """``statvfs(path)`` (``os.statvfs``) and ``kind``: the filesystem type of
    ``netnode:storage``. Free space for the image and every new node's root."""
    storage = lab.netnode.storage
    try:
        st = statvfs(existing_parent(storage))
    except OSError as exc:
        return ["netnode:storage {}: cannot read its filesystem: {}".format(storage, exc)]
    free = st.f_bavail * st.f_frsize
    cow = kind in COW_FILESYSTEMS
    need, new = storage_needed(lab, cow, exists)
    if free < need:
        return ["netnode:storage {} has {:.1f} GiB free on {}, needs about {:.1f} GiB (image "
                "{} GiB unless built, per new node ({} of {}) {} GiB for DevStack{}): free "
                "space or point netnode:storage at a bigger filesystem".format(
                    storage, free / GIB, kind, need / GIB, IMAGE_BYTES // GIB, new,
                    len(lab.nodes), STACK_BYTES // GIB, "" if cow else
                    " + {} GiB root copy ({} shares no extents; btrfs would)".format(
                        ROOT_COPY_BYTES // GIB, kind))]
    return []


# --------------------------------------------------------------------------- DHCP
def check_dhcp(lab, probe):
    """``probe(interface, timeout)`` -> other DHCP servers on the segment
    (``netlab_dhcp.probe``). Full mode with another server: two servers answer every
    node (refused unless allow_other_servers). Proxy mode with none: nodes get no
    address at all."""
    net = lab.network
    if net.dhcp_mode == "off":
        return []
    try:
        servers = probe(net.interface, net.probe_timeout)
    except Exception as exc:  # pylint: disable=broad-except
        return ["could not probe for DHCP servers on {}: {}".format(net.interface, exc)]
    names = "; ".join("{server_id} (MAC {server_mac}, offered {offered})".format(**s)
                      for s in servers)
    if net.dhcp_mode == "full" and servers and not net.allow_other_servers:
        return ["network:dhcp:mode is full but another DHCP server answers on {}: {}. Use "
                "mode proxy beside it, or switch it off".format(net.interface, names)]
    if net.dhcp_mode == "proxy" and not servers:
        return ["network:dhcp:mode is proxy but no DHCP server answers on {}: nodes would "
                "get no address. Use mode full (netlab hands out the addresses), or check "
                "the router".format(net.interface)]
    return []


# --------------------------------------------------------------------------- outside
def http_ok(url, timeout=10.0):
    """Fetch ``url``'s headers (GET, nothing read); raise on failure."""
    req = urllib.request.Request(url, method="GET",
                                 headers={"User-Agent": "netlab-preflight"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # nosec - fixed URLs
        if resp.status >= 400:
            raise urllib.error.HTTPError(url, resp.status, resp.reason, resp.headers, None)


def check_reachable(lab, fetch):
    """The Debian (or Ubuntu) mirror and PyPI from the networking node: the image
    build needs both (debootstrap, the node's Salt venv)."""
    problems = []
    img = lab.image
    mirror = img.mirror.rstrip("/") + "/dists/{}/Release".format(img.release)
    # one small page of the index (its root lists every project: megabytes)
    index = (img.pip_index or PYPI_DEFAULT).rstrip("/") + "/pip/"
    for what, key, url in (("package mirror", "image:mirror", mirror),
                           ("Python package index", "image:pip_index", index)):
        try:
            fetch(url)
        except Exception as exc:  # pylint: disable=broad-except
            reason = getattr(exc, "reason", None) or exc
            problems.append("{} {} is not reachable from the networking node ({}): check "
                            "its route/DNS/proxy or set {}".format(what, url, reason, key))
    return problems


# --------------------------------------------------------------------------- all
CHECKS = ("salt", "modules", "pillar", "interface", "ports", "storage", "dhcp", "outside")


def deploy_checks(options, have_image=False):
    """The checks ``netlab.deploy`` runs first, from its options (orchestration
    pillar ``netlab_deploy``): ``preflight: false`` none, ``preflight: [names]`` or
    ``"a,b"`` those; by default the ones the deploy's steps need: Salt, pillar and
    storage always (not the module sync: the deploy syncs them itself), the network
    checks when it sets up the networking node, the outside check when it builds
    the image and none is published yet (a re-deploy of an offline lab whose image
    is built must not fail on it; a changed image fails in its own step).
    An on/off value that is neither raises netlab_options.OptionError naming it."""
    options = options or {}
    sel = options.get("preflight")
    if isinstance(sel, (list, tuple)) or (isinstance(sel, str) and sel.strip()
                                          and sel not in netlab_options.TRUE + netlab_options.FALSE):
        return [c.strip() for c in (sel.split(",") if isinstance(sel, str) else sel)
                if str(c).strip()]
    if not netlab_options.flag(sel, True, "netlab_deploy:preflight"):
        return []
    wanted = {"salt", "pillar", "storage"}
    if netlab_options.flag(options.get("netnode"), True, "netlab_deploy:netnode"):
        wanted |= {"interface", "ports", "dhcp"}
    if netlab_options.flag(options.get("image"), True, "netlab_deploy:image") and not have_image:
        wanted.add("outside")
    return [c for c in CHECKS if c in wanted]


def run(checks):
    """``checks``: ``[(name, callable returning problems)]``. Runs every check
    (one failing or raising does not stop the others) and returns
    ``{'ok': bool, 'problems': ['<name>: ...'], 'passed': [names]}``."""
    problems, passed = [], []
    for name, check in checks:
        try:
            found = check()
        except Exception as exc:  # pylint: disable=broad-except
            found = ["check could not run: {}: {}".format(type(exc).__name__, exc)]
        if found:
            problems.extend("{}: {}".format(name, p) for p in found)
        else:
            passed.append(name)
    return {"ok": not problems, "problems": problems, "passed": passed}


def command_runner(timeout=30):
    """The real command runner for the checks: ``argv -> (rc, stdout, stderr)``."""

    def run_cmd(argv):
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return 127, "", str(exc)
        return proc.returncode, proc.stdout, proc.stderr

    return run_cmd


def read_mounts():
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        return fh.read()


def file_hashes(root, dirs=EXTMOD_DIRS, hasher=None):
    """``{'<dir>/<file>': sha256}`` of the ``.py`` files under ``root/<dir>``."""
    import hashlib  # pylint: disable=import-outside-toplevel

    out = {}
    for d in dirs:
        base = os.path.join(root, d)
        if not os.path.isdir(base):
            continue
        for name in sorted(os.listdir(base)):
            if name.endswith(".py"):
                with open(os.path.join(base, name), "rb") as fh:
                    out["{}/{}".format(d, name)] = (hasher or hashlib.sha256)(
                        fh.read()).hexdigest()
    return out

