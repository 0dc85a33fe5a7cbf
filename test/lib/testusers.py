"""
Real system users for tests (the DevStack stack user), removed afterwards, and
also after a run that was killed before its finalizers ran.

:func:`create` marks each user with the creating pytest's pid (GECOS field);
:func:`sweep` (called when a test session starts) removes marked users whose
pytest is gone, with their home under /tmp and the sudoers file that
``netlab.node.prepare`` gave them. Users of a pytest that still runs (another
run on the same machine) are left alone.
"""

import os
import pathlib
import pwd
import re
import shutil
import subprocess
import uuid

MARK = "netlab test user, pytest pid {}"
MARK_RE = re.compile(r"netlab test user, pytest pid (\d+)$")
SUDOERS = pathlib.Path("/etc/sudoers.d")


def create(prefix):
    """A new system user ``<prefix><6 hex>`` with its home in /tmp; returns the name."""
    name = "{}{}".format(prefix, uuid.uuid4().hex[:6])
    home = pathlib.Path("/tmp") / ("home-" + name)
    subprocess.run(["useradd", "--system", "--create-home", "--home-dir", str(home),
                    "--shell", "/bin/bash", "--comment", MARK.format(os.getpid()), name],
                   check=True, capture_output=True)
    return name


def remove(name):
    try:
        home = pwd.getpwnam(name).pw_dir
    except KeyError:
        home = None
    subprocess.run(["userdel", "--remove", name], capture_output=True, check=False)
    if home and home.startswith("/tmp/"):
        shutil.rmtree(home, ignore_errors=True)
    try:
        (SUDOERS / ("50_netlab_" + name)).unlink()
    except FileNotFoundError:
        pass


def pytest_alive(pid):
    """Whether ``pid`` is a running pytest (a run whose leftovers are not ours to take)."""
    try:
        with open("/proc/{}/cmdline".format(pid), "rb") as fh:
            return b"pytest" in fh.read()
    except OSError:
        return False


def sweep():
    """Remove the users (and sudoers files) of test runs that are gone; returns them."""
    if os.geteuid() != 0:
        return []
    gone = []
    for entry in pwd.getpwall():
        m = MARK_RE.match(entry.pw_gecos or "")
        if m and not pytest_alive(int(m.group(1))):
            remove(entry.pw_name)
            gone.append(entry.pw_name)
    return gone
