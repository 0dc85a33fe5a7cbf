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

This module is the model: validation, the cache's addresses, which repositories
are mirrored. What is rendered from it (daemon configs, the nodes' apt/pip
settings, local.conf lines) is in :mod:`netlab_cache_config`; the work on the
cache's storage (mirror refresh, downloads, usage, pruning) in
:mod:`netlab_cache_refresh`.
"""

import importlib
import os
import posixpath
import re
import sys
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
# pip's socket timeout (s) against the pip cache: devpi's first answer after a
# start waits for PyPI's project list (the image build and the nodes)
PIP_TIMEOUT = 180

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


# --------------------------------------------------------------------------- pip


# --------------------------------------------------------------------------- git
def node_services(lab, node_id):
    """The services enabled on ``node_id`` (DevStack's defaults when it keeps
    ``base``), as its stack.sh sees them."""
    svc = _sibling("netlab_localconf").services(lab, node_id)
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
    netlab_lab = _sibling("netlab_lab")
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
    if not enabled(lab, "git"):
        return []
    netlab_lab = _sibling("netlab_lab")
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


# --------------------------------------------------------------------------- local.conf

def localrc_value(lab, name, value):
    """A pillar localrc value as local.conf writes it: a ``*_REPO`` URL the git
    cache mirrors becomes the mirror's URL (so even ``RECLONE=True`` fetches from
    the networking node); anything else as given."""
    if name.endswith("_REPO") and isinstance(value, str) and enabled(lab, "git"):
        return mirror_url(lab, value) or value
    return value




def _sibling(name):
    """The netlab module ``name`` (netlab_lab, netlab_localconf), imported when
    first used: both import this module while they load (netlab_lab through
    netlab_lab_check), so neither can be imported at this module's top. Salt's
    loader puts netlab's _utils on sys.path only while it loads a module; at
    call time this directory is put there for the import."""
    if name in sys.modules:
        return sys.modules[name]
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(here)
