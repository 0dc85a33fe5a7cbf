"""
netlab_params: the defaults Python code falls back to are the ones of
netlab/parameters/defaults.yaml (what map.jinja gives a state run), so a runner
reading the raw ``netlab:lookup`` pillar and a state agree on every path.
"""

import pytest

import netlab_params


def _leaves(tree, prefix=()):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, prefix + (key,))
        else:
            yield prefix + (key,), value


@pytest.mark.parametrize("path,value", list(_leaves(netlab_params.DEFAULTS)))
def test_every_python_default_is_the_one_of_defaults_yaml(path, value, platform_defaults):
    node = platform_defaults
    for key in path:
        node = node[key]
    assert node == value


def test_fallbacks_apply_only_to_unset_values():
    assert netlab_params.run_dir(None) == "/run/netlab"
    assert netlab_params.run_dir({"run_dir": "/tmp/r"}) == "/tmp/r"
    assert netlab_params.leasefile({}) == "/var/lib/misc/netlab-dnsmasq.leases"
    assert netlab_params.leasefile({"leasefile": "/x"}) == "/x"
    assert netlab_params.devpi_venv({"cache": {}}) == "/opt/netlab-devpi"
    assert netlab_params.service_control({}) == "service"


def test_dnsmasq_has_its_own_log_only_in_process_mode():
    assert netlab_params.dnsmasq_log({"service_control": "service"}) == ""
    assert netlab_params.dnsmasq_log({"service_control": "none"}) == ""
    assert netlab_params.dnsmasq_log({"service_control": "process", "run_dir": "/r"}) == \
        "/r/dnsmasq.log"


@pytest.mark.parametrize("bad", ["systemd", "", None])
def test_an_unknown_service_control_names_the_key(bad):
    with pytest.raises(netlab_params.ParamError,
                       match="netlab:lookup:service_control: .* is not one of: service, "
                             "process, none"):
        netlab_params.service_control({"service_control": bad})
