"""
Pillar ``netlab`` -> checked plain data for the lab model (:func:`check`).

Leaf keys are read through the tables of :mod:`netlab_lab_schema`; what is code
here are the rules that relate several values: addresses inside the lab network
and outside the DHCP pool, reserved and duplicate addresses, MACs and hostnames,
exactly one controller, the fields each power driver takes, defaults that
depend on another value, and the layered devstack settings.
"""

import netlab_cache
from netlab_lab_checker import Checker
from netlab_lab_devstack import check_layer, check_layer_cycles, check_merged
from netlab_lab_schema import (
    BUILTIN_ROLES, CONTROL_CHARS, CONTROLLER_ROLE, DEVSTACK_DEFAULTS, DHCP_FIELDS,
    DHCP_KEYS, DNS_FIELDS, DNS_KEYS, DNS_LABEL, HAS_NETADDR, HOSTNAME_RE, HTTP_FIELDS,
    HTTP_KEYS, IMAGE_FIELDS, IMAGE_KEYS, NETADDR_MISSING, NETNODE_FIELDS, NETNODE_KEYS,
    NETWORK_FIELDS, NETWORK_KEYS, NFS_FIELDS, NFS_KEYS, NODE_BOOT_FIELDS, NODE_BOOT_KEYS,
    NODE_KEYS, NODE_ROOT_FIELDS, NODE_ROOT_KEYS, POWER_DRIVERS, POWER_FIELDS, ROLE_KEYS,
    ROOT, TOP_KEYS, LabError, deep_merge, netaddr, normalize_mac, path)


# the model's order of network fields (as_dict and reports show them so)
_NETWORK_ORDER = ("interface", "cidr", "netmask", "prefixlen", "gateway", "domain",
                  "dhcp_mode", "pool", "lease_time", "allow_other_servers", "probe_timeout",
                  "dns_enabled", "dns_upstream")


def _check_network(c, raw):
    net = c.mapping(raw.get("network"), "network", allowed=NETWORK_KEYS, required=True)
    leaf = c.fields(NETWORK_FIELDS, net, "network")
    cidr = leaf.pop("cidr")
    out = dict(leaf, cidr=None, netmask=None, prefixlen=None)
    if cidr is not None:
        out.update(cidr=str(cidr), netmask=str(cidr.netmask), prefixlen=cidr.prefixlen)
    gw = out["gateway"]
    if gw and cidr is not None and netaddr.IPAddress(gw) not in cidr:
        c.err(path("network", "gateway"), "{} is outside network:cidr {}".format(gw, cidr))
    dhcp = c.mapping(net.get("dhcp"), "network", "dhcp", allowed=DHCP_KEYS)
    out.update(c.fields(DHCP_FIELDS, dhcp, "network", "dhcp"))
    out["pool"] = _dhcp_pool(c, dhcp.get("pool"), out["dhcp_mode"], cidr)
    dns = c.mapping(net.get("dns"), "network", "dns", allowed=DNS_KEYS)
    out.update(c.fields(DNS_FIELDS, dns, "network", "dns"))
    upstream = dns.get("upstream")
    out["dns_upstream"] = []
    if upstream is None:  # the gateway resolves unless told otherwise
        out["dns_upstream"] = [out["gateway"]] if out["gateway"] else []
    elif not isinstance(upstream, list):
        c.err(path("network", "dns", "upstream"), "must be a list of IPv4 addresses")
    else:
        out["dns_upstream"] = [
            a for a in (c.ipv4(u, "network", "dns", "upstream", i)
                        for i, u in enumerate(upstream)) if a]
    return {k: out[k] for k in _NETWORK_ORDER}, cidr


def _dhcp_pool(c, value, mode, cidr):
    """network:dhcp:pool: start <= end, inside the network, only in full mode."""
    if value is None:
        return None
    where = ("network", "dhcp", "pool")
    pool = c.mapping(value, *where, allowed=("start", "end"))
    start = c.ipv4(pool.get("start"), *where, "start")
    end = c.ipv4(pool.get("end"), *where, "end")
    if mode != "full":
        c.err(path(*where), "a pool only makes sense with network:dhcp:mode full")
    if not (start and end):
        return None
    if netaddr.IPAddress(start) > netaddr.IPAddress(end):
        c.err(path(*where), "start {} is after end {}".format(start, end))
    elif cidr is not None and (netaddr.IPAddress(start) not in cidr
                               or netaddr.IPAddress(end) not in cidr):
        c.err(path(*where), "{}-{} is outside network:cidr {}".format(start, end, cidr))
    else:
        return {"start": start, "end": end}
    return None


def _check_netnode(c, raw, cidr, network):
    nn = c.mapping(raw.get("netnode"), "netnode", allowed=NETNODE_KEYS, required=True)
    ip = c.ipv4(nn.get("ip"), "netnode", "ip", required=bool(nn) or "netnode" in raw)
    if ip and cidr is not None and netaddr.IPAddress(ip) not in cidr:
        c.err(path("netnode", "ip"), "{} is outside network:cidr {}".format(ip, cidr))
        ip = None
    out = c.fields(NETNODE_FIELDS, nn, "netnode")
    out = {"id": out["id"], "ip": ip, "hostname": out["hostname"],
           "fqdn": "{}.{}".format(out["hostname"], network["domain"]),
           "storage": out["storage"].rstrip("/") or "/"}
    out.update(c.fields(NFS_FIELDS, c.mapping(nn.get("nfs"), "netnode", "nfs",
                                              allowed=NFS_KEYS), "netnode", "nfs"))
    out.update(c.fields(HTTP_FIELDS, c.mapping(nn.get("http"), "netnode", "http",
                                               allowed=HTTP_KEYS), "netnode", "http"))
    out["salt_master"] = _salt_master(c, nn.get("salt_master"), ip)
    for name in ("roots", "images", "http", "tftp", "state"):
        out[name + ("_root" if name in ("http", "tftp") else "_dir")] = \
            out["storage"] + "/" + name
    return out


def _salt_master(c, value, ip):
    """netnode:salt_master: an IPv4 address or a DNS name (it goes into every node's
    minion config); the networking node's address by default."""
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


def _check_image(c, raw):
    return c.fields(IMAGE_FIELDS, c.mapping(raw.get("image"), "image", allowed=IMAGE_KEYS),
                    "image")


def _check_power(c, power, *where):
    """A node's power settings: the fields its driver takes, each checked."""
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
    c.fields(POWER_FIELDS.get(driver, ()), power, *where)
    verify = power.get("verify")
    if driver == "redfish" and verify is not None and not isinstance(verify, bool) and not (
            isinstance(verify, str) and verify.startswith("/")):
        c.err(path(*where, "verify"), "{!r} is not true, false or the absolute path of a "
              "CA bundle".format(verify))
    return dict(power)


class _Taken:
    """Values that must be unique across the lab's nodes, and who has them."""

    def __init__(self, network, netnode, cidr):
        self.mac, self.ip, self.host = {}, {}, {}
        self.reserved = {}
        if cidr is not None:
            self.reserved[str(cidr.network)] = "the network address of network:cidr"
            self.reserved[str(cidr.broadcast)] = "the broadcast address of network:cidr"
        if network["gateway"]:
            self.reserved[network["gateway"]] = "network:gateway"
        if netnode["ip"]:
            self.reserved[netnode["ip"]] = "the networking node (netlab:netnode:ip)"


def _node_hostname(c, spec, netnode, taken, *where):
    hostname = spec.get("hostname", where[-1])
    if not c.dns_label(hostname, *where, "hostname"):
        return None
    if hostname in taken.host:
        c.err(path(*where, "hostname"), "{} is already used by node {}".format(
            hostname, taken.host[hostname]))
    elif hostname == netnode["hostname"]:
        c.err(path(*where, "hostname"), "{} is the networking node's hostname".format(
            hostname))
    else:
        taken.host[hostname] = where[-1]
    return hostname


def _node_mac(c, value, taken, *where):
    if value is None:
        c.err(path(*where, "mac"), "is required")
        return None
    mac = normalize_mac(value)
    if mac is None:
        c.err(path(*where, "mac"), "{!r} is not a MAC address (e.g. 94:c6:91:aa:00:01)"
              .format(value))
    elif mac in taken.mac:
        c.err(path(*where, "mac"), "{} is already used by node {}".format(
            mac, taken.mac[mac]))
    elif int(mac.split(":")[0], 16) & 1:
        c.err(path(*where, "mac"), "{} is a multicast address".format(mac))
    else:
        taken.mac[mac] = where[-1]
    return mac


def _node_ip(c, value, network, cidr, taken, *where):
    ip = c.ipv4(value, *where, "ip")
    if not ip:
        return ip
    addr, pool = netaddr.IPAddress(ip), network["pool"]
    if cidr is not None and addr not in cidr:
        c.err(path(*where, "ip"), "{} is outside network:cidr {}".format(ip, cidr))
    elif ip in taken.reserved:
        c.err(path(*where, "ip"), "{} is {}".format(ip, taken.reserved[ip]))
    elif ip in taken.ip:
        c.err(path(*where, "ip"), "{} is already used by node {}".format(ip, taken.ip[ip]))
    elif (network["dhcp_mode"] == "full" and pool
          and netaddr.IPAddress(pool["start"]) <= addr <= netaddr.IPAddress(pool["end"])):
        c.err(path(*where, "ip"), "{} is inside the DHCP pool {}-{} "
              "(network:dhcp:pool)".format(ip, pool["start"], pool["end"]))
    else:
        taken.ip[ip] = where[-1]
    return ip


def _node_role(c, role, roles, *where):
    if role is None:
        c.err(path(*where, "role"), "is required (known roles: {})".format(
            ", ".join(roles)))
    elif role not in roles:
        c.err(path(*where, "role"), "{!r} is not a role (known: {})".format(
            role, ", ".join(roles)))
        role = None
    return role


def _check_node(c, spec, ctx, *where):
    """One node as plain data for :class:`netlab_lab.Node` (``ctx``: the lab's
    network, netnode, cidr, devstack layer, roles and the values taken so far)."""
    network, netnode, cidr, lab_ds, roles, taken = ctx
    spec = c.mapping(spec, *where, allowed=NODE_KEYS, required=True)
    hostname = _node_hostname(c, spec, netnode, taken, *where) or where[-1]
    mac = _node_mac(c, spec.get("mac"), taken, *where)
    ip = _node_ip(c, spec.get("ip"), network, cidr, taken, *where)
    role = _node_role(c, spec.get("role"), roles, *where)
    power = _check_power(c, spec.get("power"), *where, "power")
    boot = c.mapping(spec.get("boot"), *where, "boot", allowed=NODE_BOOT_KEYS)
    root = c.mapping(spec.get("root"), *where, "root", allowed=NODE_ROOT_KEYS)
    node_ds = check_layer(c, spec.get("devstack"), *where, "devstack")
    role_ds = roles.get(role, {}).get("devstack", {}) if role else {}
    merged = deep_merge(DEVSTACK_DEFAULTS, lab_ds, role_ds, node_ds)
    check_merged(c, merged, deep_merge(DEVSTACK_DEFAULTS, lab_ds, role_ds),
                 *where, "devstack")
    out = {"id": where[-1], "hostname": hostname,
           "fqdn": "{}.{}".format(hostname, network["domain"]),
           "mac": mac, "ip": ip, "role": role, "is_controller": role == CONTROLLER_ROLE,
           "power": power}
    out.update(c.fields(NODE_BOOT_FIELDS, boot, *where, "boot"))
    out.update(c.fields(NODE_ROOT_FIELDS, root, *where, "root"))
    out["devstack"] = merged
    return out


def _check_nodes(c, raw, network, netnode, cidr, lab_ds, roles):
    nodes_raw = c.mapping(raw.get("nodes"), "nodes", required=True)
    nodes = {}
    ctx = (network, netnode, cidr, lab_ds, roles, _Taken(network, netnode, cidr))
    for node_id in sorted(nodes_raw, key=str):
        where = ("nodes", node_id)
        if not isinstance(node_id, str) or not c.dns_label(node_id, *where):
            continue
        if node_id == netnode["id"]:
            c.err(path(*where), "{} is the networking node's minion id (netlab:netnode:id); "
                  "a lab node needs an id of its own".format(node_id))
            continue
        nodes[node_id] = _check_node(c, nodes_raw[node_id], ctx, *where)
    controllers = [n for n, s in nodes.items() if s["role"] == CONTROLLER_ROLE]
    if nodes_raw and len(controllers) != 1:
        c.err(path("nodes"), "a lab needs exactly one node with role controller, found {}{}"
              .format(len(controllers), " ({})".format(", ".join(controllers))
                      if controllers else ""))
    return nodes


def _check_roles(c, raw, lab_ds):
    roles_raw = c.mapping(raw.get("roles"), "roles")
    roles = {r: {"devstack": {}} for r in BUILTIN_ROLES}
    for role, spec in roles_raw.items():
        if not isinstance(role, str) or not DNS_LABEL.match(role):
            c.err(path("roles", role), "{!r} is not a valid role name".format(role))
            continue
        spec = c.mapping(spec, "roles", role, allowed=ROLE_KEYS)
        roles[role] = {"devstack": check_layer(c, spec.get("devstack"),
                                               "roles", role, "devstack"),
                       "description": c.text(spec.get("description"), "",
                                             "roles", role, "description")}
        check_layer_cycles(
            c, deep_merge(DEVSTACK_DEFAULTS, lab_ds, roles[role]["devstack"]),
            deep_merge(DEVSTACK_DEFAULTS, lab_ds), "roles", role, "devstack")
    return roles


def check(raw):
    """``(errors, network, netnode, image, lab devstack layer, roles, nodes, cache)`` of
    pillar ``netlab``; every part is plain data, nodes are dicts."""
    raw = _plain(raw)
    c = Checker()
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
    lab_ds = check_layer(c, raw.get("devstack"), "devstack")
    check_layer_cycles(c, deep_merge(DEVSTACK_DEFAULTS, lab_ds), DEVSTACK_DEFAULTS,
                       "devstack")
    roles = _check_roles(c, raw, lab_ds)
    nodes = _check_nodes(c, raw, network, netnode, cidr, lab_ds, roles)
    # the LAN cache's schema lives in its own module (netlab_cache)
    cache = netlab_cache.check(c, raw.get("cache"), netnode, path)
    _check_all_strings(c, raw)
    return c.errors, network, netnode, image, lab_ds, roles, nodes, cache


def _plain(value):
    """Plain dicts/lists all the way down (Salt >= 3008 hands pillar over as
    MaskedDict/MaskedList, whose reprs are redacted)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


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
