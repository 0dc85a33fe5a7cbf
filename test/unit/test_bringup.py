"""
netlab_bringup's reimage and boot pipelines with fake collaborators: a fake clock,
a scripted stream of minion start events, fake power drivers and root resets.
"""

import pytest

import netlab_bringup


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Driver:
    def __init__(self, log, node, can_off_on=True, status="off", done=True, fail=None):
        self.log, self.node, self.can_off_on = log, node, can_off_on
        self._status, self.done, self.fail = status, done, fail

    def _act(self, what):
        self.log.append((self.node, what))
        if self.fail == what:
            raise RuntimeError("{} failed".format(what))
        return {"done": self.done, "message": "{} {}".format(what, self.node)}

    def off(self):
        return self._act("off")

    def on(self):
        return self._act("on")

    def cycle(self):
        return self._act("cycle")

    def status(self):
        return self._status


class Fake:
    """Every collaborator, recording what the pipeline asked for."""

    def __init__(self, starts=None, reset_fails=(), exports_fail=False):
        self.clock = Clock()
        self.log = []
        self.events = []
        self.starts = dict(starts or {})   # node -> seconds after its power on
        self.powered = {}
        self.reset_fails = reset_fails
        self.exports_fail = exports_fail
        self.generations = {}

    def record(self, node, state, result=None, reason=None):
        self.events.append((node, state, result or reason))
        if state == "booting":
            self.powered[node] = self.clock()

    def fire(self, node, state, **data):
        self.events.append((node, state, data.get("message")))

    def next_start(self, wait):
        due = sorted((self.powered[n] + s, n) for n, s in self.starts.items()
                     if n in self.powered)
        for at, node in due:
            if at >= self.clock.now - 1e-9 and at <= self.clock.now + wait:
                self.clock.now = at
                del self.starts[node]
                return node
        self.clock.now += wait
        return None

    def reset(self, node, gen):
        self.log.append((node, "reset", gen))
        if node in self.reset_fails:
            raise RuntimeError("no space left")
        return {"method": "copy", "total_seconds": 2.0, "clone_seconds": 1.5}

    def commit(self, node, gen, text):
        self.generations[node] = gen

    def refresh_exports(self):
        self.log.append(("*", "exports"))
        if self.exports_fail:
            raise RuntimeError("ganesha did not restart")

    def master(self):
        return netlab_bringup.Master(
            record=self.record, fire=self.fire, next_start=self.next_start,
            hint=lambda node: "console of " + node, reset=self.reset, commit=self.commit,
            generation=lambda node: self.generations.get(node, 0),
            refresh_exports=self.refresh_exports, clock=self.clock,
            spare=lambda: self.log.append(("*", "spare")))


def drivers(fake, nodes, **kw):
    return {n: Driver(fake.log, n, **kw) for n in nodes}


def test_reimage_resets_all_then_exports_once_then_powers_on_and_waits():
    fake = Fake(starts={"nuc2": 40, "nuc3": 70})
    ret = netlab_bringup.reimage(fake.master(), drivers(fake, ["nuc2", "nuc3"]), 600)
    assert ret["failed"] == [] and ret["retcode"] == 0
    # the next reset's spare root is made once the nodes are powered on (they boot
    # meanwhile), not while a reset waits for it
    assert fake.log == [("nuc2", "off"), ("nuc2", "reset", 1), ("nuc3", "off"),
                        ("nuc3", "reset", 1), ("*", "exports"), ("nuc2", "on"), ("nuc3", "on"),
                        ("*", "spare")]
    nuc2 = ret["nodes"]["nuc2"]
    assert nuc2["state"] == "up" and nuc2["generation"] == 1 and nuc2["method"] == "copy"
    assert nuc2["boot_seconds"] == 40.0 and nuc2["result"] == \
        "minion started 40 s after power on"
    assert ret["nodes"]["nuc3"]["boot_seconds"] == 70.0
    assert fake.generations == {"nuc2": 1, "nuc3": 1}
    states = [(n, s) for n, s, _ in fake.events]
    assert states == [("nuc2", "reimaging"), ("nuc3", "reimaging"), ("nuc2", "booting"),
                      ("nuc3", "booting"), ("nuc2", "up"), ("nuc3", "up")]


def test_reimage_a_node_that_does_not_start_fails_with_the_hint_the_others_go_on():
    fake = Fake(starts={"nuc2": 30})
    ret = netlab_bringup.reimage(fake.master(), drivers(fake, ["nuc2", "nuc3"]), 300)
    assert ret["failed"] == ["nuc3"] and ret["retcode"] == 1
    assert ret["nodes"]["nuc3"]["reason"] == (
        "node nuc3: no salt/minion/nuc3/start event within 300 s after power on "
        "(console of nuc3)")
    assert ret["nodes"]["nuc2"]["state"] == "up"


def test_reimage_a_failed_reset_leaves_that_node_out_and_names_it():
    fake = Fake(starts={"nuc2": 10, "nuc3": 10}, reset_fails=("nuc3",))
    ret = netlab_bringup.reimage(fake.master(), drivers(fake, ["nuc2", "nuc3"]), 300)
    assert ret["failed"] == ["nuc3"]
    assert ret["nodes"]["nuc3"]["reason"] == "node nuc3: no space left"
    assert ("nuc3", "on") not in fake.log and ("nuc2", "on") in fake.log
    assert fake.log[-1] == ("*", "spare")


def test_reimage_with_every_reset_failed_makes_no_spare():
    fake = Fake(reset_fails=("nuc2",))
    ret = netlab_bringup.reimage(fake.master(), drivers(fake, ["nuc2"]), 300)
    assert ret["failed"] == ["nuc2"] and ("*", "spare") not in fake.log


def test_reimage_failed_exports_fail_every_reset_node_and_power_nothing_on():
    fake = Fake(starts={"nuc2": 10}, exports_fail=True)
    ret = netlab_bringup.reimage(fake.master(), drivers(fake, ["nuc2"]), 300)
    assert ret["failed"] == ["nuc2"]
    assert ret["nodes"]["nuc2"]["reason"] == \
        "node nuc2: NFS exports not refreshed: ganesha did not restart"
    assert ("nuc2", "on") not in fake.log
    assert fake.log[-1] == ("*", "spare")  # the replaced root is still deleted


def test_reimage_manual_power_asks_a_person_and_cycles_without_off():
    fake = Fake(starts={"nuc2": 5})
    drv = drivers(fake, ["nuc2"], can_off_on=False, done=False)
    ret = netlab_bringup.reimage(fake.master(), drv, 300)
    assert fake.log == [("nuc2", "reset", 1), ("*", "exports"), ("nuc2", "cycle"),
                        ("*", "spare")]
    assert ("nuc2", "action-needed", "cycle nuc2") in fake.events
    assert ret["nodes"]["nuc2"]["power"] == "cycle nuc2"


def test_a_start_after_the_deadline_does_not_count():
    fake = Fake(starts={"nuc2": 61})
    ret = netlab_bringup.boot(fake.master(), drivers(fake, ["nuc2"]), 60)
    assert ret["failed"] == ["nuc2"]
    assert ret["nodes"]["nuc2"]["reason"] == \
        "node nuc2: no salt/minion/nuc2/start event within 60 s (console of nuc2)"


@pytest.mark.parametrize("status,action", [("off", "on"), ("on", "cycle")])
def test_boot_powers_on_an_off_node_and_cycles_a_running_one(status, action):
    fake = Fake(starts={"nuc2": 20})
    ret = netlab_bringup.boot(fake.master(), drivers(fake, ["nuc2"], status=status), 600)
    assert fake.log == [("nuc2", action)]
    assert ret == {"nodes": {"nuc2": {"state": "up",
                                      "result": "minion started 20 s after power on"}},
                   "failed": [], "retcode": 0}


def test_boot_a_power_error_fails_that_node_only():
    fake = Fake(starts={"nuc3": 5})
    drv = drivers(fake, ["nuc2", "nuc3"])
    drv["nuc2"].fail = "on"
    ret = netlab_bringup.boot(fake.master(), drv, 600)
    assert ret["failed"] == ["nuc2"] and ret["nodes"]["nuc2"]["reason"] == "on failed"
    assert ret["nodes"]["nuc3"]["state"] == "up"
