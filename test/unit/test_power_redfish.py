"""The redfish power driver's requests and errors, with a fake ``urlopen``
(the real HTTPS path against an emulated BMC: test/e2e/test_power_emulated.py)."""

import copy
import io
import json
import urllib.error

import pytest

import netlab_lab
import netlab_power

SYSTEM = "/redfish/v1/Systems/1"


def lab(example_pillar, tmp_path, **extra):
    raw = copy.deepcopy(example_pillar)
    raw["netnode"]["storage"] = str(tmp_path / "srv")
    raw["nodes"]["nuc3"]["power"] = dict({"driver": "redfish", "address": "192.168.43.13",
                                          "username": "op", "password": "rf-secret"}, **extra)
    return netlab_lab.load(raw)


class FakeBmc:
    def __init__(self, power="Off", members=(SYSTEM,), fail=None):
        self.power, self.members, self.fail, self.calls = power, members, fail, []

    def __call__(self, req, timeout, context):
        body = json.loads(req.data) if req.data else None
        path = req.full_url.split(":443", 1)[1]
        self.calls.append((req.get_method(), path, body))
        assert req.headers["Authorization"].startswith("Basic ")
        if self.fail:
            raise self.fail
        if path == "/redfish/v1/Systems":
            out = {"Members": [{"@odata.id": m} for m in self.members]}
        elif req.get_method() == "GET":
            out = {"PowerState": self.power}
        else:
            out = None
        return io.BytesIO(json.dumps(out).encode() if out is not None else b"")


def test_on_from_off_sets_pxe_once_then_resets_on(example_pillar, tmp_path):
    bmc = FakeBmc()
    res = netlab_power.power(lab(example_pillar, tmp_path), "nuc3", "on", urlopen=bmc)
    assert bmc.calls == [
        ("GET", "/redfish/v1/Systems", None), ("GET", SYSTEM, None),
        ("PATCH", SYSTEM, {"Boot": {"BootSourceOverrideTarget": "Pxe",
                                    "BootSourceOverrideEnabled": "Once"}}),
        ("POST", SYSTEM + "/Actions/ComputerSystem.Reset", {"ResetType": "On"})]
    assert res["done"] and res["driver"] == "redfish"


def test_off_and_cycle_of_a_running_system(example_pillar, tmp_path):
    the_lab = lab(example_pillar, tmp_path, system="1", bootdev="none")
    bmc = FakeBmc(power="On")
    netlab_power.power(the_lab, "nuc3", "off", urlopen=bmc)
    netlab_power.power(the_lab, "nuc3", "cycle", urlopen=bmc)
    posts = [c[2]["ResetType"] for c in bmc.calls if c[0] == "POST"]
    assert posts == ["ForceOff", "ForceRestart"]
    assert not any(c[0] == "PATCH" for c in bmc.calls)  # bootdev: none
    assert not any(c[1] == "/redfish/v1/Systems" for c in bmc.calls)  # system given


def test_several_systems_need_a_name(example_pillar, tmp_path):
    bmc = FakeBmc(members=(SYSTEM, "/redfish/v1/Systems/2"))
    with pytest.raises(netlab_power.PowerError, match="the BMC lists 2 systems; name one in "
                       "netlab:nodes:nuc3:power:system"):
        netlab_power.power(lab(example_pillar, tmp_path), "nuc3", "status", urlopen=bmc)


def test_unreachable_bmc_error_hides_its_address(example_pillar, tmp_path):
    bmc = FakeBmc(fail=urllib.error.URLError("[Errno 113] No route to host 192.168.43.13"))
    with pytest.raises(netlab_power.PowerError) as exc:
        netlab_power.power(lab(example_pillar, tmp_path), "nuc3", "on", urlopen=bmc)
    text = str(exc.value)
    assert text.startswith("node nuc3: redfish power status failed: cannot reach")
    assert "192.168.43.13" not in text and "rf-secret" not in text


def test_public_power_hides_redfish_credentials(example_pillar, tmp_path):
    public = lab(example_pillar, tmp_path).public_power("nuc3")
    assert public == {"driver": "redfish"}
