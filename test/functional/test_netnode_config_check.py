"""
A config dnsmasq refuses keeps the old one and the running dnsmasq
(docs/networking.rst, "Checked before restart").

``netlab.netnode.dnsmasq`` in process mode starts a real dnsmasq inside a network
namespace the test creates (lib.netnodelab, as the e2e tier does); then the
rendered config gets a line dnsmasq refuses (the template, changed in a file_roots
overlay searched before the checkout: the lab model admits no pillar value
dnsmasq would refuse). The state fails with dnsmasq's own complaint, the old file
stays, and the same dnsmasq process keeps running.
"""

import time

import netlab_proc
import netlab_saltcompat
from conftest import REPO
from lib.netns import Segment
from lib.netnodelab import NetnodeLab
from lib.saltlocal import SaltLocal

SLS = "netlab.netnode.dnsmasq"
TEMPLATE = "netlab/files/netnode/dnsmasq.conf.jinja"


def test_a_refused_dnsmasq_config_keeps_the_old_file_and_the_daemon(tmp_path):
    t0 = time.monotonic()
    seg = Segment(cidr="10.79.0.0/24", server_ip="10.79.0.2", server_private_mounts=False)
    nn = None
    try:
        # the image's salt-minion is this Salt: never newer than the master (3006)
        nn = NetnodeLab(seg, tmp_path, dhcp_mode="proxy", http_port=8080, nodes={
            "nuc1": {"mac": "52:54:00:79:00:11", "ip": "10.79.0.11", "role": "controller"}},
            extra={"image": {"salt_version": netlab_saltcompat.salt_version()}})
        nn.apply(sls=SLS)
        pid = nn.pids()["dnsmasq"]
        assert netlab_proc.alive(pid)
        conf = nn.etc / "dnsmasq.conf"
        old = conf.read_text()

        overlay = tmp_path / "overlay"
        (overlay / TEMPLATE).parent.mkdir(parents=True)
        (overlay / TEMPLATE).write_text((REPO / TEMPLATE).read_text() +
                                        "\ndhcp-range=not-an-address\n")
        nn.salt = SaltLocal(nn.root / "salt", REPO, {"netlab": nn.pillar},
                            prefix=seg.server.prefix, overlay=overlay)
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
    finally:
        if nn is not None:
            nn.stop()
        seg.destroy()
    print("\nrefused dnsmasq config: {:.1f} s".format(time.monotonic() - t0))
