"""
What the LAN cache's model (:mod:`netlab_cache`) renders: apt-cacher-ng's config
and devpi-server's command lines on the networking node (:func:`service_data`,
what the ``netlab.cache`` SLS needs), the nodes' apt and pip settings, the
local.conf lines that point DevStack at the mirrors, and nginx's locations.
Pure Python.
"""

import os
import urllib.parse

from netlab_cache import (ETCD_MARK, FILES_LOCATION, GIT_LOCATION, PARTS, PIP_TIMEOUT, SYSTEM_CA,
                          apt_dirs, apt_mirrors, apt_proxy, enabled, file_role, file_url,
                          git_base, git_repos, mirror_url, pip_index)


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
    return ("# netlab: Python packages through the networking node's pip cache\n"
            "[global]\nindex-url = {}\ntrusted-host = {}\ntimeout = {}\n".format(
                index, lab.netnode.ip, PIP_TIMEOUT))


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


def devpi_argv(lab, venv):
    cfg = lab.cache["pip"]
    return [os.path.join(venv, "bin", "devpi-server"), "--serverdir", cfg["dir"],
            "--host", lab.netnode.ip, "--port", str(cfg["port"])]


def devpi_init_argv(lab, venv):
    return [os.path.join(venv, "bin", "devpi-init"), "--serverdir",
            lab.cache["pip"]["dir"]]


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

