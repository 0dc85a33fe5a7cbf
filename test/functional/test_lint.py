"""
salt-lint and yamllint on every SLS of the formula, as part of the tests.

salt-lint reads the SLS sources (Jinja included). yamllint checks YAML, so every
SLS is first rendered through Salt's Jinja renderer (salt-call --local, the
formula as file_roots, pillar.example as pillar) and the result is linted; plain
YAML files (parameters, pillar.example) are linted as they are.
"""

import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

import netlab_saltcompat

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
SLS = sorted(p.relative_to(REPO) for p in (REPO / "netlab").rglob("*.sls"))


def _tool(name):
    path = BIN / name
    return str(path) if path.exists() else shutil.which(name)


def test_there_are_sls_files():
    assert len(SLS) >= 1


def test_salt_lint_passes_on_every_sls():
    tool = _tool("salt-lint")
    assert tool, "salt-lint is not installed (test/requirements.txt)"
    proc = subprocess.run([tool, "-c", str(REPO / ".salt-lint")] + [str(p) for p in SLS],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_yamllint_passes_on_plain_yaml():
    tool = _tool("yamllint")
    assert tool, "yamllint is not installed (test/requirements.txt)"
    files = [str(REPO / "pillar.example")] + [
        str(p) for p in (REPO / "netlab" / "parameters").glob("*.yaml")]
    proc = subprocess.run([tool, "-s", "-c", str(REPO / ".yamllint")] + files,
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def local_minion(tmp_path_factory):
    """A salt-call --local setup: formula as file_roots, pillar.example as pillar."""
    root = tmp_path_factory.mktemp("lint-minion")
    pillar = root / "pillar"
    pillar.mkdir()
    lab = yaml.safe_load((REPO / "pillar.example").read_text())
    lab["netlab"]["netnode"]["storage"] = str(root / "srv")
    # the image's salt-minion is this Salt (never newer than the master): the SLS
    # render what they do for a valid lab, not the invalid-pillar check
    lab["netlab"]["image"]["salt_version"] = netlab_saltcompat.salt_version()
    (pillar / "top.sls").write_text("base:\n  '*':\n    - lab\n")
    (pillar / "lab.sls").write_text(yaml.safe_dump(lab))
    conf = root / "conf"
    conf.mkdir()
    (conf / "minion").write_text(yaml.safe_dump({
        "id": "netnode",
        "file_client": "local",
        "file_roots": {"base": [str(REPO)]},
        "pillar_roots": {"base": [str(pillar)]},
        "root_dir": str(root),
        "cachedir": str(root / "cache"),
        "pki_dir": str(root / "pki"),
        "sock_dir": str(root / "sock"),
        "log_file": str(root / "minion.log"),
    }))
    call = [str(BIN / "salt-call"), "--local", "-c", str(conf), "--out=yaml"]
    subprocess.run(call + ["saltutil.sync_all"], check=True, capture_output=True)
    return call


@pytest.mark.parametrize("sls", SLS, ids=[str(p) for p in SLS])
def test_yamllint_passes_on_rendered_sls(local_minion, sls, tmp_path):
    proc = subprocess.run(
        local_minion + ["slsutil.renderer", "salt://" + str(sls), "default_renderer=jinja",
                        "sls=" + str(sls.with_suffix("")).replace("/", ".")],
        capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rendered = yaml.safe_load(proc.stdout)["local"]
    assert isinstance(rendered, str), rendered
    out = tmp_path / sls.name
    out.write_text(rendered if rendered.endswith("\n") else rendered + "\n")
    proc = subprocess.run([_tool("yamllint"), "-s", "-c", str(REPO / ".yamllint"), str(out)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, "{}:\n{}\n--- rendered ---\n{}".format(
        sls, proc.stdout, rendered)
