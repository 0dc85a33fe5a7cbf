"""
netlab-bootstrap installs Salt for real: with no supported Salt on PATH and no
venv, it creates the venv and pip-installs pinned Salt (``salt==3008.3``),
netaddr and, for ``--gitfs``, GitPython from PyPI (the one outside address tests
may reach besides Debian's mirror). The installed ``salt-master`` reports
3008.3, pip has exactly those pins, GitPython is importable by the venv's
Python; a second look finds that Salt and installs nothing.

In the e2e tier because it downloads (about 90-130 s) and so runs once, not once
per Salt line like the integration tier.
"""

import importlib.machinery
import importlib.util
import shutil
import subprocess

import pytest

import netlab_bootstrap as nb
from lib import clients

pytestmark = pytest.mark.slow


def _script():
    loader = importlib.machinery.SourceFileLoader("netlab_bootstrap_cli3",
                                                  str(clients.REPO / "netlab-bootstrap"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def test_fresh_venv_gets_pinned_salt_from_pypi(tmp_path, monkeypatch, capsys):
    cli = _script()
    venv = tmp_path / "venv"
    # no Salt on PATH: only the system's directories
    monkeypatch.setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    assert shutil.which("salt-master") is None
    args = cli.argparse.Namespace(venv=str(venv), no_install=False, gitfs="file:///x",
                                  gitfs_branch="main", service_control="process",
                                  config_dir=str(tmp_path / "etc"),
                                  pillar_dir=str(tmp_path / "pillar"),
                                  salt_dir=str(tmp_path / "salt"), id="netnode")
    boot = cli.Bootstrap(args)
    bin_dir = boot.salt_bin()
    assert bin_dir == venv / "bin"
    assert boot.changes == ["installed Salt {} in {}".format(nb.SALT_VERSION, venv)]
    out = subprocess.run([str(bin_dir / "salt-master"), "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.split()[1] == nb.SALT_VERSION
    pins = subprocess.run([str(bin_dir / "pip"), "freeze"], capture_output=True, text=True,
                          check=True).stdout.lower().splitlines()
    for pin in (nb.VENV_EXTRAS + nb.GITFS_EXTRAS):
        assert pin.lower() in pins
    assert "gitpython" in boot.gitfs_providers(bin_dir)
    again = cli.Bootstrap(args)
    assert again.salt_bin() == bin_dir and again.changes == []  # found, nothing installed
    print(capsys.readouterr().out)
