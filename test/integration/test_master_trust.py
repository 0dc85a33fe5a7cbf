"""
A lab node trusts its own master only, and the master trusts a start event only
from the node it names (real salt-master and minions).

- A minion whose key files netlab wrote (``netlab_roots_keys.write_minion_key`` and the
  ``master_finger`` of ``minion_conf_text``, as a reimage or enrolment writes them)
  refuses a second master on the segment, even one that accepts its key; the same
  files work with the networking node's master.
- ``salt-run netlab.boot`` does not mark a node up when another minion fires
  ``salt/minion/<node>/start`` (``event.fire_master``); it does when the node's own
  minion starts.
"""

import pathlib
import shutil
import threading
import uuid

import pytest
import yaml
from pytestshellutils.exceptions import FactoryNotStarted

import netlab_lab
import netlab_roots
import netlab_roots_keys


def _pinned_minion(master_factory, minion_id, base, master_pub, accept_in):
    """A minion factory of ``master_factory`` whose pki dir and config netlab wrote,
    pinned to ``master_pub``; its key is pre-accepted in ``accept_in`` (pki dirs)."""
    root = base / minion_id
    root.mkdir(parents=True)
    key = netlab_roots_keys.gen_minion_keys()
    netlab_roots_keys.write_minion_key(str(root), key, master_pub)
    lab = netlab_lab.load(_tiny_lab())
    conf = yaml.safe_load(netlab_roots.minion_conf_text(lab, "nuc1", master_pub))
    for pki in accept_in:
        netlab_roots_keys.preaccept_key(pki, minion_id, key[1])
    factory = master_factory.salt_minion_daemon(minion_id, overrides={
        "master_finger": conf["master_finger"], "hash_type": conf["hash_type"],
        "log_level_logfile": "debug", "acceptance_wait_time": 1,
        "acceptance_wait_time_max": 2,
    })
    # Salt puts every pki_dir under the minion's root_dir: the files go where it looks
    pki = pathlib.Path(factory.config["pki_dir"])
    pki.mkdir(parents=True, exist_ok=True)
    for f in (root / "etc" / "salt" / "pki" / "minion").iterdir():
        shutil.copy2(f, pki / f.name)
    return factory


def _tiny_lab():
    with open(pathlib.Path(__file__).resolve().parents[2] / "pillar.example",
              encoding="utf-8") as fh:
        return yaml.safe_load(fh)["netlab"]


def test_a_second_master_is_refused_by_a_pinned_node(netlab_env, salt_factories):
    real_pki = netlab_env.master.config["pki_dir"]
    with open(pathlib.Path(real_pki) / "master.pub", encoding="utf-8") as fh:
        real_pub = fh.read()
    rogue = salt_factories.salt_master_daemon("rogue-" + uuid.uuid4().hex[:6])
    rogue.start()
    base = netlab_env.base / "pinned"
    try:
        # the rogue master even accepts the node's key: the node must still refuse it
        victim = _pinned_minion(rogue, "pin-" + uuid.uuid4().hex[:6], base, real_pub,
                                [rogue.config["pki_dir"]])
        with pytest.raises(FactoryNotStarted):
            victim.start(start_timeout=25, max_start_attempts=1)
        victim.terminate()
        # Salt 3008's minion refuses the rogue's key ("The master key has changed");
        # Salt 3006's sends a token only the pinned master can decrypt, so the rogue
        # fails the sign-in. Either way the pinned key stays and nobody got in.
        pinned = pathlib.Path(victim.config["pki_dir"]) / "minion_master.pub"
        assert pinned.read_text() == real_pub
        ret = rogue.salt_cli(timeout=15).run("test.ping", minion_tgt=victim.id)
        assert ret.data in (None, "", {}) or ret.returncode != 0, ret
        # the same files, the networking node's master: the node joins
        good = _pinned_minion(netlab_env.master, "pin-" + uuid.uuid4().hex[:6], base,
                              real_pub, [real_pki])
        good.start(start_timeout=60, max_start_attempts=1)
        try:
            assert netlab_env.call(good.id, "test.ping") is True
        finally:
            good.terminate()
            netlab_env.master.salt_key_cli().run("-y", "-d", good.id)
    finally:
        rogue.terminate()


def _boot(netlab_env, node, timeout, out):
    out["ret"] = netlab_env.runner("netlab.boot", node, "timeout={}".format(timeout))


def _add_node(lab):
    lab["nodes"]["nuc4"] = {"mac": "94:c6:91:aa:00:04", "ip": "192.168.42.14",
                            "role": "compute", "power": {"driver": "manual"},
                            "devstack": {"dest": lab["nodes"]["nuc3"]["devstack"]["dest"]
                                         .replace("nuc3", "nuc4")}}


def _boot_started(netlab_env, node, timeout, out):
    """``netlab.boot`` in a thread, returned once it is listening for start events:
    it subscribes before it records the node ``booting``, so that event says so."""
    with netlab_env.watch() as watcher:
        waiter = threading.Thread(target=_boot, args=(netlab_env, node, timeout, out))
        waiter.start()
        watcher.wait_for("netlab/node/{}/booting".format(node), timeout=120)
    return waiter


def test_a_start_event_fired_by_another_minion_does_not_mark_a_node_up(netlab_env):
    with netlab_env.lab_changed(_add_node):
        out = {}
        waiter = _boot_started(netlab_env, "nuc4", 30, out)
        try:
            # any accepted minion can put this tag on the master's bus; the runner
            # listens from before its booting event until its 30 s run out
            for _ in range(4):
                netlab_env.call("nuc1", "event.fire_master", '{"id": "nuc4"}',
                                "salt/minion/nuc4/start")
        finally:
            waiter.join(120)
        ret = out["ret"]
        assert ret.returncode == 1, ret
        assert ret.data["nodes"]["nuc4"]["state"] == "failed", ret.data

        # the node's own minion starting does mark it up
        out = {}
        waiter = _boot_started(netlab_env, "nuc4", 120, out)
        try:
            netlab_env.add_minion("nuc4")
        finally:
            waiter.join(180)
            netlab_env.remove_minion("nuc4")
        ret = out["ret"]
        assert ret.returncode == 0, ret
        assert ret.data["nodes"]["nuc4"]["state"] == "up", ret.data
