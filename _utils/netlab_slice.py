"""
What a lab node may see: its own slice of the lab.

The whole ``netlab`` pillar (every node, BMC credentials) stays on the networking
node. netlab's ext_pillar (``_pillar/netlab.py``) hands each lab node only
``netlab_node``, built here: its identity, its DevStack checkout settings and its
rendered ``local.conf`` -- never another node's data (the controller's IP is in
the local.conf of every subnode because DevStack needs it as ``SERVICE_HOST``).
"""

import netlab_cache
import netlab_cache_config
import netlab_lab
import netlab_localconf  # imports this module too: both only use the other when called

try:
    import netlab_lifecycle
except ImportError:  # pragma: no cover - a slice on its own (no lifecycle synced)
    netlab_lifecycle = None

SLICE_KEY = "netlab_node"


def identity(lab, node_id, generation=0):
    """Per-node identity, unique per node and per reimage ``generation``.

    Stable across reboots (a pure function of the lab, node and generation); a
    reimage bumps the generation and so gives new ids.
    """
    node = lab.node(node_id)
    seed = (lab.network.domain, node.id, int(generation))
    return {
        "generation": int(generation),
        "hostname": node.hostname,
        "fqdn": node.fqdn,
        "machine_id": netlab_lab.derived_uuid("machine-id", *seed).replace("-", ""),
        "ovn_uuid": netlab_lab.derived_uuid("ovn-system-id", *seed),
    }


def node_slice(lab, node_id, generation=0, local_conf=None):
    """The ``netlab_node`` pillar value for ``node_id``.

    ``local_conf`` is the node's rendered local.conf text (the caller renders it,
    so this module does not depend on the renderer).
    """
    node = lab.node(node_id)
    ds = node.devstack
    return {
        "id": node.id,
        "hostname": node.hostname,
        "fqdn": node.fqdn,
        "domain": lab.network.domain,
        "ip": node.ip,
        "mac": node.mac,
        "role": node.role,
        "is_controller": node.is_controller,
        "root_mode": node.root_mode,
        "netnode": {"ip": lab.netnode.ip, "fqdn": lab.netnode.fqdn,
                    "salt_master": lab.netnode.salt_master},
        # DevStack itself comes from the networking node's git mirror when it is on
        "devstack": dict(netlab_cache_config.checkout_settings(
            lab, {k: ds.get(k) for k in ("repo", "branch", "user", "dest", "git_base")}),
            # what stack.sh would clone, checked out from the git mirror beforehand
            # (local.conf's ERROR_ON_CLONE forbids stack.sh any clone of its own)
            projects=netlab_cache.node_checkouts(lab, node_id)),
        "identity": identity(lab, node_id, generation),
        "local_conf": local_conf,
    }


def generation(lab, node_id):
    """The node's reimage generation from the lifecycle on the networking node's
    storage (0 when the lifecycle module is not there: a slice on its own)."""
    if netlab_lifecycle is None:  # pragma: no cover - depends on what is synced
        return 0
    return int(netlab_lifecycle.generation(lab, node_id))


def for_node(lab, node_id, generation_=None):
    """The whole ``netlab_node`` value, built one way for the ext_pillar and for
    ``netlab.node_slice``: identity and local.conf at the node's generation (the
    lifecycle's, unless given), rendered here. Raises
    ``netlab_localconf.LocalConfError`` when local.conf cannot be rendered."""
    gen = generation(lab, node_id) if generation_ is None else int(generation_)
    text = netlab_localconf.render(lab, node_id, generation=gen)
    return node_slice(lab, node_id, generation=gen, local_conf=text)
