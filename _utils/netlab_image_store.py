"""
The node image store: finished builds, publishing, retention and the build lock.

Layout (``lab.netnode.images_dir``, ``http_root``, ``tftp_root``) is described
in :mod:`netlab_image`. Every change here is atomic for a reader: ``current``
links switch with a rename, boot files are hard links (or copies) renamed into
place, and a build tree is removed only after everything mounted below it is
unmounted.
"""

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import subprocess
import time

import netlab_lifecycle
import netlab_roots
from netlab_image_recipe import ImageError


BUILD_ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{12}$")


TMP_PREFIX = ".tmp-"


DEFAULT_KEEP = 2


def paths(lab):
    nn = lab.netnode
    return {
        "images_dir": nn.images_dir,
        "current": os.path.join(nn.images_dir, "current"),
        "http_images": os.path.join(nn.http_root, "images"),
        "tftp_images": os.path.join(nn.tftp_root, "images"),
        "lock": os.path.join(nn.images_dir, ".lock"),
        "last_failure": os.path.join(nn.images_dir, "last-failure.json"),
        "last_failure_log": os.path.join(nn.images_dir, "last-failure.log"),
    }


def _read_manifest(build_dir):
    try:
        with open(os.path.join(build_dir, "manifest.json"), encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _describe(images_dir, build_id):
    bdir = os.path.join(images_dir, build_id)
    manifest = _read_manifest(bdir)
    if manifest is None:
        return None
    out = {
        "build_id": build_id,
        "dir": bdir,
        "rootfs": os.path.join(bdir, "rootfs"),
        "kernel": os.path.join(bdir, "vmlinuz"),
        "initrd": os.path.join(bdir, "initrd.img"),
        "manifest": os.path.join(bdir, "manifest.json"),
        "input_hash": manifest.get("input_hash"),
        "kernel_version": manifest.get("kernel_version"),
        "built_at": manifest.get("built_at"),
        "distro": manifest.get("recipe", {}).get("distro"),
        "release": manifest.get("recipe", {}).get("release"),
    }
    out["intact"] = (os.path.isdir(out["rootfs"]) and os.path.isfile(out["kernel"])
                     and os.path.isfile(out["initrd"]))
    return out


def current_build(lab):
    """The build ``<images_dir>/current`` points at, or ``None``.

    ``{build_id, dir, rootfs, kernel, initrd, manifest, input_hash, kernel_version,
    built_at, distro, release, intact}`` -- ``rootfs`` is the real path
    (``<images_dir>/<build_id>/rootfs``), fit for NFS exports and clones.
    """
    p = paths(lab)
    try:
        target = os.readlink(p["current"])
    except OSError:
        return None
    build_id = os.path.basename(target.rstrip("/"))
    return _describe(p["images_dir"], build_id)


def builds(lab):
    """Every finished build (newest first), as :func:`current_build` describes them."""
    images_dir = paths(lab)["images_dir"]
    try:
        names = os.listdir(images_dir)
    except OSError:
        return []
    out = []
    for name in sorted(names, reverse=True):
        if BUILD_ID_RE.match(name):
            desc = _describe(images_dir, name)
            if desc:
                out.append(desc)
    return out


def _mounts_under(path):
    """Mount points at or below ``path`` (from /proc/self/mountinfo), deepest first."""
    path = os.path.realpath(path)
    found = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            for line in fh:
                mnt = line.split()[4].replace("\\040", " ")
                if mnt == path or mnt.startswith(path + "/"):
                    found.append(mnt)
    except OSError:
        pass
    return sorted(found, key=len, reverse=True)


def remove_tree(path):
    """Remove a build tree safely: unmount anything below it first, never cross
    into another file system (btrfs subvolumes in it are deleted as such)."""
    if not os.path.lexists(path):
        return
    if os.path.islink(path):
        os.unlink(path)  # a link to a build elsewhere: never touch its target
        return
    for mnt in _mounts_under(path):
        subprocess.run(["umount", "-l", mnt], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    left = _mounts_under(path)
    if left:
        raise ImageError("refusing to delete {}: still mounted: {}".format(
            path, ", ".join(left)))
    if not os.path.isdir(path):
        os.unlink(path)
        return
    if netlab_roots.fs_type(path) == "btrfs":
        try:  # rm --one-file-system would refuse the rootfs subvolume
            netlab_roots.remove_tree(path)
        except netlab_roots.RootError as exc:
            raise ImageError("cannot delete {}: {}".format(path, exc)) from exc
        return
    subprocess.run(["rm", "-rf", "--one-file-system", path], check=True)


def _atomic_symlink(target, link):
    tmp = "{}.tmp-{}".format(link, os.getpid())
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _link_or_copy(src, dst):
    """``dst`` becomes ``src`` (hard link, or a 0644 copy across file systems),
    replaced atomically: a client fetching ``dst`` never sees it missing."""
    with contextlib.suppress(OSError):
        if os.path.samefile(src, dst):
            return
    tmp = "{}.tmp-{}".format(dst, os.getpid())
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    try:
        os.link(src, tmp)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(src, tmp)
        os.chmod(tmp, 0o644)
    os.replace(tmp, dst)


@contextlib.contextmanager
def build_lock(lab, wait=0):
    """Exclusive lock on ``<images_dir>/.lock``; ``wait`` seconds (0: fail at once)."""
    p = paths(lab)
    os.makedirs(p["images_dir"], exist_ok=True)
    fd = os.open(p["lock"], os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + (wait or 0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ImageError("another image build holds {} (wait for it, or pass "
                                     "a longer lock wait)".format(p["lock"])) from None
                time.sleep(1)
        yield
    finally:
        os.close(fd)


def _publish_problems(lab, build_id):
    p = paths(lab)
    problems = []
    for key in ("http_images", "tftp_images"):
        base = p[key]
        cur = os.path.join(base, "current")
        try:
            target = os.readlink(cur)
        except OSError:
            problems.append("{} is missing".format(cur))
            continue
        if os.path.basename(target.rstrip("/")) != build_id:
            problems.append("{} points at {}, not {}".format(cur, target, build_id))
        for name in ("vmlinuz", "initrd.img"):
            if not os.path.isfile(os.path.join(base, build_id, name)):
                problems.append("{} is missing".format(os.path.join(base, build_id, name)))
    return problems


def _stage_boot_files(lab, build_id):
    """Hard-link (or copy) kernel and initrd into http/tftp ``images/<build_id>/``."""
    p = paths(lab)
    bdir = os.path.join(p["images_dir"], build_id)
    for key in ("http_images", "tftp_images"):
        dst_dir = os.path.join(p[key], build_id)
        os.makedirs(dst_dir, exist_ok=True)
        os.chmod(dst_dir, 0o755)
        for name in ("vmlinuz", "initrd.img"):
            _link_or_copy(os.path.join(bdir, name), os.path.join(dst_dir, name))


def publish(lab, build_id):
    """Point http/tftp ``images/current`` at ``build_id`` (atomic symlink switch)."""
    p = paths(lab)
    _stage_boot_files(lab, build_id)
    for key in ("http_images", "tftp_images"):
        _atomic_symlink(build_id, os.path.join(p[key], "current"))


def _remove_stale_temps(images_dir):
    """Temp dirs of builds that died (the lock guarantees none is running)."""
    try:
        names = os.listdir(images_dir)
    except OSError:
        return
    for name in names:
        if name.startswith(TMP_PREFIX):
            remove_tree(os.path.join(images_dir, name))


def builds_in_use(lab):
    """Build ids some node boots (its last reimage recorded them): never pruned."""
    return {b for b in netlab_lifecycle.node_builds(lab).values() if b}


def prune(lab, keep=DEFAULT_KEEP, protect=(), in_use=None):
    """Delete old builds, keeping the ``keep`` newest (``current`` always counts and
    is never deleted), any build id in ``protect`` and every build a node uses
    (``in_use``, default :func:`builds_in_use`). Returns the deleted ids.

    A node boots the kernel and initrd of the build its root came from until it
    is reimaged (a persistent root has that kernel's modules only; a stateless
    node mounts that build's rootfs), so a build in use must stay.
    """
    keep = max(1, int(keep))
    protect = set(protect) | set(builds_in_use(lab) if in_use is None else in_use)
    p = paths(lab)
    cur = current_build(lab)
    cur_id = cur and cur["build_id"]
    ids = sorted((n for n in _listdir(p["images_dir"]) if BUILD_ID_RE.match(n)),
                 reverse=True)
    kept = [cur_id] if cur_id else []
    for bid in ids:
        if len(kept) >= keep:
            break
        if bid not in kept:
            kept.append(bid)
    deleted = []
    for bid in ids:
        if bid in kept or bid in protect:
            continue
        for base in (p["http_images"], p["tftp_images"]):
            remove_tree(os.path.join(base, bid))
        remove_tree(os.path.join(p["images_dir"], bid))
        deleted.append(bid)
    # boot-file dirs whose build is gone (e.g. removed by hand)
    for base in (p["http_images"], p["tftp_images"]):
        for name in _listdir(base):
            if BUILD_ID_RE.match(name) and name not in ids:
                remove_tree(os.path.join(base, name))
    return deleted


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


def remove_all(lab):
    """Delete every build and the published boot files (``netlab.image.clean``)."""
    p = paths(lab)
    removed = []
    with build_lock(lab):
        for base in (p["http_images"], p["tftp_images"]):
            if os.path.lexists(base):
                remove_tree(base)
                removed.append(base)
        for name in _listdir(p["images_dir"]):
            if BUILD_ID_RE.match(name) or name.startswith(TMP_PREFIX) or name in (
                    "current", "last-failure.json", "last-failure.log"):
                remove_tree(os.path.join(p["images_dir"], name))
                removed.append(os.path.join(p["images_dir"], name))
    return removed
