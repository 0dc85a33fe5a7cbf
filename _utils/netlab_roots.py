"""
Per-node roots: clone / reset a node's writable root from the current image, and
write the node's identity (hostname, machine-id, SSH host keys, OVN system id,
Salt minion id + pre-generated minion key) into it.

Pure Python plus a few standard commands (``cp``, ``btrfs``, ``ssh-keygen``,
``stat``); runs on the networking node. The clone methods themselves are in
``netlab_roots_clone``, the node's Salt keys and their enrolment on the master in
``netlab_roots_keys``. No Salt dunders here: the runner
(``_runners/netlab.py``) and the tests call these functions.

Clone methods, best first (``method='auto'`` picks the first that works):

``snapshot``
    the image rootfs is a btrfs subvolume, the roots directory is on the same
    btrfs filesystem and the NFS server is the kernel's (nfs-ganesha cannot
    export subvolumes): ``btrfs subvolume snapshot`` (constant time, shares
    every block until written).
``reflink``
    the filesystem can share extents between files (btrfs, xfs with reflink=1):
    ``cp -a --reflink=always`` (walks the tree, shares data blocks).
``copy``
    anything else: ``cp -a`` (copies every byte; the image's size per node).

Layout under ``lab.netnode.roots_dir``::

    <node id>/                  persistent node's writable root (NFS export)
    <node id>.identity/         stateless node's identity tree (see docs/lifecycle.rst)
    .<node id>.new-<pid>/       a root being built (reset); swapped into place
    .<node id>.old-<pid>/       the previous root while it is deleted
"""

import errno
import os
import tempfile
import time

import netlab_cache_config
import netlab_proc
import netlab_roots_spare
import netlab_safefs
from netlab_roots_keys import master_finger, write_in_root, write_minion_key

# pylint: disable=unused-import
from netlab_roots_clone import (  # noqa: F401
    BTRFS_SUBVOL_INO, METHODS, RootError, _run, can_reflink, clone_tree, detect_method,
    fs_type, is_subvolume, remove_tree, snapshots_exportable)

SSH_KEY_TYPES = ("rsa", "ecdsa", "ed25519")


# --------------------------------------------------------------------------- paths
def root_path(lab, node_id):
    """``<roots_dir>/<node id>``: the node's writable root (persistent nodes)."""
    lab.node(node_id)
    return os.path.join(lab.netnode.roots_dir, node_id)


def identity_path(lab, node_id):
    """``<roots_dir>/<node id>.identity``: a stateless node's identity tree."""
    lab.node(node_id)
    return os.path.join(lab.netnode.roots_dir, node_id + ".identity")


def image_rootfs(lab):
    """The current image rootfs, resolved to its real path (raises when missing)."""
    link = os.path.join(lab.netnode.images_dir, "current", "rootfs")
    real = os.path.realpath(link)
    if not os.path.isdir(real):
        raise RootError("no current image: {} does not exist (build the image first: "
                        "state.apply netlab.image)".format(link))
    return real


# --------------------------------------------------------------------------- identity


def hosts_text(lab, node_id):
    node = lab.node(node_id)
    nn = lab.netnode
    lines = [
        "127.0.0.1\tlocalhost",
        "{}\t{} {}".format(node.ip, node.fqdn, node.hostname),
        "{}\t{} {}".format(nn.ip, nn.fqdn, nn.hostname),
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "ff02::1\tip6-allnodes",
        "ff02::2\tip6-allrouters",
    ]
    return "# written by netlab (node identity)\n" + "\n".join(lines) + "\n"


def minion_conf_text(lab, node_id, master_pub=None):
    """The node's minion config. With ``master_pub`` (the master's public key) it
    pins the master: ``master_finger`` makes the minion refuse, and exit, when the
    first master it meets has another key (the cached key placed beside it by
    :func:`write_minion_key` already refuses a different master's key)."""
    text = ("# written by netlab: this node's minion id and its master (the networking "
            "node)\nid: {}\nmaster: {}\n").format(node_id, lab.netnode.salt_master)
    if master_pub:
        text += ("# the master's key fingerprint: a node refuses any other master\n"
                 "master_finger: '{}'\nhash_type: sha256\n").format(master_finger(master_pub))
    return text


def gen_ssh_host_keys(root):
    """Fresh SSH host keys in ``root``/etc/ssh (old ones are removed first).

    ssh-keygen writes into a private directory of the networking node; the keys
    are then copied into the root without following its symlinks."""
    try:
        netlab_safefs.makedirs(root, "etc/ssh", 0o755)
        for name in netlab_safefs.listdir(root, "etc/ssh"):
            if name.startswith("ssh_host_") and ("_key" in name):
                netlab_safefs.unlink(root, "etc/ssh/" + name)
    except netlab_safefs.UnsafePath as exc:
        raise RootError("refusing to write SSH host keys into {}: {}".format(
            root, exc)) from exc
    files = []
    with tempfile.TemporaryDirectory(prefix="netlab-hostkeys-") as work:
        for ktype in SSH_KEY_TYPES:
            name = "ssh_host_{}_key".format(ktype)
            key = os.path.join(work, name)
            cmd = ["ssh-keygen", "-q", "-t", ktype, "-N", "", "-C", "", "-f", key]
            if ktype == "rsa":
                cmd[4:4] = ["-b", "3072"]
            _run(cmd, "ssh host key in " + root)
            for src, mode in ((key, 0o600), (key + ".pub", 0o644)):
                with open(src, encoding="utf-8") as fh:
                    write_in_root(root, "etc/ssh/" + os.path.basename(src), fh.read(), mode)
            files.append(os.path.join(root, "etc", "ssh", name))
    return files


def write_identity(lab, node_id, root, identity, minion_key, master_pub=None, build=None,
                   host_keys=True):
    """Write node ``node_id``'s identity into the tree ``root``.

    ``identity`` is :func:`netlab_slice.identity`; ``minion_key`` the pair
    ``(private_pem, public_pem)`` whose public half the master pre-accepts;
    ``master_pub`` the master's public key, which the node will accept and no
    other (see :func:`write_minion_key`); ``build`` the image build the root
    comes from (recorded in ``/etc/netlab-identity``, for the reader);
    ``host_keys=False`` when ``root`` is a spare whose SSH host keys were made
    fresh for whichever node takes it (:mod:`netlab_roots_spare`).
    Returns the list of files written (relative to ``root``).
    """
    node = lab.node(node_id)
    if os.path.islink(root) or not os.path.isdir(root):
        raise RootError("node {}: root {} does not exist".format(node_id, root))
    written = []

    def put(rel, text, mode=0o644):
        write_in_root(root, rel, text, mode)
        written.append(rel)

    put("etc/hostname", node.hostname + "\n")
    put("etc/hosts", hosts_text(lab, node_id))
    put("etc/machine-id", identity["machine_id"] + "\n", 0o444)
    try:
        dbus_id = netlab_safefs.is_regular_file(root, "var/lib/dbus/machine-id")
    except netlab_safefs.UnsafePath as exc:
        raise RootError("node {}: {}".format(node_id, exc)) from exc
    if dbus_id:
        put("var/lib/dbus/machine-id", identity["machine_id"] + "\n", 0o444)
    put("etc/openvswitch/system-id.conf", identity["ovn_uuid"] + "\n")
    put("etc/salt/minion_id", node_id + "\n")
    put("etc/salt/minion.d/netlab.conf", minion_conf_text(lab, node_id, master_pub))
    written += write_minion_key(root, minion_key, master_pub)
    if host_keys:
        written += [os.path.relpath(p, root) for p in gen_ssh_host_keys(root)]
    # apt and pip through the networking node's LAN cache (netlab:cache)
    for rel, text in sorted(netlab_cache_config.node_files(lab).items()):
        put(rel, text)
    put("etc/netlab-identity", "node={}\ngeneration={}\nmachine_id={}\novn_uuid={}\n{}".format(
        node_id, identity["generation"], identity["machine_id"], identity["ovn_uuid"],
        "build={}\n".format(build) if build else ""))
    return written


# --------------------------------------------------------------------------- layout
def _device(path, stat_fn):
    """st_dev of ``path``, or of its nearest existing ancestor."""
    path = os.path.abspath(path)
    while True:
        try:
            return stat_fn(path).st_dev
        except FileNotFoundError:
            if path == "/":
                raise
            path = os.path.dirname(path)


def storage_layout(lab, stat_fn=os.stat):
    """Whether the node roots sit on a filesystem of their own.

    Roots are exported ``no_root_squash`` as subdirectories; an NFS client that
    crafts file handles can reach anything on the same filesystem as its export.
    Safe: ``netnode:storage`` (or ``roots/``) is a filesystem of its own, not the
    one of the directory it sits in (``/`` for the default ``/srv/netlab``).
    Returns ``{'own_filesystem': bool, 'warning': text or None}``.
    """
    storage = lab.netnode.storage
    roots = lab.netnode.roots_dir
    own = _device(roots, stat_fn) != _device(os.path.dirname(storage) or "/", stat_fn)
    warning = None if own else (
        "WARNING: node roots ({}) are on the same filesystem as {}: a node that "
        "crafts NFS file handles can reach files outside its export there. Mount a "
        "filesystem of its own on {} (see docs/networking.rst, 'Storage layout')"
        .format(roots, os.path.dirname(storage) or "/", storage))
    return {"own_filesystem": own, "warning": warning}


def _image_mb(rootfs):
    """The image's size in MB from its build manifest (``sizes.rootfs_mb``), or None."""
    import json  # pylint: disable=import-outside-toplevel

    try:
        with open(os.path.join(os.path.dirname(rootfs), "manifest.json"),
                  encoding="utf-8") as fh:
            return (json.load(fh).get("sizes") or {}).get("rootfs_mb")
    except (OSError, ValueError):
        return None


def reset_cost(lab):
    """How a persistent node's root reset clones the current image here.

    ``{'method': 'snapshot'|'reflink'|'copy'|None, 'image_mb': int|None,
    'note': text|None}``: ``note`` is set when resets are full copies (their
    time and space grow with the image) and says what to do about it; ``method``
    is None when there is no image yet or no persistent node.
    """
    out = {"method": None, "image_mb": None, "note": None}
    if not any(n.root_mode == "persistent" for n in lab.nodes.values()):
        return out
    try:
        src = image_rootfs(lab)
    except RootError:
        return out
    parent = lab.netnode.roots_dir
    while not os.path.isdir(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    try:
        out["method"] = detect_method(src, parent,
                                      snapshots_exportable(lab.netnode.nfs_server))
    except OSError:
        return out
    out["image_mb"] = _image_mb(src)
    if out["method"] == "copy":
        size = " ({} MB)".format(out["image_mb"]) if out["image_mb"] else ""
        out["note"] = (
            "NOTE: node root resets are full copies of the image{} on this storage "
            "({}, {}): every reimage reads and writes the whole image per node, and "
            "takes longer as the image grows. Put netnode:storage on btrfs (with the "
            "kernel NFS server the image is then built as a subvolume and resets are "
            "snapshots, well under a second; with nfs-ganesha they are reflink copies, "
            "a few seconds) or on XFS with reflink (docs/lifecycle.rst, 'Per-node roots')"
            .format(size, fs_type(parent), parent))
    return out


# --------------------------------------------------------------------------- reset
def _roots_dir(lab, node_id):
    """The roots directory, mode 0700 (node roots hold private keys, and nothing on
    the networking node but root needs to enter it), with ``node_id``'s leftovers
    of interrupted resets (``.<id>.new-*``, ``.<id>.old-*``, ``.<id>.identity.new-*``)
    removed. Callers hold the node's lock, so no other run is building them."""
    roots = lab.netnode.roots_dir
    os.makedirs(roots, mode=0o700, exist_ok=True)
    os.chmod(roots, 0o700)
    prefixes = tuple(".{}.{}-".format(node_id, kind)
                     for kind in ("new", "old", "identity.new"))
    for name in os.listdir(roots):
        if name.startswith(prefixes):
            remove_tree(os.path.join(roots, name))
    return roots


def build_of(rootfs):
    """The build id of an image rootfs path (``<images_dir>/<build_id>/rootfs``)."""
    return os.path.basename(os.path.dirname(os.path.realpath(str(rootfs)).rstrip("/")))


def reset_root(lab, node_id, identity, minion_key, method="auto", src=None,
               master_pub=None, defer_delete=False):
    """Replace node ``node_id``'s root with a fresh clone of the image + its identity.

    Builds the new root beside the old one, swaps it in with two renames, then
    deletes the old one; a failure before the swap leaves the old root untouched.
    ``src`` defaults to the current image rootfs. Stateless nodes get a fresh
    identity tree (:func:`reset_identity_tree`) instead. ``master_pub``: the
    master the node will accept (:func:`write_minion_key`).

    ``defer_delete``: the old root is left at ``.<node>.old-<pid>`` for
    :func:`remove_old_roots` (deleting a copied root takes as long as copying it;
    the reimage pipeline deletes it while the node boots).

    Returns ``{'node', 'path', 'method', 'clone_seconds', 'total_seconds', 'replaced',
    'build', 'spare'}``; ``build`` is the image build the node boots from now on (its
    kernel, initrd and, for a stateless node, the shared root); ``spare`` whether
    the root was the spare made ahead (:func:`prepare_spare`).
    """
    node = lab.node(node_id)
    if node.root_mode == "stateless":
        return reset_identity_tree(lab, node_id, identity, minion_key,
                                   master_pub=master_pub, src=src)
    start = time.monotonic()
    src = src or image_rootfs(lab)
    final = root_path(lab, node_id)
    roots = _roots_dir(lab, node_id)
    new = os.path.join(roots, ".{}.new-{}".format(node_id, os.getpid()))
    old = os.path.join(roots, ".{}.old-{}".format(node_id, os.getpid()))
    for leftover in (new, old):
        remove_tree(leftover)
    build = build_of(src)
    try:
        spare = netlab_roots_spare.take(roots, build, new) if method == "auto" else None
        if spare:
            clone = {"method": spare, "seconds": 0.0}
        else:
            clone = clone_tree(src, new, method,
                               snapshots_exportable(lab.netnode.nfs_server))
        write_identity(lab, node_id, new, identity, minion_key, master_pub, build,
                       host_keys=not spare)
    except RootError as exc:
        remove_tree(new)
        raise RootError("node {}: reset of {} failed: {}".format(node_id, final, exc)) from exc
    except OSError as exc:
        remove_tree(new)
        raise RootError("node {}: reset of {} failed: {}".format(node_id, final, exc)) from exc
    replaced = os.path.lexists(final)
    if replaced:
        os.rename(final, old)
    os.rename(new, final)
    if replaced and not defer_delete:
        remove_tree(old)
    return {"node": node_id, "path": final, "method": clone["method"],
            "clone_seconds": clone["seconds"],
            "total_seconds": round(time.monotonic() - start, 3), "replaced": replaced,
            "build": build, "spare": bool(spare)}


def remove_old_roots(lab):
    """Delete the old roots that resets of this process left behind
    (``defer_delete``) and those of processes that are gone; a running reimage's
    are left to it. Returns the names removed."""
    roots = lab.netnode.roots_dir
    try:
        names = os.listdir(roots)
    except FileNotFoundError:
        return []
    gone = []
    for name in sorted(names):
        head, sep, pid = name.rpartition(".old-")
        if not (name.startswith(".") and sep and head and pid.isdigit()):
            continue
        if int(pid) != os.getpid() and netlab_proc.alive(int(pid)):
            continue
        remove_tree(os.path.join(roots, name))
        gone.append(name)
    return gone


def prepare_spare(lab, src=None):
    """Make the spare root of the current image (or of ``src``) ahead of the next
    reset, when the lab has a persistent node (:mod:`netlab_roots_spare`).
    Returns its ``{'path', 'method', 'seconds', 'made'}``, or None when there is
    no image yet or no persistent node. Raises :class:`RootError` if the clone fails."""
    if not any(n.root_mode == "persistent" for n in lab.nodes.values()):
        return None
    try:
        src = src or image_rootfs(lab)
    except RootError:
        return None
    roots = lab.netnode.roots_dir
    os.makedirs(roots, mode=0o700, exist_ok=True)
    os.chmod(roots, 0o700)
    snapshots = snapshots_exportable(lab.netnode.nfs_server)
    return netlab_roots_spare.prepare(
        roots, src, build_of(src),
        clone=lambda a, b, m: clone_tree(a, b, m, snapshots), keygen=gen_ssh_host_keys)


def reset_identity_tree(lab, node_id, identity, minion_key, master_pub=None, src=None):
    """A stateless node's identity tree: only the per-node files, no image copy.
    The node boots the shared root of build ``src`` (default: the current image)."""
    start = time.monotonic()
    try:
        build = build_of(src or image_rootfs(lab))
    except RootError:
        build = None  # no image yet: the node boots whatever is current then
    final = identity_path(lab, node_id)
    roots = _roots_dir(lab, node_id)
    new = os.path.join(roots, ".{}.identity.new-{}".format(node_id, os.getpid()))
    remove_tree(new)
    os.makedirs(new, mode=0o755)
    try:
        write_identity(lab, node_id, new, identity, minion_key, master_pub, build)
    except (RootError, OSError) as exc:
        remove_tree(new)
        raise RootError("node {}: identity tree {} failed: {}".format(
            node_id, final, exc)) from exc
    old = final + ".old"
    remove_tree(old)
    replaced = os.path.lexists(final)
    if replaced:
        os.rename(final, old)
    os.rename(new, final)
    remove_tree(old)
    return {"node": node_id, "path": final, "method": "identity",
            "clone_seconds": 0.0, "total_seconds": round(time.monotonic() - start, 3),
            "replaced": replaced, "build": build}


def read_identity(root):
    """The ``/etc/netlab-identity`` record of a root as a dict ({} when absent)."""
    out = {}
    try:
        text = netlab_safefs.read_text(root, "etc/netlab-identity")
    except netlab_safefs.UnsafePath:
        return out  # the node replaced it by a symlink: no record, nothing read
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
        return out
    for line in text.splitlines():
        if "=" in line:
            k, v = line.strip().split("=", 1)
            out[k] = v
    return out
