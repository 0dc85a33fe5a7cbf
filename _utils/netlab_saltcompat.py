"""
netlab_saltcompat: the few Salt APIs that differ between the LTS lines netlab
supports (3006 and 3008), behind one face.

Everything else in netlab calls Salt the same way on both lines (loader functions
by keyword, runner results carrying ``retcode``). Where an API differs, the
difference is detected from what the installed Salt offers, here and nowhere
else, so the rest of the code has no version checks.

What differs:

- ``salt.crypt.gen_keys``: 3006 writes ``<keydir>/<keyname>.pem/.pub`` and returns
  the path; 3007+ returns the PEM pair (writing is ``write_keys``).
- pillar masking (``pillar.items unmask=True``) exists only from 3008; 3006 raises
  on the unknown argument and never masks.

Same on both lines, so used directly: ``salt.utils.event.get_master_event`` (the
runners' event bus; ``get_event`` lost its positional ``transport`` in 3007, so
netlab does not call it), loader functions called by keyword (3008 added a
``pillar`` parameter before ``file_client``).

Which minion versions a master supports: Salt supports minions of the master's
version or older (never newer), and netlab supports the 3006 and 3008 lines.
"""

import os
import re
import tempfile

# Salt release lines netlab is tested on (major version numbers).
SUPPORTED_LINES = (3006, 3008)


def salt_version():
    """The version of the Salt this code runs in, as a string (e.g. ``'3006.29'``)."""
    import salt.version  # pylint: disable=import-outside-toplevel

    return str(salt.version.__version__)


def version_tuple(version):
    """``'3006.29'`` -> ``(3006, 29)``; ``None`` when ``version`` is not a release."""
    match = re.fullmatch(r"(\d{4})(?:\.(\d+))?(?:rc\d+)?", str(version).strip())
    if not match:
        return None
    return (int(match.group(1)), int(match.group(2) or 0))


def minion_version_problem(minion_version, master_version=None):
    """Why a salt-minion ``minion_version`` cannot serve this master, or ``None``.

    ``master_version`` defaults to the Salt running this code (on the networking
    node: the master's). Salt supports no minion newer than its master; netlab
    supports the release lines in :data:`SUPPORTED_LINES`.
    """
    mine = version_tuple(minion_version)
    if mine is None:
        return "{!r} is not a Salt release (e.g. '3008.3' or '3006.29')".format(
            minion_version)
    if mine[0] not in SUPPORTED_LINES:
        return "Salt {} is not supported by netlab; use a {} release".format(
            minion_version, " or ".join("{}.x".format(v) for v in SUPPORTED_LINES))
    master_version = master_version or salt_version()
    master = version_tuple(master_version)
    if master is not None and mine > master:
        return ("salt-minion {} would be newer than the master's Salt {} (Salt supports "
                "minions of the master's version or older): set it to {} or older, or "
                "upgrade the master".format(minion_version, master_version, master_version))
    return None


def gen_keys(keysize=2048):
    """A new RSA key pair ``(private_pem, public_pem)`` made the way Salt makes them."""
    import salt.crypt  # pylint: disable=import-outside-toplevel

    if hasattr(salt.crypt, "write_keys"):  # 3007+: gen_keys returns the pair
        return salt.crypt.gen_keys(keysize)
    # 3006: gen_keys writes <keydir>/<keyname>.pem and .pub; a private directory
    # (mode 0700) holds them only until they are read
    with tempfile.TemporaryDirectory(prefix="netlab-keys-") as keydir:
        salt.crypt.gen_keys(keydir, "minion", keysize)
        pair = []
        for ext in (".pem", ".pub"):
            with open(os.path.join(keydir, "minion" + ext), encoding="ascii") as fh:
                pair.append(fh.read())
    return tuple(pair)


def pillar_items_args():
    """Arguments for ``pillar.items`` that show every value in clear: ``unmask=True``
    where Salt masks pillar (3008+), nothing where it does not (3006 refuses it)."""
    import salt.modules.pillar  # pylint: disable=import-outside-toplevel
    import inspect  # pylint: disable=import-outside-toplevel

    params = inspect.signature(salt.modules.pillar.items).parameters
    return ["unmask=True"] if "unmask" in params else []

