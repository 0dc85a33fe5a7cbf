"""
wol "off" on a real segment: a running machine that drops ICMP answers the ARP probe,
so it is not taken for off (its root would be reset under it); an address nobody
holds answers neither.
"""

import json
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
sys.path.insert(0, {utils!r})
import netlab_power
print(json.dumps([netlab_power.arp_answers("br0", ip, "10.79.0.2", timeout=2)
                  for ip in ("10.79.0.21", "10.79.0.99")]))
"""


def test_arp_probe_sees_a_node_that_drops_ping(segment_factory):
    seg = segment_factory(cidr="10.79.0.0/24", server_ip="10.79.0.2")
    node = seg.add_client("node", "52:54:00:6f:00:21", ip="10.79.0.21")
    # the node drops every ICMP echo (ping would get no answer and call it off)
    node.run(["sysctl", "-q", "-w", "net.ipv4.icmp_echo_ignore_all=1"])
    assert node.run(["sysctl", "-n", "net.ipv4.icmp_echo_ignore_all"]).stdout.strip() == "1"
    out = seg.server.run([sys.executable, "-c", PROBE.format(utils=str(REPO / "_utils"))])
    assert json.loads(out.stdout) == [True, False]
