"""
Scratch directories under /tmp for the tests that cannot use pytest's tmp_path:
daemons and the stack user must read them (pytest's are 0700) and socket paths
must stay short. Removed by their fixtures, and also after a run that was
killed before its finalizers ran.

:func:`make` puts the creating pytest's pid in the name
(``/tmp/netlab-vms-<pid>-<8 hex>``); :func:`sweep` (called when a test session
starts) removes those whose pytest is gone, like lib/testusers.py does for
users. A directory something is still mounted under is left alone: removing
it would reach into the mounted file system.
"""

import os
import pathlib
import re
import shutil
import uuid

import netlab_image_store
from lib import testusers

ROOT = pathlib.Path("/tmp")
PREFIXES = ("netlab-it-", "netlab-vms-", "netlab-vlab-", "netlab-power-")
NAME_RE = re.compile(r"^({})(\d+)-[0-9a-f]{{8}}$".format(
    "|".join(re.escape(p) for p in PREFIXES)))


def make(prefix, mode=0o755):
    """A new directory ``/tmp/<prefix><pid>-<8 hex>`` with ``mode``; its path."""
    if prefix not in PREFIXES:
        raise ValueError("{!r} is not one of {}".format(prefix, PREFIXES))
    path = ROOT / "{}{}-{}".format(prefix, os.getpid(), uuid.uuid4().hex[:8])
    path.mkdir(mode=mode)
    os.chmod(path, mode)  # mkdir's mode is cut by the umask
    return path


def sweep(root=ROOT):
    """Remove the scratch directories of test runs that are gone; returns them."""
    gone = []
    for entry in sorted(root.iterdir()):
        m = NAME_RE.match(entry.name)
        if not m or not entry.is_dir() or entry.is_symlink():
            continue
        if testusers.pytest_alive(int(m.group(2))) or \
                netlab_image_store._mounts_under(str(entry)):  # pylint: disable=protected-access
            continue
        shutil.rmtree(entry, ignore_errors=True)
        gone.append(entry)
    return gone
