"""
The netlab lab model: pillar ``netlab`` -> a validated, immutable :class:`Lab`.

Pure Python (netaddr is the only third-party import). Every other part of netlab
reads this model, never raw pillar. :func:`load` reports *every* problem at once,
each naming its pillar path (``netlab:nodes:nuc3:ip: ... is not an IPv4 address``).

Salt modules import this file directly (Salt puts the synced ``_utils`` directory
on ``sys.path`` while it loads custom modules); unit tests put ``_utils`` on
``sys.path`` themselves.
"""

import copy
import posixpath
import re
import urllib.parse
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

TOP_KEYS = ("network", "netnode", "image", "devstack", "roles", "nodes", "lookup")
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


# --------------------------------------------------------------------------- the model
class _Frozen:
    """Tiny read-only record with attribute access and ``as_dict``."""

    __slots__ = ("_data",)

    def __init__(self, **data):
        object.__setattr__(self, "_data", data)

    def __getattr__(self, name):
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        raise AttributeError("lab model objects are read-only")

    def __eq__(self, other):
        return type(self) is type(other) and self._data == other._data

    def __repr__(self):
        return "{}({})".format(type(self).__name__, ", ".join(
            "{}={!r}".format(k, v) for k, v in self._data.items()))

    def as_dict(self):
        def plain(v):
            if isinstance(v, _Frozen):
                return v.as_dict()
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [plain(x) for x in v]
            return v

        return {k: plain(v) for k, v in self._data.items()}


class Network(_Frozen):
    """interface, cidr (str), netmask, prefixlen, gateway, domain, dhcp_mode,
    pool (dict start/end or None), lease_time, allow_other_servers, probe_timeout,
    dns_enabled, dns_upstream (list)."""


class Netnode(_Frozen):
    """id (minion id), ip, hostname, fqdn, storage, nfs_server, http_port, salt_master,
    and derived paths: roots_dir, images_dir, http_root, tftp_root, state_dir."""


class Image(_Frozen):
    """distro, release, mirror, packages, salt_version, kernel_cmdline, variant,
    pip_index."""


class Node(_Frozen):
    """id, hostname, fqdn, mac, ip, role, is_controller, power (dict: driver + fields),
    boot_loader, firmware, root_mode, devstack (merged lab -> role -> node)."""

    @property
    def power_driver(self):
        return self.power["driver"]


class Lab(_Frozen):
    """network, netnode, image, devstack (lab-wide), roles (dict), nodes (dict id->Node,
    sorted by id)."""

    @property
    def controller(self):
        for node in self.nodes.values():
            if node.is_controller:
                return node
        return None  # pragma: no cover - validation guarantees exactly one

    @property
    def subnodes(self):
        """Every node that is not the controller, sorted by id."""
        return [n for n in self.nodes.values() if not n.is_controller]

    def node(self, node_id):
        try:
            return self.nodes[node_id]
        except KeyError:
            raise KeyError(
                "{} is not a node of this lab (known: {})".format(
                    node_id, ", ".join(self.nodes) or "none")
            ) from None

    def node_table(self):
        """The resolved node table every other part uses (no secrets)."""
        return [
            {
                "id": n.id, "hostname": n.hostname, "fqdn": n.fqdn, "mac": n.mac,
                "ip": n.ip, "role": n.role, "power": n.power_driver,
                "boot_loader": n.boot_loader, "firmware": n.firmware,
                "root_mode": n.root_mode,
            }
            for n in self.nodes.values()
        ]

    def public_power(self, node_id):
        """A node's power settings without credentials (for status/logs)."""
        return {k: v for k, v in self.node(node_id).power.items()
                if k not in POWER_SECRETS}


# --------------------------------------------------------------------------- validation
class _Checker:
    def __init__(self):
        self.errors = []

    def err(self, where, message):
        self.errors.append("{}: {}".format(where, message))

    def mapping(self, value, *where, allowed=None, required=False):
        """Return ``value`` as a dict (``{}`` when absent); report wrong type / typos."""
        if value is None:
            if required:
                self.err(path(*where), "is required")
            return {}
        if not isinstance(value, dict):
            self.err(path(*where), "must be a mapping, not {}".format(type(value).__name__))
            return {}
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    self.err(path(*where, key), "unknown key (known: {})".format(
                        ", ".join(allowed)))
        return value

    def ipv4(self, value, *where, required=True):
        if value is None:
            if required:
                self.err(path(*where), "is required")
            return None
        text = str(value)
        try:
            ok = netaddr.valid_ipv4(text, flags=netaddr.INET_PTON)
        except Exception:  # pylint: disable=broad-except
            ok = False
        if not ok:
            self.err(path(*where), "{} is not an IPv4 address".format(text))
            return None
        return str(netaddr.IPAddress(text))

    def choice(self, value, choices, default, *where):
        if value is None:
            return default
        if value not in choices:
            self.err(path(*where), "{!r} is not one of: {}".format(value, ", ".join(choices)))
            return default
        return value

    def string(self, value, default, *where):
        if value is None:
            return default
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            self.err(path(*where), "must be a string")
            return default
        return str(value)

    def boolean(self, value, default, *where):
        if value is None:
            return default
        if not isinstance(value, bool):
            self.err(path(*where), "must be true or false")
            return default
        return value

    def text(self, value, default, *where, pattern=None, what=None, maxlen=MAX_TEXT):
        """A single-line string: no control characters, at most ``maxlen`` characters,
        and (with ``pattern``) a full match of ``pattern``; ``default`` when absent."""
        if value is None:
            return default
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            self.err(path(*where), "must be a string")
            return default
        value = str(value)
        if CONTROL_CHARS.search(value) or "\t" in value:
            self.err(path(*where), "{!r} contains a control character (newline, tab, "
                     "escape...); it must be one line".format(value[:80]))
            return default
        if len(value) > maxlen:
            self.err(path(*where), "is too long ({} characters, at most {})".format(
                len(value), maxlen))
            return default
        if pattern is not None and not pattern.fullmatch(value):
            self.err(path(*where), "{!r} is not {}".format(value, what))
            return default
        return value

    def url(self, value, default, *where, schemes=("http", "https"), local_path=False):
        """A URL with a scheme from ``schemes`` and a host (``file:`` a path), no
        whitespace, quotes or shell syntax; ``local_path``: an absolute path too."""
        text = self.text(value, None, *where, maxlen=2048)
        if text is None:
            return default if value is None else None
        want = "a URL ({}://...){}".format("|".join(schemes),
                                           " or an absolute path" if local_path else "")
        if not URL_CHARS_RE.fullmatch(text):
            self.err(path(*where), "{!r} is not {} (no spaces, quotes, $, `, ;, &, |, "
                     "<, >, backslash or brackets)".format(text, want))
            return None
        if local_path and text.startswith("/"):
            return self.abs_path(text, None, *where)
        try:
            parts = urllib.parse.urlsplit(text)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in schemes:
            self.err(path(*where), "{!r} is not {}".format(text, want))
            return None
        if parts.scheme == "file":
            if parts.netloc or not parts.path.startswith("/"):
                self.err(path(*where), "{!r}: a file URL needs an absolute path "
                         "(file:///srv/x.git)".format(text))
                return None
        elif not parts.hostname:
            self.err(path(*where), "{!r} has no host".format(text))
            return None
        return text

    def abs_path(self, value, default, *where, system_ok=True):
        """An absolute, normalised path of safe characters (no ``..``, ``//``,
        trailing ``/``); with ``system_ok=False`` not ``/`` or a top-level system
        directory."""
        text = self.text(value, None, *where, maxlen=251)
        if text is None:
            return default if value is None else None
        if not SAFE_PATH_RE.fullmatch(text):
            self.err(path(*where), "{!r} must be an absolute path of letters, digits "
                     "and _ . + @ / -".format(text))
            return None
        norm = posixpath.normpath(text)
        if norm.startswith("//"):
            norm = norm[1:]
        if norm != text:
            self.err(path(*where), "{!r} is not a normalised path (no '..', '.', '//' "
                     "or trailing '/'; did you mean {!r}?)".format(text, norm))
            return None
        if not system_ok and text in SYSTEM_DIRS:
            self.err(path(*where), "{!r} is a system directory; use a directory of its "
                     "own (e.g. {}/netlab)".format(text, text.rstrip("/")))
            return None
        return text

    def dns_label(self, value, *where):
        if not isinstance(value, str) or not DNS_LABEL.match(value):
            self.err(path(*where), "{!r} is not a valid DNS label (a-z, 0-9, '-', at most "
                     "63 characters, not starting or ending with '-')".format(value))
            return False
        return True


def _check_network(c, raw):
    net = c.mapping(raw.get("network"), "network", allowed=NETWORK_KEYS, required=True)
    out = {"interface": None, "cidr": None, "netmask": None, "prefixlen": None,
           "gateway": None, "domain": "lab", "dhcp_mode": "proxy", "pool": None,
           "lease_time": "12h", "allow_other_servers": False, "probe_timeout": 5,
           "dns_enabled": True, "dns_upstream": []}
    iface = net.get("interface")
    if iface is None:
        if net:
            c.err(path("network", "interface"), "is required")
    elif not isinstance(iface, str) or not INTERFACE_RE.match(iface):
        c.err(path("network", "interface"), "{!r} is not an interface name".format(iface))
    else:
        out["interface"] = iface
    cidr = None
    if net.get("cidr") is None:
        if net:
            c.err(path("network", "cidr"), "is required")
    else:
        try:
            cidr = netaddr.IPNetwork(str(net["cidr"]))
            if cidr.version != 4 or "/" not in str(net["cidr"]):
                raise ValueError
        except Exception:  # pylint: disable=broad-except
            c.err(path("network", "cidr"), "{} is not an IPv4 network in CIDR form "
                  "(e.g. 192.168.42.0/24)".format(net["cidr"]))
            cidr = None
        else:
            if cidr.ip != cidr.network:
                c.err(path("network", "cidr"), "{} has host bits set (did you mean {}?)"
                      .format(net["cidr"], cidr.cidr))
            if cidr.prefixlen > 30:
                c.err(path("network", "cidr"), "{} is too small for a lab (at most /30)"
                      .format(net["cidr"]))
            cidr = cidr.cidr
            out.update(cidr=str(cidr), netmask=str(cidr.netmask), prefixlen=cidr.prefixlen)
    if net.get("gateway") is not None:
        gw = c.ipv4(net["gateway"], "network", "gateway")
        if gw and cidr is not None and netaddr.IPAddress(gw) not in cidr:
            c.err(path("network", "gateway"), "{} is outside network:cidr {}".format(gw, cidr))
        out["gateway"] = gw
    domain = net.get("domain", "lab")
    if not isinstance(domain, str) or not domain or not all(
            DNS_LABEL.match(p) for p in domain.split(".")):
        c.err(path("network", "domain"), "{!r} is not a valid DNS domain".format(domain))
    else:
        out["domain"] = domain

    dhcp = c.mapping(net.get("dhcp"), "network", "dhcp", allowed=DHCP_KEYS)
    out["dhcp_mode"] = c.choice(dhcp.get("mode"), DHCP_MODES, "proxy", "network", "dhcp", "mode")
    out["lease_time"] = c.string(dhcp.get("lease_time"), "12h", "network", "dhcp", "lease_time")
    if not re.fullmatch(r"(\d{1,9}[smhdw]?|infinite)", out["lease_time"]):
        c.err(path("network", "dhcp", "lease_time"),
              "{!r} is not a lease time (e.g. 12h, 45m, infinite)".format(out["lease_time"]))
    out["allow_other_servers"] = c.boolean(dhcp.get("allow_other_servers"), False,
                                           "network", "dhcp", "allow_other_servers")
    timeout = dhcp.get("probe_timeout", 5)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        c.err(path("network", "dhcp", "probe_timeout"), "must be a positive number of seconds")
    else:
        out["probe_timeout"] = timeout
    if dhcp.get("pool") is not None:
        pool = c.mapping(dhcp["pool"], "network", "dhcp", "pool", allowed=("start", "end"))
        start = c.ipv4(pool.get("start"), "network", "dhcp", "pool", "start")
        end = c.ipv4(pool.get("end"), "network", "dhcp", "pool", "end")
        if out["dhcp_mode"] != "full":
            c.err(path("network", "dhcp", "pool"),
                  "a pool only makes sense with network:dhcp:mode full")
        if start and end:
            if netaddr.IPAddress(start) > netaddr.IPAddress(end):
                c.err(path("network", "dhcp", "pool"),
                      "start {} is after end {}".format(start, end))
            elif cidr is not None and (netaddr.IPAddress(start) not in cidr
                                       or netaddr.IPAddress(end) not in cidr):
                c.err(path("network", "dhcp", "pool"),
                      "{}-{} is outside network:cidr {}".format(start, end, cidr))
            else:
                out["pool"] = {"start": start, "end": end}

    dns = c.mapping(net.get("dns"), "network", "dns", allowed=DNS_KEYS)
    out["dns_enabled"] = c.boolean(dns.get("enabled"), True, "network", "dns", "enabled")
    upstream = dns.get("upstream")
    if upstream is None:
        out["dns_upstream"] = [out["gateway"]] if out["gateway"] else []
    elif not isinstance(upstream, list):
        c.err(path("network", "dns", "upstream"), "must be a list of IPv4 addresses")
    else:
        out["dns_upstream"] = [
            a for a in (c.ipv4(u, "network", "dns", "upstream", i)
                        for i, u in enumerate(upstream)) if a]
    return out, cidr


def _check_netnode(c, raw, cidr, network):
    nn = c.mapping(raw.get("netnode"), "netnode", allowed=NETNODE_KEYS, required=True)
    ip = c.ipv4(nn.get("ip"), "netnode", "ip", required=bool(nn) or "netnode" in raw)
    if ip and cidr is not None and netaddr.IPAddress(ip) not in cidr:
        c.err(path("netnode", "ip"), "{} is outside network:cidr {}".format(ip, cidr))
        ip = None
    hostname = nn.get("hostname", "netnode")
    if not c.dns_label(hostname, "netnode", "hostname"):
        hostname = "netnode"
    minion_id = c.text(nn.get("id"), hostname, "netnode", "id", pattern=MINION_ID_RE,
                       what="a Salt minion id netlab can target (letters, digits, _ . -; "
                       "no glob characters, at most 64)") or hostname
    storage = c.abs_path(nn.get("storage"), "/srv/netlab", "netnode", "storage",
                         system_ok=False) or "/srv/netlab"
    nfs = c.mapping(nn.get("nfs"), "netnode", "nfs", allowed=NFS_KEYS)
    http = c.mapping(nn.get("http"), "netnode", "http", allowed=HTTP_KEYS)
    port = http.get("port", 80)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        c.err(path("netnode", "http", "port"), "{!r} is not a TCP port".format(port))
        port = 80
    storage = storage.rstrip("/") or "/"
    return {
        "id": minion_id, "ip": ip, "hostname": hostname,
        "fqdn": "{}.{}".format(hostname, network["domain"]),
        "storage": storage,
        "nfs_server": c.choice(nfs.get("server"), NFS_SERVERS, "kernel",
                               "netnode", "nfs", "server"),
        "http_port": port,
        "salt_master": _salt_master(c, nn.get("salt_master"), ip),
        "roots_dir": storage + "/roots",
        "images_dir": storage + "/images",
        "http_root": storage + "/http",
        "tftp_root": storage + "/tftp",
        "state_dir": storage + "/state",
    }


def _salt_master(c, value, ip):
    """netnode:salt_master: an IPv4 address or a DNS name (it goes into every node's
    minion config)."""
    if value is None:
        return ip
    text = c.text(value, None, "netnode", "salt_master", maxlen=253)
    if text is None:
        return ip
    try:
        is_ip = netaddr.valid_ipv4(text, flags=netaddr.INET_PTON)
    except Exception:  # pylint: disable=broad-except
        is_ip = False
    if not is_ip and not HOSTNAME_RE.fullmatch(text):
        c.err(path("netnode", "salt_master"), "{!r} is not an IPv4 address or a DNS "
              "name".format(text))
        return ip
    return text


def _kernel_cmdline(c, value):
    """image:kernel_cmdline: space-separated kernel arguments of safe characters (it
    goes into iPXE and pxelinux scripts, where a quote or a newline would add a
    command)."""
    text = c.text(value, "", "image", "kernel_cmdline")
    if text and not all(KERNEL_ARG_RE.fullmatch(w) for w in text.split(" ") if w):
        c.err(path("image", "kernel_cmdline"), "{!r} is not a list of kernel arguments "
              "(words of letters, digits and _ . , : = / @ + -, separated by spaces; no "
              "quotes)".format(text))
        return ""
    return " ".join(text.split())


def _check_image(c, raw):
    img = c.mapping(raw.get("image"), "image", allowed=IMAGE_KEYS)
    distro = c.choice(img.get("distro"), tuple(DISTROS), "debian", "image", "distro")
    release = c.string(img.get("release"), DISTROS[distro], "image", "release")
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,31}", release):
        c.err(path("image", "release"), "{!r} is not a release code name".format(release))
    packages = img.get("packages", [])
    if not isinstance(packages, list) or not all(
            isinstance(p, str) and PACKAGE_RE.fullmatch(p) for p in packages):
        c.err(path("image", "packages"), "must be a list of Debian package names")
        packages = []
    return {
        "distro": distro, "release": release,
        "mirror": c.url(img.get("mirror"), DEFAULT_MIRRORS[distro], "image", "mirror")
        or DEFAULT_MIRRORS[distro],
        "packages": sorted(set(packages)),
        "salt_version": c.text(img.get("salt_version"), DEFAULT_SALT_VERSION, "image",
                               "salt_version", pattern=SALT_VERSION_RE,
                               what="a Salt version (e.g. 3008.3)") or DEFAULT_SALT_VERSION,
        "kernel_cmdline": _kernel_cmdline(c, img.get("kernel_cmdline")),
        "variant": c.choice(img.get("variant"), ("minbase", "apt", "important"), "minbase",
                            "image", "variant"),
        "pip_index": c.url(img.get("pip_index"), None, "image", "pip_index"),
    }


def localrc_refs(value):
    """Names of the shell variables a localrc value references (``$X`` / ``${X}``)."""
    if not isinstance(value, str):
        return []
    return [a or b for a, b in SHELL_REF.findall(value)]


def _check_devstack(c, ds, *where):
    """Check one devstack layer (lab, role or node); return it as given."""
    ds = c.mapping(ds, *where, allowed=DEVSTACK_KEYS)
    for key in ("repo", "branch", "user", "dest", "git_base"):
        if key in ds and ds[key] is not None and not isinstance(ds[key], str):
            c.err(path(*where, key), "must be a string")
    if isinstance(ds.get("repo"), str):
        c.url(ds["repo"], None, *where, "repo", schemes=GIT_SCHEMES, local_path=True)
    if isinstance(ds.get("branch"), str):
        c.text(ds["branch"], None, *where, "branch", pattern=GIT_REF_RE,
               what="a git branch or tag (letters, digits, _ . / + @ -; no '..', not "
               "starting with '-')")
    if isinstance(ds.get("git_base"), str):
        c.url(ds["git_base"], None, *where, "git_base", schemes=GIT_SCHEMES)
    if "user" in ds and isinstance(ds["user"], str) and not re.fullmatch(
            r"[a-z_][a-z0-9_-]{0,31}", ds["user"]):
        c.err(path(*where, "user"), "{!r} is not a valid user name".format(ds["user"]))
    if isinstance(ds.get("dest"), str):
        c.abs_path(ds["dest"], None, *where, "dest", system_ok=False)
    localrc = c.mapping(ds.get("localrc"), *where, "localrc")
    for name, value in localrc.items():
        if not isinstance(name, str) or not SHELL_NAME.match(name):
            c.err(path(*where, "localrc", name), "{!r} is not a shell variable name".format(name))
        if isinstance(value, (dict, list)):
            c.err(path(*where, "localrc", name), "must be a scalar (string, number, boolean)")
        elif isinstance(value, str) and "\x00" in value:
            c.err(path(*where, "localrc", name), "cannot contain a NUL character")
    local_conf = c.mapping(ds.get("local_conf"), *where, "local_conf")
    for phase, files in local_conf.items():
        if phase not in LOCAL_CONF_PHASES:
            c.err(path(*where, "local_conf", phase), "unknown local.conf phase (valid: {})"
                  .format(", ".join(LOCAL_CONF_PHASES)))
            continue
        files = c.mapping(files, *where, "local_conf", phase)
        for fname, sections in files.items():
            if not isinstance(fname, str) or not CONF_FILE_RE.match(fname):
                c.err(path(*where, "local_conf", phase, fname), "is not a file name (a path "
                      "or $VARIABLE, e.g. $NOVA_CONF; no spaces, quotes or shell syntax)")
                continue
            if phase == "local" and fname == "localrc":
                c.err(path(*where, "local_conf", phase, fname),
                      "use devstack:localrc for the localrc section")
                continue
            sections = c.mapping(sections, *where, "local_conf", phase, fname)
            for section, keys in sections.items():
                keys = c.mapping(keys, *where, "local_conf", phase, fname, section)
                if not isinstance(section, str) or not INI_SECTION_RE.match(section):
                    c.err(path(*where, "local_conf", phase, fname, section),
                          "{!r} is not an INI section name (letters, digits, _ . : @ / + -)"
                          .format(section))
                for key, val in keys.items():
                    if not isinstance(key, str) or not INI_KEY_RE.match(key):
                        c.err(path(*where, "local_conf", phase, fname, section, key),
                              "{!r} is not an INI option name (letters, digits, _ . : @ / + -)"
                              .format(key))
                    if isinstance(val, (dict, list)):
                        c.err(path(*where, "local_conf", phase, fname, section, key),
                              "must be a scalar")
                    elif isinstance(val, str) and CONTROL_CHARS.search(val):
                        c.err(path(*where, "local_conf", phase, fname, section, key),
                              "must be a single line without control characters "
                              "(DevStack reads local.conf line by line)")
    services = c.mapping(ds.get("services"), *where, "services")
    for name, flag in services.items():
        if not isinstance(flag, bool):
            c.err(path(*where, "services", name), "must be true or false")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
            c.err(path(*where, "services", name), "{!r} is not a service name".format(name))
    plugins = c.mapping(ds.get("plugins"), *where, "plugins")
    for name, spec in plugins.items():
        where_p = where + ("plugins", name)
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
            c.err(path(*where_p), "{!r} is not a plugin name".format(name))
        if spec is None or spec is False:
            continue  # a lower layer's plugin switched off
        if isinstance(spec, str):
            words = spec.split()
            if not words or len(words) > 2:
                c.err(path(*where_p), "{!r} must be 'url [branch]' (one or two words; a "
                      "mapping {{repo, branch, requires}} for more)".format(spec[:80]))
            elif c.text(spec, None, *where_p, maxlen=2048) is not None:
                _plugin_repo(c, words[0], *where_p)
                if len(words) > 1:
                    _plugin_branch(c, words[1], *where_p)
        elif isinstance(spec, dict):
            c.mapping(spec, *where_p, allowed=("repo", "branch", "requires"))
            if not isinstance(spec.get("repo"), str):
                c.err(path(*where_p, "repo"), "is required")
            else:
                _plugin_repo(c, spec["repo"], *where_p, "repo")
            if spec.get("branch") is not None:
                _plugin_branch(c, spec["branch"], *where_p, "branch")
            req = spec.get("requires", [])
            if not isinstance(req, list) or not all(
                    isinstance(r, str) and re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", r)
                    for r in req):
                c.err(path(*where_p, "requires"), "must be a list of plugin names")
        else:
            c.err(path(*where_p), "must be 'url [branch]' or a mapping {repo, branch, requires}")
    return ds


def _plugin_repo(c, repo, *where):
    """A plugin's repository: a URL or ``$GIT_BASE/...`` (DevStack expands it). It
    only reaches local.conf, whose renderer quotes it, so shell characters in a
    query string are kept; whitespace and control characters are not."""
    text = c.text(repo, None, *where, maxlen=2048)
    if text is None:
        return
    if not text or re.search(r"\s", text):
        c.err(path(*where), "{!r} is not a repository URL (no spaces)".format(text))
        return
    if re.match(r"\$(GIT_BASE\b|\{GIT_BASE\})", text):
        return
    scheme = text.split(":", 1)[0] if ":" in text else ""
    if scheme not in GIT_SCHEMES:
        c.err(path(*where), "{!r} is not a repository URL ({}://... or $GIT_BASE/...)"
              .format(text, "|".join(GIT_SCHEMES)))


def _plugin_branch(c, branch, *where):
    text = c.text(branch, None, *where, maxlen=255)
    if text is not None and (not text or re.search(r"\s", text) or text.startswith("-")):
        c.err(path(*where), "{!r} is not a branch name (no spaces, not starting with "
              "'-')".format(text))


def parse_plugin(spec):
    """``"url [branch]"`` or ``{repo, branch, requires}`` -> dict; ``None`` if disabled."""
    if spec is None or spec is False:
        return None
    if isinstance(spec, str):
        parts = spec.split()
        return {"repo": parts[0], "branch": parts[1] if len(parts) > 1 else None,
                "requires": []}
    return {"repo": spec.get("repo"), "branch": spec.get("branch"),
            "requires": list(spec.get("requires", []) or [])}


def find_cycle(graph):
    """First cycle in ``{name: [names it depends on]}`` as a list, or ``None``."""
    state = {}
    stack = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if m not in graph:
                continue
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def _localrc_graph(localrc):
    """``{name: {names it references}}`` of a localrc mapping (self references dropped)."""
    if not isinstance(localrc, dict):
        return {}
    return {k: {r for r in localrc_refs(v) if r != k} for k, v in localrc.items()
            if isinstance(k, str)}


def new_cycles(graph, parent):
    """Reference cycles of ``graph`` that do not already exist in ``parent``.

    Both map name -> names it depends on (names missing as keys are outside the
    graph). A cycle is new when its strongly connected group has an edge the
    parent graph does not have (a layer added or changed a variable on it). One
    cycle per group, through its first new edge: ``[a, b, ..., a]``.
    """
    def edges(g):
        return {(u, v) for u, vs in g.items() for v in vs if v in g}

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt in graph and nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    def path_between(src, dst):
        prev, todo = {src: None}, [src]
        while todo:
            cur = todo.pop(0)
            if cur == dst:
                out = []
                while cur is not None:
                    out.append(cur)
                    cur = prev[cur]
                return out[::-1]
            for nxt in sorted(graph.get(cur, ())):
                if nxt in graph and nxt not in prev:
                    prev[nxt] = cur
                    todo.append(nxt)
        return None  # pragma: no cover - callers only ask for reachable pairs

    old = edges(parent)
    reachable = {n: reach(n) for n in graph}
    found, reported = [], set()
    for u, v in sorted(edges(graph) - old):
        if u not in reachable[v]:
            continue  # this edge is on no cycle
        group = frozenset(n for n in reachable[u] if u in reachable[n]) | {u}
        if group in reported:
            continue
        reported.add(group)
        found.append([u] + path_between(v, u))
    return found


def _check_localrc_cycles(c, localrc, parent_localrc, *where):
    """Report the localrc reference cycles that arise at this layer (lab, role or
    node): ``localrc`` is the layer merged over its parents, ``parent_localrc``
    the parents alone, so a cycle is reported once, where it appears."""
    for cycle in new_cycles(_localrc_graph(localrc), _localrc_graph(parent_localrc)):
        c.err(path(*where, "localrc"), "variables reference each other in a cycle: {}"
              .format(" -> ".join(cycle)))


def _plugin_graph(plugins):
    """``{name: {plugins it requires}}`` of the enabled plugins of a devstack layer."""
    if not isinstance(plugins, dict):
        return {}
    graph = {}
    for name, spec in plugins.items():
        if isinstance(spec, str) and spec.split():
            graph[name] = set()
        elif isinstance(spec, dict):
            reqs = spec.get("requires") or []
            graph[name] = ({r for r in reqs if isinstance(r, str) and r != name}
                           if isinstance(reqs, list) else set())  # else: reported already
    return graph


def _check_layer_cycles(c, merged, parent, *where):
    """Reference cycles (localrc) and requires cycles (plugins) that arise at this
    layer: ``merged`` is the layer merged over its parents, ``parent`` the parents
    alone (both merged devstack mappings), so each cycle is reported once."""
    _check_localrc_cycles(c, merged.get("localrc"), parent.get("localrc"), *where)
    for cycle in new_cycles(_plugin_graph(merged.get("plugins")),
                            _plugin_graph(parent.get("plugins"))):
        c.err(path(*where, "plugins"), "plugins require each other in a cycle: {}"
              .format(" -> ".join(cycle)))


def _check_merged_devstack(c, merged, parent, *where):
    """Cross-key checks on a node's merged devstack (``parent``: lab + role merged)."""
    _check_layer_cycles(c, merged, parent, *where)
    graph = _plugin_graph(merged.get("plugins"))
    for name, reqs in sorted(graph.items()):
        for r in sorted(reqs):
            if r not in graph:
                c.err(path(*where, "plugins", name, "requires"),
                      "requires plugin {!r}, which is not enabled".format(r))


def _check_power(c, power, *where):
    power = c.mapping(power, *where)
    if not power:
        return {"driver": "manual"}
    driver = power.get("driver")
    if driver not in POWER_DRIVERS:
        c.err(path(*where, "driver"), "{!r} is not a power driver (known: {})".format(
            driver, ", ".join(POWER_DRIVERS)))
        return {"driver": "manual"}
    required, optional = POWER_DRIVERS[driver]
    for field in required:
        if power.get(field) in (None, ""):
            c.err(path(*where, field), "is required by the {} driver".format(driver))
    for field in power:
        if field != "driver" and field not in required + optional:
            c.err(path(*where, field), "unknown key for the {} driver (known: {})".format(
                driver, ", ".join(required + optional) or "none"))
    if driver == "ipmi":
        if power.get("address") is not None:
            c.ipv4(power["address"], *where, "address")
        if power.get("username") not in (None, ""):
            c.text(power["username"], None, *where, "username", pattern=IPMI_USER_RE,
                   what="an IPMI user name (letters, digits, _ . @ -, at most 32)")
        if power.get("password") not in (None, ""):
            c.text(power["password"], None, *where, "password", maxlen=64)
        c.choice(power.get("interface"), IPMI_INTERFACES, None, *where, "interface")
    if driver == "redfish":
        if power.get("address") is not None:
            c.ipv4(power["address"], *where, "address")
        c.text(power.get("username"), None, *where, "username")
        c.text(power.get("password"), None, *where, "password")
        c.text(power.get("system"), None, *where, "system", pattern=REDFISH_ID_RE,
               what="a Redfish system id (letters, digits, _ . -)")
        verify = power.get("verify")
        if verify is not None and not isinstance(verify, bool) and not (
                isinstance(verify, str) and verify.startswith("/")):
            c.err(path(*where, "verify"), "{!r} is not true, false or the absolute path "
                  "of a CA bundle".format(verify))
    if driver in ("ipmi", "redfish"):
        c.choice(power.get("bootdev"), ("pxe", "none"), None, *where, "bootdev")
    if driver == "wol" and power.get("broadcast") is not None:
        c.ipv4(power["broadcast"], *where, "broadcast")
    if driver in ("wol", "ipmi", "redfish") and power.get("port") is not None:
        port = power["port"]
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            c.err(path(*where, "port"), "{!r} is not a port (1-65535)".format(port))
    if driver == "manual":
        c.text(power.get("instructions"), None, *where, "instructions")
    if driver == "virtual":
        for key in ("tap", "netns", "bridge"):
            c.text(power.get(key), None, *where, key, pattern=INTERFACE_RE,
                   what="an interface or namespace name (letters, digits, _ . : @ -, at "
                   "most 15)")
        for key in ("memory", "cpus"):
            val = power.get(key)
            if val is not None and (not isinstance(val, int) or isinstance(val, bool)
                                    or val <= 0):
                c.err(path(*where, key), "{!r} is not a positive integer".format(val))
        c.choice(power.get("firmware"), ("bios", "uefi"), None, *where, "firmware")
        c.choice(power.get("accel"), ("auto", "kvm", "tcg"), None, *where, "accel")
        if power.get("disk"):
            c.err(path(*where, "disk"), "virtual nodes are diskless (they boot from the "
                  "network); remove the key")
    return dict(power)


def _check_nodes(c, raw, network, netnode, cidr, lab_ds, roles):
    nodes_raw = c.mapping(raw.get("nodes"), "nodes", required=True)
    nodes = {}
    seen_mac, seen_ip, seen_host = {}, {}, {}
    reserved = {}
    if cidr is not None:
        reserved[str(cidr.network)] = "the network address of network:cidr"
        reserved[str(cidr.broadcast)] = "the broadcast address of network:cidr"
    if network["gateway"]:
        reserved[network["gateway"]] = "network:gateway"
    if netnode["ip"]:
        reserved[netnode["ip"]] = "the networking node (netlab:netnode:ip)"
    pool = network["pool"]
    for node_id in sorted(nodes_raw, key=str):
        spec = nodes_raw[node_id]
        where = ("nodes", node_id)
        if not isinstance(node_id, str) or not c.dns_label(node_id, *where):
            continue
        if node_id == netnode["id"]:
            c.err(path(*where), "{} is the networking node's minion id (netlab:netnode:id); "
                  "a lab node needs an id of its own".format(node_id))
            continue
        spec = c.mapping(spec, *where, allowed=NODE_KEYS, required=True)
        hostname = spec.get("hostname", node_id)
        if not c.dns_label(hostname, *where, "hostname"):
            hostname = None
        elif hostname in seen_host:
            c.err(path(*where, "hostname"), "{} is already used by node {}".format(
                hostname, seen_host[hostname]))
        elif hostname == netnode["hostname"]:
            c.err(path(*where, "hostname"), "{} is the networking node's hostname".format(
                hostname))
        else:
            seen_host[hostname] = node_id
        mac = None
        if spec.get("mac") is None:
            c.err(path(*where, "mac"), "is required")
        else:
            mac = normalize_mac(spec["mac"])
            if mac is None:
                c.err(path(*where, "mac"), "{!r} is not a MAC address (e.g. 94:c6:91:aa:00:01)"
                      .format(spec["mac"]))
            elif mac in seen_mac:
                c.err(path(*where, "mac"), "{} is already used by node {}".format(
                    mac, seen_mac[mac]))
            elif int(mac.split(":")[0], 16) & 1:
                c.err(path(*where, "mac"), "{} is a multicast address".format(mac))
            else:
                seen_mac[mac] = node_id
        ip = c.ipv4(spec.get("ip"), *where, "ip")
        if ip:
            addr = netaddr.IPAddress(ip)
            if cidr is not None and addr not in cidr:
                c.err(path(*where, "ip"), "{} is outside network:cidr {}".format(ip, cidr))
            elif ip in reserved:
                c.err(path(*where, "ip"), "{} is {}".format(ip, reserved[ip]))
            elif ip in seen_ip:
                c.err(path(*where, "ip"), "{} is already used by node {}".format(
                    ip, seen_ip[ip]))
            elif (network["dhcp_mode"] == "full" and pool
                  and netaddr.IPAddress(pool["start"]) <= addr <= netaddr.IPAddress(pool["end"])):
                c.err(path(*where, "ip"), "{} is inside the DHCP pool {}-{} "
                      "(network:dhcp:pool)".format(ip, pool["start"], pool["end"]))
            else:
                seen_ip[ip] = node_id
        role = spec.get("role")
        if role is None:
            c.err(path(*where, "role"), "is required (known roles: {})".format(
                ", ".join(roles)))
        elif role not in roles:
            c.err(path(*where, "role"), "{!r} is not a role (known: {})".format(
                role, ", ".join(roles)))
            role = None
        power = _check_power(c, spec.get("power"), *where, "power")
        boot = c.mapping(spec.get("boot"), *where, "boot", allowed=NODE_BOOT_KEYS)
        root = c.mapping(spec.get("root"), *where, "root", allowed=NODE_ROOT_KEYS)
        node_ds = _check_devstack(c, spec.get("devstack"), *where, "devstack")
        role_ds = roles.get(role, {}).get("devstack", {}) if role else {}
        merged = deep_merge(DEVSTACK_DEFAULTS, lab_ds, role_ds, node_ds)
        _check_merged_devstack(c, merged, deep_merge(DEVSTACK_DEFAULTS, lab_ds, role_ds),
                               *where, "devstack")
        nodes[node_id] = Node(
            id=node_id, hostname=hostname or node_id,
            fqdn="{}.{}".format(hostname or node_id, network["domain"]),
            mac=mac, ip=ip, role=role, is_controller=(role == CONTROLLER_ROLE),
            power=power,
            boot_loader=c.choice(boot.get("loader"), BOOT_LOADERS, "ipxe",
                                 *where, "boot", "loader"),
            firmware=c.choice(boot.get("firmware"), ("auto", "bios", "uefi"), "auto",
                              *where, "boot", "firmware"),
            root_mode=c.choice(root.get("mode"), ROOT_MODES, "persistent",
                               *where, "root", "mode"),
            devstack=merged,
        )
    controllers = [n for n, s in nodes.items() if s.role == CONTROLLER_ROLE]
    if nodes_raw and len(controllers) != 1:
        c.err(path("nodes"), "a lab needs exactly one node with role controller, found {}{}"
              .format(len(controllers), " ({})".format(", ".join(controllers))
                      if controllers else ""))
    return nodes


def _plain(value):
    """Plain dicts/lists all the way down (Salt >= 3008 hands pillar over as
    MaskedDict/MaskedList, whose reprs are redacted)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _check(raw):
    raw = _plain(raw)
    c = _Checker()
    if not HAS_NETADDR:
        raise LabError([ROOT + ": " + NETADDR_MISSING])
    if raw is None:
        raise LabError([ROOT + ": is missing from pillar (see pillar.example)"])
    if not isinstance(raw, dict):
        raise LabError([ROOT + ": must be a mapping"])
    for key in raw:
        if key not in TOP_KEYS:
            c.err(path(key), "unknown key (known: {})".format(", ".join(TOP_KEYS)))
    network, cidr = _check_network(c, raw)
    netnode = _check_netnode(c, raw, cidr, network)
    image = _check_image(c, raw)
    lab_ds = _check_devstack(c, raw.get("devstack"), "devstack")
    _check_layer_cycles(c, deep_merge(DEVSTACK_DEFAULTS, lab_ds), DEVSTACK_DEFAULTS,
                        "devstack")
    roles_raw = c.mapping(raw.get("roles"), "roles")
    roles = {r: {"devstack": {}} for r in BUILTIN_ROLES}
    for role, spec in roles_raw.items():
        if not isinstance(role, str) or not DNS_LABEL.match(role):
            c.err(path("roles", role), "{!r} is not a valid role name".format(role))
            continue
        spec = c.mapping(spec, "roles", role, allowed=ROLE_KEYS)
        roles[role] = {"devstack": _check_devstack(c, spec.get("devstack"),
                                                   "roles", role, "devstack"),
                       "description": c.text(spec.get("description"), "",
                                             "roles", role, "description")}
        _check_layer_cycles(
            c, deep_merge(DEVSTACK_DEFAULTS, lab_ds, roles[role]["devstack"]),
            deep_merge(DEVSTACK_DEFAULTS, lab_ds), "roles", role, "devstack")
    nodes = _check_nodes(c, raw, network, netnode, cidr, lab_ds, roles)
    _check_all_strings(c, raw)
    return c.errors, network, netnode, image, lab_ds, roles, nodes


def _walk_strings(value, where):
    """Every string key and value under ``value`` with its pillar path (a tuple)."""
    if isinstance(value, dict):
        for key, sub in value.items():
            if isinstance(key, str):
                yield where + (key,), key
            yield from _walk_strings(sub, where + (key,))
    elif isinstance(value, (list, tuple)):
        for i, sub in enumerate(value):
            yield from _walk_strings(sub, where + (i,))
    elif isinstance(value, str):
        yield where, value


def _is_localrc_value(where):
    """localrc values may hold anything: the local.conf renderer quotes every byte
    (see netlab_localconf.shell_word)."""
    return len(where) >= 2 and where[-2] == "localrc"


def _check_all_strings(c, raw):
    """The net under the specific checks: no pillar string (key or value) anywhere
    holds a control character or is overlong, whatever reads it later. A path that
    has a problem reported already is not reported twice."""
    reported = [e.split(": ", 1)[0] for e in c.errors]
    for where, text in _walk_strings(raw, ()):
        here = path(*where)
        if any(r == here or r.startswith(here + ":") or here.startswith(r + ":")
               for r in reported):
            continue
        problem = None
        if CONTROL_CHARS.search(text) and not _is_localrc_value(where):
            problem = "{!r} contains a control character (newline, escape...); it must " \
                      "be one line".format(text[:80])
        elif len(text) > (65536 if _is_localrc_value(where) else 4096):
            problem = "is too long ({} characters)".format(len(text))
        if problem:
            c.err(here, problem)
            reported.append(here)


def validate(raw):
    """Every problem of pillar ``netlab`` (the value under the key) as a list of strings."""
    try:
        return _check(raw)[0]
    except LabError as exc:
        return exc.errors


def load(raw):
    """Pillar ``netlab`` value -> :class:`Lab`; raises :class:`LabError` listing all problems."""
    errors, network, netnode, image, lab_ds, roles, nodes = _check(raw)
    if errors:
        raise LabError(errors)
    return Lab(
        network=Network(**network), netnode=Netnode(**netnode), image=Image(**image),
        devstack=deep_merge(DEVSTACK_DEFAULTS, lab_ds), roles=roles,
        nodes=dict(sorted(nodes.items())),
    )
