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
  would add;
* :func:`choose_salt` / :func:`install_commands` -- an installed Salt of a
  supported release, or the pinned one to install into the venv;
* :func:`service_mode`, :func:`unit_file`, :func:`unit_actions` -- systemd units
  where systemd runs, daemons with pid files otherwise;
* :func:`gitfs_settings` -- a git remote as netlab's fileserver instead of the
  checkout (validated before anything is written);
* :func:`dhcp_mode` -- ``proxy`` when another DHCP server answered, else ``full``.
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
# Salt pinned like the virtual lab's and the tests' venv (test/requirements.txt)
SALT_VERSION = "3008.3"
SUPPORTED = (3006, 3007, 3008)
# what netlab needs in Salt's Python besides Salt (netlab.deps checks netaddr too)
VENV_EXTRAS = ("netaddr==1.3.0",)
# gitfs provider installed into a venv the bootstrap made (Salt's gitfs needs
# GitPython or pygit2; GitPython drives the git command Debian ships)
GITFS_EXTRAS = ("GitPython==3.2.1",)


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


def lab_sls(example_text, facts, dhcp_mode, netnode_id, password=None, service="systemd"):
    """pillar.example's text turned into a lab of one networking node and no nodes
    yet, for ``facts`` (:func:`detect_network`). ``service`` ``process`` (no init
    system) adds ``lookup: service_control: process``: netlab's daemons then run as
    processes too."""
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
    if service == "process":
        end = _section_bounds(lines, 0, "netlab")[1]
        while end > 0 and not lines[end - 1].strip():
            end -= 1
        lines[end:end] = [
            "  lookup:",
            "    # no systemd on this machine: dnsmasq, nginx, ganesha run as processes",
            "    # with pid files in /run/netlab (docs/networking.rst, Service control)",
            "    service_control: process"]
    head = ["# netlab lab pillar, written by netlab-bootstrap from pillar.example with",
            "# this machine's lab interface, address, gateway and DHCP mode ({}: {}).".format(
                dhcp_mode, "another DHCP server answers on the segment" if dhcp_mode ==
                "proxy" else "no other DHCP server answered"),
            "# Yours to edit; netlab-bootstrap never writes it again."]
    return "\n".join(head + lines) + "\n"


# --------------------------------------------------------------------------- salt config
def master_conf(checkout, netnode_id, pillar_dir="/srv/pillar", salt_dir="/srv/salt",
                gitfs=None):
    """The master's drop-in. ``gitfs``: :func:`gitfs_settings` (netlab's files from a
    git remote) or None (from the checkout). Nothing in it depends on the service
    mode: a reimage reloads nfs-ganesha's exports through the networking node's
    nfs state, with or without an init system."""
    lines = [
        MARK + " (netlab: networking node's salt-master).",
        "# Re-running it rewrites this file; put your own settings in another file.",
        "id: {}_master        # the master's own pillar id: <networking node>_master".format(
            netnode_id),
        "netlab_pillar_id: {}".format(netnode_id),
        "auto_accept: false   # a lab node's key is pre-seeded by netlab, nobody else's",
        "file_roots:",
        "  base:",
        "    - {}".format(salt_dir)]
    if gitfs is None:
        lines.append("    - {}         # the netlab checkout".format(checkout))
    else:
        lines += [
            "# netlab itself from a git remote (salt-run fileserver.update fetches it)",
            "fileserver_backend:",
            "  - roots",
            "  - gitfs",
            "gitfs_provider: {}".format(gitfs["provider"]),
            "gitfs_remotes:",
            "  - {}:".format(gitfs["url"]),
            "    - base: {}".format(gitfs["branch"])]
    lines += [
        "pillar_roots:",
        "  base:",
        "    - {}".format(pillar_dir),
        "ext_pillar:",
        "  - netlab:",
        "      sls: netlab.lab"]
    return "\n".join(lines + [""])


def minion_conf(netnode_id, pki_dir=None):
    """``pki_dir``: only for a config dir other than /etc/salt (Salt's default
    ``/etc/salt/pki/minion`` does not follow ``-c``; the bootstrap reads the key
    there to accept only this machine's own)."""
    lines = [
        MARK + " (netlab: the networking node's own minion).",
        "id: {}".format(netnode_id),
        "master: 127.0.0.1"]
    if pki_dir:
        lines.append("pki_dir: {}".format(pki_dir))
    return "\n".join(lines + [""])


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


# --------------------------------------------------------------------------- dhcp mode
def dhcp_mode(requested, offers):
    """``requested``: ``auto``, ``proxy`` or ``full``; ``offers``: what the probe of
    the segment found (a list, empty when nothing else answered; ignored unless
    ``auto``). Returns ``(mode, why)``."""
    if requested != "auto":
        return requested, "--dhcp {}".format(requested)
    if offers:
        return "proxy", "another DHCP server answers on the segment"
    return "full", "no other DHCP server answered"


# --------------------------------------------------------------------------- salt install
def salt_release(version_text):
    """``salt-master --version`` output (``salt-master 3008.3 (Potassium)``) -> the
    major release as an int, or None."""
    fields = (version_text or "").split()
    ver = fields[1] if len(fields) > 1 else ""
    major = ver.split(".")[0]
    return int(major) if major.isdigit() else None


def choose_salt(candidates):
    """``candidates``: ``[(bin_dir, version_text or None)]`` in order of preference
    (the venv first, then a Salt on PATH). Returns ``(bin_dir or None, notes)``:
    the first one with a supported release, None to install; ``notes`` say why each
    other one was passed over."""
    notes = []
    for bin_dir, text in candidates:
        if text is None:
            continue
        major = salt_release(text)
        if major in SUPPORTED:
            return bin_dir, notes
        notes.append("ignoring Salt {!r} in {}: not a supported release ({})".format(
            text.strip(), bin_dir, ", ".join("{}.x".format(v) for v in SUPPORTED)))
    return None, notes


def install_commands(venv, python_has_venv, gitfs=False, have_python=False):
    """The commands that put pinned Salt (and what netlab needs next to it) into
    ``venv``: Debian's python3-venv when ``python3 -m venv`` cannot work, the venv
    unless it exists, then pip."""
    cmds = []
    if not have_python:
        if not python_has_venv:
            cmds.append(["apt-get", "install", "-y", "-q", "python3-venv"])
        cmds.append(["python3", "-m", "venv", str(venv)])
    pkgs = ["salt=={}".format(SALT_VERSION)] + list(VENV_EXTRAS)
    if gitfs:
        pkgs += list(GITFS_EXTRAS)
    cmds.append([str(venv) + "/bin/pip", "install", "-q"] + pkgs)
    return cmds


# --------------------------------------------------------------------------- services
def service_mode(requested, systemd_running):
    """``requested``: ``auto``, ``systemd`` or ``process``; ``systemd_running``:
    whether ``/run/systemd/system`` exists (systemd is PID 1). ``auto`` follows the
    machine; ``systemd`` where systemd does not run is an error, not a silent fall
    back (the units would never start)."""
    if requested == "auto":
        return "systemd" if systemd_running else "process"
    if requested == "systemd" and not systemd_running:
        raise BootstrapError("--service-control systemd, but systemd does not run on this "
                             "machine (no /run/systemd/system): use --service-control "
                             "process or leave it to auto")
    return requested


def unit_name(daemon, from_venv):
    """Debian's salt packages ship ``salt-master.service``; a venv has none, so
    netlab writes ``netlab-salt-master.service`` (never one a package owns)."""
    return "netlab-" + daemon if from_venv else daemon


def unit_file(daemon, bin_dir, conf_dir):
    """A systemd unit that runs ``daemon`` of ``bin_dir`` in the foreground (systemd
    supervises it: no pid file, no -d)."""
    return "\n".join([
        MARK + " (netlab: {} from {}).".format(daemon, bin_dir),
        "[Unit]",
        "Description=Salt {} for netlab".format(daemon.split("-", 1)[1]),
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        "ExecStart={}/{} -c {}".format(bin_dir, daemon, conf_dir),
        "KillMode=process" if daemon == "salt-minion" else "KillMode=control-group",
        "Restart=on-failure",
        "LimitNOFILE=100000",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        ""])


def unit_actions(unit, enabled, active, restart, unit_changed=False):
    """systemctl commands (argv lists) that leave ``unit`` enabled and running with
    its current config; none when it already is. ``restart``: its Salt config
    changed; ``unit_changed``: its unit file was written (daemon-reload first)."""
    cmds = []
    if unit_changed:
        cmds.append(["systemctl", "daemon-reload"])
    if not enabled:
        cmds.append(["systemctl", "enable", unit])
    if not active:
        cmds.append(["systemctl", "start", unit])
    elif restart or unit_changed:
        cmds.append(["systemctl", "restart", unit])
    return cmds


# --------------------------------------------------------------------------- gitfs
_BRANCH_BAD = re.compile(r"(^[-/.]|\.\.|[\x00-\x20~^:?*\[\\]|@\{|/\.|\.lock$|[/.]$|//)")


def gitfs_settings(url, branch="main", providers=()):
    """netlab's files from a git remote instead of the checkout. ``providers``: the
    gitfs providers importable by Salt's Python (``pygit2``, ``gitpython``). Returns
    ``{'url', 'branch', 'provider'}`` or raises :class:`BootstrapError` naming the
    problem, before anything is written."""
    url = (url or "").strip()
    ok_scheme = re.match(r"^(https?|ssh|git|file)://\S+$", url) or \
        re.match(r"^[\w.-]+@[\w.-]+:\S+$", url) or url.startswith("/")
    if not ok_scheme or any(c in url for c in "\n'\" #"):
        raise BootstrapError("--gitfs {!r} is not a git remote URL Salt's gitfs takes "
                             "(https://, ssh://, git://, file:// or user@host:path)".format(url))
    if url.startswith("/"):
        url = "file://" + url
    if not branch or _BRANCH_BAD.search(branch):
        raise BootstrapError("--gitfs-branch {!r} is not a valid git branch name".format(
            branch))
    for name in ("pygit2", "gitpython"):
        if name in providers:
            return {"url": url, "branch": branch, "provider": name}
    raise BootstrapError(
        "--gitfs needs GitPython or pygit2 in Salt's Python and it has neither: install "
        "one there ('salt-pip install {0}' for Salt's onedir packages, '<venv>/bin/pip "
        "install {0}' for a venv) or leave --gitfs out (netlab's files then come from "
        "this checkout)".format(GITFS_EXTRAS[0]))
