"""
netlab-bootstrap's gitfs option with the Salt under test (both Salt lines):

* the master config it writes for ``--gitfs`` (a local bare repository holding
  the checkout's files as the remote) makes Salt's fileserver serve netlab from
  git: ``fileserver.update`` fetches it, ``fileserver.file_list`` lists the
  formula, and ``saltutil.sync_runners`` syncs netlab's runner from it;
* a remote without the branch, or not a git URL, is refused before anything is
  written.

Installing pinned Salt (and GitPython) into a new venv from PyPI:
test/e2e/test_bootstrap_salt_install.py (once, not per Salt line).
"""

import importlib.machinery
import importlib.util
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

import netlab_bootstrap as nb
from conftest import REPO

BIN = pathlib.Path(sys.executable).parent  # the Salt under test (3008 or 3006)


def _script():
    loader = importlib.machinery.SourceFileLoader("netlab_bootstrap_cli2",
                                                  str(REPO / "netlab-bootstrap"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def _git(*args, cwd=None):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t"] + list(args),
                          cwd=cwd, check=True, capture_output=True, text=True).stdout


def _remote(tmp_path):
    """A bare repository whose branch main holds the checkout's files."""
    work = tmp_path / "src"
    work.mkdir()
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        if (REPO / name).is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, work / name)
    _git("init", "-q", "-b", "main", cwd=work)
    _git("add", "-A", cwd=work)
    _git("commit", "-q", "-m", "netlab", cwd=work)
    bare = tmp_path / "netlab.git"
    _git("clone", "-q", "--bare", str(work), str(bare))
    return bare


def test_gitfs_config_serves_netlab_from_a_git_remote(tmp_path):
    cli = _script()
    bin_dir = BIN
    boot = cli.Bootstrap(cli.argparse.Namespace(
        config_dir=str(tmp_path / "etc"), pillar_dir=str(tmp_path / "pillar"),
        service_control="process", gitfs=None))
    assert "gitpython" in boot.gitfs_providers(bin_dir)  # test/requirements*.txt

    bare = _remote(tmp_path)
    gitfs = nb.gitfs_settings(str(bare), "main", boot.gitfs_providers(bin_dir))
    assert gitfs["url"] == "file://{}".format(bare)
    conf = tmp_path / "etc"
    (conf / "master.d").mkdir(parents=True)
    (conf / "master.d" / "netlab.conf").write_text(
        nb.master_conf("/nonexistent/checkout", "netnode", str(tmp_path / "pillar"),
                       str(tmp_path / "salt"), gitfs=gitfs))
    # the test's own settings in a file of its own (no key netlab's drop-in sets)
    (conf / "master").write_text(yaml.safe_dump({
        "root_dir": str(tmp_path / "root"), "user": "root",
        "log_file": str(tmp_path / "master.log")}))
    assert nb.foreign_master_keys({str(conf / "master"): (conf / "master").read_text()},
                                  nb.top_keys(nb.master_conf("/c", "netnode",
                                                             gitfs=gitfs))) == {}

    # the job cache dir a running master would have made (the runners run here, in
    # salt-run, without one)
    (tmp_path / "root" / "var" / "cache" / "salt" / "master" / "proc").mkdir(parents=True)

    def run(*argv):
        proc = subprocess.run([str(bin_dir / "salt-run"), "-c", str(conf), "--out=json"] +
                              list(argv), capture_output=True, text=True, timeout=600,
                              check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return yaml.safe_load(proc.stdout)

    run("fileserver.update", "backend=gitfs")
    files = run("fileserver.file_list")
    assert {"netlab/deploy.sls", "_runners/netlab.py", "_utils/netlab_lab.py",
            "_pillar/netlab.py"} <= set(files)
    synced = run("saltutil.sync_runners")
    assert "runners.netlab" in synced
    assert (tmp_path / "root" / "var" / "cache" / "salt" / "master" / "extmods" / "runners" /
            "netlab.py").read_text() == (REPO / "_runners" / "netlab.py").read_text()


def test_gitfs_remote_without_the_branch_is_refused_before_anything_changes(tmp_path,
                                                                             capsys):
    cli = _script()
    bare = _remote(tmp_path)
    pillar = tmp_path / "pillar"
    (pillar / "netlab").mkdir(parents=True)
    (pillar / "netlab" / "lab.sls").write_text("netlab: {}\n")  # no network probe
    rc = cli.main(["--gitfs", str(bare), "--gitfs-branch", "stable", "--no-install",
                   "--service-control", "process", "--config-dir", str(tmp_path / "etc"),
                   "--pillar-dir", str(pillar)])
    out = capsys.readouterr().out
    assert rc == 2, out
    assert "no branch 'stable' there (--gitfs-branch)" in out
    assert not (tmp_path / "etc").exists() and not (pillar / "top.sls").exists()
    rc = cli.main(["--gitfs", "netlab.git", "--config-dir", str(tmp_path / "etc"),
                   "--service-control", "process"])
    assert rc == 2 and "not a git remote URL" in capsys.readouterr().out
