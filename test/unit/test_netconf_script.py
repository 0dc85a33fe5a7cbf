"""
``netlab-netconf`` (the image's boot-time helper, run here from the formula's
overlay with /run, /etc and /proc/cmdline redirected to a temp dir): it writes
the resolver from what the initramfs recorded, whether that came from a DHCP
exchange of its own (pxelinux: ``ip=dhcp``) or from iPXE's lease handed over as a
static ``ip=`` (no domain in /run/net-*.conf: it comes from ``netlab.domain=``).
"""

import pathlib
import subprocess

import pytest

SCRIPT = (pathlib.Path(__file__).resolve().parents[2] / "netlab" / "files" / "image" /
          "overlay" / "usr" / "local" / "sbin" / "netlab-netconf")


@pytest.fixture
def netconf(tmp_path):
    """Run the script against tmp_path: ``run(conf, cmdline)`` returns resolv.conf."""
    (tmp_path / "run").mkdir()
    (tmp_path / "etc").mkdir()
    text = SCRIPT.read_text(encoding="utf-8")
    text = text.replace("/proc/cmdline", str(tmp_path / "cmdline"))
    text = text.replace("/run/", str(tmp_path / "run") + "/")
    text = text.replace("/etc/", str(tmp_path / "etc") + "/")
    text = text.replace('hostname "$HOSTNAME"',
                        'echo "$HOSTNAME" > {}/set-hostname'.format(tmp_path))
    (tmp_path / "netconf").write_text(text, encoding="utf-8")

    def run(conf, cmdline):
        (tmp_path / "run" / "net-ens3.conf").write_text(conf, encoding="utf-8")
        (tmp_path / "cmdline").write_text(cmdline + "\n", encoding="utf-8")
        subprocess.run(["sh", str(tmp_path / "netconf")], check=True)
        return (tmp_path / "etc" / "resolv.conf").read_text(encoding="utf-8").splitlines()
    run.tmp = tmp_path
    return run


# what klibc ipconfig writes for a static ip= with a dns0 field (checked against
# Debian 12's klibc-utils 2.0.12: PROTO='none', the domain empty)
STATIC = ("DEVICE='ens3'\nPROTO='none'\nIPV4ADDR='10.99.0.101'\nIPV4NETMASK='255.255.255.0'\n"
          "IPV4GATEWAY='10.99.0.1'\nIPV4DNS0='10.99.0.1'\nIPV4DNS1='0.0.0.0'\n"
          "HOSTNAME='node01'\nDNSDOMAIN=''\nDOMAINSEARCH=''\n")


def test_static_lease_takes_the_domain_from_the_kernel_command_line(netconf):
    resolv = netconf(STATIC, "root=/dev/nfs ip=10.99.0.101::10.99.0.1:255.255.255.0:node01::off:"
                             "10.99.0.1 BOOTIF=01-52-54-00-00-00-01 netlab.domain=lab.example rw")
    assert resolv == ["# written by netlab-netconf", "search lab.example", "nameserver 10.99.0.1"]
    assert (netconf.tmp / "set-hostname").read_text().strip() == "node01"


def test_an_empty_domain_writes_no_search_line(netconf):
    # iPXE expands a setting the DHCP server did not send to an empty string
    resolv = netconf(STATIC, "root=/dev/nfs netlab.domain= rw")
    assert resolv == ["# written by netlab-netconf", "nameserver 10.99.0.1"]


def test_a_dhcp_domain_wins_over_the_command_line(netconf):
    conf = STATIC.replace("DNSDOMAIN=''", "DNSDOMAIN='dhcp.example'")
    resolv = netconf(conf, "ip=dhcp netlab.domain=other.example")
    assert resolv[1] == "search dhcp.example"
