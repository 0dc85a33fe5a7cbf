"""
netlab-bootstrap's service mode on a machine without systemd (this one).

systemd itself is not exercised here (it is not PID 1 on the test machines):

* the unit files the bootstrap writes for a venv's Salt pass ``systemd-analyze
  verify`` (syntax, directives, an executable ExecStart);
* the script's systemd path runs against a ``systemctl`` stand-in that records its
  calls and keeps enabled/active state: a first call writes the unit, reloads,
  enables and starts it; a second one changes nothing; a changed Salt config
  restarts it; a unit file someone else wrote is refused before anything changes;
* ``--service-control auto`` picks process mode here, ``systemd`` is refused with
  a clear message before anything is written.
"""

import argparse
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

import netlab_bootstrap as nb
from conftest import REPO

VENV_BIN = os.path.dirname(sys.executable)

SYSTEMCTL = """#!/bin/sh
# systemctl stand-in: records argv, keeps per-unit state in files
echo "$*" >> "$STATE/calls"
case "$1" in
  is-enabled) [ -e "$STATE/enabled-$3" ] ;;
  is-active) [ -e "$STATE/active-$3" ] ;;
  enable) touch "$STATE/enabled-$2" ;;
  start|restart) touch "$STATE/active-$2" ;;
  daemon-reload) ;;
  *) exit 1 ;;
esac
"""


def _script():
    loader = importlib.machinery.SourceFileLoader("netlab_bootstrap_cli",
                                                  str(REPO / "netlab-bootstrap"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def _args(tmp_path, **kw):
    ns = argparse.Namespace(
        id="netnode", interface=None, dhcp="full", probe_timeout=1.0,
        venv=str(os.path.dirname(VENV_BIN)), no_install=True, service_control="process",
        gitfs=None, gitfs_branch="main", config_dir=str(tmp_path / "etc"),
        unit_dir=str(tmp_path / "units"), pillar_dir=str(tmp_path / "pillar"),
        salt_dir=str(tmp_path / "salt"))
    for key, value in kw.items():
        setattr(ns, key, value)
    return ns


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze missing")
@pytest.mark.parametrize("daemon", ["salt-master", "salt-minion"])
def test_unit_files_verify(tmp_path, daemon):
    unit = tmp_path / "{}.service".format(nb.unit_name(daemon, True))
    unit.write_text(nb.unit_file(daemon, VENV_BIN, "/etc/salt"))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bad = tmp_path / "bad.service"
    bad.write_text(nb.unit_file(daemon, "/nonexistent/bin", "/etc/salt"))
    proc = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode != 0 and "not executable" in proc.stderr  # it does check


def test_systemd_path_is_idempotent_against_a_recording_systemctl(tmp_path, monkeypatch):
    cli = _script()
    state = tmp_path / "state"
    state.mkdir()
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "systemctl").write_text(SYSTEMCTL)
    os.chmod(fake / "systemctl", 0o755)
    monkeypatch.setenv("STATE", str(state))
    monkeypatch.setenv("PATH", "{}:{}".format(fake, os.environ["PATH"]))
    boot = cli.Bootstrap(_args(tmp_path))
    boot.mode = "systemd"  # as chosen where /run/systemd/system exists
    boot.bin = cli.pathlib.Path(VENV_BIN)

    boot.start("salt-master", restart=False)
    unit = tmp_path / "units" / "netlab-salt-master.service"
    assert unit.read_text() == nb.unit_file("salt-master", boot.bin, boot.conf_dir)
    calls = (state / "calls").read_text().splitlines()
    assert [c for c in calls if not c.startswith("is-")] == [
        "daemon-reload", "enable netlab-salt-master", "start netlab-salt-master"]
    assert boot.changes == ["wrote {}".format(unit), "enabled netlab-salt-master",
                            "started netlab-salt-master"]

    boot.changes.clear()
    (state / "calls").write_text("")
    boot.start("salt-master", restart=False)  # a re-run
    assert boot.changes == []
    assert all(c.startswith("is-") for c in (state / "calls").read_text().splitlines())

    boot.start("salt-master", restart=True)  # its config changed
    assert boot.changes == ["restarted netlab-salt-master"]

    # a unit file netlab did not write: refused in the plan, before anything changes
    (tmp_path / "units" / "netlab-salt-minion.service").write_text("[Service]\n")
    with pytest.raises(nb.BootstrapError, match="netlab-salt-minion.service alone"):
        (tmp_path / "pillar" / "netlab").mkdir(parents=True)
        (tmp_path / "pillar" / "netlab" / "lab.sls").write_text("netlab: {}\n")
        boot.plan()
    assert not (tmp_path / "etc").exists()


def test_service_mode_here_and_refused_systemd(tmp_path, capsys):
    cli = _script()
    assert not os.path.isdir("/run/systemd/system"), "this test expects no systemd"
    assert cli.Bootstrap(_args(tmp_path, service_control="auto")).mode == "process"
    rc = cli.main(["--service-control", "systemd", "--config-dir", str(tmp_path / "etc"),
                   "--pillar-dir", str(tmp_path / "pillar"), "--no-install"])
    assert rc == 2
    assert "systemd does not run on this machine" in capsys.readouterr().out
    assert not (tmp_path / "etc").exists() and not (tmp_path / "pillar").exists()
