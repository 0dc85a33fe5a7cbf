"""
netlab ext_pillar: each lab node gets only its own slice of the lab.

The lab definition (pillar ``netlab``: every node, BMC credentials, passwords)
lives in one pillar SLS that top.sls targets to the networking node only. This
ext_pillar reads that same SLS on the master and gives every *lab node* minion
``netlab_node``: its identity, its DevStack checkout settings and its rendered
local.conf (see ``_utils/netlab_slice.py``). Any other minion gets nothing.

Master configuration:

.. code-block:: yaml

    ext_pillar:
      - netlab:
          sls: netlab.lab        # the lab SLS in pillar_roots (default)
          saltenv: base          # (default)

Sync it to the master with ``salt-run saltutil.sync_all`` (or ``sync_pillar``).
"""

import logging
import os

import salt.loader
import salt.template

try:
    import netlab_lab
    import netlab_slice

    HAS_LIBS = netlab_lab.HAS_NETADDR
    IMPORT_ERROR = None if HAS_LIBS else netlab_lab.NETADDR_MISSING
except ImportError as exc:  # pragma: no cover - depends on sync state
    HAS_LIBS = False
    IMPORT_ERROR = "netlab's _utils are not synced to the master ({}); run " \
                   "'salt-run saltutil.sync_all'".format(exc)

log = logging.getLogger(__name__)

__virtualname__ = "netlab"


def __virtual__():
    if not HAS_LIBS:
        return (False, IMPORT_ERROR)
    return __virtualname__


def _find_sls(opts, sls, saltenv):
    rel = sls.replace(".", os.sep)
    for root in opts.get("pillar_roots", {}).get(saltenv, []):
        for candidate in (rel + ".sls", os.path.join(rel, "init.sls")):
            path = os.path.join(root, candidate)
            if os.path.isfile(path):
                return path
    return None


def read_lab(opts, sls="netlab.lab", saltenv="base", functions=None):
    """Render the lab SLS with Salt's renderers; return the ``netlab`` value or None."""
    path = _find_sls(opts, sls, saltenv)
    if path is None:
        log.warning("netlab ext_pillar: pillar SLS %r not found in pillar_roots[%r]",
                    sls, saltenv)
        return None
    renderers = salt.loader.render(opts, functions or {})
    data = salt.template.compile_template(
        path, renderers, opts.get("renderer", "jinja|yaml"),
        opts.get("renderer_blacklist"), opts.get("renderer_whitelist"),
        saltenv=saltenv, sls=sls, _pillar_rend=True,
    )
    if not isinstance(data, dict):
        return None
    return data.get("netlab")


def slice_for(raw_lab, minion_id, state_dir_override=None):
    """The pillar ``minion_id`` gets from netlab: ``{'netlab_node': ...}`` or ``{}``."""
    lab = netlab_lab.load(raw_lab)
    if minion_id not in lab.nodes:
        return {}
    return {netlab_slice.SLICE_KEY: netlab_slice.for_node(lab, minion_id)}


def ext_pillar(minion_id, pillar, sls="netlab.lab", saltenv="base", **kwargs):  # pylint: disable=unused-argument
    """Give lab node ``minion_id`` its slice; nothing for anyone else."""
    raw = read_lab(__opts__, sls=sls, saltenv=saltenv,  # pylint: disable=undefined-variable
                   functions=__salt__)  # pylint: disable=undefined-variable
    if raw is None:
        return {}
    try:
        return slice_for(raw, minion_id)
    except netlab_lab.LabError as exc:
        # A lab node must not start working from a broken lab; the networking node
        # (which has the whole pillar) reports every problem via netlab.validate.
        log.error("netlab ext_pillar: %s", exc)
        if minion_id in (raw.get("nodes") or {}):
            return {netlab_slice.SLICE_KEY: {"error": "the lab pillar is invalid; run "
                                             "'salt-call netlab.validate' on the "
                                             "networking node"}}
        return {}
