"""A test run that was killed leaves its scratch directories under /tmp; the next
run removes them (lib/testdirs.py), never one of a run that still goes on, nor
one something is still mounted under."""

import os
import pathlib
import subprocess

import pytest

from lib import testdirs


def _dir_of(root, prefix, pid):
    path = root / "{}{}-{}".format(prefix, pid, "0123abcd")
    (path / "sub").mkdir(parents=True)
    (path / "sub" / "file").write_text("left behind\n")
    return path


def test_sweep_removes_the_directories_of_dead_runs_only(tmp_path):
    dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True,
                          check=True).stdout.strip()  # a pid that has exited
    killed = [_dir_of(tmp_path, p, dead) for p in testdirs.PREFIXES]
    live = _dir_of(tmp_path, "netlab-vms-", os.getpid())        # this pytest
    other = tmp_path / "netlab-vms-notours"                      # not named by make()
    other.mkdir()
    gone = testdirs.sweep(tmp_path)
    assert sorted(gone) == sorted(killed)
    assert not any(p.exists() for p in killed)
    assert (live / "sub" / "file").exists() and other.exists()


def test_sweep_leaves_a_directory_with_a_mount_under_it(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (mount)")
    dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True,
                          check=True).stdout.strip()
    path = _dir_of(tmp_path, "netlab-it-", dead)
    point = path / "sub"
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(point)], check=True)
    try:
        (point / "kept").write_text("on the mounted file system\n")
        assert testdirs.sweep(tmp_path) == []
        assert (point / "kept").exists()
    finally:
        subprocess.run(["umount", str(point)], check=True)
    assert testdirs.sweep(tmp_path) == [path] and not path.exists()


def test_make_names_the_directory_after_this_pytest():
    path = testdirs.make("netlab-power-", mode=0o700)
    try:
        assert path.parent == pathlib.Path("/tmp")
        assert path.name.startswith("netlab-power-{}-".format(os.getpid()))
        assert testdirs.NAME_RE.match(path.name)
        assert oct(path.stat().st_mode & 0o777) == "0o700"
        assert path not in testdirs.sweep()  # this run is alive
    finally:
        path.rmdir()
    with pytest.raises(ValueError):
        testdirs.make("elsewhere-")
