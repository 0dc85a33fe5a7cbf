"""netlab.deps: netaddr in Salt's own Python, installed or a clear failure."""

import copy
import pathlib

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
