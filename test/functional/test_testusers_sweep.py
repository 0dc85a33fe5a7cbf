"""A test run that was killed leaves its stack user and sudoers file; the next run
removes them (lib/testusers.py), and never a user of a run that still goes on."""

import os
import pathlib
import pwd
import subprocess

import pytest

from lib import testusers


def _user_of(pid, name):
    home = pathlib.Path("/tmp") / ("home-" + name)
    subprocess.run(["useradd", "--system", "--create-home", "--home-dir", str(home),
                    "--shell", "/bin/bash", "--comment", testusers.MARK.format(pid), name],
                   check=True, capture_output=True)
    sudoers = testusers.SUDOERS / ("50_netlab_" + name)
    sudoers.write_text("{} ALL=(ALL) NOPASSWD:ALL\n".format(name))
    os.chmod(sudoers, 0o440)
    return home, sudoers


def test_sweep_removes_users_of_dead_runs_only():
    if os.geteuid() != 0:
        pytest.skip("needs root (useradd)")
    dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True,
                          check=True).stdout.strip()  # a pid that has exited
    killed_home, killed_sudoers = _user_of(int(dead), "nlsweepdead")
    live_home, live_sudoers = _user_of(os.getpid(), "nlsweeplive")  # this pytest
    try:
        gone = testusers.sweep()
        assert "nlsweepdead" in gone and "nlsweeplive" not in gone
        with pytest.raises(KeyError):
            pwd.getpwnam("nlsweepdead")
        assert not killed_home.exists() and not killed_sudoers.exists()
        assert pwd.getpwnam("nlsweeplive").pw_dir == str(live_home)
        assert live_sudoers.exists()
    finally:
        testusers.remove("nlsweepdead")
        testusers.remove("nlsweeplive")
    assert not live_home.exists() and not live_sudoers.exists()
