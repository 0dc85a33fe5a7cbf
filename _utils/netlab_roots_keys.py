"""
A lab node's Salt keys: its minion key pair (made on the networking node and
written into its root with this master's public key as the cached master key),
the fingerprint that pins the master in its minion config, and the master's side
(pre-accepting the node's key, what the master's key lists hold). Writes into a
node's root never follow the node's symlinks (:mod:`netlab_safefs`).
"""

import hashlib
import os

import netlab_safefs
import netlab_saltcompat
from netlab_roots_clone import RootError


def write_in_root(root, rel, text, mode=0o644):
    """Write ``text`` to ``root``/``rel``: a symlink at ``rel`` is replaced, a symlink
    on any directory of the path is refused (the node owns its root; see
    netlab_safefs)."""
    try:
        return netlab_safefs.write_file(root, rel.lstrip("/"), text, mode)
    except netlab_safefs.UnsafePath as exc:
        raise RootError("refusing to write {} into {}: {}".format(rel, root, exc)) from exc


def master_finger(public_pem, sum_type="sha256"):
    """The fingerprint Salt's ``master_finger`` option compares: the hash of the PEM
    body (every non-blank line but the first and the last), as Salt's
    ``salt.utils.crypt.pem_finger`` computes it, in ``aa:bb:...`` form."""
    lines = [ln for ln in public_pem.encode().splitlines(keepends=True) if ln.strip()]
    body = b"".join(lines[1:-1]).replace(b"\r\n", b"\n")
    digest = hashlib.new(sum_type, body).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def gen_minion_keys(keysize=2048):
    """A new Salt minion key pair ``(private_pem, public_pem)`` as the master makes them."""
    try:
        return netlab_saltcompat.gen_keys(keysize)  # Salt's API differs by release line
    except ImportError:  # pragma: no cover - salt is always there on the master
        from cryptography.hazmat.primitives import serialization  # noqa
        from cryptography.hazmat.primitives.asymmetric import rsa  # noqa

        key = rsa.generate_private_key(65537, keysize)
        priv = key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption()).decode()
        pub = key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        return priv, pub


def write_minion_key(root, minion_key, master_pub=None):
    """Put the key pair ``(private_pem, public_pem)`` in ``root``'s minion pki dir,
    and ``master_pub`` (this master's public key) as the minion's cached master key.

    A minion with a cached master key refuses a master that presents another one
    ("The master key has changed"): a second master on the segment cannot take
    the node over, also right after a reimage. Without ``master_pub`` the cached
    key is removed (the node then trusts the first master that answers)."""
    priv, pub = minion_key
    try:
        # every directory on the way is checked: the node may have planted symlinks
        netlab_safefs.makedirs(root, "etc/salt/pki/minion", 0o700)
        # a master key cached from an earlier life would not match after a master rebuild
        netlab_safefs.unlink(root, "etc/salt/pki/minion/minion_master.pub")
    except netlab_safefs.UnsafePath as exc:
        raise RootError("refusing to write the minion key into {}: {}".format(
            root, exc)) from exc
    write_in_root(root, "etc/salt/pki/minion/minion.pem", priv, 0o400)
    write_in_root(root, "etc/salt/pki/minion/minion.pub", pub, 0o644)
    written = ["etc/salt/pki/minion/minion.pem", "etc/salt/pki/minion/minion.pub"]
    if master_pub:
        # exactly the master's file: old minions compare it byte for byte
        write_in_root(root, "etc/salt/pki/minion/minion_master.pub", master_pub, 0o644)
        written.append("etc/salt/pki/minion/minion_master.pub")
    return written


def preaccept_key(pki_dir, node_id, public_pem):
    """Accept ``public_pem`` as ``node_id``'s key on the master (``pki_dir``).

    Writes ``<pki_dir>/minions/<id>`` and removes the id from the pending,
    rejected and denied lists, so the node is accepted with exactly this key and
    any other key presented under its id is denied by the master.
    """
    minions = os.path.join(pki_dir, "minions")
    os.makedirs(minions, mode=0o700, exist_ok=True)
    for other in ("minions_pre", "minions_rejected", "minions_denied"):
        p = os.path.join(pki_dir, other, node_id)
        if os.path.lexists(p):
            os.unlink(p)
    write_in_root(minions, node_id, public_pem, 0o644)
    return os.path.join(minions, node_id)


def accepted_key(pki_dir, node_id):
    """The public key the master accepted for ``node_id`` (None when not accepted)."""
    try:
        with open(os.path.join(pki_dir, "minions", node_id), encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def key_report(pki_dir, lab):
    """Per key list (accepted/pending/rejected/denied), which ids are lab nodes."""
    lists = {"accepted": "minions", "pending": "minions_pre",
             "rejected": "minions_rejected", "denied": "minions_denied"}
    out = {}
    for label, sub in lists.items():
        d = os.path.join(pki_dir, sub)
        ids = sorted(os.listdir(d)) if os.path.isdir(d) else []
        out[label] = ids
    known = set(lab.nodes) | {lab.netnode.id}
    out["not_in_lab"] = sorted({i for ids in (out["accepted"], out["pending"])
                                for i in ids} - known)
    out["lab_nodes_without_key"] = sorted(set(lab.nodes) - set(out["accepted"]))
    return out

