"""
States for a lab node's DevStack.

``devstack.node_valid``
    Fails, with every problem listed, when this minion has no usable netlab
    pillar (no slice, or the lab pillar on the master is invalid). Every
    netlab.node SLS runs it first and requires it, so nothing changes then.

``devstack.local_conf_managed``
    Puts the node's rendered ``local.conf`` in its DevStack checkout: owner the
    stack user (and its primary group), mode 0600 (the file holds passwords).
    Changes are reported as a unified diff with password/secret/token values
    masked; ``test=True`` predicts exactly the changes a real run makes.

.. code-block:: yaml

    netlab-node-check:
      devstack.node_valid:
        - name: nuc2

    /opt/stack/devstack/local.conf:
      devstack.local_conf_managed:
        - user: stack
        - require:
          - devstack: netlab-node-check
"""

from salt.exceptions import CommandExecutionError

try:
    import netlab_managed

    HAS_LIBS = True
except ImportError:  # pragma: no cover
    HAS_LIBS = False

__virtualname__ = "devstack"


def __virtual__():
    if not HAS_LIBS:
        return (False, "netlab's _utils are not synced; run saltutil.sync_all")
    if "devstack.local_conf" not in __salt__:  # pylint: disable=undefined-variable
        return (False, "the devstack execution module is not available (sync netlab's "
                "_modules and _utils: saltutil.sync_all)")
    return __virtualname__


def _ret(name):
    return {"name": name, "changes": {}, "result": False, "comment": ""}


def node_valid(name):
    """
    Fail with the full report unless this minion's netlab pillar is usable.

    name
        The lab node id this minion should be (normally its minion id). On a lab
        node the slice must be this node's.
    """
    ret = _ret(name)
    problems = list(__salt__["devstack.node_problems"]())  # pylint: disable=undefined-variable
    if not problems and "netlab_node" in __pillar__:  # pylint: disable=undefined-variable
        own = (__pillar__.get("netlab_node") or {}).get("id")  # pylint: disable=undefined-variable
        if name and own != name:
            problems.append("pillar netlab_node is for node {}, not {}".format(own, name))
    if problems:
        ret["comment"] = "netlab cannot set up {} ({} problem{}):\n  {}".format(
            name, len(problems), "" if len(problems) == 1 else "s", "\n  ".join(problems))
        return ret
    ret["result"] = True
    ret["comment"] = "netlab pillar for {} is valid".format(name)
    return ret


def local_conf_managed(name, node_id=None, user=None, mode="0600"):
    """
    Manage a lab node's DevStack ``local.conf``.

    name
        Path of the file, normally ``<dest>/devstack/local.conf``.
    node_id
        Whose local.conf (default: this node; on the networking node the node to
        render for).
    user
        Owner (default: the node's ``devstack:user``); the group is the user's
        primary group.
    mode
        File mode (default ``0600``: the file holds passwords).
    """

    def render():
        text = __salt__["devstack.local_conf"](node_id)  # pylint: disable=undefined-variable
        return text, user if user is not None else \
            __salt__["devstack.settings"](node_id)["user"]  # pylint: disable=undefined-variable

    return netlab_managed.managed(
        name, render, mode, bool(__opts__.get("test")),  # pylint: disable=undefined-variable
        __salt__["devstack.masked"], errors=(CommandExecutionError,))  # pylint: disable=undefined-variable
