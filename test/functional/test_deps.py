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
    assert len(ret) == 1
    (only,) = ret.values()
    assert only["result"] is True and not only["changes"]
    assert "netaddr is importable" in only["comment"] or "netaddr" in only["name"]


def test_deps_without_netaddr_installs_or_fails_with_instructions(salt, tmp_path):
    # a Python that cannot import netaddr stands in for Salt's own Python
    fake = tmp_path / "python-without-netaddr"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    conf = salt.conf_dir / "minion"
    data = yaml.safe_load(conf.read_text())
    data["grains"] = {"pythonexecutable": str(fake)}
    conf.write_text(yaml.safe_dump(data))
    states = salt.call("state.show_sls", "netlab.deps")
    assert set(states) == {"netlab-deps-pip-installed-netaddr",
                           "netlab-deps-test-fail_without_changes"}
    fail = states["netlab-deps-test-fail_without_changes"]["test"]
    message = [a for a in fail if isinstance(a, dict) and "name" in a][0]["name"]
    assert "salt-pip install netaddr" in message and str(fake) in message
    onfail = [a for a in fail if isinstance(a, dict) and "onfail" in a][0]["onfail"]
    assert onfail == [{"pip": "netlab-deps-pip-installed-netaddr"}]
