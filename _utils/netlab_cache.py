"""
The LAN cache on the networking node: pillar ``netlab:cache`` -> validated settings,
and everything derived from them (pure Python).

Four parts, each on unless ``netlab:cache:<part>:enabled: false``:

- ``apt``: apt-cacher-ng, a caching proxy restricted to the configured Debian/Ubuntu
  mirrors (``ForceManaged``): the image build (mmdebstrap) and the nodes (apt config
  in the image) fetch through it.
- ``pip``: devpi-server, a caching PyPI mirror: the image build and the nodes
  (``/etc/pip.conf`` in the image) install through it. devpi keeps the index pages
  and files on disk (a restart keeps the cache) and serves its last copy when PyPI
  cannot be reached, which is what an offline lab needs.
- ``git``: ``git clone --mirror`` copies of DevStack and of every repository the
  lab's stack.sh clones (derived from the services and plugins, like DevStack's
  stackrc, extendable in pillar), served read-only over HTTP by the networking
  node's nginx (git's "dumb" HTTP protocol); local.conf gets ``GIT_BASE``.
- ``files``: URLs stack.sh downloads (test images, etcd, tempest's constraints),
  fetched once, served by nginx; local.conf points DevStack at them.

Every daemon listens on the lab IP only. The lab model (``netlab_lab``) calls
:func:`check` while it validates the pillar; the rest of netlab reads
``lab.cache`` (the dict :func:`check` returns).
"""

import hashlib
import os
import posixpath
import re
import urllib.parse

KEYS = ("storage", "apt", "pip", "git", "files")
PARTS = ("apt", "pip", "git", "files")
PART_KEYS = {
    "apt": ("enabled", "port", "max_size", "mirrors", "offline"),
    "pip": ("enabled", "port", "max_size"),
    "git": ("enabled", "max_size", "repos"),
    "files": ("enabled", "max_size", "urls"),
}
DEFAULT_PORTS = {"apt": 3142, "pip": 3141}
DEFAULT_SIZES = {"apt": "20G", "pip": "10G", "git": "10G", "files": "10G"}
APT_OFFLINE = ("auto", True, False)
DEFAULT_PIP_INDEX = "https://pypi.org/simple"
DEFAULT_GIT_BASE = "https://opendev.org"
# URL paths under the networking node's nginx
GIT_LOCATION = "/git"
FILES_LOCATION = "/files"
# devpi-server's mirror of the upstream index
PIP_PATH = "/root/pypi/+simple/"

SIZE_RE = re.compile(r"^([0-9]{1,9})\s*([KMGT]?)i?B?$", re.IGNORECASE)
SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
MIN_SIZE = 1 << 20
# a mirror's path below GIT_LOCATION: org/name.git, safe characters only
REPO_PATH_RE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+){0,4}\.git$")
FILE_PATH_RE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.+~=,@-]+){1,15}$")

# DevStack's stackrc: which repositories stack.sh clones for which services (the
# prefix of a service name, as DevStack's is_service_enabled matches them). Client
# libraries come from PyPI unless LIBS_FROM_GIT names them.
SERVICE_REPOS = (
    (("key",), "openstack/keystone"),
    # stack.sh installs glance where g-api or n-api runs
    (("g-", "n-api"), "openstack/glance"),
    (("n-",), "openstack/nova"),
    (("placement-api",), "openstack/placement"),
    (("q-", "neutron-", "ovn-", "ovs-"), "openstack/neutron"),
    (("c-",), "openstack/cinder"),
    (("s-",), "openstack/swift"),
    (("horizon",), "openstack/horizon"),
    (("tempest",), "openstack/tempest"),
    (("tempest",), "openstack/os-test-images"),
)
# always cloned by stack.sh (requirements: with full history, DevStack's default)
ALWAYS_REPOS = ("openstack/requirements",)
# DevStack's stackrc per repository: the prefix of its ``<PREFIX>_REPO`` /
# ``<PREFIX>_BRANCH`` variables and whether it is branchless (its branch is
# ``master`` whatever DevStack's branch is: BRANCHLESS_TARGET_BRANCH). Each is
# cloned to ``$DEST/<name>``.
PROJECTS = {
    "openstack/cinder": ("CINDER", False),
    "openstack/glance": ("GLANCE", False),
    "openstack/horizon": ("HORIZON", False),
    "openstack/keystone": ("KEYSTONE", False),
    "openstack/neutron": ("NEUTRON", False),
    "openstack/nova": ("NOVA", False),
    "openstack/placement": ("PLACEMENT", False),
    "openstack/requirements": ("REQUIREMENTS", False),
    "openstack/swift": ("SWIFT", False),
    "openstack/tempest": ("TEMPEST", True),
    "openstack/os-test-images": ("OSTESTIMAGES", True),
}
# DevStack branches whose stackrc sets TARGET_BRANCH to themselves (every other
# branch, master or a topic branch, clones the projects' master)
RELEASE_BRANCH_PREFIXES = ("stable/", "unmaintained/")
# DevStack's default ENABLED_SERVICES (stackrc, master) when pillar keeps ``base``
DEVSTACK_DEFAULT_SERVICES = (
    "key", "n-api", "n-cpu", "n-cond", "n-sch", "n-novnc", "n-api-meta",
    "placement-api", "placement-client", "g-api", "c-sch", "c-api", "c-vol",
    "horizon", "tempest", "etcd3", "mysql", "rabbit", "dstat", "memory_tracker",
    "q-svc", "ovn-controller", "ovn-northd", "ovs-vswitchd", "ovsdb-server",
    "q-ovn-metadata-agent",
)
IMAGE_SUFFIXES = (".img", ".qcow2", ".raw", ".vmdk", ".vhd", ".iso", ".img.gz",
                  ".qcow2.xz")
ETCD_MARK = "/etcd-io/etcd/releases/download/"
CONSTRAINTS_MARK = "/constraints/upper/"


SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"


class CacheError(RuntimeError):
    """A cache operation failed; the message says which part and why."""


# --------------------------------------------------------------------------- validation
def parse_size(value):
    """``'20G'``, ``'500M'``, ``1048576`` -> bytes; ``None`` when malformed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        return None
    match = SIZE_RE.match(value.strip())
    if not match:
        return None
    return int(match.group(1)) * SIZE_UNITS[match.group(2).upper()]


def human_size(num):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(num) < 1024:
            return "{:.0f} {}".format(num, unit) if unit == "B" else \
                "{:.1f} {}".format(num, unit)
        num /= 1024.0
    return "{:.1f} TiB".format(num)


MIRRORED_SCHEMES = ("http", "https", "git")


def repo_path(url, base=None):
    """A repository URL -> its mirror's path (``openstack/nova.git``, relative to
    ``base`` when it is below it, as DevStack's ``${GIT_BASE}/openstack/nova.git``);
    ``None`` when it is not mirrored: a local (``file:``, path) or ssh repository,
    or a path that cannot be a mirror name."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in MIRRORED_SCHEMES:
        return None
    if base and url.startswith(base.rstrip("/") + "/"):
        parts = urllib.parse.urlsplit(url[len(base.rstrip("/")):])
    rel = parts.path.strip("/")
    if not rel.endswith(".git"):
        rel += ".git"
    return rel if REPO_PATH_RE.match(rel) and ".." not in rel else None


def file_path(url):
    """A download URL -> its path in the files cache (``host/path``)."""
    parts = urllib.parse.urlsplit(url)
    rel = "{}/{}".format(parts.hostname or "", parts.path.strip("/"))
    return rel if FILE_PATH_RE.match(rel) and "/../" not in "/" + rel + "/" else None


def check(c, raw, netnode, path):
    """Validate ``netlab:cache`` with the lab checker ``c`` (its ``err``, ``mapping``,
    ``boolean``, ``url``, ``abs_path``); ``path`` builds pillar paths. Returns the
    settings dict the lab model keeps as ``lab.cache``."""
    where = ("cache",)
    spec = c.mapping(raw, *where, allowed=KEYS)
    storage = c.abs_path(spec.get("storage"), None, "cache", "storage", system_ok=False)
    if storage is None:
        storage = (netnode.get("storage") or "/srv/netlab") + "/cache"
    out = {"storage": storage}
    for part in PARTS:
        sub = c.mapping(spec.get(part), "cache", part, allowed=PART_KEYS[part])
        cfg = {"enabled": c.boolean(sub.get("enabled"), True, "cache", part, "enabled")}
        size_raw = sub.get("max_size", DEFAULT_SIZES[part])
        size = parse_size(size_raw)
        if size is None or size < MIN_SIZE:
            c.err(path("cache", part, "max_size"), "{!r} is not a size of at least 1M "
                  "(bytes, or a number with K, M, G or T: 20G)".format(size_raw))
            size = parse_size(DEFAULT_SIZES[part])
        cfg["max_size"] = size
        cfg["dir"] = "{}/{}".format(storage, part)
        if part in DEFAULT_PORTS:
            port = sub.get("port", DEFAULT_PORTS[part])
            if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
                c.err(path("cache", part, "port"), "{!r} is not a TCP port".format(port))
                port = DEFAULT_PORTS[part]
            elif port == netnode.get("http_port"):
                c.err(path("cache", part, "port"), "{} is netnode:http:port (nginx); "
                      "choose another".format(port))
            cfg["port"] = port
        if part == "apt":
            cfg["mirrors"] = _url_list(c, sub.get("mirrors"), ("cache", "apt", "mirrors"),
                                       schemes=("http",))
            offline = sub.get("offline", "auto")
            if offline not in APT_OFFLINE:
                c.err(path("cache", "apt", "offline"), "{!r} is not one of: auto, true, "
                      "false".format(offline))
                offline = "auto"
            cfg["offline"] = offline
        elif part == "git":
            cfg["repos"] = _url_list(c, sub.get("repos"), ("cache", "git", "repos"),
                                     schemes=MIRRORED_SCHEMES,
                                     name=repo_path, what="a repository path")
        elif part == "files":
            cfg["urls"] = _url_list(c, sub.get("urls"), ("cache", "files", "urls"),
                                    name=file_path, what="a file path")
        out[part] = cfg
    if all(out[p].get("port") for p in DEFAULT_PORTS) and \
            out["apt"]["port"] == out["pip"]["port"]:
        c.err(path("cache", "pip", "port"), "{} is cache:apt:port too".format(
            out["pip"]["port"]))
    return out


def _url_list(c, value, where, schemes=("http", "https"), name=None, what=None):
    if value is None:
        return []
    if not isinstance(value, list):
        c.err(":".join(("netlab",) + where), "must be a list of URLs")
        return []
    out = []
    for i, item in enumerate(value):
        url = c.url(item, None, *(where + (i,)), schemes=schemes)
        if url is None:
            continue
        if name is not None and name(url) is None:
            c.err(":".join(("netlab",) + where + (str(i),)),
                  "{!r}: its path does not make {} of letters, digits and _ . - "
                  "(e.g. https://opendev.org/openstack/heat)".format(url, what))
            continue
        if url not in out:
            out.append(url)
    return out


# --------------------------------------------------------------------------- addresses
def enabled(lab, part):
    cache = getattr(lab, "cache", None) or {}
    return bool(cache.get(part, {}).get("enabled"))


def any_enabled(lab):
    return any(enabled(lab, p) for p in PARTS)


def http_base(lab):
    port = lab.netnode.http_port
    return "http://{}{}".format(lab.netnode.ip, "" if port == 80 else ":{}".format(port))


def apt_proxy(lab):
    """``http://<lab ip>:3142`` or ``None`` (apt cache off)."""
    if not enabled(lab, "apt"):
        return None
    return "http://{}:{}".format(lab.netnode.ip, lab.cache["apt"]["port"])


def pip_index(lab):
    """The pip cache's index URL or ``None`` (pip cache off)."""
    if not enabled(lab, "pip"):
        return None
    return "http://{}:{}{}".format(lab.netnode.ip, lab.cache["pip"]["port"], PIP_PATH)


def git_base(lab):
    """``GIT_BASE`` of the mirror or ``None`` (git cache off)."""
    if not enabled(lab, "git"):
        return None
    return http_base(lab) + GIT_LOCATION


def file_url(lab, url):
    return "{}{}/{}".format(http_base(lab), FILES_LOCATION, file_path(url))


# --------------------------------------------------------------------------- apt
def apt_mirrors(lab):
    """Upstream mirrors the apt proxy may reach: the image's and pillar's extra ones."""
    out = [lab.image.mirror] + list(lab.cache["apt"]["mirrors"])
    return [u for u in dict.fromkeys(u.rstrip("/") for u in out)]


def apt_dirs(lab):
    """apt-cacher-ng's own directories beside its cache (they survive a reboot, so
    a service manager can start it before Salt runs): config, and log/socket/pid."""
    storage = lab.cache["storage"]
    return {"conf": storage + "/apt-conf", "state": storage + "/apt-state"}


def acng_conf(lab, offline=False):
    """apt-cacher-ng's config (``-c <dir>`` reads ``<dir>/acng.conf``): the lab IP
    only, only the remapped mirrors (ForceManaged), no CONNECT pass-through.
    ``offline``: serve from the cache only (upstream unreachable)."""
    cfg = lab.cache["apt"]
    state = apt_dirs(lab)["state"]
    lines = [
        "# apt-cacher-ng of the netlab networking node (managed by Salt, netlab.cache).",
        "CacheDir: {}".format(cfg["dir"]),
        "LogDir: {}".format(state),
        "SupportDir: /usr/lib/apt-cacher-ng",
        "Port: {}".format(cfg["port"]),
        "BindAddress: {}".format(lab.netnode.ip),
        "SocketPath: {}/acng.socket".format(state),
        "PidFile: {}/acng.pid".format(state),
        "ForceManaged: 1",
        "PassThroughPattern: ^$",
        "ExThreshold: 4",
        "Offlinemode: {}".format(1 if offline else 0),
    ]
    for i, url in enumerate(apt_mirrors(lab)):
        parts = urllib.parse.urlsplit(url)
        prefix = "{}{}".format(parts.netloc, parts.path.rstrip("/"))
        lines.append("Remap-netlab{}: {} ; {}".format(i, prefix, url))
    return "\n".join(lines) + "\n"


def apt_node_conf(lab):
    """``/etc/apt/apt.conf.d/01netlab-cache`` of the image (``None``: apt cache off)."""
    proxy = apt_proxy(lab)
    if not proxy:
        return None
    return ('// netlab: packages through the networking node\'s apt cache\n'
            'Acquire::http::Proxy "{}";\n'.format(proxy))


def pip_node_conf(lab):
    """``/etc/pip.conf`` of the image (``None``: pip cache off)."""
    index = pip_index(lab)
    if not index:
        return None
    # timeout: devpi's first answer after a start waits for PyPI's project list
    return ("# netlab: Python packages through the networking node's pip cache\n"
            "[global]\nindex-url = {}\ntrusted-host = {}\ntimeout = 180\n".format(
                index, lab.netnode.ip))


def node_files(lab):
    """Files every node's root gets from the cache settings: ``{path: text}``
    (written with the node's identity, so one image serves any lab)."""
    out = {}
    apt = apt_node_conf(lab)
    if apt:
        out["etc/apt/apt.conf.d/01netlab-cache"] = apt
    pip = pip_node_conf(lab)
    if pip:
        out["etc/pip.conf"] = pip
    return out


# --------------------------------------------------------------------------- pip
def devpi_argv(lab, venv):
    cfg = lab.cache["pip"]
    return [os.path.join(venv, "bin", "devpi-server"), "--serverdir", cfg["dir"],
            "--host", lab.netnode.ip, "--port", str(cfg["port"])]


def devpi_init_argv(lab, venv):
    return [os.path.join(venv, "bin", "devpi-init"), "--serverdir",
            lab.cache["pip"]["dir"]]




# --------------------------------------------------------------------------- git
def node_services(lab, node_id):
    """The services enabled on ``node_id`` (DevStack's defaults when it keeps
    ``base``), as its stack.sh sees them."""
    import netlab_localconf  # pylint: disable=import-outside-toplevel

    svc = netlab_localconf.services(lab, node_id)
    base = svc.pop("base", True)
    names = set(DEVSTACK_DEFAULT_SERVICES) if base else set()
    names |= {n for n, on in svc.items() if on}
    names -= {n for n, on in svc.items() if not on}
    return names


def lab_services(lab):
    """Every service enabled on some node, as stack.sh would see them."""
    enabled_services = set()
    for node_id in lab.nodes:
        enabled_services |= node_services(lab, node_id)
    return enabled_services


def service_repos(services):
    """The stackrc repositories (``openstack/nova``) stack.sh clones for
    ``services``, requirements first."""
    names = list(ALWAYS_REPOS)
    for prefixes, repo in SERVICE_REPOS:
        if any(s == p or s.startswith(p) for s in services for p in prefixes):
            names.append(repo)
    return names


def _localrc(lab, node_id):
    return lab.node(node_id).devstack.get("localrc") or {}


def _plain(value):
    """A localrc value usable as a URL or branch: a string without shell references."""
    return value if isinstance(value, str) and value and "$" not in value else None


def project_urls(lab, node_id):
    """``{name: upstream URL}`` of every repository ``node_id``'s stack.sh clones
    (requirements, its services' projects, ``LIBS_FROM_GIT``): ``<PREFIX>_REPO``
    from the node's pillar localrc when it names one, else
    ``${GIT_BASE}/openstack/<name>.git`` as in DevStack's stackrc."""
    base = git_upstream_base(lab)
    rc = _localrc(lab, node_id)
    out = {}
    for repo in service_repos(node_services(lab, node_id)):
        name = repo.split("/")[-1]
        prefix = PROJECTS.get(repo, (None,))[0]
        out[name] = _plain(rc.get("{}_REPO".format(prefix))) if prefix else None
        out[name] = out[name] or "{}/{}.git".format(base, repo)
    libs = _plain(rc.get("LIBS_FROM_GIT")) or ""
    for lib in (x.strip() for x in libs.split(",")):
        if lib and re.match(r"^[A-Za-z0-9_.-]+$", lib) and lib not in out:
            out[lib] = "{}/openstack/{}.git".format(base, lib)
    return out


def git_upstream_base(lab):
    return (lab.devstack.get("git_base") or DEFAULT_GIT_BASE).rstrip("/")


def git_repos(lab):
    """``{mirror path: upstream URL}``: DevStack itself (every node's repo), the
    repositories stack.sh clones for the lab's services (DevStack's stackrc, or
    the ``<PREFIX>_REPO`` a node's pillar localrc names instead, and its
    ``LIBS_FROM_GIT``), every enabled plugin's repository and pillar
    ``cache:git:repos``."""
    import netlab_lab  # pylint: disable=import-outside-toplevel

    base = git_upstream_base(lab)
    urls = []
    for node in lab.nodes.values():
        urls.append(node.devstack.get("repo") or netlab_lab.DEVSTACK_DEFAULTS["repo"])
    for node_id in lab.nodes:
        urls += list(project_urls(lab, node_id).values())
    for node in lab.nodes.values():
        for spec in (node.devstack.get("plugins") or {}).values():
            parsed = netlab_lab.parse_plugin(spec)
            if parsed is not None:
                urls.append(parsed["repo"])
    urls += list(lab.cache["git"]["repos"])
    out = {}
    for url in urls:
        rel = repo_path(url, base)
        if rel and rel not in out:
            out[rel] = url
    return dict(sorted(out.items()))


def mirror_url(lab, upstream):
    """The mirror's URL of ``upstream`` (``None`` when it has no mirror)."""
    rel = repo_path(upstream, git_upstream_base(lab))
    if not enabled(lab, "git") or rel is None or rel not in git_repos(lab):
        return None
    return "{}/{}".format(git_base(lab), rel)


def target_branch(lab, node_id):
    """DevStack's TARGET_BRANCH on ``node_id``: its DevStack branch when that is a
    release branch (``stable/2025.1``), else ``master``."""
    branch = lab.node(node_id).devstack.get("branch") or "master"
    return branch if branch.startswith(RELEASE_BRANCH_PREFIXES) else "master"


def node_checkouts(lab, node_id):
    """What ``netlab.node.prepare`` clones from the git mirror into ``DEST`` before
    stack.sh runs: ``[{'name', 'target', 'repo', 'branch'}]``, every repository
    ``node_id``'s stack.sh clones (see :func:`project_urls`, plus its plugins and
    pillar ``cache:git:repos``) that the mirror has; ``[]`` with the git cache off.

    local.conf sets ``ERROR_ON_CLONE=True`` with the mirror on: DevStack's
    ``git_clone`` then refuses to clone anything that is not already in ``DEST``
    (``RECLONE=False`` leaves these checkouts as they are), so a repository
    missing here stops stack.sh at once with its directory named, instead of
    going to the internet. The branch is what DevStack would check out:
    ``<PREFIX>_BRANCH`` from pillar localrc, else DevStack's TARGET_BRANCH (or
    ``master`` for branchless projects); a plugin's own branch (default master)."""
    import netlab_lab  # pylint: disable=import-outside-toplevel

    if not enabled(lab, "git"):
        return []
    node = lab.node(node_id)
    dest = (node.devstack.get("dest") or netlab_lab.DEVSTACK_DEFAULTS["dest"]).rstrip("/")
    rc = _localrc(lab, node_id)
    default = target_branch(lab, node_id)
    base = git_upstream_base(lab)
    wanted = []
    for name, url in project_urls(lab, node_id).items():
        prefix, branchless = PROJECTS.get("openstack/" + name, (None, False))
        branch = _plain(rc.get("{}_BRANCH".format(prefix))) if prefix else None
        wanted.append((name, url, branch or ("master" if branchless else default)))
    for name, spec in (node.devstack.get("plugins") or {}).items():
        parsed = netlab_lab.parse_plugin(spec)
        if parsed is not None:
            wanted.append((name, parsed["repo"], parsed.get("branch") or "master"))
    for url in lab.cache["git"]["repos"]:
        rel = repo_path(url, base)
        if rel:
            wanted.append((posixpath.basename(rel)[:-len(".git")], url, default))
    out, seen = [], set()
    for name, url, branch in wanted:
        mirror = mirror_url(lab, url)
        if mirror is None or name in seen or name == "devstack":
            continue
        seen.add(name)
        out.append({"name": name, "target": "{}/{}".format(dest, name), "repo": mirror,
                    "branch": branch})
    return out


def refresh_mirror(directory, upstream, run):
    """Create or update one ``git clone --mirror`` in ``directory``.

    ``run(argv) -> (returncode, output)``. A new mirror is cloned next to its final
    place and renamed in, so a failed first clone leaves nothing; a failed update
    leaves the last good copy. Returns ``{'changed': bool, 'error': str|None,
    'created': bool}``; ``update-server-info`` keeps git's dumb HTTP current."""
    if os.path.isdir(directory):
        before = _refs(directory, run)
        code, out = run(["git", "-C", directory, "remote", "update", "--prune"])
        if code != 0:
            return {"changed": False, "created": False,
                    "error": "update from {} failed: {}".format(upstream, _last(out))}
        run(["git", "-C", directory, "update-server-info"])
        return {"changed": _refs(directory, run) != before, "created": False,
                "error": None}
    tmp = directory + ".new"
    if os.path.isdir(tmp):
        run(["rm", "-rf", "--one-file-system", tmp])
    os.makedirs(os.path.dirname(directory), exist_ok=True)
    code, out = run(["git", "clone", "--mirror", "--quiet", upstream, tmp])
    if code != 0:
        run(["rm", "-rf", "--one-file-system", tmp])
        return {"changed": False, "created": False,
                "error": "clone of {} failed: {}".format(upstream, _last(out))}
    run(["git", "-C", tmp, "update-server-info"])
    os.rename(tmp, directory)
    return {"changed": True, "created": True, "error": None}


def _refs(directory, run):
    return run(["git", "-C", directory, "show-ref"])[1]


def _last(text, n=3):
    lines = [l for l in (text or "").strip().splitlines() if l.strip()]
    return " / ".join(lines[-n:]) or "no output"


def refresh_git(lab, run, du):
    """Refresh every mirror of :func:`git_repos`; ``du(dir) -> bytes``. A new
    mirror is not created once the cache is over ``cache:git:max_size``.
    Returns ``{rel: result}`` (see :func:`refresh_mirror`)."""
    cfg = lab.cache["git"]
    mirrors = os.path.join(cfg["dir"], "mirrors")
    results = {}
    for rel, upstream in git_repos(lab).items():
        directory = os.path.join(mirrors, rel)
        if not os.path.isdir(directory) and du(cfg["dir"]) >= cfg["max_size"]:
            results[rel] = {"changed": False, "created": False, "error": (
                "not mirrored: the git cache holds {} (netlab:cache:git:max_size {})"
                .format(human_size(du(cfg["dir"])), human_size(cfg["max_size"])))}
            continue
        results[rel] = refresh_mirror(directory, upstream, run)
    publish_mirrors(lab)
    return results


def publish_mirrors(lab):
    """Make exactly the mirrors the lab names visible to nginx: ``<git>/served``
    holds a symlink per wanted mirror that exists; anything else is unlinked (its
    mirror stays on disk, unserved). Returns ``(added, removed)`` (lists)."""
    cfg = lab.cache["git"]
    mirrors = os.path.join(cfg["dir"], "mirrors")
    served = os.path.join(cfg["dir"], "served")
    os.makedirs(served, exist_ok=True)
    wanted = {rel for rel in git_repos(lab) if os.path.isdir(os.path.join(mirrors, rel))}
    present = set()
    removed = []
    for top, dirs, files in os.walk(served):
        for name in list(dirs) + files:
            full = os.path.join(top, name)
            if os.path.islink(full):
                rel = os.path.relpath(full, served)
                if dirs.count(name):
                    dirs.remove(name)
                if rel in wanted and os.readlink(full) == os.path.join(mirrors, rel):
                    present.add(rel)
                else:
                    os.unlink(full)
                    removed.append(rel)
    added = []
    for rel in sorted(wanted - present):
        link = os.path.join(served, rel)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.join(mirrors, rel), link)
        added.append(rel)
    return added, sorted(removed)


def stale_mirrors(lab):
    """Mirror directories no longer named by the lab (listed, never served)."""
    wanted = set(git_repos(lab))
    root = os.path.join(lab.cache["git"]["dir"], "mirrors")
    out = []
    for top, dirs, _ in os.walk(root):
        for d in list(dirs):
            full = os.path.join(top, d)
            if d.endswith(".git"):
                rel = os.path.relpath(full, root)
                if rel not in wanted:
                    out.append(rel)
                dirs.remove(d)
    return sorted(out)


# --------------------------------------------------------------------------- files
def file_role(url):
    """'image', 'etcd', 'constraints' or 'file': what DevStack uses ``url`` for."""
    low = urllib.parse.urlsplit(url).path.lower()
    if ETCD_MARK in low:
        return "etcd"
    if CONSTRAINTS_MARK in low:
        return "constraints"
    if low.endswith(IMAGE_SUFFIXES):
        return "image"
    return "file"


def fetch_files(lab, download, du):
    """Fetch every ``cache:files:urls`` entry not in the cache yet.

    ``download(url, dest) -> None`` (raises on failure, leaves no ``dest``). A file
    already cached is never fetched again. Returns ``{url: {'changed', 'error'}}``."""
    cfg = lab.cache["files"]
    out = {}
    for url in cfg["urls"]:
        dest = os.path.join(cfg["dir"], file_path(url))
        if os.path.isfile(dest):
            out[url] = {"changed": False, "error": None}
            continue
        if du(cfg["dir"]) >= cfg["max_size"]:
            out[url] = {"changed": False, "error": (
                "not fetched: the files cache holds {} (netlab:cache:files:max_size {})"
                .format(human_size(du(cfg["dir"])), human_size(cfg["max_size"])))}
            continue
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        try:
            download(url, dest)
        except Exception as exc:  # pylint: disable=broad-except
            out[url] = {"changed": False, "error": "download failed: {}".format(exc)}
            continue
        out[url] = {"changed": True, "error": None}
    return out


# --------------------------------------------------------------------------- local.conf
def localrc(lab, node_id):
    """The localrc variables the cache adds for ``node_id`` (``{}`` with it off)."""
    out = {}
    base = git_base(lab)
    if base:
        out["GIT_BASE"] = base
        # noVNC otherwise comes from GitHub, outside the mirror
        out["NOVNC_FROM_PACKAGE"] = True
        # netlab.node.prepare checks every repository out from the mirror into
        # DEST (node_checkouts); stack.sh keeps them as they are and refuses to
        # clone anything else: a repository the mirror lacks is a named error,
        # never a silent trip to the internet
        out["RECLONE"] = False
        out["ERROR_ON_CLONE"] = True
    if enabled(lab, "files"):
        images, etcd, constraints = [], None, None
        for url in lab.cache["files"]["urls"]:
            role = file_role(url)
            if role == "image":
                images.append(file_url(lab, url))
            elif role == "etcd" and etcd is None:
                cached = file_url(lab, url)
                etcd = cached[:cached.index(ETCD_MARK) + len(ETCD_MARK) - 1]
            elif role == "constraints" and constraints is None:
                constraints = file_url(lab, url)
        if images:
            out["IMAGE_URLS"] = ",".join(images)
            out["DOWNLOAD_DEFAULT_IMAGES"] = False
        if etcd:
            out["ETCD_DOWNLOAD_URL"] = etcd
        if constraints:
            out["TEMPEST_VENV_UPPER_CONSTRAINTS"] = constraints
    return out


def localrc_value(lab, name, value):
    """A pillar localrc value as local.conf writes it: a ``*_REPO`` URL the git
    cache mirrors becomes the mirror's URL (so even ``RECLONE=True`` fetches from
    the networking node); anything else as given."""
    if name.endswith("_REPO") and isinstance(value, str) and enabled(lab, "git"):
        return mirror_url(lab, value) or value
    return value


def plugin_repo(lab, repo):
    """A plugin's repository as local.conf names it: its mirror when the git cache
    has one."""
    return mirror_url(lab, repo) or repo


def checkout_settings(lab, settings):
    """A node's DevStack checkout settings (repo, git_base, ...) with the git
    cache's mirror in place of the upstream."""
    out = dict(settings)
    mirror = mirror_url(lab, settings.get("repo") or "")
    if mirror:
        out["repo"] = mirror
        out["git_base"] = git_base(lab)
    return out


# --------------------------------------------------------------------------- usage
def usage(lab, du):
    """Per part: enabled, bytes used, bound, over (bool), where."""
    out = {}
    for part in PARTS:
        cfg = lab.cache[part]
        used = du(cfg["dir"]) if cfg["enabled"] else 0
        out[part] = {"enabled": cfg["enabled"], "used": used, "max_size": cfg["max_size"],
                     "over": used > cfg["max_size"], "dir": cfg["dir"],
                     "summary": "{} of {}".format(human_size(used),
                                                  human_size(cfg["max_size"]))}
    return out


def disk_usage(directory):
    """Bytes under ``directory`` (files only, symlinks not followed)."""
    total = 0
    for top, _, files in os.walk(directory):
        for name in files:
            try:
                total += os.lstat(os.path.join(top, name)).st_size
            except OSError:
                pass
    return total


def prune_plan(entries, limit):
    """Which files to delete so the total fits ``limit``: ``entries`` are
    ``(path, size, last_used)``; the least recently used go first."""
    total = sum(e[1] for e in entries)
    out = []
    for path, size, _ in sorted(entries, key=lambda e: (e[2], e[0])):
        if total <= limit:
            break
        out.append(path)
        total -= size
    return out


PRUNABLE = {"apt": (".deb", ".udeb"), "pip": (".whl", ".tar.gz", ".zip", ".tar.bz2")}


def prunable(directory, suffixes):
    """``(path, size, last_used)`` of every package file under ``directory``."""
    out = []
    for top, _, files in os.walk(directory):
        for name in files:
            if name.endswith(suffixes):
                full = os.path.join(top, name)
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                out.append((full, st.st_size, max(st.st_atime, st.st_mtime)))
    return out


def prune(lab, part):
    """Bring ``part``'s cache under its bound by removing the least recently used
    package files (they are fetched again when next asked for). Returns the removed
    paths."""
    cfg = lab.cache[part]
    if part not in PRUNABLE or not cfg["enabled"] or not os.path.isdir(cfg["dir"]):
        return []
    entries = prunable(cfg["dir"], PRUNABLE[part])
    other = disk_usage(cfg["dir"]) - sum(e[1] for e in entries)
    removed = prune_plan(entries, max(0, cfg["max_size"] - other))
    for full in removed:
        try:
            os.unlink(full)
        except OSError:
            pass
    return removed


def digest(text):
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def nginx_locations(lab):
    """nginx locations of the git and files caches: ``[{'path', 'alias'}]``."""
    out = []
    if enabled(lab, "git"):
        out.append({"path": GIT_LOCATION + "/",
                    "alias": lab.cache["git"]["dir"] + "/served/"})
    if enabled(lab, "files"):
        out.append({"path": FILES_LOCATION + "/",
                    "alias": lab.cache["files"]["dir"] + "/"})
    return out


def normpath(p):
    return posixpath.normpath(p)


# --------------------------------------------------------------------------- upstream
def upstream_reachable(urls, connect, timeout=3):
    """True when one of ``urls``' hosts accepts a TCP connection (``connect((host,
    port), timeout)`` raises OSError otherwise)."""
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            connect((parts.hostname, port), timeout)
        except OSError:
            continue
        return True
    return False


def service_data(lab, run_dir, venv, connect):
    """What the ``netlab.cache`` SLS needs: per part the config text, command lines
    and directories. ``connect`` probes the apt mirrors when ``offline: auto``."""
    out = {"parts": [p for p in PARTS if enabled(lab, p)], "storage": lab.cache["storage"],
           "run_dir": run_dir}
    if enabled(lab, "apt"):
        mode = lab.cache["apt"]["offline"]
        offline = mode is True or (mode == "auto" and not upstream_reachable(
            apt_mirrors(lab), connect))
        conf_dir = apt_dirs(lab)["conf"]
        out["apt"] = {
            "offline": offline, "conf_dir": conf_dir,
            "conf": acng_conf(lab, offline=offline),
            "dir": lab.cache["apt"]["dir"], "log_dir": apt_dirs(lab)["state"],
            "argv": ["/usr/sbin/apt-cacher-ng", "-c", conf_dir, "ForeGround=1"],
            "check": ["/usr/lib/apt-cacher-ng/acngtool", "cfgdump", "-c", conf_dir],
            "url": apt_proxy(lab),
        }
    if enabled(lab, "pip"):
        out["pip"] = {
            "venv": venv, "dir": lab.cache["pip"]["dir"],
            "argv": devpi_argv(lab, venv), "init": devpi_init_argv(lab, venv),
            # devpi trusts the system's CA store (a TLS-inspecting proxy's CA is there)
            "env": {"REQUESTS_CA_BUNDLE": SYSTEM_CA},
            "url": pip_index(lab),
        }
    if enabled(lab, "git"):
        out["git"] = {"dir": lab.cache["git"]["dir"], "url": git_base(lab),
                      "repos": git_repos(lab)}
    if enabled(lab, "files"):
        out["files"] = {"dir": lab.cache["files"]["dir"],
                        "urls": {u: file_url(lab, u) for u in lab.cache["files"]["urls"]}}
    return out


def refresh_report(git_results, file_results, mirrors_dir=None):
    """``(ok, comment, changes)`` of a refresh: a repository that failed but has a
    last good copy is a warning (still served); one never mirrored, or a file never
    fetched, is a failure."""
    lines, changes, ok = [], {}, True
    for rel, res in sorted((git_results or {}).items()):
        if res["error"]:
            have = mirrors_dir and os.path.isdir(os.path.join(mirrors_dir, rel))
            if have:
                lines.append("git {}: {}; serving its last good copy".format(
                    rel, res["error"]))
            else:
                ok = False
                lines.append("git {}: {}; not served".format(rel, res["error"]))
        elif res["changed"]:
            changes["git " + rel] = "created" if res.get("created") else "updated"
    for url, res in sorted((file_results or {}).items()):
        if res["error"]:
            ok = False
            lines.append("file {}: {}".format(url, res["error"]))
        elif res["changed"]:
            changes["file " + url] = "fetched"
    summary = "{} git mirror(s), {} file(s) checked".format(
        len(git_results or {}), len(file_results or {}))
    return ok, "\n".join([summary] + lines), changes


def usage_table(usage):
    """:func:`usage` as the plain text table ``salt-run netlab.status`` appends."""
    head = ("CACHE", "STATE", "USED", "BOUND", "WHERE")
    rows = []
    for part in PARTS:
        u = usage[part]
        state = "off" if not u["enabled"] else ("OVER BOUND" if u["over"] else "on")
        rows.append((part, state, human_size(u["used"]) if u["enabled"] else "-",
                     human_size(u["max_size"]), u["dir"]))
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    widths[-1] = 0
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
                     for row in [head] + rows)


def usage_report(lab, measure=None):
    """``usage`` of every part (``measure``: disk_usage) plus, with the git mirror on,
    the mirrors the lab no longer names (``git.unused_mirrors``): what both the
    execution module and the runner show."""
    out = usage(lab, measure or disk_usage)
    if enabled(lab, "git"):
        out["git"]["unused_mirrors"] = stale_mirrors(lab)
    return out
