"""
The vocabulary of pillar ``netlab``: known keys, allowed values, defaults and the
tables of leaf fields that :class:`netlab_lab_checker.Checker` reads.

A leaf field (one key whose check needs nothing but its own value) is a row of a
table here, with its kind, its default and the model name it gets; only rules
that relate several fields (addresses inside the network, uniqueness across
nodes, the power fields of a driver) are code, in :mod:`netlab_lab_check`.
Every default of the lab model is written in this file and nowhere else.
"""

import copy
import re
import uuid

try:
    import netaddr

    HAS_NETADDR = True
except ImportError:  # pragma: no cover - reported by the Salt modules' __virtual__
    netaddr = None
    HAS_NETADDR = False

NETADDR_MISSING = (
    "netlab needs the Python package 'netaddr' in Salt's own Python "
    "(onedir packages: 'salt-pip install netaddr'; a venv: 'pip install netaddr')"
)

ROOT = "netlab"

# --------------------------------------------------------------------------- vocabulary
DHCP_MODES = ("proxy", "full", "off")
NFS_SERVERS = ("kernel", "ganesha")
BOOT_LOADERS = ("ipxe", "pxelinux")
ROOT_MODES = ("persistent", "stateless")
DISTROS = {"debian": "bookworm", "ubuntu": "noble"}
DEFAULT_MIRRORS = {
    "debian": "http://deb.debian.org/debian",
    "ubuntu": "http://archive.ubuntu.com/ubuntu",
}
BUILTIN_ROLES = ("controller", "compute")
CONTROLLER_ROLE = "controller"
LOCAL_CONF_PHASES = ("local", "post-config", "extra", "post-extra", "test-config")
DEVSTACK_KEYS = (
    "repo", "branch", "user", "dest", "git_base",
    "localrc", "local_conf", "services", "plugins",
)
DEVSTACK_DEFAULTS = {
    "repo": "https://opendev.org/openstack/devstack",
    "branch": "master",
    "user": "stack",
    "dest": "/opt/stack",
    "git_base": None,
    "localrc": {},
    "local_conf": {},
    "services": {},
    "plugins": {},
}
# power driver -> (required fields, optional fields)
POWER_DRIVERS = {
    "wol": ((), ("broadcast", "port")),
    "ipmi": (("address", "username", "password"), ("interface", "port", "bootdev")),
    "redfish": (("address", "username", "password"), ("port", "system", "verify", "bootdev")),
    "reboot": ((), ()),
    "manual": ((), ("instructions",)),
    "virtual": ((), ("memory", "cpus", "firmware", "disk", "netns", "bridge", "tap",
                     "accel")),
}
# power fields that are secrets: they never leave the networking node
POWER_SECRETS = ("password", "username", "address")

TOP_KEYS = ("network", "netnode", "image", "devstack", "roles", "nodes", "lookup", "cache")
NETWORK_KEYS = ("interface", "cidr", "gateway", "domain", "dhcp", "dns")
DHCP_KEYS = ("mode", "pool", "lease_time", "allow_other_servers", "probe_timeout")
DNS_KEYS = ("enabled", "upstream")
NETNODE_KEYS = ("id", "ip", "hostname", "storage", "nfs", "http", "salt_master")
NFS_KEYS = ("server",)
HTTP_KEYS = ("port",)
# the node image's salt-minion unless image:salt_version says otherwise
DEFAULT_SALT_VERSION = "3008.3"
IMAGE_KEYS = ("distro", "release", "mirror", "packages", "salt_version", "kernel_cmdline",
              "variant", "pip_index")
ROLE_KEYS = ("devstack", "description")
NODE_KEYS = ("mac", "ip", "role", "hostname", "power", "boot", "root", "devstack")
NODE_BOOT_KEYS = ("loader", "firmware")
NODE_ROOT_KEYS = ("mode",)

SHELL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
# local.conf meta-section file names ($NOVA_CONF, /etc/x.conf), INI sections and keys:
# DevStack evals them unquoted (inc/meta-config), so only harmless characters
CONF_FILE_RE = re.compile(r"^(?:\$(?:\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)"
                          r"|[A-Za-z0-9_./+@%:,-])+\Z")
INI_SECTION_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@/+-]*\Z")
INI_KEY_RE = re.compile(r"^[A-Za-z0-9_/][A-Za-z0-9_.:@/+-]*\Z")
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
SHELL_REF = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
MAC_RE = re.compile(r"^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}\Z")
INTERFACE_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}\Z")
# Salt minion ids that netlab uses as targets, file names and key names: no glob or
# compound-matcher characters, no path separators
MINION_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
HOSTNAME_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")
# absolute paths the networking node creates, exports or renders into config files
SAFE_PATH_RE = re.compile(r"/[A-Za-z0-9_.+@/-]{0,250}")
# top-level system directories that can never be netlab's storage or DevStack's DEST
SYSTEM_DIRS = ("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64",
               "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
               "/opt")
# URL characters netlab accepts: no whitespace, quotes, backslash, shell or glob syntax
URL_CHARS_RE = re.compile(r"[A-Za-z0-9._~:/?#@+,=%!-]{1,2048}")
GIT_REF_RE = re.compile(r"(?!-)(?!.*\.\.)[A-Za-z0-9._/+@-]{1,255}")
KERNEL_ARG_RE = re.compile(r"[A-Za-z0-9_.,:=/@+-]{1,255}")
SALT_VERSION_RE = re.compile(r"[0-9]{1,5}(\.[0-9]{1,5}){0,3}(rc[0-9]{1,3})?")
IPMI_USER_RE = re.compile(r"[A-Za-z0-9_.@-]{1,32}")
REDFISH_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
IPMI_INTERFACES = ("lan", "lanplus", "open", "imb", "lipmi", "serial-basic",
                   "serial-terminal", "usb", "bmc", "free")
GIT_SCHEMES = ("http", "https", "git", "ssh", "file")
PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]{0,99}(=[A-Za-z0-9.+~:-]{1,100})?")
MAX_TEXT = 1024  # any other pillar string (descriptions, instructions, passwords)
# fixed namespace for ids derived from a node: stable across runs and machines
NETLAB_NS = uuid.UUID("6c0e4f3e-8a2f-5b1d-9c57-2a6e0b3f4d10")


LEASE_TIME_RE = re.compile(r"(\d{1,9}[smhdw]?|infinite)")
RELEASE_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")
USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
IMAGE_VARIANTS = ("minbase", "apt", "important")
NODE_FIRMWARES = ("auto", "bios", "uefi")


class Field:
    """One leaf key of a pillar mapping.

    ``kind`` names the check (a ``kind_<kind>`` method of the checker);
    ``default`` is used when the key is absent: a value, or a function of the
    fields of the same table read before it; ``out`` is the model's name for it
    (default: the key); ``opts`` go to the check. Options the table reader itself
    knows: ``required`` (report a missing key when the mapping has other keys),
    ``fallback`` (an invalid value becomes the default), ``str_only`` (anything
    but a string is reported as such), ``nullable`` (null is the same as absent),
    ``empty_ok`` (an empty string is the same as absent).
    """

    __slots__ = ("key", "kind", "default", "out", "opts")

    def __init__(self, key, kind, default=None, out=None, **opts):
        self.key, self.kind, self.default, self.out, self.opts = key, kind, default, out, opts


NETWORK_FIELDS = (
    Field("interface", "interface", required=True),
    Field("cidr", "cidr", required=True),
    Field("gateway", "ipv4"),
    Field("domain", "domain", "lab"),
)
DHCP_FIELDS = (
    Field("mode", "choice", "proxy", out="dhcp_mode", choices=DHCP_MODES),
    Field("lease_time", "string", "12h",
          match=(LEASE_TIME_RE, "{!r} is not a lease time (e.g. 12h, 45m, infinite)")),
    Field("allow_other_servers", "boolean", False),
    Field("probe_timeout", "positive_number", 5, what="a positive number of seconds"),
)
DNS_FIELDS = (
    Field("enabled", "boolean", True, out="dns_enabled"),
)
NETNODE_FIELDS = (
    Field("hostname", "label", "netnode"),
    Field("id", "text", lambda out: out["hostname"], fallback=True, pattern=MINION_ID_RE,
          what="a Salt minion id netlab can target (letters, digits, _ . -; no glob "
          "characters, at most 64)"),
    Field("storage", "abs_path", "/srv/netlab", fallback=True, system_ok=False),
)
NFS_FIELDS = (
    Field("server", "choice", "kernel", out="nfs_server", choices=NFS_SERVERS),
)
HTTP_FIELDS = (
    Field("port", "port", 80, out="http_port", what="a TCP port"),
)
IMAGE_FIELDS = (
    Field("distro", "choice", "debian", choices=tuple(DISTROS)),
    Field("release", "string", lambda out: DISTROS[out["distro"]],
          match=(RELEASE_RE, "{!r} is not a release code name")),
    Field("mirror", "url", lambda out: DEFAULT_MIRRORS[out["distro"]], fallback=True),
    Field("packages", "packages", lambda out: []),
    Field("salt_version", "text", DEFAULT_SALT_VERSION, fallback=True,
          pattern=SALT_VERSION_RE, what="a Salt version (e.g. 3008.3)"),
    Field("kernel_cmdline", "kernel_cmdline", ""),
    Field("variant", "choice", "minbase", choices=IMAGE_VARIANTS),
    Field("pip_index", "url", None),
)
NODE_BOOT_FIELDS = (
    Field("loader", "choice", "ipxe", out="boot_loader", choices=BOOT_LOADERS),
    Field("firmware", "choice", "auto", choices=NODE_FIRMWARES),
)
NODE_ROOT_FIELDS = (
    Field("mode", "choice", "persistent", out="root_mode", choices=ROOT_MODES),
)
# the string settings of a devstack layer (lab, role or node); a layer is checked
# as given and merged later, so these have no defaults here (DEVSTACK_DEFAULTS)
DEVSTACK_FIELDS = (
    Field("repo", "url", str_only=True, schemes=GIT_SCHEMES, local_path=True),
    Field("branch", "text", str_only=True, pattern=GIT_REF_RE,
          what="a git branch or tag (letters, digits, _ . / + @ -; no '..', not "
          "starting with '-')"),
    Field("git_base", "url", str_only=True, schemes=GIT_SCHEMES),
    Field("user", "match", str_only=True, match=(USER_RE, "{!r} is not a valid user name")),
    Field("dest", "abs_path", str_only=True, system_ok=False),
)
_PORT = Field("port", "port", nullable=True, what="a UDP port (1-65535)")
_NETDEV = "an interface or namespace name (letters, digits, _ . : @ -, at most 15)"
# power driver -> checks of its fields (which fields a driver takes: POWER_DRIVERS)
POWER_FIELDS = {
    "ipmi": (
        Field("address", "ipv4"),
        Field("username", "text", empty_ok=True, pattern=IPMI_USER_RE,
              what="an IPMI user name (letters, digits, _ . @ -, at most 32)"),
        Field("password", "text", empty_ok=True, maxlen=64),
        Field("interface", "choice", choices=IPMI_INTERFACES),
        _PORT,
        Field("bootdev", "choice", choices=("pxe", "none")),
    ),
    "redfish": (
        Field("address", "ipv4"),
        Field("username", "text", empty_ok=True),
        Field("password", "text", empty_ok=True),
        Field("port", "port", nullable=True, what="a TCP port (1-65535)"),
        Field("system", "text", pattern=REDFISH_ID_RE,
              what="a Redfish system id (letters, digits, _ . -)"),
        Field("bootdev", "choice", choices=("pxe", "none")),
    ),
    "wol": (Field("broadcast", "ipv4"), _PORT),
    "manual": (Field("instructions", "text"),),
    "virtual": (
        Field("tap", "text", pattern=INTERFACE_RE, what=_NETDEV),
        Field("netns", "text", pattern=INTERFACE_RE, what=_NETDEV),
        Field("bridge", "text", pattern=INTERFACE_RE, what=_NETDEV),
        Field("memory", "positive_int"),
        Field("cpus", "positive_int"),
        Field("firmware", "choice", choices=("bios", "uefi")),
        Field("accel", "choice", choices=("auto", "kvm", "tcg")),
        Field("disk", "forbidden", message="virtual nodes are diskless (they boot from "
              "the network); remove the key"),
    ),
}


class LabError(ValueError):
    """Raised by :func:`load`; ``errors`` holds every problem as ``path: message``."""

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__(
            "invalid netlab pillar ({} problem{}):\n  {}".format(
                len(self.errors), "" if len(self.errors) == 1 else "s",
                "\n  ".join(self.errors),
            )
        )


def path(*parts):
    """``path('nodes', 'nuc3', 'ip')`` -> ``'netlab:nodes:nuc3:ip'``."""
    return ":".join((ROOT,) + tuple(str(p) for p in parts))


def deep_merge(*layers):
    """Merge dicts left to right: dicts merge recursively, anything else: later wins."""
    out = {}
    for layer in layers:
        if not layer:
            continue
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = deep_merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


def normalize_mac(value):
    """``'94-C6-91-AA-00-01'`` -> ``'94:c6:91:aa:00:01'``; ``None`` when malformed."""
    if not isinstance(value, str):
        return None
    mac = value.strip().lower()
    if not MAC_RE.match(mac):
        return None
    return mac.replace("-", ":")


def derived_uuid(*parts):
    """A UUID that is a pure function of ``parts`` (stable, unique per input)."""
    return str(uuid.uuid5(NETLAB_NS, "/".join(str(p) for p in parts)))
