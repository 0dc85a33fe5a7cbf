"""
A file with secrets in it, managed like Salt's ``file.managed``: the pipeline of
the ``devstack.local_conf_managed`` state, without Salt.

Wanted text, owner and mode are compared with what is there; the changes are
``diff`` (unified, passed through ``mask`` so no password reaches a log),
``user``/``group`` and ``mode``; test mode predicts exactly what a real run
changes; the file is replaced atomically (temp file in the same directory, made
with the wanted owner and mode before the text is written, then renamed). A
symlink at the path is refused, never written through.
"""

import difflib
import grp
import os
import pwd
import stat
import tempfile


class ManagedError(Exception):
    """The wanted file cannot be made (bad path, mode or user); the message says why."""


def parse_mode(mode):
    """An octal file mode (``"0600"``, ``600``) as an int."""
    try:
        value = int(str(mode), 8)
    except ValueError:
        value = -1
    if not 0 <= value <= 0o7777:
        raise ManagedError("mode {!r} is not an octal file mode".format(mode))
    return value


def owner(user):
    """``(uid, gid, group)`` of ``user`` and its primary group."""
    try:
        pw_ent = pwd.getpwnam(user)
    except KeyError:
        raise ManagedError(
            "user {!r} does not exist on this node (the DevStack user is created by "
            "netlab.node.prepare; check pillar devstack:user)".format(user)) from None
    try:
        group = grp.getgrgid(pw_ent.pw_gid).gr_name
    except KeyError:
        group = str(pw_ent.pw_gid)
    return pw_ent.pw_uid, pw_ent.pw_gid, group


def diff(name, old, new):
    """Unified diff from ``old`` to ``new`` (from /dev/null when there was none)."""
    lines = difflib.unified_diff(
        old.splitlines(True), new.splitlines(True),
        fromfile=name if old else "/dev/null", tofile=name)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def write(name, text, uid, gid, mode):
    """Atomically replace ``name`` (temp file in the same directory, then rename)."""
    directory = os.path.dirname(name)
    fd, tmp = tempfile.mkstemp(prefix=".{}.".format(os.path.basename(name)), dir=directory)
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


def current(name, test):
    """``(stat or None, text, problem)`` of the file there now."""
    if os.path.islink(name):
        return None, "", "{} is a symbolic link; refusing to write through it".format(name)
    if os.path.exists(name):
        now = os.stat(name)
        if not stat.S_ISREG(now.st_mode):
            return None, "", "{} exists and is not a regular file".format(name)
        with open(name, "rb") as fh:
            return now, fh.read().decode("utf-8", errors="replace"), None
    directory = os.path.dirname(name)
    if not os.path.isdir(directory) and not test:
        return None, "", ("directory {} does not exist (the DevStack checkout; "
                          "netlab.node creates it)".format(directory))
    return None, "", None


def changes(name, now, old, text, own, want_mode, mask):
    """What differs from the wanted file (``own``: uid, gid, user, group)."""
    uid, gid, user, group = own
    out = {}
    if now is None or old != text:
        out["diff"] = mask(diff(name, old, text))
    if now is None or (now.st_uid, now.st_gid) != (uid, gid):
        out["user"] = user
        out["group"] = group
    if now is None or stat.S_IMODE(now.st_mode) != want_mode:
        out["mode"] = "{:04o}".format(want_mode)
    return out


def _wanted(name, render, mode, errors, lookup_owner):
    """``(text, mode, (uid, gid, user, group))``; :class:`ManagedError` otherwise."""
    if not os.path.isabs(name):
        raise ManagedError("{} is not an absolute path".format(name))
    want_mode = parse_mode(mode)
    try:
        text, user = render()
    except errors as exc:
        raise ManagedError(str(exc)) from None
    uid, gid, group = lookup_owner(user)
    return text, want_mode, (uid, gid, user, group)


def _apply(name, text, own, want_mode, found):
    """Write what ``found`` (the changes) says differs."""
    if "diff" in found:
        write(name, text, own[0], own[1], want_mode)
    else:
        os.chown(name, own[0], own[1])
        os.chmod(name, want_mode)


def managed(name, render, mode, test, mask, errors=(), lookup_owner=owner):
    """The state return for file ``name``. ``render()``: ``(text, user)`` wanted
    (its ``errors`` become the comment); ``mask(text)``: a diff with the secrets
    hidden; ``test``: predict only (result ``None`` when something would change)."""
    ret = {"name": name, "changes": {}, "result": False, "comment": ""}
    try:
        text, want_mode, own = _wanted(name, render, mode, errors, lookup_owner)
    except ManagedError as exc:
        ret["comment"] = str(exc)
        return ret
    now, old, problem = current(name, test)
    if problem:
        ret["comment"] = problem
        return ret
    found = changes(name, now, old, text, own, want_mode, mask)
    verb = "created" if now is None else "updated"
    if not found:
        ret.update(result=True, comment="{} is in the correct state".format(name))
    elif test:
        ret.update(result=None, changes=found, comment="{} would be {}".format(name, verb))
    else:
        try:
            _apply(name, text, own, want_mode, found)
        except OSError as exc:
            ret["comment"] = "cannot write {}: {}".format(name, exc)
            return ret
        ret.update(result=True, changes=found, comment="{} {}".format(name, verb))
    return ret
