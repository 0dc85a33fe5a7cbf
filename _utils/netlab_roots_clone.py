"""
Cloning a node's root from the image rootfs, and deleting roots, on the
networking node: the clone methods (btrfs ``snapshot``, ``reflink``, ``copy``;
``method='auto'`` picks the first that works, see :mod:`netlab_roots`) and the
checks that choose between them. Pure Python plus ``cp``, ``btrfs``, ``stat``.
"""

import errno
import os
import shutil
import stat as _stat
import subprocess
import tempfile
import time

METHODS = ("snapshot", "reflink", "copy")
BTRFS_SUBVOL_INO = 256  # BTRFS_FIRST_FREE_OBJECTID: the root inode of every subvolume


class RootError(RuntimeError):
    """A node root could not be cloned, reset or written; the message names the node."""


def _run(cmd, what, **kw):
    """Run ``cmd``; raise :class:`RootError` with ``what`` and the command's stderr."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    except FileNotFoundError as exc:
        raise RootError("{}: {} is not installed".format(what, cmd[0])) from exc
    if proc.returncode != 0:
        raise RootError("{}: `{}` failed (exit {}): {}".format(
            what, " ".join(cmd), proc.returncode,
            (proc.stderr or proc.stdout).strip()[-2000:]))
    return proc


def fs_type(path):
    """Filesystem type name of ``path`` (``btrfs``, ``xfs``, ``ext2/ext3``, ``tmpfs``...)."""
    proc = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True,
                          text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


def is_subvolume(path):
    """True when ``path`` is the top of a btrfs subvolume."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (_stat.S_ISDIR(st.st_mode) and st.st_ino == BTRFS_SUBVOL_INO
            and fs_type(path) == "btrfs")


def _same_btrfs(src, dst_parent):
    if fs_type(src) != "btrfs" or fs_type(dst_parent) != "btrfs":
        return False
    a = subprocess.run(["findmnt", "-n", "-o", "UUID", "--target", str(src)],
                       capture_output=True, text=True, check=False).stdout.strip()
    b = subprocess.run(["findmnt", "-n", "-o", "UUID", "--target", str(dst_parent)],
                       capture_output=True, text=True, check=False).stdout.strip()
    return bool(a) and a == b


def _find_probe_file(src, limit=2000):
    """Some regular, non-empty file inside ``src`` (for the reflink probe)."""
    seen = 0
    for dirpath, _dirs, files in os.walk(src):
        for name in files:
            p = os.path.join(dirpath, name)
            seen += 1
            if seen > limit:
                return None
            try:
                if os.path.isfile(p) and not os.path.islink(p) and os.path.getsize(p) > 0:
                    return p
            except OSError:
                continue
    return None


def can_reflink(src, dst_parent):
    """True when a file of ``src`` can be reflink-copied into ``dst_parent``."""
    probe = _find_probe_file(src)
    if probe is None:
        return False
    fd, target = tempfile.mkstemp(prefix=".reflink-probe-", dir=dst_parent)
    os.close(fd)
    try:
        proc = subprocess.run(["cp", "--reflink=always", probe, target],
                              capture_output=True, check=False)
        return proc.returncode == 0
    finally:
        try:
            os.unlink(target)
        except OSError:
            pass


def snapshots_exportable(nfs_server):
    """Whether node roots and image roots may be btrfs subvolumes for ``nfs_server``.

    The kernel NFS server exports a subvolume like any directory. nfs-ganesha
    needs libbtrfsutil for that, and Debian builds it without: every subvolume
    has a device number of its own that ganesha does not know as an exported
    filesystem, and a node's mount of a snapshot root is refused ("Permission
    denied"). Under ganesha, roots on btrfs are reflink copies instead (shared
    data blocks, plain directories of the one filesystem ganesha knows).
    """
    return nfs_server == "kernel"


def detect_method(src, dst_parent, snapshots=True):
    """The best clone method from ``src`` to a new directory in ``dst_parent``;
    ``snapshots=False`` when the NFS server cannot export subvolumes
    (:func:`snapshots_exportable`)."""
    if snapshots and is_subvolume(src) and _same_btrfs(src, dst_parent):
        return "snapshot"
    if can_reflink(src, dst_parent):
        return "reflink"
    return "copy"


def clone_tree(src, dst, method="auto", snapshots=True):
    """Clone the directory tree ``src`` to the new path ``dst``.

    Returns ``{'method': ..., 'seconds': ...}``. ``method`` is ``auto`` or one of
    :data:`METHODS`; an explicit method that cannot work raises :class:`RootError`.
    ``snapshots=False``: the NFS server cannot export a snapshot (see
    :func:`snapshots_exportable`), so ``auto`` never picks one and an explicit
    ``snapshot`` is refused.
    """
    src, dst = str(src), str(dst)
    if not os.path.isdir(src):
        raise RootError("image root {} does not exist (build the image first: "
                        "state.apply netlab.image)".format(src))
    if os.path.lexists(dst):
        raise RootError("{} already exists".format(dst))
    parent = os.path.dirname(dst.rstrip("/")) or "/"
    os.makedirs(parent, exist_ok=True)
    if method == "auto":
        method = detect_method(src, parent, snapshots)
    elif method not in METHODS:
        raise RootError("unknown clone method {!r} (known: auto, {})".format(
            method, ", ".join(METHODS)))
    elif method == "snapshot" and not snapshots:
        raise RootError("clone method 'snapshot' makes a btrfs subvolume, which this "
                        "lab's NFS server (nfs-ganesha) cannot export; use 'reflink' "
                        "or 'auto'")
    start = time.monotonic()
    if method == "snapshot":
        _run(["btrfs", "subvolume", "snapshot", src, dst], "snapshot of " + src)
    elif method == "reflink":
        _copy(["cp", "-a", "--reflink=always", "-T", src, dst], dst)
    else:
        _copy(["cp", "-a", "-T", src, dst], dst)
    return {"method": method, "seconds": round(time.monotonic() - start, 3)}


def _copy(cmd, dst):
    try:
        _run(cmd, "copy to " + dst)
    except RootError:
        remove_tree(dst)
        raise


def remove_tree(path):
    """Delete a root (a btrfs subvolume with ``btrfs subvolume delete``, else rm -rf).

    Nested subvolumes (e.g. systemd's /var/lib/machines) are deleted too.
    """
    path = str(path)
    if not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
        return
    if fs_type(path) == "btrfs":
        # nested subvolumes first (deepest first), then the tree itself
        nested = []
        for dirpath, dirs, _files in os.walk(path):
            for d in dirs:
                p = os.path.join(dirpath, d)
                if not os.path.islink(p) and os.lstat(p).st_ino == BTRFS_SUBVOL_INO:
                    nested.append(p)
        for p in sorted(nested, key=len, reverse=True):
            _run(["btrfs", "subvolume", "delete", p], "delete subvolume " + p)
        if os.lstat(path).st_ino == BTRFS_SUBVOL_INO:
            _run(["btrfs", "subvolume", "delete", path], "delete subvolume " + path)
            return
    shutil.rmtree(path)
