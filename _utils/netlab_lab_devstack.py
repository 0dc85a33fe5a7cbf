"""
The checks of a devstack layer (lab, role or node) and of the layers merged.

A layer is checked as given (its string settings by the table
:data:`netlab_lab_schema.DEVSTACK_FIELDS`, its localrc, local.conf, services and
plugins here); reference cycles between localrc variables and ``requires``
cycles between plugins are reported once, at the layer where they arise.
"""

import re

from netlab_lab_schema import (
    CONF_FILE_RE, CONTROL_CHARS, DEVSTACK_FIELDS, DEVSTACK_KEYS, GIT_SCHEMES, INI_KEY_RE,
    INI_SECTION_RE, LOCAL_CONF_PHASES, SHELL_NAME, SHELL_REF, path)


def localrc_refs(value):
    """Names of the shell variables a localrc value references (``$X`` / ``${X}``)."""
    if not isinstance(value, str):
        return []
    return [a or b for a, b in SHELL_REF.findall(value)]


def check_layer(c, ds, *where):
    """Check one devstack layer (lab, role or node); return it as given."""
    ds = c.mapping(ds, *where, allowed=DEVSTACK_KEYS)
    c.fields(DEVSTACK_FIELDS, ds, *where)
    _check_localrc(c, ds, *where)
    _check_local_conf(c, ds, *where)
    _check_services(c, ds, *where)
    _check_plugins(c, ds, *where)
    return ds


def _check_localrc(c, ds, *where):
    localrc = c.mapping(ds.get("localrc"), *where, "localrc")
    for name, value in localrc.items():
        if not isinstance(name, str) or not SHELL_NAME.match(name):
            c.err(path(*where, "localrc", name), "{!r} is not a shell variable name".format(name))
        if isinstance(value, (dict, list)):
            c.err(path(*where, "localrc", name), "must be a scalar (string, number, boolean)")
        elif isinstance(value, str) and "\x00" in value:
            c.err(path(*where, "localrc", name), "cannot contain a NUL character")


def _check_local_conf(c, ds, *where):
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


def _check_services(c, ds, *where):
    services = c.mapping(ds.get("services"), *where, "services")
    for name, flag in services.items():
        if not isinstance(flag, bool):
            c.err(path(*where, "services", name), "must be true or false")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
            c.err(path(*where, "services", name), "{!r} is not a service name".format(name))


def _check_plugins(c, ds, *where):
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


def check_layer_cycles(c, merged, parent, *where):
    """Reference cycles (localrc) and requires cycles (plugins) that arise at this
    layer: ``merged`` is the layer merged over its parents, ``parent`` the parents
    alone (both merged devstack mappings), so each cycle is reported once."""
    _check_localrc_cycles(c, merged.get("localrc"), parent.get("localrc"), *where)
    for cycle in new_cycles(_plugin_graph(merged.get("plugins")),
                            _plugin_graph(parent.get("plugins"))):
        c.err(path(*where, "plugins"), "plugins require each other in a cycle: {}"
              .format(" -> ".join(cycle)))


def check_merged(c, merged, parent, *where):
    """Cross-key checks on a node's merged devstack (``parent``: lab + role merged)."""
    check_layer_cycles(c, merged, parent, *where)
    graph = _plugin_graph(merged.get("plugins"))
    for name, reqs in sorted(graph.items()):
        for r in sorted(reqs):
            if r not in graph:
                c.err(path(*where, "plugins", name, "requires"),
                      "requires plugin {!r}, which is not enabled".format(r))
