"""
The diskless node image: recipe, input hash, build, publish, retention.

Pure Python plus subprocess (``mmdebstrap``, ``unshare``, ``mount``). Salt's
``_modules/netlab_image.py`` and ``_states/netlab_image.py`` are thin faces over
this; the test helper ``test/lib/image.py`` calls it directly.

Layout (``lab.netnode.images_dir``, ``http_root``, ``tftp_root``)::

    <images_dir>/<build_id>/rootfs/         the root file system (read-only use)
    <images_dir>/<build_id>/vmlinuz         kernel  (0644 copy out of rootfs/boot)
    <images_dir>/<build_id>/initrd.img      initramfs (NFS root + netlab stateless)
    <images_dir>/<build_id>/manifest.json   inputs, hash, kernel version, timings
    <images_dir>/<build_id>/build.log       the build's output
    <images_dir>/current -> <build_id>      switched atomically after success
    <http_root>/images/<build_id>/{vmlinuz,initrd.img}   (hard links)
    <http_root>/images/current -> <build_id>
    <tftp_root>/images/<build_id>/{vmlinuz,initrd.img}   (pxelinux path)
    <tftp_root>/images/current -> <build_id>

One image serves every node: nothing per node or per lab network goes in
(no machine-id, hostname, SSH host keys, minion id/key or master address);
those are written into each node's own root (``netlab_roots``).

No-op rule: the input hash covers the recipe (distro, release, mirror,
components, variant, package lists, pip requirements, pip index, the DevStack
user) and the content of every file under ``netlab/files/image`` (the overlay
and ``configure.sh``) plus :data:`RECIPE_VERSION`. When ``current`` was built
from the same hash, :func:`build` changes nothing (it only repairs missing
publish links). Storage paths, the kernel command line, node data and the
build host's pip/CA settings are deliberately not part of the hash.
"""

import contextlib
import datetime
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import time

log = logging.getLogger(__name__)

# Bump when the Python side of the build changes the image (the files under
# netlab/files/image are hashed by content and need no bump).
RECIPE_VERSION = 1

DEFAULT_FILES_DIR = os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), os.pardir, "netlab", "files", "image"))

KERNEL_PACKAGES = {"debian": "linux-image-amd64", "ubuntu": "linux-image-generic"}
COMPONENTS = {"debian": ["main"], "ubuntu": ["main", "universe"]}
KEYRINGS = {
    "debian": None,  # mmdebstrap's default (debian-archive-keyring)
    "ubuntu": "/usr/share/keyrings/ubuntu-archive-keyring.gpg",
}
KEYRING_PACKAGES = {"debian": "debian-archive-keyring", "ubuntu": "ubuntu-keyring"}
# What every node image needs (beyond the variant and the kernel).
BASE_PACKAGES = [
    "systemd-sysv", "udev", "dbus", "kmod",
    "initramfs-tools", "busybox", "zstd",  # busybox: mount/cp for the stateless script
    "nfs-common", "iproute2", "iputils-ping", "procps", "netbase", "ca-certificates",
    "python3", "python3-venv",             # salt-minion's venv
    "openssh-server", "sudo",
]
# Only needed to build wheels without binary releases (salt needs timelib);
# purged again at the end of configure.sh.
BUILD_PACKAGES = ["gcc", "libc6-dev", "python3-dev"]
PIP_EXTRA = ["netaddr"]
VENV = "/opt/salt"
STAGE_IN_ROOT = "/tmp/netlab-build"
# overlay files that must be executable (the Salt fileserver does not keep modes)
EXECUTABLE_PREFIXES = (
    "overlay/etc/initramfs-tools/hooks/",
    "overlay/etc/initramfs-tools/scripts/",
    "overlay/usr/local/bin/",
    "overlay/usr/local/sbin/",
)
EXECUTABLE_FILES = ("configure.sh",)
BUILD_ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{12}$")
TMP_PREFIX = ".tmp-"
DEFAULT_KEEP = 2
PIP_CONF_FILES = ("/etc/xdg/pip/pip.conf", "/etc/pip.conf",
                  "~/.pip/pip.conf", "~/.config/pip/pip.conf")


class ImageError(RuntimeError):
    """A build or publish problem; the message says what and where."""


# --------------------------------------------------------------------------- recipe
def recipe(lab):
    """Everything that decides the image's content, as plain data.

    Only lab-wide image settings and the DevStack user: one image serves every
    node of the lab, so node data never appears here.
    """
    img = lab.image
    kernel = KERNEL_PACKAGES[img.distro]
    packages = sorted(set(BASE_PACKAGES + [kernel] + list(img.packages)))
    return {
        "recipe_version": RECIPE_VERSION,
        "distro": img.distro,
        "release": img.release,
        "mirror": img.mirror,
        "components": list(COMPONENTS[img.distro]),
        "variant": img.variant,
        "kernel_package": kernel,
        "packages": packages,
        "extra_packages": sorted(img.packages),
        "build_packages": sorted(BUILD_PACKAGES),
        "salt_version": img.salt_version,
        "pip_requirements": ["salt=={}".format(img.salt_version)] + PIP_EXTRA,
        "pip_index": img.pip_index,
        "user": lab.devstack["user"],
        "arch": "amd64",
    }


def _rel_files(files_dir):
    out = []
    for top, dirs, files in os.walk(files_dir):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(top, name)
            rel = os.path.relpath(full, files_dir).replace(os.sep, "/")
            if name.endswith((".pyc", "~")) or "/__pycache__/" in "/" + rel:
                continue
            out.append(rel)
    return sorted(out)


def file_mode(rel):
    """Mode a staged file gets (modes are derived from the path, not the source)."""
    if rel in EXECUTABLE_FILES or rel.startswith(EXECUTABLE_PREFIXES):
        return 0o755
    return 0o644


def files_digest(files_dir=None):
    """sha256 over (path, content) of every file under ``files_dir``."""
    files_dir = files_dir or DEFAULT_FILES_DIR
    if not os.path.isfile(os.path.join(files_dir, "configure.sh")):
        raise ImageError("{} is not netlab's image files directory (no configure.sh)"
                         .format(files_dir))
    digest = hashlib.sha256()
    for rel in _rel_files(files_dir):
        with open(os.path.join(files_dir, rel), "rb") as fh:
            content = fh.read()
        digest.update(rel.encode() + b"\0" + hashlib.sha256(content).digest())
    return digest.hexdigest()


def input_hash(lab, files_dir=None):
    """The image's input hash (hex sha256): equal hashes mean an equal image."""
    data = {"recipe": recipe(lab), "files": files_digest(files_dir)}
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


# --------------------------------------------------------------------------- paths
def paths(lab):
    nn = lab.netnode
    return {
        "images_dir": nn.images_dir,
        "current": os.path.join(nn.images_dir, "current"),
        "http_images": os.path.join(nn.http_root, "images"),
        "tftp_images": os.path.join(nn.tftp_root, "images"),
        "lock": os.path.join(nn.images_dir, ".lock"),
        "last_failure": os.path.join(nn.images_dir, "last-failure.json"),
        "last_failure_log": os.path.join(nn.images_dir, "last-failure.log"),
    }


def _read_manifest(build_dir):
    try:
        with open(os.path.join(build_dir, "manifest.json"), encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _describe(images_dir, build_id):
    bdir = os.path.join(images_dir, build_id)
    manifest = _read_manifest(bdir)
    if manifest is None:
        return None
    out = {
        "build_id": build_id,
        "dir": bdir,
        "rootfs": os.path.join(bdir, "rootfs"),
        "kernel": os.path.join(bdir, "vmlinuz"),
        "initrd": os.path.join(bdir, "initrd.img"),
        "manifest": os.path.join(bdir, "manifest.json"),
        "input_hash": manifest.get("input_hash"),
        "kernel_version": manifest.get("kernel_version"),
        "built_at": manifest.get("built_at"),
        "distro": manifest.get("recipe", {}).get("distro"),
        "release": manifest.get("recipe", {}).get("release"),
    }
    out["intact"] = (os.path.isdir(out["rootfs"]) and os.path.isfile(out["kernel"])
                     and os.path.isfile(out["initrd"]))
    return out


def current_build(lab):
    """The build ``<images_dir>/current`` points at, or ``None``.

    ``{build_id, dir, rootfs, kernel, initrd, manifest, input_hash, kernel_version,
    built_at, distro, release, intact}`` -- ``rootfs`` is the real path
    (``<images_dir>/<build_id>/rootfs``), fit for NFS exports and clones.
    """
    p = paths(lab)
    try:
        target = os.readlink(p["current"])
    except OSError:
        return None
    build_id = os.path.basename(target.rstrip("/"))
    return _describe(p["images_dir"], build_id)


def builds(lab):
    """Every finished build (newest first), as :func:`current_build` describes them."""
    images_dir = paths(lab)["images_dir"]
    try:
        names = os.listdir(images_dir)
    except OSError:
        return []
    out = []
    for name in sorted(names, reverse=True):
        if BUILD_ID_RE.match(name):
            desc = _describe(images_dir, name)
            if desc:
                out.append(desc)
    return out


def plan(lab, files_dir=None, force=False):
    """What :func:`build` would do: ``{'action': 'none'|'publish'|'build', ...}``."""
    want = input_hash(lab, files_dir)
    cur = current_build(lab)
    out = {"input_hash": want, "current": cur, "force": bool(force)}
    if cur is None:
        out.update(action="build", reason="no image built yet")
    elif not cur["intact"]:
        out.update(action="build", reason="current build {} is incomplete".format(
            cur["build_id"]))
    elif cur["input_hash"] != want:
        out.update(action="build", reason="inputs changed (hash {} -> {})".format(
            (cur["input_hash"] or "?")[:12], want[:12]))
    elif force:
        out.update(action="build", reason="rebuild forced")
    else:
        missing = _publish_problems(lab, cur["build_id"])
        if missing:
            out.update(action="publish", reason="; ".join(missing))
        else:
            out.update(action="none", reason="image {} is current".format(cur["build_id"]))
    # what would stop a build on this host (shown by test=True before trying)
    checker = getattr(DEFAULT_BUILDER, "host_problems", check_build_host)
    out["host_problems"] = checker(recipe(lab)) if out["action"] == "build" else []
    return out


# --------------------------------------------------------------------------- pip
def _parse_pip_conf(path):
    import configparser  # pylint: disable=import-outside-toplevel

    parser = configparser.RawConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (OSError, configparser.Error):
        return {}
    out = {}
    for section in ("global", "install", "download"):
        if parser.has_section(section):
            for key, value in parser.items(section):
                out[key.replace("_", "-")] = value
    return out


def host_pip_settings(environ=None, conf_files=PIP_CONF_FILES):
    """The build host's pip settings that the chroot's pip needs.

    From pip config files then ``PIP_*`` variables (later wins), like pip:
    ``cert``, ``index-url``, ``extra-index-url``, ``find-links``, ``trusted-host``,
    ``timeout``. When pip has no ``cert``, the CA bundle of ``REQUESTS_CA_BUNDLE``
    or ``SSL_CERT_FILE`` is used (a proxy's CA lives there on such hosts).
    """
    environ = os.environ if environ is None else environ
    conf = {}
    for path in conf_files:
        path = os.path.expanduser(path)
        if os.path.isfile(path):
            conf.update(_parse_pip_conf(path))
    if environ.get("PIP_CONFIG_FILE") and os.path.isfile(environ["PIP_CONFIG_FILE"]):
        conf.update(_parse_pip_conf(environ["PIP_CONFIG_FILE"]))
    env_map = {"PIP_CERT": "cert", "PIP_INDEX_URL": "index-url",
               "PIP_EXTRA_INDEX_URL": "extra-index-url", "PIP_FIND_LINKS": "find-links",
               "PIP_TRUSTED_HOST": "trusted-host", "PIP_DEFAULT_TIMEOUT": "timeout",
               "PIP_TIMEOUT": "timeout"}
    for var, key in env_map.items():
        if environ.get(var):
            conf[key] = environ[var]
    if not conf.get("cert"):
        for var in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
            if environ.get(var) and os.path.isfile(environ[var]):
                conf["cert"] = environ[var]
                break
    out = {}
    for key in ("cert", "index-url", "timeout"):
        if conf.get(key):
            out[key] = conf[key].strip()
    for key in ("extra-index-url", "find-links", "trusted-host"):
        if conf.get(key):
            out[key] = conf[key].split()
    return out


def pip_config(settings, pip_index=None):
    """Chroot-side pip.conf text and the host paths to make visible in the chroot.

    Returns ``(text, cert_src, links)``: ``cert_src`` is the host CA bundle to copy
    to ``pip/cert.pem``; ``links`` maps host directories (local find-links, and
    the parent of local ``file://`` indexes) to their path inside the chroot
    (bind-mounted read-only during the build, never copied).
    """
    lines = ["[global]", "disable-pip-version-check = true"]
    cert_src = settings.get("cert")
    if cert_src and os.path.isfile(cert_src):
        lines.append("cert = {}/pip/cert.pem".format(STAGE_IN_ROOT))
    else:
        cert_src = None
    links = {}

    def bind(host_dir):
        host_dir = os.path.abspath(host_dir)
        if host_dir not in links:
            links[host_dir] = "{}/pip/host{}".format(STAGE_IN_ROOT, len(links))
        return links[host_dir]

    def index_url(url):
        # a local (file://) index: its package pages link to ../../files/...,
        # so the directory above "simple" is made visible in the chroot
        if not url.startswith("file://"):
            return url
        local = url[len("file://"):].rstrip("/")
        if not os.path.isdir(local):
            return None
        return "file://{}/{}".format(bind(os.path.dirname(local)), os.path.basename(local))

    index = pip_index or settings.get("index-url")
    if index:
        index = index_url(index)
        if index:
            lines.append("index-url = {}".format(index))
    extra = [u for u in (index_url(u) for u in settings.get("extra-index-url", [])) if u]
    if extra:
        lines.append("extra-index-url = {}".format(" ".join(extra)))
    if settings.get("trusted-host"):
        lines.append("trusted-host = {}".format(" ".join(settings["trusted-host"])))
    if settings.get("timeout"):
        lines.append("timeout = {}".format(settings["timeout"]))
    find_links = []
    for link in settings.get("find-links", []):
        local = link[len("file://"):] if link.startswith("file://") else link
        if "://" not in local:
            if os.path.isdir(local):
                find_links.append(bind(local))
            # a missing local directory is skipped, as pip itself does
        else:
            find_links.append(link)
    if find_links:
        lines.append("find-links = {}".format(" ".join(find_links)))
    return "\n".join(lines) + "\n", cert_src, links


# --------------------------------------------------------------------------- staging
def stage_inputs(lab, rec, digest, stage_dir, files_dir=None, pip_settings=None):
    """Put configure.sh, the overlay, build.env and pip settings into ``stage_dir``.

    ``pip_settings``: as :func:`host_pip_settings` returns (default: this host's).
    Returns the host find-links directories to bind-mount (host -> chroot path).
    """
    files_dir = files_dir or DEFAULT_FILES_DIR
    os.makedirs(stage_dir, exist_ok=True)
    for rel in _rel_files(files_dir):
        dst = os.path.join(stage_dir, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(os.path.join(files_dir, rel), dst)
        os.chmod(dst, file_mode(rel))
    for top, dirs, _ in os.walk(stage_dir):
        for d in dirs:
            os.chmod(os.path.join(top, d), 0o755)
    os.chmod(stage_dir, 0o755)
    if pip_settings is None:
        pip_settings = host_pip_settings()
    text, cert_src, links = pip_config(pip_settings, rec["pip_index"])
    os.makedirs(os.path.join(stage_dir, "pip"), exist_ok=True)
    with open(os.path.join(stage_dir, "pip", "pip.conf"), "w", encoding="utf-8") as fh:
        fh.write(text)
    if cert_src:
        shutil.copyfile(cert_src, os.path.join(stage_dir, "pip", "cert.pem"))
    for inside in links.values():
        os.makedirs(os.path.join(stage_dir, "pip", os.path.basename(inside)), exist_ok=True)
    env = {
        "NETLAB_USER": rec["user"],
        "NETLAB_SALT_VERSION": rec["salt_version"],
        "NETLAB_PIP_REQUIREMENTS": " ".join(rec["pip_requirements"]),
        "NETLAB_BUILD_PACKAGES": " ".join(rec["build_packages"]),
        "NETLAB_DISTRO": rec["distro"],
        "NETLAB_RELEASE": rec["release"],
        "NETLAB_INPUT_HASH": digest,
    }
    with open(os.path.join(stage_dir, "build.env"), "w", encoding="utf-8") as fh:
        for key, value in sorted(env.items()):
            fh.write("{}={}\n".format(key, shlex.quote(str(value))))
    return links


# --------------------------------------------------------------------------- builder
def mmdebstrap_command(rec, rootfs, stage_dir, links, mmdebstrap="mmdebstrap"):
    """The full command line (a list) that builds ``rootfs`` from ``rec``.

    Runs under ``unshare --mount`` so every mount made by mmdebstrap or the hooks
    (proc, dev, the read-only find-links binds) dies with the process, even if
    it is killed.
    """
    inside = STAGE_IN_ROOT
    q = shlex.quote
    essential = (
        'mkdir -p "$1{inside}" && cp -a {stage}/. "$1{inside}/" && '
        'cp -R --preserve=mode,timestamps "$1{inside}/overlay/." "$1/"'
    ).format(inside=inside, stage=q(stage_dir))
    binds = " && ".join(
        'mount --bind {src} "$1{dst}" && mount -o remount,bind,ro "$1{dst}"'.format(
            src=q(src), dst=dst)
        for src, dst in sorted(links.items())) or "true"
    configure = (
        'chroot "$1" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:'
        '/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 /bin/sh {inside}/configure.sh'
    ).format(inside=inside)
    unbinds = " ; ".join('umount "$1{}"'.format(dst) for dst in sorted(links.values()))
    finish = (
        '{unbinds}{sep}rm -rf --one-file-system "$1{inside}" && '
        'rm -f "$1/etc/resolv.conf" "$1/etc/hostname"'
    ).format(unbinds=unbinds, sep=" ; " if unbinds else "", inside=inside)
    cmd = [
        "unshare", "--mount", "--propagation", "private", "--",
        mmdebstrap, "--mode=root", "--format=directory",
        "--variant={}".format(rec["variant"]),
        "--architectures={}".format(rec["arch"]),
        "--components={}".format(",".join(rec["components"])),
        "--include={}".format(",".join(rec["packages"] + rec["build_packages"])),
        "--aptopt=APT::Install-Recommends \"false\"",
        # no fsync per unpacked file (the kernel's modules alone are ~4000 files);
        # build() syncs once before the build becomes visible
        "--dpkgopt=force-unsafe-io",
        "--aptopt=Acquire::Languages \"none\"",
        "--essential-hook={}".format(essential),
        "--customize-hook={}".format(binds),
        "--customize-hook={}".format(configure),
        "--customize-hook={}".format(finish),
    ]
    if KEYRINGS.get(rec["distro"]):
        cmd.append("--keyring={}".format(KEYRINGS[rec["distro"]]))
    cmd += [rec["release"], rootfs, rec["mirror"]]
    return cmd


def check_build_host(rec, mmdebstrap="mmdebstrap"):
    """Problems that make a build impossible on this host (list of strings)."""
    problems = []
    if shutil.which(mmdebstrap) is None:
        problems.append("{} is not installed (package mmdebstrap)".format(mmdebstrap))
    if shutil.which("unshare") is None:
        problems.append("unshare is not installed (package util-linux)")
    keyring = KEYRINGS.get(rec["distro"])
    if keyring and not os.path.isfile(keyring):
        problems.append("{} is missing: install package {} to build {} images".format(
            keyring, KEYRING_PACKAGES[rec["distro"]], rec["distro"]))
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        problems.append("image builds need root (mmdebstrap --mode=root)")
    return problems


def mmdebstrap_builder(rec, rootfs, stage_dir, links, logfile, mmdebstrap="mmdebstrap"):
    """Default builder: run mmdebstrap; raise :class:`ImageError` with the log tail."""
    problems = check_build_host(rec, mmdebstrap)
    if problems:
        raise ImageError("cannot build the image on this host: " + "; ".join(problems))
    cmd = mmdebstrap_command(rec, rootfs, stage_dir, links, mmdebstrap)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env.update(LC_ALL="C.UTF-8", DEBIAN_FRONTEND="noninteractive")
    returncode = run_logged(cmd, logfile, env)
    if returncode != 0:
        raise ImageError("mmdebstrap failed (exit {}); last lines of {}:\n{}".format(
            returncode, logfile, _tail(logfile)))


def run_logged(cmd, logfile, env=None):
    """Run ``cmd``; every output line goes to ``logfile`` prefixed with the seconds
    since the start (``[  12.3s] ...``: bench/image_build.py reads the phases
    from these). Returns the exit code."""
    t0 = time.monotonic()
    with open(logfile, "ab") as out:
        out.write(("$ " + " ".join(shlex.quote(c) for c in cmd) + "\n").encode())
        out.flush()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env)
        try:
            for line in proc.stdout:
                out.write("[{:7.1f}s] ".format(time.monotonic() - t0).encode() + line)
                out.flush()
        finally:
            proc.stdout.close()
            returncode = proc.wait()
    return returncode


mmdebstrap_builder.host_problems = check_build_host
# The builder build() uses; a replacement (tests) may carry its own
# ``host_problems(recipe) -> [str]`` (plan() reports them before a build).
DEFAULT_BUILDER = mmdebstrap_builder


def _tail(path, lines=25):
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


# --------------------------------------------------------------------------- helpers
def _kernel_files(rootfs):
    """(version, vmlinuz path, initrd path) of the newest kernel in ``rootfs/boot``."""
    boot = os.path.join(rootfs, "boot")
    try:
        names = os.listdir(boot)
    except OSError:
        names = []
    versions = [n[len("vmlinuz-"):] for n in names if n.startswith("vmlinuz-")]

    def key(v):
        return [int(x) if x.isdigit() else x for x in re.split(r"[.-]", v)]

    for version in sorted(versions, key=key, reverse=True):
        initrd = os.path.join(boot, "initrd.img-" + version)
        if os.path.isfile(initrd):
            return version, os.path.join(boot, "vmlinuz-" + version), initrd
    raise ImageError("the built root has no kernel with an initramfs in {} (found: {})"
                     .format(boot, ", ".join(sorted(names)) or "nothing"))


def _mounts_under(path):
    """Mount points at or below ``path`` (from /proc/self/mountinfo), deepest first."""
    path = os.path.realpath(path)
    found = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            for line in fh:
                mnt = line.split()[4].replace("\\040", " ")
                if mnt == path or mnt.startswith(path + "/"):
                    found.append(mnt)
    except OSError:
        pass
    return sorted(found, key=len, reverse=True)


def remove_tree(path):
    """Remove a build tree safely: unmount anything below it first, never cross
    into another file system."""
    if not os.path.lexists(path):
        return
    if os.path.islink(path):
        os.unlink(path)  # a link to a build elsewhere: never touch its target
        return
    for mnt in _mounts_under(path):
        subprocess.run(["umount", "-l", mnt], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    left = _mounts_under(path)
    if left:
        raise ImageError("refusing to delete {}: still mounted: {}".format(
            path, ", ".join(left)))
    if not os.path.isdir(path):
        os.unlink(path)
        return
    subprocess.run(["rm", "-rf", "--one-file-system", path], check=True)


def _atomic_symlink(target, link):
    tmp = "{}.tmp-{}".format(link, os.getpid())
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _link_or_copy(src, dst):
    """``dst`` becomes ``src`` (hard link, or a 0644 copy across file systems),
    replaced atomically: a client fetching ``dst`` never sees it missing."""
    with contextlib.suppress(OSError):
        if os.path.samefile(src, dst):
            return
    tmp = "{}.tmp-{}".format(dst, os.getpid())
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    try:
        os.link(src, tmp)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(src, tmp)
        os.chmod(tmp, 0o644)
    os.replace(tmp, dst)


@contextlib.contextmanager
def build_lock(lab, wait=0):
    """Exclusive lock on ``<images_dir>/.lock``; ``wait`` seconds (0: fail at once)."""
    p = paths(lab)
    os.makedirs(p["images_dir"], exist_ok=True)
    fd = os.open(p["lock"], os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + (wait or 0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ImageError("another image build holds {} (wait for it, or pass "
                                     "a longer lock wait)".format(p["lock"])) from None
                time.sleep(1)
        yield
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- publish
def _publish_problems(lab, build_id):
    p = paths(lab)
    problems = []
    for key in ("http_images", "tftp_images"):
        base = p[key]
        cur = os.path.join(base, "current")
        try:
            target = os.readlink(cur)
        except OSError:
            problems.append("{} is missing".format(cur))
            continue
        if os.path.basename(target.rstrip("/")) != build_id:
            problems.append("{} points at {}, not {}".format(cur, target, build_id))
        for name in ("vmlinuz", "initrd.img"):
            if not os.path.isfile(os.path.join(base, build_id, name)):
                problems.append("{} is missing".format(os.path.join(base, build_id, name)))
    return problems


def _stage_boot_files(lab, build_id):
    """Hard-link (or copy) kernel and initrd into http/tftp ``images/<build_id>/``."""
    p = paths(lab)
    bdir = os.path.join(p["images_dir"], build_id)
    for key in ("http_images", "tftp_images"):
        dst_dir = os.path.join(p[key], build_id)
        os.makedirs(dst_dir, exist_ok=True)
        os.chmod(dst_dir, 0o755)
        for name in ("vmlinuz", "initrd.img"):
            _link_or_copy(os.path.join(bdir, name), os.path.join(dst_dir, name))


def publish(lab, build_id):
    """Point http/tftp ``images/current`` at ``build_id`` (atomic symlink switch)."""
    p = paths(lab)
    _stage_boot_files(lab, build_id)
    for key in ("http_images", "tftp_images"):
        _atomic_symlink(build_id, os.path.join(p[key], "current"))


# --------------------------------------------------------------------------- build
def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def build(lab, files_dir=None, force=False, builder=None, keep=DEFAULT_KEEP, protect=(),
          lock_wait=0, pip_settings=None):
    """Build (if needed), publish and switch the node image.

    Returns ``{'changed', 'action', 'build_id', 'input_hash', 'previous', 'current',
    'duration', 'reason', 'pruned'}``. Unchanged inputs: no build (``action`` is
    ``none``, or ``publish`` when only the HTTP/TFTP links needed repair). A
    failed build raises :class:`ImageError`; the previous ``current`` stays, the
    temp dir is removed and ``<images_dir>/last-failure.json`` tells why.

    ``builder(recipe, rootfs, stage_dir, links, logfile)`` makes the root file
    system (default: :func:`mmdebstrap_builder`); tests inject a fake one.
    """
    builder = builder or DEFAULT_BUILDER
    p = paths(lab)
    with build_lock(lab, wait=lock_wait):
        pl = plan(lab, files_dir, force)
        cur = pl["current"]
        result = {"changed": False, "action": pl["action"], "reason": pl["reason"],
                  "input_hash": pl["input_hash"], "previous": cur and cur["build_id"],
                  "build_id": cur and cur["build_id"], "duration": 0.0, "pruned": []}
        if pl["action"] == "none":
            result["current"] = cur
            return result
        if pl["action"] == "publish":
            publish(lab, cur["build_id"])
            result.update(changed=True, current=current_build(lab))
            return result
        _remove_stale_temps(p["images_dir"])
        started = _now()
        t0 = time.monotonic()
        digest = pl["input_hash"]
        stamp = started
        while True:  # unique, also for a forced rebuild within the same second
            build_id = "{}-{}".format(stamp.strftime("%Y%m%dT%H%M%SZ"), digest[:12])
            if not os.path.lexists(os.path.join(p["images_dir"], build_id)):
                break
            stamp += datetime.timedelta(seconds=1)
        tmp = os.path.join(p["images_dir"], TMP_PREFIX + build_id)
        logfile = os.path.join(tmp, "build.log")
        rec = recipe(lab)
        try:
            os.makedirs(tmp)
            os.chmod(tmp, 0o755)
            stage = os.path.join(tmp, "inputs")
            links = stage_inputs(lab, rec, digest, stage, files_dir, pip_settings)
            rootfs = os.path.join(tmp, "rootfs")
            builder(rec, rootfs, stage, links, logfile)
            version, kernel, initrd = _kernel_files(rootfs)
            for src, name in ((kernel, "vmlinuz"), (initrd, "initrd.img")):
                shutil.copyfile(src, os.path.join(tmp, name))
                os.chmod(os.path.join(tmp, name), 0o644)
            remove_tree(stage)
            manifest = {
                "build_id": build_id, "input_hash": digest, "recipe": rec,
                "files_digest": files_digest(files_dir),
                "kernel_version": version,
                "built_at": started.isoformat(), "duration": round(time.monotonic() - t0, 1),
                "sizes": {"vmlinuz": os.path.getsize(os.path.join(tmp, "vmlinuz")),
                          "initrd.img": os.path.getsize(os.path.join(tmp, "initrd.img"))},
                "packages": _package_list(rootfs),
            }
            with open(os.path.join(tmp, "manifest.json"), "w", encoding="utf-8") as fh:
                json.dump(manifest, fh, indent=2, sort_keys=True)
                fh.write("\n")
            os.sync()  # dpkg ran with force-unsafe-io: flush before it counts
            final = os.path.join(p["images_dir"], build_id)
            os.rename(tmp, final)
        except BaseException as exc:
            # the build's temp dir goes, its log stays where the error points to
            kept = p["last_failure_log"]
            with contextlib.suppress(OSError):
                shutil.copyfile(logfile, kept)
            _record_failure(p, build_id, digest, exc, kept)
            try:
                remove_tree(tmp)
            except Exception as cleanup_exc:  # pylint: disable=broad-except
                log.error("netlab image: cleanup of %s failed: %s", tmp, cleanup_exc)
            if isinstance(exc, Exception):
                text = str(exc).replace(logfile, kept)
                if kept not in text and os.path.exists(kept):
                    text += " (build log: {})".format(kept)
                if isinstance(exc, ImageError):
                    raise ImageError(text) from exc
                raise ImageError("image build {} failed: {}".format(build_id, text)) from exc
            raise
        # the commit point: current switches only now, after a complete build
        _stage_boot_files(lab, build_id)
        _atomic_symlink(build_id, p["current"])
        publish(lab, build_id)
        for stale in (p["last_failure"], p["last_failure_log"]):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)
        result.update(changed=True, build_id=build_id,
                      duration=round(time.monotonic() - t0, 1),
                      pruned=prune(lab, keep=keep, protect=protect),
                      current=current_build(lab))
        return result


def _package_list(rootfs):
    status = os.path.join(rootfs, "var", "lib", "dpkg", "status")
    pkgs = {}
    try:
        with open(status, encoding="utf-8", errors="replace") as fh:
            name = version = None
            installed = False
            for line in fh:
                if line.startswith("Package: "):
                    name = line.split(None, 1)[1].strip()
                elif line.startswith("Version: "):
                    version = line.split(None, 1)[1].strip()
                elif line.startswith("Status: "):
                    installed = line.strip().endswith(" installed")
                elif not line.strip():
                    if name and installed:
                        pkgs[name] = version
                    name = version = None
                    installed = False
            if name and installed:
                pkgs[name] = version
    except OSError:
        pass
    return dict(sorted(pkgs.items()))


def _record_failure(p, build_id, digest, exc, logfile):
    try:
        with open(p["last_failure"], "w", encoding="utf-8") as fh:
            json.dump({"build_id": build_id, "input_hash": digest,
                       "at": _now().isoformat(), "error": str(exc), "log": logfile,
                       "log_tail": _tail(logfile, 60)}, fh, indent=2)
            fh.write("\n")
    except OSError:
        pass


def _remove_stale_temps(images_dir):
    """Temp dirs of builds that died (the lock guarantees none is running)."""
    try:
        names = os.listdir(images_dir)
    except OSError:
        return
    for name in names:
        if name.startswith(TMP_PREFIX):
            remove_tree(os.path.join(images_dir, name))


def builds_in_use(lab):
    """Build ids some node boots (its last reimage recorded them): never pruned."""
    import netlab_lifecycle  # pylint: disable=import-outside-toplevel

    return {b for b in netlab_lifecycle.node_builds(lab).values() if b}


def prune(lab, keep=DEFAULT_KEEP, protect=(), in_use=None):
    """Delete old builds, keeping the ``keep`` newest (``current`` always counts and
    is never deleted), any build id in ``protect`` and every build a node uses
    (``in_use``, default :func:`builds_in_use`). Returns the deleted ids.

    A node boots the kernel and initrd of the build its root came from until it
    is reimaged (a persistent root has that kernel's modules only; a stateless
    node mounts that build's rootfs), so a build in use must stay.
    """
    keep = max(1, int(keep))
    protect = set(protect) | set(builds_in_use(lab) if in_use is None else in_use)
    p = paths(lab)
    cur = current_build(lab)
    cur_id = cur and cur["build_id"]
    ids = sorted((n for n in _listdir(p["images_dir"]) if BUILD_ID_RE.match(n)),
                 reverse=True)
    kept = [cur_id] if cur_id else []
    for bid in ids:
        if len(kept) >= keep:
            break
        if bid not in kept:
            kept.append(bid)
    deleted = []
    for bid in ids:
        if bid in kept or bid in protect:
            continue
        for base in (p["http_images"], p["tftp_images"]):
            remove_tree(os.path.join(base, bid))
        remove_tree(os.path.join(p["images_dir"], bid))
        deleted.append(bid)
    # boot-file dirs whose build is gone (e.g. removed by hand)
    for base in (p["http_images"], p["tftp_images"]):
        for name in _listdir(base):
            if BUILD_ID_RE.match(name) and name not in ids:
                remove_tree(os.path.join(base, name))
    return deleted


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


def remove_all(lab):
    """Delete every build and the published boot files (``netlab.image.clean``)."""
    p = paths(lab)
    removed = []
    with build_lock(lab):
        for base in (p["http_images"], p["tftp_images"]):
            if os.path.lexists(base):
                remove_tree(base)
                removed.append(base)
        for name in _listdir(p["images_dir"]):
            if BUILD_ID_RE.match(name) or name.startswith(TMP_PREFIX) or name in (
                    "current", "last-failure.json", "last-failure.log"):
                remove_tree(os.path.join(p["images_dir"], name))
                removed.append(os.path.join(p["images_dir"], name))
    return removed
