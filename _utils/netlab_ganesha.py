"""
Reloading nfs-ganesha's exports without restarting it.

On SIGHUP nfs-ganesha (4.x) rereads its config: EXPORT blocks are added or
updated by ``Export_Id`` and the exports no longer in the file are unexported
("Reread exports complete" in its log at EVENT level when done). Clients of
exports that stay keep their handles: other nodes' roots do not pause.

A root reset replaces ``<roots_dir>/<node>`` by a new directory at the same
path. An update of an export whose Path is unchanged keeps the root ganesha
looked up when the export was added (the old, soon deleted, directory), and an
export with a new Export_Id on the same Path is silently not added while the
old one still exists in the same reread (its MOUNT is refused). So a reset root
takes two rereads: the running config without the renewed exports, then the
new config. Which exports were renewed: the config netlab wrote last names each
export's root inode in the comment before its block (``(inode N)``); an export
whose root has another inode now is renewed.

A reread applies EXPORT blocks only: when the settings around them change
(NFS_CORE_PARAM...: a netlab upgrade, or the first run on a ganesha the package
started with its own config) ganesha is restarted (:func:`decide`).

Pure parts (:func:`loaded_inodes`, :func:`renewed`, :func:`without`,
:func:`core`, :func:`reread_seen`, :func:`decide`) plus :func:`reload`, which
takes the signal sender, clock and sleep as arguments.
"""

import os
import re
import time

MARKER = "Reread exports complete"
RELOAD_TIMEOUT = 30

# the template's comment before an EXPORT block, then the block's Export_Id
_BLOCK = re.compile(
    r"^# [^\n]*?\(inode (?P<inode>\d+)\)\n(?P<block>EXPORT \{\n\s*Export_Id = (?P<id>\d+);"
    r".*?\n\})\n?", re.S | re.M)


class ReloadError(RuntimeError):
    """nfs-ganesha did not confirm a reread of its exports."""


def loaded_inodes(text):
    """``{Export_Id: root inode}`` of the EXPORT blocks in a config netlab rendered."""
    return {int(m.group("id")): int(m.group("inode")) for m in _BLOCK.finditer(text or "")}


def renewed(text, exports):
    """The Export_Ids in ``text`` (the config ganesha runs with) whose root is a
    new directory now: the same export (id) with another inode in ``exports``
    (:func:`netlab_boot.exports`). A root that is gone or new is no renewal: the
    new config's reread drops or adds it."""
    old = loaded_inodes(text)
    return sorted(e["id"] for e in exports
                  if e.get("exists") and e.get("inode") is not None and e["id"] in old
                  and old[e["id"]] != e["inode"])


def without(text, ids):
    """``text`` with the EXPORT blocks (and their comment line) of ``ids`` removed:
    the intermediate config that unexports renewed roots, every other export as is."""
    ids = set(ids)

    def drop(m):
        return "" if int(m.group("id")) in ids else m.group(0)

    return _BLOCK.sub(drop, text)


def release(text, exports):
    """``(paths, intermediate config)`` for the roots of ``exports`` renewed since
    ``text`` (the config ganesha runs with) was written; ``([], text)`` when none
    was: the first of the two rereads a root reset takes."""
    ids = renewed(text, exports)
    return [e["path"] for e in exports if e["id"] in ids], without(text, ids)


def read_config(path):
    """The text of the config at ``path``; ``None`` when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return None


_ANY_EXPORT = re.compile(r"^EXPORT \{\n.*?^\}\n?", re.S | re.M)


def core(text):
    """The config without its EXPORT blocks and comments: the settings a reread
    does not apply (NFS_CORE_PARAM, NFSV4, EXPORT_DEFAULTS...). When they differ
    from those ganesha started with, only a restart applies them."""
    lines = _ANY_EXPORT.sub("", text or "").splitlines()
    return "\n".join(ln.rstrip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#"))


def log_offset(path):
    """Where ganesha's log ends now (a reread's marker is looked for after it)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def reread_seen(path, offset):
    """True when ganesha's log has the reread marker after ``offset`` (a log that
    shrank was rotated: then the whole file counts)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(offset if fh.tell() >= offset else 0)
            return MARKER.encode() in fh.read()
    except OSError:
        return False


def reload(send, log, timeout=RELOAD_TIMEOUT, clock=time.monotonic, sleep=time.sleep,
           interval=0.1):
    """Make ganesha reread its config: ``send()`` delivers SIGHUP (raises
    :class:`ReloadError` when it cannot: not running), then ``log`` is polled
    until the reread's marker appears. Returns the seconds it took; raises
    :class:`ReloadError` naming the log when it does not within ``timeout``."""
    offset = log_offset(log)
    start = clock()
    send()
    while not reread_seen(log, offset):
        if clock() - start > timeout:
            raise ReloadError("no '{}' in {} within {} s after SIGHUP (a config error "
                              "stops the reread: see that log)".format(MARKER, log, timeout))
        sleep(interval)
    return clock() - start


def decide(running, old_text=None, new_text=None):
    """How a changed config reaches ganesha: ``start`` (not running: it starts on
    the new config), ``restart`` (settings outside the EXPORT blocks changed
    between ``old_text``, the config it runs with, and ``new_text``: a reread
    would not apply them), else ``reload``. A reload that is not confirmed then
    falls back to a restart (:func:`reload` raises)."""
    if not running:
        return "start"
    if old_text is not None and new_text is not None and core(old_text) != core(new_text):
        return "restart"
    return "reload"
