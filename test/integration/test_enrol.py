"""
``salt-run netlab.enrol <node>`` on a live minion (docs/lifecycle.rst, minion
keys): a new key is written into the node's root and pre-accepted; the minion
uses it after its next restart and answers; the old key is no longer accepted.

The node's minion runs with the node's root as its ``root_dir`` and the root's
``etc/salt/pki/minion`` as its pki dir: it reads its key exactly where netlab
writes it (a node's ``/`` is its root over NFS).
"""

import pathlib
import shutil
import subprocess

import pytest
import yaml

import netlab_lab
from lib.vm import VENV_BIN

pytestmark = pytest.mark.slow

NODE = "nuc7"
PKI = pathlib.PurePath("etc/salt/pki/minion")


def _add_node(base):
    def mutate(lab):
        lab["nodes"][NODE] = {
            "mac": "94:c6:91:aa:00:07", "ip": "192.168.42.17", "role": "compute",
            "power": {"driver": "manual"},
            "devstack": {"dest": str(base / NODE / "opt" / "stack")}}
    return mutate


def _enrol(env):
    ret = env.runner("netlab.enrol", NODE)
    assert ret.returncode == 0, ret.stdout + ret.stderr
    assert ret.data["accepted"] is True, ret.data


def _accepted(env):
    path = pathlib.Path(env.master.config["pki_dir"]) / "minions" / NODE
    return path.read_text(encoding="utf-8") if path.exists() else None


def _keys(env):
    ret = env.master.salt_key_cli().run("-L")
    assert ret.returncode == 0, ret
    return ret.data


def _sign_in_with(env, factory, pem, pub, where):
    """``salt-call test.ping`` as the node, with the key pair ``pem``/``pub``."""
    where.mkdir(parents=True)
    (where / "pki").mkdir(mode=0o700)
    (where / "pki" / "minion.pem").write_text(pem, encoding="utf-8")
    (where / "pki" / "minion.pem").chmod(0o400)
    (where / "pki" / "minion.pub").write_text(pub, encoding="utf-8")
    with open(pathlib.Path(factory.config_dir) / "minion", encoding="utf-8") as fh:
        conf = yaml.safe_load(fh)
    conf.update(root_dir=str(where), pki_dir="pki", cachedir="cache", sock_dir="sock",
                log_file="minion.log", acceptance_wait_time=1, auth_tries=1,
                rejected_retry=False)
    (where / "minion").write_text(yaml.safe_dump(conf), encoding="utf-8")
    return subprocess.run([str(pathlib.Path(VENV_BIN) / "salt-call"), "-c", str(where),
                           "--out=json", "test.ping"], capture_output=True, text=True,
                          timeout=120, check=False)


def test_enrol_gives_a_live_node_a_new_key_and_the_old_one_is_refused(netlab_env):
    env = netlab_env
    with env.lab_changed(_add_node(env.base)) as lab:
        root = pathlib.Path(netlab_lab.load(lab).netnode.roots_dir) / NODE
        root.mkdir(parents=True)   # as a reimage leaves it
        factory = None
        try:
            _enrol(env)
            first_pub = (root / PKI / "minion.pub").read_text(encoding="utf-8")
            first_pem = (root / PKI / "minion.pem").read_text(encoding="utf-8")
            assert oct((root / PKI / "minion.pem").stat().st_mode & 0o777) == "0o400"
            assert _accepted(env) == first_pub
            factory = env.master.salt_minion_daemon(NODE, overrides={
                "root_dir": str(root), "pki_dir": str(PKI), "log_level_logfile": "info"})
            factory.start()
            assert env.call(NODE, "test.ping") is True

            # a new key while the minion runs: written into its root, pre-accepted
            _enrol(env)
            new_pub = (root / PKI / "minion.pub").read_text(encoding="utf-8")
            assert new_pub != first_pub
            assert _accepted(env) == new_pub
            assert NODE in _keys(env)["minions"]
            # after its restart the minion signs in with the new key and answers
            factory.terminate()
            factory.start()
            assert env.call(NODE, "test.ping") is True

            # the old key is refused: the master denies it and keeps the new one
            old = _sign_in_with(env, factory, first_pem, first_pub, env.base / "old-key")
            assert old.returncode != 0, old.stdout + old.stderr
            assert NODE in _keys(env).get("minions_denied", []), _keys(env)
            assert _accepted(env) == new_pub
            assert env.call(NODE, "test.ping") is True
        finally:
            if factory is not None:
                factory.terminate()
            env.master.salt_key_cli().run("-y", "-d", NODE)
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(env.base / "old-key", ignore_errors=True)
