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

import difflib
import grp
import os
import pwd
import stat
import tempfile

from salt.exceptions import CommandExecutionError

__virtualname__ = "devstack"


def __virtual__():
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


def _mode(mode):
    try:
        value = int(str(mode), 8)
    except ValueError:
        value = -1
    if not 0 <= value <= 0o7777:
        raise CommandExecutionError("mode {!r} is not an octal file mode".format(mode))
    return value


def _owner(user):
    try:
        pw_ent = pwd.getpwnam(user)
    except KeyError:
        raise CommandExecutionError(
            "user {!r} does not exist on this node (the DevStack user is created by "
            "netlab.node.prepare; check pillar devstack:user)".format(user)) from None
    try:
        group = grp.getgrgid(pw_ent.pw_gid).gr_name
    except KeyError:
        group = str(pw_ent.pw_gid)
    return pw_ent.pw_uid, pw_ent.pw_gid, group


def _diff(name, old, new):
    lines = difflib.unified_diff(
        old.splitlines(True), new.splitlines(True),
        fromfile=name if old else "/dev/null", tofile=name)
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    return __salt__["devstack.masked"](text)  # pylint: disable=undefined-variable


def _write(name, text, uid, gid, mode):
    """Atomically replace ``name`` (temp file in the same directory, then rename)."""
    directory = os.path.dirname(name)
    fd, tmp = tempfile.mkstemp(prefix=".local.conf.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), mode)
            os.fchown(fh.fileno(), uid, gid)
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, name)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _wanted(name, node_id, user, mode):
    """``(text, mode, (uid, gid, user, group))`` the file should have."""
    if not os.path.isabs(name):
        raise CommandExecutionError("{} is not an absolute path".format(name))
    want_mode = _mode(mode)
    text = __salt__["devstack.local_conf"](node_id)  # pylint: disable=undefined-variable
    if user is None:
        user = __salt__["devstack.settings"](node_id)["user"]  # pylint: disable=undefined-variable
    uid, gid, group = _owner(user)
    return text, want_mode, (uid, gid, user, group)


def _current(name, test):
    """``(stat or None, text, problem)`` of the file there now."""
    if os.path.islink(name):
        return None, "", "{} is a symbolic link; refusing to write through it".format(name)
    if os.path.exists(name):
        current = os.stat(name)
        if not stat.S_ISREG(current.st_mode):
            return None, "", "{} exists and is not a regular file".format(name)
        with open(name, "rb") as fh:
            return current, fh.read().decode("utf-8", errors="replace"), None
    directory = os.path.dirname(name)
    if not os.path.isdir(directory) and not test:
        return None, "", ("directory {} does not exist (the DevStack checkout; "
                          "netlab.node creates it)".format(directory))
    return None, "", None


def _changes(name, current, old, text, owner, want_mode):
    """What differs from the wanted file (``owner``: uid, gid, user, group)."""
    uid, gid, user, group = owner
    changes = {}
    if current is None or old != text:
        changes["diff"] = _diff(name, old, text)
    if current is None or (current.st_uid, current.st_gid) != (uid, gid):
        changes["user"] = user
        changes["group"] = group
    if current is None or stat.S_IMODE(current.st_mode) != want_mode:
        changes["mode"] = "{:04o}".format(want_mode)
    return changes


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
    ret = _ret(name)
    test = bool(__opts__.get("test"))  # pylint: disable=undefined-variable
    try:
        text, want_mode, (uid, gid, user, group) = _wanted(name, node_id, user, mode)
    except CommandExecutionError as exc:
        ret["comment"] = str(exc)
        return ret

    current, old, problem = _current(name, test)
    if problem:
        ret["comment"] = problem
        return ret
    changes = _changes(name, current, old, text, (uid, gid, user, group), want_mode)
    if not changes:
        ret["result"] = True
        ret["comment"] = "{} is in the correct state".format(name)
        return ret
    if test:
        ret["result"] = None
        ret["changes"] = changes
        ret["comment"] = "{} would be {}".format(
            name, "created" if current is None else "updated")
        return ret
    try:
        if "diff" in changes:
            _write(name, text, uid, gid, want_mode)
        else:
            os.chown(name, uid, gid)
            os.chmod(name, want_mode)
    except OSError as exc:
        ret["comment"] = "cannot write {}: {}".format(name, exc)
        return ret
    ret["result"] = True
    ret["changes"] = changes
    ret["comment"] = "{} {}".format(name, "created" if current is None else "updated")
    return ret
