"""
The node image's recipe and input hash, and the build host's pip settings.

Everything that decides an image's content is plain data here: :func:`recipe`
(lab-wide image settings and the DevStack user) and :func:`input_hash` (the
recipe plus the content of every file under ``netlab/files/image``). Equal
hashes mean an equal image, so :mod:`netlab_image_build` builds only when the
hash changes. Storage paths, the kernel command line, node data and the build
host's pip/CA settings are deliberately not part of the hash; the pip settings
(:func:`host_pip_settings`, :func:`pip_config`) only tell the chroot's pip how
to reach an index from this host.
"""

import hashlib
import json
import os
import urllib.parse


# Bump when the Python side of the build changes the image (the files under
# netlab/files/image are hashed by content and need no bump).
RECIPE_VERSION = 2


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
# Files dpkg never unpacks into the node root (dpkg's path-exclude, kept in the
# image so DevStack's own packages skip them too): documentation, manual pages
# and translations nobody reads on a lab node, and kernel modules for hardware
# a diskless DevStack node does not use (sound, cameras/TV, Wi-Fi, Bluetooth,
# graphics cards whose firmware the image lacks anyway). Patterns match the
# paths packages ship (Debian's kernel ships /lib/modules, not /usr/lib).
# Every node root is a copy of the image: each MB here is a MB per node reset.
PATH_EXCLUDES = [
    "/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*",
    "/lib/modules/*/kernel/sound/*", "/lib/modules/*/kernel/drivers/media/*",
    "/lib/modules/*/kernel/drivers/net/wireless/*",
    "/lib/modules/*/kernel/drivers/bluetooth/*",
    "/lib/modules/*/kernel/net/bluetooth/*",
    "/lib/modules/*/kernel/drivers/gpu/drm/amd/*",
    "/lib/modules/*/kernel/drivers/gpu/drm/nouveau/*",
    "/lib/modules/*/kernel/drivers/gpu/drm/radeon/*",
    "/lib/modules/*/kernel/drivers/staging/*",
]
# ... except what licences and tools rely on
PATH_INCLUDES = ["/usr/share/doc/*/copyright", "/usr/share/locale/locale.alias"]


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


PIP_CONF_FILES = ("/etc/xdg/pip/pip.conf", "/etc/pip.conf",
                  "~/.pip/pip.conf", "~/.config/pip/pip.conf")


class ImageError(RuntimeError):
    """A build or publish problem; the message says what and where."""


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
        "path_excludes": list(PATH_EXCLUDES),
        "path_includes": list(PATH_INCLUDES),
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
    # pip ignores a plain-http index whose host it does not trust ("not a trusted
    # or secure host") and then finds nothing: the networking node's pip cache
    # (devpi on the lab IP) is such an index. Trusting a plain-http host weakens
    # nothing (there is no TLS to verify); https hosts are left as they are.
    trusted = list(settings.get("trusted-host", []))
    for url in [index] + extra:
        host = urllib.parse.urlsplit(url or "").hostname
        if url and url.startswith("http://") and host and host not in trusted:
            trusted.append(host)
    if trusted:
        lines.append("trusted-host = {}".format(" ".join(trusted)))
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
