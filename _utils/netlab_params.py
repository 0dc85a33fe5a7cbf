"""
The platform parameters (``netlab:lookup``, merged over
``netlab/parameters/defaults.yaml`` by ``map.jinja``) as Python code reads them.

A state run gets them merged (``mapdata``). The runners, the ``netlab`` module's
reports and the bootstrap read the raw ``lookup`` pillar (or nothing at all), so
the defaults they fall back to live here, in one place, and nowhere else in
``_utils``. ``test/unit/test_params.py`` checks that they equal defaults.yaml.
"""

import os

# how netlab's daemons are run: Salt's service states, netlab_daemon's process
# supervision, or not at all (the caller runs them)
SERVICE_CONTROLS = ("service", "process", "none")

DEFAULTS = {
    "service_control": "service",
    "run_dir": "/run/netlab",
    "dnsmasq": {"leasefile": "/var/lib/misc/netlab-dnsmasq.leases"},
    "cache": {"devpi_venv": "/opt/netlab-devpi"},
}


class ParamError(ValueError):
    """A ``netlab:lookup`` value netlab cannot use; the message names the key."""


def service_control(params):
    """``service``, ``process`` or ``none``; anything else is refused."""
    control = (params or {}).get("service_control", DEFAULTS["service_control"])
    if control not in SERVICE_CONTROLS:
        raise ParamError("netlab:lookup:service_control: {!r} is not one of: {}".format(
            control, ", ".join(SERVICE_CONTROLS)))
    return control


def run_dir(params):
    """Where process mode keeps pid files, daemon logs and runtime configs."""
    return (params or {}).get("run_dir") or DEFAULTS["run_dir"]


def dnsmasq_log(params):
    """dnsmasq's own log file: only in process mode (in service mode it logs to
    syslog/the journal): ``''`` otherwise."""
    if service_control(params) != "process":
        return ""
    return os.path.join(run_dir(params), "dnsmasq.log")


def leasefile(dnsmasq_params):
    """dnsmasq's lease file (``lookup:dnsmasq:leasefile``)."""
    return (dnsmasq_params or {}).get("leasefile") or DEFAULTS["dnsmasq"]["leasefile"]


def devpi_venv(params):
    """The venv devpi-server runs from (``lookup:cache:devpi_venv``)."""
    return ((params or {}).get("cache") or {}).get("devpi_venv") or \
        DEFAULTS["cache"]["devpi_venv"]
