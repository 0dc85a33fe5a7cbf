"""netlab.deps: netaddr in Salt's own Python, installed or a clear failure."""

import copy
import pathlib
import subprocess
import sys
import sysconfig

import pytest
import yaml

from lib.saltlocal import SaltLocal

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture()
def salt(tmp_path, example_pillar):
    local = SaltLocal(tmp_path / "salt", REPO, pillar={"netlab": copy.deepcopy(example_pillar)})
    local.sync()
    return local


def test_deps_is_a_no_op_when_netaddr_is_there(salt):
    ret = salt.apply("netlab.deps")
    assert list(ret) == ["netlab-deps-test-succeed_without_changes"]
    (only,) = ret.values()
    assert only["result"] is True and not only["changes"]
    assert only["name"].startswith("netaddr is importable by Salt's Python (")


def _without_netaddr(salt, tmp_path):
    """A Python that cannot import netaddr stands in for Salt's own Python (the
    check); the install itself goes through Salt's pip module, as on a real minion."""
    fake = tmp_path / "python-without-netaddr"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    conf = salt.conf_dir / "minion"
    data = yaml.safe_load(conf.read_text())
    data["grains"] = {"pythonexecutable": str(fake)}
    conf.write_text(yaml.safe_dump(data))
    return fake


def test_deps_install_path_runs_pip_and_succeeds(salt, tmp_path):
    """The real pip.installed of netaddr into the minion's Python (which has it: pip
    says so, nothing is downloaded) and no failure message."""
    _without_netaddr(salt, tmp_path)
    ret = salt.apply("netlab.deps")
    pip = ret["netlab-deps-pip-installed-netaddr"]
    assert pip["result"] is True, pip
    assert "netaddr" in pip["comment"] and "already installed" in pip["comment"], pip
    fail = ret["netlab-deps-test-fail_without_changes"]
    # the failure message did not run: its onfail requisite (the install) succeeded
    assert fail["result"] is True and not fail["changes"], fail
    assert "onfail" in fail["comment"], fail


def test_deps_failure_path_names_what_to_do(salt, tmp_path, monkeypatch):
    """pip itself cannot run (a pip that only fails shadows the real one): the
    install fails and the run fails with the instructions, naming the Python."""
    fake = _without_netaddr(salt, tmp_path)
    broken = tmp_path / "broken-pip" / "pip"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("")
    (broken / "__main__.py").write_text(
        "import sys\nsys.stderr.write('pip: no index can be reached\\n')\nsys.exit(1)\n")
    monkeypatch.setenv("PYTHONPATH", str(broken.parent))
    ret = salt.apply("netlab.deps")
    pip = ret["netlab-deps-pip-installed-netaddr"]
    assert pip["result"] is False, pip
    fail = ret["netlab-deps-test-fail_without_changes"]
    assert fail["result"] is False, fail
    assert "salt-pip install netaddr" in fail["name"] and str(fake) in fail["name"]


def test_deps_without_netaddr_installs_or_fails_with_instructions(salt, tmp_path):
    fake = _without_netaddr(salt, tmp_path)
    states = salt.call("state.show_sls", "netlab.deps")
    assert set(states) == {"netlab-deps-pip-installed-netaddr",
                           "netlab-deps-test-fail_without_changes"}
    fail = states["netlab-deps-test-fail_without_changes"]["test"]
    message = [a for a in fail if isinstance(a, dict) and "name" in a][0]["name"]
    assert "salt-pip install netaddr" in message and str(fake) in message
    onfail = [a for a in fail if isinstance(a, dict) and "onfail" in a][0]["onfail"]
    assert onfail == [{"pip": "netlab-deps-pip-installed-netaddr"}]


def _salt_python_without_netaddr(tmp_path):
    """A venv whose Python runs this Salt (it sees the test venv's packages through a
    directory of links) but has no netaddr: Salt's own Python on a fresh machine."""
    venv = tmp_path / "salt-python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                   capture_output=True)
    python = venv / "bin" / "python"
    shared = tmp_path / "shared-site-packages"
    shared.mkdir()
    for entry in pathlib.Path(sysconfig.get_paths()["purelib"]).iterdir():
        name = entry.name.lower()
        if name.startswith(("netaddr", "pip", "_distutils_hack")) or name.endswith(".pth"):
            continue
        (shared / entry.name).symlink_to(entry)
    own = subprocess.run([str(python), "-c",
                          "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True).stdout.strip()
    (pathlib.Path(own) / "netlab-test-shared.pth").write_text(str(shared) + "\n")
    return python


def _imports_netaddr(python):
    return subprocess.run([str(python), "-c", "import netaddr, sys; print(netaddr.__file__)"],
                          capture_output=True, text=True, check=False)


def test_deps_really_installs_netaddr_into_salts_python(tmp_path, example_pillar):
    """The install path for real: salt-call runs on a Python without netaddr;
    netlab.deps installs it with that Python's pip (from the package index pip is
    configured with), after which that Python imports it from its own
    site-packages; the next apply changes nothing."""
    python = _salt_python_without_netaddr(tmp_path)
    assert _imports_netaddr(python).returncode != 0
    local = SaltLocal(tmp_path / "salt", REPO, pillar={"netlab": copy.deepcopy(example_pillar)},
                      prefix=[str(python)])
    ret = local.apply("netlab.deps")
    pip = ret["netlab-deps-pip-installed-netaddr"]
    assert pip["result"] is True, pip
    assert [v for k, v in pip["changes"].items() if k.startswith("netaddr")] == [
        "Installed"], pip
    fail = ret["netlab-deps-test-fail_without_changes"]
    assert fail["result"] is True and not fail["changes"], fail
    found = _imports_netaddr(python)
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith(str(tmp_path / "salt-python")), found.stdout
    again = local.apply("netlab.deps")
    assert list(again) == ["netlab-deps-test-succeed_without_changes"], again
    assert str(python) in next(iter(again.values()))["name"]
