"""
Writes into a tree that someone else controls, without following its symlinks.

A lab node owns its root (it is the node's ``/`` over NFS, root-writable), so any
directory or file in it may have been replaced by a symlink pointing anywhere on
the networking node. Every function here walks the path one component at a time
with ``openat(..., O_NOFOLLOW | O_DIRECTORY)`` from a descriptor of the tree's top
and works on the last directory through its descriptor: a symlink anywhere on the
path is refused (:class:`UnsafePath`), never followed. Files are written to a
temporary name with ``O_EXCL | O_NOFOLLOW`` and renamed over the target, which
replaces a symlink there instead of writing through it.

Pure Python, no Salt. Used by ``netlab_roots`` for identity, keys and enrolment.
"""

import contextlib
import errno
import os
import stat

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(OSError):
    """A path inside a node's tree is a symlink (or not a directory where one is
    needed); the message names the path and what was refused."""


def _parts(rel):
    parts = [p for p in str(rel).split("/") if p]
    for p in parts:
        if p in (".", ".."):
            raise UnsafePath("{}: '.' and '..' are not allowed in a path inside a node's "
                             "root".format(rel))
    return parts


def _open_top(top):
    try:
        return os.open(str(top), _DIR_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath("{} is a symlink or not a directory; refusing to write "
                             "into it".format(top)) from exc
        raise


@contextlib.contextmanager
def open_dir(top, rel, create=False, mode=0o755):
    """A descriptor of directory ``top``/``rel``, reached without following any
    symlink; missing directories are made (``mode``) when ``create``."""
    fd = _open_top(top)
    where = str(top)
    try:
        for part in _parts(rel):
            where = os.path.join(where, part)
            try:
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(part, mode, dir_fd=fd)
                except FileExistsError:
                    pass  # made meanwhile (or a dangling symlink: refused below)
                try:
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise UnsafePath("{} is a symlink or not a directory; refusing "
                                         "to follow it".format(where)) from exc
                    raise
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafePath("{} is a symlink or not a directory; refusing to "
                                     "follow it".format(where)) from exc
                raise
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


def _split(rel):
    parts = _parts(rel)
    if not parts:
        raise UnsafePath("{!r} names no file".format(rel))
    return "/".join(parts[:-1]), parts[-1]


def write_file(top, rel, data, mode=0o644, dir_mode=0o755):
    """Write ``data`` (str or bytes) to ``top``/``rel`` atomically, with ``mode``;
    a symlink at ``rel`` is replaced, a symlink on the way is refused."""
    parent, name = _split(rel)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open_dir(top, parent, create=True, mode=dir_mode) as dfd:
        tmp = ".{}.netlab-tmp-{}".format(name, os.getpid())
        try:
            os.unlink(tmp, dir_fd=dfd)
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, mode, dir_fd=dfd)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                os.fchmod(fh.fileno(), mode)
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
    return os.path.join(str(top), parent, name)


def makedirs(top, rel, mode=0o755):
    """Make ``top``/``rel`` (no symlink followed) and set its mode."""
    with open_dir(top, rel, create=True, mode=mode) as fd:
        os.fchmod(fd, mode)


def unlink(top, rel):
    """Remove the file or symlink ``top``/``rel`` (absent: nothing happens)."""
    parent, name = _split(rel)
    try:
        with open_dir(top, parent) as dfd:
            os.unlink(name, dir_fd=dfd)
    except FileNotFoundError:
        pass


def lstat(top, rel):
    """``lstat`` of ``top``/``rel`` (None when absent), no symlink followed on the way."""
    parent, name = _split(rel)
    try:
        with open_dir(top, parent) as dfd:
            return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def is_regular_file(top, rel):
    st = lstat(top, rel)
    return st is not None and stat.S_ISREG(st.st_mode)


def listdir(top, rel):
    """Names in directory ``top``/``rel`` ([] when absent)."""
    try:
        with open_dir(top, rel) as fd:
            return os.listdir(fd)
    except FileNotFoundError:
        return []


def read_text(top, rel):
    """Text of the regular file ``top``/``rel``; FileNotFoundError when absent, a
    symlink anywhere (the file itself included) is refused."""
    parent, name = _split(rel)
    with open_dir(top, parent) as dfd:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePath("{} is a symlink; refusing to read it".format(
                    os.path.join(str(top), parent, name))) from exc
            raise
        with os.fdopen(fd, encoding="utf-8") as fh:
            return fh.read()
