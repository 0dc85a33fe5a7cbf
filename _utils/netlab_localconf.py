"""
Render a lab node's DevStack ``local.conf`` from the lab model.

Pure Python; :func:`render` is a pure function of the lab, the node and its reimage
generation, so the same pillar always gives byte-identical output.

What goes in, in this order:

1. a header comment (node, role, generation; do not edit);
2. ``[[local|localrc]]``:

   - variables: netlab's automatic multi-node wiring (``HOST_IP``, ``DEST``,
     ``SERVICE_HOST``, ``OVN_UUID`` and, on every node that is not the controller,
     what DevStack's multi-node guide and CI's ``subnode`` group set), then the
     node's merged pillar ``devstack:localrc`` (lab -> role -> node). A pillar
     variable replaces the automatic one of the same name. A variable is always
     defined after every variable it references (``$NAME`` / ``${NAME}``); apart
     from that, automatic variables come first, each group in name order;
   - services: ``disable_all_services`` (``base: false``), then ``enable_service``
     and ``disable_service`` lines in name order. Subnodes start from CI's subnode
     service set; pillar ``services`` entries win key by key;
   - plugins, last: ``enable_plugin name repo [branch]`` in name order, each after
     the plugins it requires (DevStack CI's order);

3. ``[[phase|file]]`` meta-sections from ``devstack:local_conf``, phases in the
   order DevStack runs them, files, sections and keys in name order.

Quoting (localrc): ``$NAME`` and ``${NAME}`` stay shell references (DevStack's own
convention: ``GLANCE_HOSTPORT=$SERVICE_HOST:9292``); every other character comes
back byte for byte when bash sources the section, and nothing in a value is ever
executed: values are written bare when they only hold harmless characters, else
in double quotes with ``\\``, ``"``, backquote and every ``$`` that does not start a
reference backslash-escaped; control characters (newline, ...) are written as
``$'\\n'`` so no value ever spans two lines of the file. Booleans become
``True``/``False`` as DevStack expects.

Quoting (meta-sections): DevStack turns each ``key = value`` line into
``iniset <file> <section> <key> "<value>"`` and runs it through ``read`` and
``eval``. Values are escaped for exactly that path, so a value reaches ``iniset``
as given (``$NAME`` references are expanded by DevStack, as in its docs), and
nothing in it is executed.
"""

import heapq
import re

import netlab_cache
import netlab_cache_config
import netlab_lab
import netlab_slice

# DevStack CI's subnode service set (devstack .zuul.yaml, job ``devstack``,
# group-vars ``subnode``): everything off, then the compute-side services. CI also
# enables tls-proxy there; netlab does not, because DevStack's default controller
# runs without TLS and CI copies the CA between nodes with Ansible, which a plain
# DevStack lab does not have. Enable it (and on the controller) in pillar if wanted.
SUBNODE_SERVICES = {
    "base": False,
    "dstat": False,
    "memory_tracker": True,
    "n-cpu": True,
    "placement-client": True,
    "ovn-controller": True,
    "ovs-vswitchd": True,
    "ovsdb-server": True,
    "q-ovn-metadata-agent": True,
    "c-bak": True,
    "c-vol": True,
    "horizon": False,
    "tempest": False,
}

# Variables every subnode gets (DevStack's multi-node guide and CI's subnode vars).
SUBNODE_LOCALRC = {
    "DATABASE_TYPE": "mysql",
    "MYSQL_HOST": "$SERVICE_HOST",
    "DATABASE_HOST": "$SERVICE_HOST",
    "RABBIT_HOST": "$SERVICE_HOST",
    "GLANCE_HOSTPORT": "$SERVICE_HOST:9292",
    "Q_HOST": "$SERVICE_HOST",
    "ENABLE_CHASSIS_AS_GW": False,
    # VNC consoles of this node's instances go through the controller's proxy
    "NOVA_VNC_ENABLED": True,
    "VNCSERVER_LISTEN": "$HOST_IP",
    "VNCSERVER_PROXYCLIENT_ADDRESS": "$VNCSERVER_LISTEN",
    "NOVNCPROXY_URL": "http://$SERVICE_HOST:6080/vnc_lite.html",
}

PHASES = netlab_lab.LOCAL_CONF_PHASES
SHELL_REF = netlab_lab.SHELL_REF
# characters a localrc value may hold without quotes (no globbing, no tilde, no
# word splitting, nothing the shell gives a meaning to in an assignment)
_BARE = re.compile(r"^[A-Za-z0-9_./:,@%+=-]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_ANSI_C = {"\n": "\\n", "\r": "\\r", "\x1b": "\\e"}
# names whose values are secrets (masked in diffs shown to humans)
SECRET_NAME = re.compile(r"(?i)(password|passwd|secret|token|credential)")
_URL_CREDENTIALS = re.compile(r"(://[^:/@\s]*:)[^@\s]+@")

AUTO_HEADER = "# netlab: automatic multi-node wiring (pillar devstack:localrc overrides)"
PILLAR_HEADER = "# pillar: devstack:localrc (lab -> role -> node)"


class LocalConfError(ValueError):
    """A node's settings cannot be rendered; the message names the pillar path."""


# --------------------------------------------------------------------------- quoting
def scalar(value):
    """A pillar scalar as DevStack text: booleans ``True``/``False``, ``None`` empty."""
    if value is True:
        return "True"
    if value is False:
        return "False"
    if value is None:
        return ""
    return str(value)


def _dq_escape(text):
    """Escape ``text`` for a double-quoted shell word, keeping $NAME / ${NAME}."""
    out = []
    pos = 0
    for match in SHELL_REF.finditer(text):
        out.append(_dq_escape_plain(text[pos:match.start()]))
        out.append(match.group(0))
        pos = match.end()
    out.append(_dq_escape_plain(text[pos:]))
    return "".join(out)


def _dq_escape_plain(text):
    return re.sub(r'([\\"`$])', r"\\\1", text)


def shell_word(value):
    """One shell word whose value, in an assignment or command, is exactly ``value``
    with ``$NAME``/``${NAME}`` references expanded and nothing else interpreted."""
    text = scalar(value)
    if "\x00" in text:
        raise ValueError("a shell value cannot contain a NUL character")
    if text and _BARE.match(SHELL_REF.sub("", text) or "x"):
        return text
    parts = []
    pos = 0
    for match in _CONTROL.finditer(text):
        if match.start() > pos:
            parts.append('"{}"'.format(_dq_escape(text[pos:match.start()])))
        parts.append("$'{}'".format(_ANSI_C.get(match.group(0)) or
                                    "\\x{:02x}".format(ord(match.group(0)))))
        pos = match.end()
    if pos < len(text) or not parts:
        parts.append('"{}"'.format(_dq_escape(text[pos:])))
    return "".join(parts)


def ini_value(value):
    """A meta-section value, escaped for DevStack's ``read``/``eval`` of
    ``iniset file section key "value"`` (see inc/meta-config merge_config_file)."""
    text = scalar(value)
    if _CONTROL.search(text) or "\x00" in text:
        raise ValueError("a local.conf option value must be a single line")
    # eval of a double-quoted word, then `read` (without -r) eats one backslash level
    return _dq_escape(text).replace("\\", "\\\\")


# --------------------------------------------------------------------------- ordering
def topological(names, deps, what, rank=None):
    """``names`` ordered so each comes after everything it depends on (``deps``:
    name -> names); among the names that are ready, the smallest ``(rank(name),
    name)`` goes first. Raises :class:`LocalConfError` naming a cycle."""
    rank = rank or (lambda name: 0)
    names = set(names)
    waiting = {n: {d for d in deps.get(n, ()) if d in names and d != n} for n in names}
    ready = [(rank(n), n) for n, w in waiting.items() if not w]
    heapq.heapify(ready)
    order = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for other, wait in waiting.items():
            if name in wait:
                wait.discard(name)
                if not wait:
                    heapq.heappush(ready, (rank(other), other))
    if len(order) != len(names):
        left = {n: sorted(w) for n, w in waiting.items() if n not in order}
        cycle = netlab_lab.find_cycle(left) or sorted(left)
        raise LocalConfError("{} form a cycle: {}".format(what, " -> ".join(cycle)))
    return order


def automatic_localrc(lab, node_id, generation=0):
    """The localrc variables netlab sets for ``node_id`` before pillar is applied."""
    node = lab.node(node_id)
    ds = node.devstack
    auto = {
        "HOST_IP": node.ip,
        "SERVICE_HOST": lab.controller.ip,
        "DEST": ds.get("dest") or netlab_lab.DEVSTACK_DEFAULTS["dest"],
        "OVN_UUID": netlab_slice.identity(lab, node_id, generation)["ovn_uuid"],
    }
    if ds.get("git_base"):
        auto["GIT_BASE"] = ds["git_base"]
    # the networking node's LAN cache: git mirror, cached downloads
    auto.update(netlab_cache_config.localrc(lab, node_id))
    if not node.is_controller:
        auto.update(SUBNODE_LOCALRC)
    return auto


def localrc_items(lab, node_id, generation=0):
    """``[(name, value, origin)]`` in file order; origin is 'auto' or 'pillar'."""
    node = lab.node(node_id)
    auto = automatic_localrc(lab, node_id, generation)
    # a pillar *_REPO the git cache mirrors is written as the mirror's URL
    user = {k: netlab_cache.localrc_value(lab, k, v)
            for k, v in (node.devstack.get("localrc") or {}).items()}
    values = dict(auto)
    values.update(user)
    origin = {k: ("pillar" if k in user else "auto") for k in values}
    deps = {k: {r for r in netlab_lab.localrc_refs(scalar(v)) if r != k and r in values}
            for k, v in values.items()}
    try:
        order = topological(values, deps, "localrc variables",
                            rank=lambda k: 0 if origin[k] == "auto" else 1)
    except LocalConfError as exc:
        raise LocalConfError("{}: {} (with netlab's automatic variables: {})".format(
            netlab_lab.path("nodes", node_id, "devstack", "localrc"), exc,
            ", ".join(sorted(auto)))) from None
    return [(k, values[k], origin[k]) for k in order]


def services(lab, node_id):
    """``{name: bool}`` for ``node_id``: CI's subnode set under the pillar's."""
    node = lab.node(node_id)
    out = {} if node.is_controller else dict(SUBNODE_SERVICES)
    out.update(node.devstack.get("services") or {})
    return out


def plugins(lab, node_id):
    """``[(name, {repo, branch, requires})]`` in DevStack CI's order."""
    node = lab.node(node_id)
    specs = {}
    for name, spec in (node.devstack.get("plugins") or {}).items():
        parsed = netlab_lab.parse_plugin(spec)
        if parsed is not None:
            specs[name] = parsed
    for name, spec in sorted(specs.items()):
        for req in spec["requires"]:
            if req not in specs:
                raise LocalConfError("{}: requires plugin {!r}, which is not enabled".format(
                    netlab_lab.path("nodes", node_id, "devstack", "plugins", name,
                                    "requires"), req))
    order = topological(specs, {n: s["requires"] for n, s in specs.items()}, "plugins")
    return [(name, specs[name]) for name in order]


# --------------------------------------------------------------------------- render
def render(lab, node_id, generation=0):
    """``node_id``'s local.conf text (ends with a newline)."""
    node = lab.node(node_id)
    ds = node.devstack
    lines = [
        "# local.conf managed by netlab (salt), node {}, role {}, generation {}."
        .format(node.id, node.role, int(generation)),
        "# Do not edit: change pillar netlab:devstack, netlab:roles:{}:devstack or"
        .format(node.role),
        "# netlab:nodes:{}:devstack instead; this file is rewritten from them."
        .format(node.id),
        "",
        "[[local|localrc]]",
    ]
    current = None
    for name, value, origin in localrc_items(lab, node_id, generation):
        if origin != current:
            if current is not None:
                lines.append("")
            lines.append(AUTO_HEADER if origin == "auto" else PILLAR_HEADER)
            current = origin
        try:
            word = shell_word(value)
        except ValueError as exc:
            raise LocalConfError("{}: {}".format(
                netlab_lab.path("nodes", node_id, "devstack", "localrc", name), exc)) from None
        lines.append("{}={}".format(name, word))

    svc = services(lab, node_id)
    base = svc.pop("base", True)
    if svc or not base:
        lines += ["", "# services"]
        if not base:
            lines.append("disable_all_services")
        lines += ["enable_service {}".format(n) for n in sorted(svc) if svc[n]]
        lines += ["disable_service {}".format(n) for n in sorted(svc) if not svc[n]]

    enabled = plugins(lab, node_id)
    if enabled:
        lines += ["", "# plugins (each after the plugins it requires)"]
        for name, spec in enabled:
            words = ["enable_plugin", name,
                     shell_word(netlab_cache_config.plugin_repo(lab, spec["repo"]))]
            if spec.get("branch"):
                words.append(shell_word(spec["branch"]))
            lines.append(" ".join(words))

    local_conf = ds.get("local_conf") or {}
    for phase in PHASES:
        files = local_conf.get(phase) or {}
        for fname in sorted(files):
            if (phase, fname) == ("local", "localrc"):
                continue  # validation rejects it: devstack:localrc is the one localrc
            lines += ["", "[[{}|{}]]".format(phase, fname)]
            sections = files[fname] or {}
            first = True
            for section in sorted(sections, key=str):
                if not first:
                    lines.append("")
                first = False
                lines.append("[{}]".format(section))
                keys = sections[section] or {}
                for key in sorted(keys, key=str):
                    try:
                        value = ini_value(keys[key])
                    except ValueError as exc:
                        raise LocalConfError("{}: {}".format(netlab_lab.path(
                            "nodes", node_id, "devstack", "local_conf", phase, fname,
                            section, key), exc)) from None
                    lines.append("{} = {}".format(key, value) if value else
                                 "{} =".format(key))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- secrets
def mask_line(line):
    """``line`` of a local.conf (or a diff of one) with secret values hidden.

    ``NAME=value`` and ``key = value`` whose name mentions password, secret, token
    or credential become ``NAME=******``; ``scheme://user:pass@`` loses the pass.
    A diff line's leading ``+``/``-``/space is kept.
    """
    prefix = ""
    body = line
    if line[:1] in ("+", "-", " ") and not line.startswith(("+++", "---")):
        prefix, body = line[:1], line[1:]
    match = re.match(r"^(\s*)([A-Za-z_][A-Za-z0-9_.-]*)(\s*=\s*)(.*)$", body)
    if match and match.group(4) and SECRET_NAME.search(match.group(2)):
        body = match.group(1) + match.group(2) + match.group(3) + "******"
    body = _URL_CREDENTIALS.sub(r"\1******@", body)
    return prefix + body


def mask(text):
    """Every line of ``text`` through :func:`mask_line`."""
    return "\n".join(mask_line(line) for line in text.split("\n"))


# a secret-named assignment anywhere in a line (stack.sh's xtrace prefixes lines
# with timestamps and '+' signs): NAME=value, NAME: value, --name value is left to
# the literal values below
_ASSIGN_ANYWHERE = re.compile(
    r"(?i)\b([A-Za-z_][A-Za-z0-9_.-]*(?:password|passwd|secret|token|credential)"
    r"[A-Za-z0-9_.-]*)(\s*[=:]\s*)(['\"]?)([^\s'\"]+)")


def secret_values(localrc):
    """The literal values of the secret-named variables of a localrc mapping (those
    without references; a reference is masked where its target is)."""
    out = set()
    for name, value in (localrc or {}).items():
        if (isinstance(name, str) and SECRET_NAME.search(name) and isinstance(value, str)
                and "$" not in value and len(value) >= 4):
            out.add(value)
    return out


def mask_log(text, secrets=()):
    """A log excerpt (stack.sh, unstack.sh) with secrets hidden: every literal value
    in ``secrets`` (longest first), secret-named assignments anywhere in a line, and
    URL credentials."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "******")
    lines = []
    for line in text.split("\n"):
        line = _ASSIGN_ANYWHERE.sub(lambda m: m.group(1) + m.group(2) + m.group(3)
                                    + "******", line)
        lines.append(_URL_CREDENTIALS.sub(r"\1******@", line))
    return "\n".join(lines)


_META_HEADER = re.compile(r"^\[\[\s*([^|\]]+?)\s*\|\s*([^\]]+?)\s*\]\]")
_LOCALRC_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
# a double-quoted word's inside without an unescaped $ (no reference)
_DQ_NO_REF = re.compile(r"^(?:\\.|[^\\$])*$", re.S)


def localrc_secrets(text):
    """The literal secret values of the ``[[local|localrc]]`` section of a rendered
    local.conf ``text``, for :func:`mask_log` on a lab node: it gets no pillar
    localrc, only its local.conf (the one stack.sh sources). Values are read back
    from :func:`shell_word`'s quoting (bare or double-quoted); a value with a
    reference (an unescaped ``$``) is left out, like in :func:`secret_values`."""
    out, section = set(), None
    for line in (text or "").splitlines():
        header = _META_HEADER.match(line)
        if header:
            section = header.groups()
            continue
        match = _LOCALRC_LINE.match(line) if section == ("local", "localrc") else None
        if not match or not SECRET_NAME.search(match.group(1)):
            continue
        raw = match.group(2).strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1]
            if not _DQ_NO_REF.match(raw):
                continue
            raw = re.sub(r'\\([\\"`$])', r"\1", raw)
        elif "$" in raw:
            continue
        if len(raw) >= 4:
            out.add(raw)
    return out
