"""
The networking node installs the commands its lab's power drivers run
(netlab.netnode.power): ipmitool for an ``ipmi`` node, ping for a ``wol`` node
(its ``off`` waits until the node stops answering ping). Applied with
salt-call --local in test mode, so Salt's real pkg module answers from dpkg;
both packages are in test/apt-packages.txt, so they are already installed.
"""

import copy
import pathlib

from lib.saltlocal import SaltLocal, failed
from test_netnode_builds import pillar_for

REPO = pathlib.Path(__file__).resolve().parents[2]
SID = "netlab-netnode-power-pkg-installed"


def _lab(tmp_path, drivers):
    raw = copy.deepcopy(pillar_for(tmp_path))
    raw["lookup"]["install_packages"] = True
    for node_id, power in drivers.items():
        raw["nodes"][node_id]["power"] = power
    return raw


def test_power_commands_are_installed_for_the_drivers_in_use(tmp_path):
    ipmi = {"driver": "ipmi", "address": "127.78.0.111", "username": "admin",
            "password": "bmc-secret"}
    raw = _lab(tmp_path, {"nuc1": ipmi, "nuc2": {"driver": "wol"},
                          "nuc3": {"driver": "manual"}})
    salt = SaltLocal(tmp_path / "salt", REPO, {"netlab": raw})
    salt.sync()
    shown = salt.call("state.show_sls", "netlab.netnode.power")
    assert list(shown) == [SID], shown
    pkg = [a for a in shown[SID]["pkg"] if isinstance(a, dict) and "pkgs" in a]
    assert pkg == [{"pkgs": ["ipmitool", "iputils-ping"]}]
    ret = salt.apply("netlab.netnode.power", test=True)
    assert not failed(ret), failed(ret)
    assert ret[SID]["result"] is True, ret[SID]  # installed already: nothing to do
    assert "already installed" in ret[SID]["comment"], ret[SID]

    # only drivers that run nothing here: no package state at all
    salt.set_pillar({"netlab": _lab(tmp_path, {n: {"driver": "manual"}
                                                for n in ("nuc1", "nuc2", "nuc3")})})
    assert SID not in salt.apply("netlab.netnode.power", test=True)
