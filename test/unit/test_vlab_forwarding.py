"""IPv4 forwarding shared by virtual labs and the test suite's uplinks
(tools/vlab.py): whoever switches it on keeps the value before, and only the last
user to go puts it back. Files stand in for /proc's switch and the record; a list
stands in for nftables' tables."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import vlab  # noqa: E402  pylint: disable=wrong-import-position


class Host:
    def __init__(self, tmp_path, forward="0"):
        self.proc, self.before = tmp_path / "ip_forward", tmp_path / "before"
        self.proc.write_text(forward + "\n")
        self.tables = ["filter", "nat"]   # tables of others: not forwarding users

    def forward(self):
        return self.proc.read_text().strip()

    def acquire(self, table):
        self.tables.append(table)  # its NAT table first, as the lab and the uplink do
        return vlab.forwarding_acquire(proc=str(self.proc), before=str(self.before))

    def release(self, table, fallback=None):
        self.tables.remove(table)
        return vlab.forwarding_release(table, fallback=fallback, proc=str(self.proc),
                                       before=str(self.before), tables=lambda: self.tables)


def test_a_test_uplink_going_away_leaves_a_running_lab_its_forwarding(tmp_path):
    host = Host(tmp_path)
    assert host.acquire("netlab_uplink_a1") is True and host.forward() == "1"
    assert host.acquire("netlab_vlab_b2") is False   # already on
    # the uplink goes first: the lab still routes out through this machine
    assert host.release("netlab_uplink_a1") is False
    assert host.forward() == "1"
    # the lab is the last one: the value from before netlab comes back
    assert host.release("netlab_vlab_b2") is True
    assert host.forward() == "0" and not host.before.exists()


def test_forwarding_that_was_on_before_stays_on(tmp_path):
    host = Host(tmp_path, forward="1")
    assert host.acquire("netlab_vlab_b2") is False
    assert host.release("netlab_vlab_b2") is False
    assert host.forward() == "1"


def test_switched_off_under_a_running_lab_it_is_switched_on_again(tmp_path):
    """Something else switched forwarding off under a lab: its next ``up`` switches
    it on again, and ``down`` still restores the value from before the lab."""
    host = Host(tmp_path)
    host.acquire("netlab_vlab_b2")
    host.proc.write_text("0\n")
    assert vlab.forwarding_acquire(proc=str(host.proc), before=str(host.before)) is True
    assert host.forward() == "1" and host.before.read_text().strip() == "0"
    host.release("netlab_vlab_b2")
    assert host.forward() == "0"


def test_a_lab_made_before_the_shared_record_restores_its_own_value(tmp_path):
    host = Host(tmp_path, forward="1")
    host.tables.append("netlab_vlab_b2")
    assert host.release("netlab_vlab_b2", fallback="0") is True
    assert host.forward() == "0"
