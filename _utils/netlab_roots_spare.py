"""
A spare root: one clone of the current image, made ahead of time, that the next
persistent node's reset takes with a rename instead of cloning then.

A reset used to clone the image while the node waits (a btrfs snapshot well under
a second, a reflink copy a few seconds, a plain copy tens of seconds, growing
with the image) and then generate the node's SSH host keys (RSA 3072: a few
seconds on a busy networking node). A spare holds both, made while nothing
waits for it: after a reimage has powered its nodes on (they take a minute to
boot anyway) and after an image build. Taking it is one ``rename``, so a reset
costs the same on any storage and for any image size; a reset that finds no
spare (several nodes at once, the first reset after a build on another
machine) clones as before.

Layout, in the roots directory (mode 0700)::

    .spare-<method>-<build id>            ready: a clone of that build, with fresh
                                          SSH host keys nobody has seen
    .spare-<method>-<build id>.new-<pid>  being made by process <pid>

Each spare is taken once (``rename`` is atomic: of two resets racing for it, one
gets it, the other clones); a spare of another build than the current one is
never used and is deleted by the next :func:`prepare`. Pure Python; the clone and
the key generation are passed in.
"""

import errno
import os
import time

import netlab_proc
from netlab_roots_clone import RootError, remove_tree

PREFIX = ".spare-"


def _parse(name):
    """``(method, build)`` of a ready spare's directory name, else None."""
    if not name.startswith(PREFIX) or ".new-" in name:
        return None
    method, sep, build = name[len(PREFIX):].partition("-")
    return (method, build) if sep and method and build else None


def find(roots_dir, build):
    """Path and clone method of the ready spare of ``build``, or ``(None, None)``."""
    try:
        names = os.listdir(roots_dir)
    except FileNotFoundError:
        return None, None
    for name in sorted(names):
        parsed = _parse(name)
        if parsed and parsed[1] == build:
            return os.path.join(roots_dir, name), parsed[0]
    return None, None


def take(roots_dir, build, dst):
    """Move the spare of ``build`` to ``dst`` (absent). Returns the spare's clone
    method, or None when there is no spare (or another reset took it first)."""
    path, method = find(roots_dir, build)
    if path is None:
        return None
    try:
        os.rename(path, dst)
    except FileNotFoundError:  # taken by a concurrent reset
        return None
    return method


def prepare(roots_dir, src, build, clone, keygen, method="auto"):
    """Make the spare of ``build`` (image rootfs ``src``) unless it exists; delete
    spares of other builds and what dead processes left half-made.

    ``clone(src, dst, method)`` makes the tree and returns ``{'method', 'seconds'}``
    (:func:`netlab_roots_clone.clone_tree` with the lab's snapshot policy);
    ``keygen(root)`` writes fresh SSH host keys into it. Returns ``{'path',
    'method', 'seconds', 'made'}``; raises :class:`RootError` when the clone fails
    (nothing is left behind then).
    """
    start = time.monotonic()
    os.makedirs(roots_dir, mode=0o700, exist_ok=True)
    for name in os.listdir(roots_dir):
        if not name.startswith(PREFIX):
            continue
        parsed = _parse(name)
        if parsed is not None:
            if parsed[1] != build:
                remove_tree(os.path.join(roots_dir, name))
            continue
        pid = name.rpartition(".new-")[2]
        if pid.isdigit() and not netlab_proc.alive(int(pid)):
            remove_tree(os.path.join(roots_dir, name))
    path, have = find(roots_dir, build)
    if path is not None:
        return {"path": path, "method": have, "seconds": 0.0, "made": False}
    tmp = os.path.join(roots_dir, "{}{}.new-{}".format(PREFIX, build, os.getpid()))
    remove_tree(tmp)
    try:
        made = clone(src, tmp, method)
        keygen(tmp)
    except (RootError, OSError) as exc:
        remove_tree(tmp)
        raise RootError("spare root of build {}: {}".format(build, exc)) from exc
    final = os.path.join(roots_dir, "{}{}-{}".format(PREFIX, made["method"], build))
    try:
        os.rename(tmp, final)
    except OSError as exc:
        remove_tree(tmp)
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise RootError("spare root of build {}: {}".format(build, exc)) from exc
        # another run made the same spare meanwhile: theirs is as good as ours
    return {"path": final, "method": made["method"],
            "seconds": round(time.monotonic() - start, 3), "made": True}


def remove_all(roots_dir):
    """Delete every spare (ready or half-made); returns the names removed."""
    gone = []
    try:
        names = os.listdir(roots_dir)
    except FileNotFoundError:
        return gone
    for name in sorted(names):
        if name.startswith(PREFIX):
            remove_tree(os.path.join(roots_dir, name))
            gone.append(name)
    return gone
