"""
The netlab lab model: pillar ``netlab`` -> a validated, immutable :class:`Lab`.

Pure Python (netaddr is the only third-party import). Every other part of netlab
reads this model, never raw pillar. :func:`load` reports *every* problem at once,
each naming its pillar path (``netlab:nodes:nuc3:ip: ... is not an IPv4 address``).

The vocabulary and the tables of leaf fields are in ``netlab_lab_schema``, the
checks in ``netlab_lab_checker`` (single values), ``netlab_lab_check`` (sections
and cross-field rules) and ``netlab_lab_devstack`` (devstack layers); this module
is the model and the one import the rest of netlab uses.

Salt modules import this file directly (Salt puts the synced ``_utils`` directory
on ``sys.path`` while it loads custom modules); unit tests put ``_utils`` on
``sys.path`` themselves.
"""

# pylint: disable=unused-import
from netlab_lab_check import check as _check
from netlab_lab_devstack import find_cycle, localrc_refs, new_cycles, parse_plugin  # noqa: F401
from netlab_lab_schema import (  # noqa: F401
    BOOT_LOADERS, BUILTIN_ROLES, CONTROLLER_ROLE, DEFAULT_MIRRORS, DEFAULT_SALT_VERSION,
    DEVSTACK_DEFAULTS, DEVSTACK_KEYS, DHCP_MODES, DISTROS, HAS_NETADDR, LOCAL_CONF_PHASES,
    MAC_RE, NETADDR_MISSING, NFS_SERVERS, POWER_DRIVERS, POWER_SECRETS, ROOT, ROOT_MODES,
    SHELL_NAME, SHELL_REF, LabError, deep_merge, derived_uuid, normalize_mac, path)


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
        nodes={k: Node(**v) for k, v in sorted(nodes.items())},
    )
