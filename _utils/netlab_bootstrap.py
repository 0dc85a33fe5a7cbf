"""
First contact: what ``./netlab-bootstrap`` writes on a fresh networking node.

Pure functions (standard library only: they run before Salt is installed) that
``netlab-bootstrap`` feeds with what it reads from the machine:

* :func:`detect_network` -- the lab interface, its address and prefix, the
  gateway (from ``ip`` output);
* :func:`lab_sls` -- ``/srv/pillar/netlab/lab.sls`` from pillar.example's text,
  comments kept, filled with the detected values and no nodes;
* :func:`master_conf`, :func:`minion_conf`, :func:`top_sls` -- the Salt config
  netlab needs, each marked as written by the bootstrap;
* :func:`plan_file` / :func:`foreign_master_keys` -- whether a file may be
  written: the bootstrap creates or updates only files it wrote itself and
  refuses to override a Salt config it did not write, naming it and the lines it
  would add.
"""

import ipaddress
import re
import secrets

MARK = "# Written by netlab-bootstrap"
# top-level keys of the master config netlab's drop-in sets: another config setting
# them would be overridden (Salt does not merge them across files)
MASTER_KEYS = ("id", "file_roots", "pillar_roots", "ext_pillar", "auto_accept",
               "netlab_pillar_id")
MINION_KEYS = ("id", "master")


class BootstrapError(RuntimeError):
    """Something the user must decide or fix; the message says what."""


# --------------------------------------------------------------------------- network
def _default_route(route_text):
    for line in route_text.splitlines():
        fields = line.split()
        if fields[:1] == ["default"]:
            via = fields[fields.index("via") + 1] if "via" in fields else None
            dev = fields[fields.index("dev") + 1] if "dev" in fields else None
            return dev, via
    return None, None


def detect_network(addr_text, route_text, interface=None):
    """From ``ip -4 -o addr show`` and ``ip -4 route show default``: ``{'interface',
    'address', 'prefixlen', 'cidr', 'gateway'}``. The lab interface is ``interface``
    if given, else the default route's, else the only interface with an IPv4
    address besides loopback."""
    addrs = {}
    for line in addr_text.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[2] == "inet" and fields[1] != "lo":
            addrs.setdefault(fields[1], []).append(fields[3])
    dev, via = _default_route(route_text)
    if interface is None:
        if dev in addrs:
            interface = dev
        elif len(addrs) == 1:
            interface = next(iter(addrs))
        else:
            raise BootstrapError(
                "cannot tell which interface is on the lab segment ({}): pass "
                "--interface".format(", ".join(sorted(addrs)) or "no interface has an "
                                     "IPv4 address"))
    if interface not in addrs:
        raise BootstrapError("interface {} has no IPv4 address: give it the networking "
                             "node's address on the lab segment first".format(interface))
    iface = ipaddress.ip_interface(addrs[interface][0])
    gateway = via if dev == interface and via and \
        ipaddress.ip_address(via) in iface.network else None
    return {"interface": interface, "address": str(iface.ip),
            "prefixlen": iface.network.prefixlen, "cidr": str(iface.network),
            "gateway": gateway}


# --------------------------------------------------------------------------- pillar
def _section_bounds(lines, indent, name, start=0, end=None):
    """(first, last+1) line indexes of the block under ``<indent>name:``."""
    end = len(lines) if end is None else end
    head = re.compile(r"^{}{}:(\s|$)".format(" " * indent, re.escape(name)))
    for i in range(start, end):
        if head.match(lines[i]):
            j = i + 1
            while j < end and (not lines[j].strip() or lines[j].startswith(" " * (indent + 1))
                               or lines[j].lstrip().startswith("#") and
                               len(lines[j]) - len(lines[j].lstrip()) > indent):
                j += 1
            return i, j
    raise BootstrapError("pillar.example has no '{}:' section at indent {}".format(
        name, indent))


def _set(lines, bounds, key, value, indent):
    """Replace ``key: ...`` (keeping its comment) inside ``bounds``."""
    pat = re.compile(r"^(\s{%d}%s:)\s*([^#]*?)(\s+#.*)?$" % (indent, re.escape(key)))
    for i in range(*bounds):
        m = pat.match(lines[i])
        if m:
            lines[i] = "{} {}{}".format(m.group(1), value, m.group(3) or "")
            return
    raise BootstrapError("pillar.example has no '{}' key where expected".format(key))


def lab_sls(example_text, facts, dhcp_mode, netnode_id, password=None):
    """pillar.example's text turned into a lab of one networking node and no nodes
    yet, for ``facts`` (:func:`detect_network`)."""
    lines = example_text.splitlines()
    top = _section_bounds(lines, 0, "netlab")
    net = _section_bounds(lines, 2, "network", *top)
    _set(lines, net, "interface", facts["interface"], 4)
    _set(lines, net, "cidr", facts["cidr"], 4)
    gw = facts.get("gateway")
    _set(lines, net, "gateway", gw if gw else "null", 4)
    dns = _section_bounds(lines, 4, "dns", *net)
    _set(lines, dns, "upstream", "[{}]".format(gw) if gw else "[]", 6)
    dhcp = _section_bounds(lines, 4, "dhcp", *net)
    _set(lines, dhcp, "mode", dhcp_mode, 6)
    nn = _section_bounds(lines, 2, "netnode", *top)
    _set(lines, nn, "id", netnode_id, 4)
    _set(lines, nn, "ip", facts["address"], 4)
    if re.match(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", netnode_id):
        _set(lines, nn, "hostname", netnode_id, 4)
    ds = _section_bounds(lines, 2, "devstack", *top)
    local = _section_bounds(lines, 4, "localrc", *ds)
    _set(lines, local, "ADMIN_PASSWORD", password or secrets.token_urlsafe(12), 6)
    nodes = _section_bounds(lines, 2, "nodes", *top)
    lines[nodes[0]:nodes[1]] = [
        "  # No nodes yet. Let the spare computers PXE-boot once, then",
        "  # 'salt-run netlab.discover' prints the lines to paste here (or type them:",
        "  # see pillar.example and docs/pillar.rst).",
        "  nodes: {}",
    ]
    head = ["# netlab lab pillar, written by netlab-bootstrap from pillar.example with",
            "# this machine's lab interface, address, gateway and DHCP mode ({}: {}).".format(
                dhcp_mode, "another DHCP server answers on the segment" if dhcp_mode ==
                "proxy" else "no other DHCP server answered"),
            "# Yours to edit; netlab-bootstrap never writes it again."]
    return "\n".join(head + lines) + "\n"


# --------------------------------------------------------------------------- salt config
def master_conf(checkout, netnode_id, pillar_dir="/srv/pillar", salt_dir="/srv/salt"):
    return "\n".join([
        MARK + " (netlab: networking node's salt-master).",
        "# Re-running it rewrites this file; put your own settings in another file.",
        "id: {}_master        # the master's own pillar id: <networking node>_master".format(
            netnode_id),
        "netlab_pillar_id: {}".format(netnode_id),
        "auto_accept: false   # a lab node's key is pre-seeded by netlab, nobody else's",
        "file_roots:",
        "  base:",
        "    - {}".format(salt_dir),
        "    - {}         # the netlab checkout".format(checkout),
        "pillar_roots:",
        "  base:",
        "    - {}".format(pillar_dir),
        "ext_pillar:",
        "  - netlab:",
        "      sls: netlab.lab",
        ""])


def minion_conf(netnode_id):
    return "\n".join([
        MARK + " (netlab: the networking node's own minion).",
        "id: {}".format(netnode_id),
        "master: 127.0.0.1",
        ""])


def top_sls(netnode_id):
    return "\n".join([
        MARK + ": the whole lab (BMC credentials too) goes to the networking",
        "# node's minion and the master's own id only; lab nodes get their slice from",
        "# netlab's ext_pillar.",
        "base:",
        "  'L@{0},{0}_master':".format(netnode_id),
        "    - netlab.lab",
        ""])


def written_by_us(text):
    return text is not None and text.startswith(MARK)


def plan_file(path, content, current):
    """``current``: the file's text or None. Returns ``'create'``, ``'keep'``,
    ``'update'`` (ours, changed) or ``'refuse'`` (someone else's)."""
    if current is None:
        return "create"
    if current == content:
        return "keep"
    return "update" if written_by_us(current) else "refuse"


def top_keys(text):
    """Top-level keys set in a YAML config text (no YAML parser needed: Salt
    configs are plain ``key: value`` mappings at column 0)."""
    return {m.group(1) for m in re.finditer(r"^([A-Za-z_][\w-]*)\s*:", text or "", re.M)}


def foreign_master_keys(configs, keys=MASTER_KEYS):
    """``configs``: ``{path: text}`` of Salt config files not written by the
    bootstrap. Returns ``{path: [keys netlab's drop-in would override]}``."""
    out = {}
    for path, text in sorted(configs.items()):
        if written_by_us(text):
            continue
        clash = sorted(top_keys(text) & set(keys))
        if clash:
            out[path] = clash
    return out


def refusal(clashes, ours_path, ours_text):
    """The message of a refusal: which files, which keys, what netlab would add."""
    lines = ["netlab-bootstrap leaves Salt config it did not write alone:"]
    for path, keys in sorted(clashes.items()):
        lines.append("  {} sets {}".format(path, ", ".join(keys)))
    lines += ["It would write {} with:".format(ours_path), ""]
    lines += ["    " + ln for ln in ours_text.splitlines() if ln and not ln.startswith(MARK)]
    lines += ["", "Merge these settings into your config yourself (or move yours aside) "
              "and run netlab-bootstrap again."]
    return "\n".join(lines)


def pem_body(text):
    """The key material of a PEM public key (header, footer and line breaks
    dropped): the minion's own ``minion.pub`` and the copy the master holds compare
    equal whatever the line endings, across Salt releases."""
    return "".join(ln.strip() for ln in (text or "").splitlines()
                   if ln.strip() and not ln.startswith("-----"))
