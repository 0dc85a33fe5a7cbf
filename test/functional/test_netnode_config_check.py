"""
A config dnsmasq refuses keeps the old one and the running dnsmasq; a config
nginx refuses leaves nginx running and fails every run until it passes
(docs/networking.rst, "Checked before restart").

``netlab.netnode.dnsmasq`` in process mode starts a real dnsmasq inside a network
namespace the test creates (lib.netnodelab, as the e2e tier does); then the
rendered config gets a line dnsmasq refuses (the template, changed in a file_roots
overlay searched before the checkout: the lab model admits no pillar value
dnsmasq would refuse). The state fails with dnsmasq's own complaint, the old file
stays, and the same dnsmasq process keeps running.
"""

import contextlib
import time

import netlab_proc
import netlab_saltcompat
from conftest import REPO
from lib.netns import Segment
from lib.netnodelab import NetnodeLab
from lib.saltlocal import SaltLocal

SLS = "netlab.netnode.dnsmasq"
TEMPLATE = "netlab/files/netnode/dnsmasq.conf.jinja"


@contextlib.contextmanager
def _netnode(tmp_path, net):
    """A namespace ``10.<net>.0.0/24`` with a networking node in process mode (one
    node in pillar); its daemons stopped and the namespace removed afterwards."""
    seg = Segment(cidr="10.{}.0.0/24".format(net), server_ip="10.{}.0.2".format(net),
                  server_private_mounts=False)
    nn = None
    try:
        # the image's salt-minion is this Salt: never newer than the master (3006)
        nn = NetnodeLab(seg, tmp_path, dhcp_mode="proxy", http_port=8080, nodes={
            "nuc1": {"mac": "52:54:00:{}:00:11".format(net), "ip": "10.{}.0.11".format(net),
                     "role": "controller"}},
            extra={"image": {"salt_version": netlab_saltcompat.salt_version()}})
        yield nn
    finally:
        if nn is not None:
            nn.stop()
        seg.destroy()


def _use_templates(nn, tmp_path, changed=None):
    """Salt for ``nn`` with the checkout's templates, ``changed`` ({template: text
    appended}) put in a file_roots overlay searched first."""
    overlay = None
    if changed:
        overlay = tmp_path / "overlay"
        for template, extra in changed.items():
            (overlay / template).parent.mkdir(parents=True, exist_ok=True)
            (overlay / template).write_text((REPO / template).read_text() + extra)
    nn.salt = SaltLocal(nn.root / "salt", REPO, {"netlab": nn.pillar},
                        prefix=nn.segment.server.prefix, overlay=overlay)


def test_a_refused_dnsmasq_config_keeps_the_old_file_and_the_daemon(tmp_path):
    t0 = time.monotonic()
    with _netnode(tmp_path, 79) as nn:
        nn.apply(sls=SLS)
        pid = nn.pids()["dnsmasq"]
        assert netlab_proc.alive(pid)
        conf = nn.etc / "dnsmasq.conf"
        old = conf.read_text()

        _use_templates(nn, tmp_path, {TEMPLATE: "\ndhcp-range=not-an-address\n"})
        ret = nn.apply(sls=SLS, expect_ok=False)
        managed = ret["netlab-netnode-dnsmasq-file-managed-conf"]
        assert managed["result"] is False and managed["changes"] == {}, managed
        # Salt's check_cmd failed, with dnsmasq --test's own words
        assert managed["comment"].startswith("check_cmd execution failed"), managed
        assert "dnsmasq: bad dhcp-range at line" in managed["comment"], managed
        running = ret["netlab-netnode-dnsmasq-netlab_daemon-running"]
        assert running["result"] is False and running["changes"] == {}, running
        assert conf.read_text() == old
        assert nn.pids()["dnsmasq"] == pid and netlab_proc.alive(pid)
    print("\nrefused dnsmasq config: {:.1f} s".format(time.monotonic() - t0))


NGINX_SLS = "netlab.netnode.http"
NGINX_TEMPLATE = "netlab/files/netnode/nginx-server.conf.jinja"


def test_a_refused_nginx_config_keeps_nginx_running_and_fails_every_run_until_fixed(
        tmp_path):
    """nginx reads its includes itself, so its new server block is written and
    then checked (``nginx -t``): a config nginx refuses fails the check, nginx
    keeps running (same pid, not restarted), and the next run fails at the check
    again instead of passing with the refused config on disk. The good config
    back: the check passes, nginx restarts once."""
    with _netnode(tmp_path, 78) as nn:
        nn.apply(sls=NGINX_SLS)
        pid = nn.pids()["nginx"]
        assert netlab_proc.alive(pid)

        _use_templates(nn, tmp_path, {NGINX_TEMPLATE: "\nnot_an_nginx_directive on;\n"})
        for attempt in ("first", "second"):
            ret = nn.apply(sls=NGINX_SLS, expect_ok=False)
            check = ret["netlab-netnode-http-netlab_daemon-config_valid"]
            assert check["result"] is False and check["changes"] == {}, (attempt, check)
            assert check["comment"].startswith("nginx's configuration is refused by"), check
            assert 'unknown directive "not_an_nginx_directive"' in check["comment"], check
            running = ret["netlab-netnode-http-netlab_daemon-running"]
            assert running["result"] is False and running["changes"] == {}, (attempt, running)
            assert nn.pids()["nginx"] == pid and netlab_proc.alive(pid), attempt

        _use_templates(nn, tmp_path)  # the checkout's template again
        ret = nn.apply(sls=NGINX_SLS)
        check = ret["netlab-netnode-http-netlab_daemon-config_valid"]
        assert check["result"] is True and check["changes"] == {}, check
        assert ret["netlab-netnode-http-netlab_daemon-running"]["changes"], ret
        assert nn.pids()["nginx"] != pid and not netlab_proc.alive(pid)
        assert netlab_proc.alive(nn.pids()["nginx"])
        again = nn.apply(sls=NGINX_SLS)
        assert not [k for k, v in again.items() if v.get("changes")], again
