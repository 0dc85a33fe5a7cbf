"""
Integration harness: a real salt-master and real minions (pytest-salt-factories).

One master (id ``netnode``, the networking node) and four minions: ``netnode``
(the networking node's own minion) and the lab nodes ``nuc1`` (controller),
``nuc2``, ``nuc3`` (computes) of ``pillar.example``. The formula checkout is the
master's file_roots, exactly as a user drops it into a salt tree; the lab pillar
is ``pillar.example`` with paths moved under a private directory:

- top.sls gives the whole lab (``netlab.lab``) to the networking node only;
- lab nodes get their slice ``netlab_node`` from netlab's ext_pillar.

Every lab node's DevStack ``dest`` is its own directory, so three minions on one
machine never write the same file. The stack user is a real system user the
fixture creates and removes.
"""

import contextlib
import copy
import os
import pathlib
import pwd
import shutil
import subprocess

import pytest
import yaml

import netlab_saltcompat
from lib import testdirs, testusers
from lib.events import EventWatcher
from lib.vm import VENV_BIN

REPO = pathlib.Path(__file__).resolve().parents[2]

LAB_NODES = ("nuc1", "nuc2", "nuc3")
NETNODE = "netnode"


def _run(*cmd):
    subprocess.run(cmd, check=True, capture_output=True, text=True)


class NetlabEnv:
    """What the integration tests use; see the module docstring."""

    def __init__(self, master, minions, base, lab_pillar, stack_user):
        self.master = master
        self.minions = minions
        self.base = base
        self.pillar_dir = base / "pillar"
        self.lab_pillar = lab_pillar
        self.stack_user = stack_user
        self.salt_cli = master.salt_cli(timeout=180)
        self.run_cli = master.salt_run_cli(timeout=600)

    def watch(self):
        """Every netlab/* event of the master, subscribed (and proven live) before
        the run; the ``with`` that uses it stops it."""
        return EventWatcher([os.path.join(VENV_BIN, "salt-run"), "-c",
                             str(self.master.config_dir)], "netlab/*",
                            lambda tag: self.runner("event.send", tag)).start_live()

    # ---------------------------------------------------------------- pillar
    def write_lab(self, lab):
        """Write ``lab`` (the value of ``netlab``) as the lab SLS and refresh pillar."""
        self.lab_pillar = lab
        (self.pillar_dir / "netlab").mkdir(parents=True, exist_ok=True)
        with open(self.pillar_dir / "netlab" / "lab.sls", "w", encoding="utf-8") as fh:
            yaml.safe_dump({"netlab": lab}, fh, default_flow_style=False, sort_keys=True)
        self.refresh_pillar()

    def refresh_pillar(self):
        ret = self.salt_cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt="*")
        assert ret.returncode == 0, ret

    @contextlib.contextmanager
    def lab_changed(self, mutate):
        """Apply ``mutate(lab_copy)`` for the block, restore the lab afterwards."""
        saved = copy.deepcopy(self.lab_pillar)
        lab = copy.deepcopy(saved)
        mutate(lab)
        self.write_lab(lab)
        try:
            yield lab
        finally:
            self.write_lab(saved)

    def node_dest(self, node_id):
        return pathlib.Path(self.lab_pillar["nodes"][node_id]["devstack"]["dest"])

    # ---------------------------------------------------------------- minions
    def add_minion(self, minion_id):
        """Start another minion (e.g. a node added to pillar); stopped at teardown."""
        factory = self.master.salt_minion_daemon(minion_id, overrides=_minion_overrides())
        factory.start()
        self.minions[minion_id] = factory
        ret = self.salt_cli.run("saltutil.sync_all", minion_tgt=minion_id)
        assert ret.returncode == 0, ret
        return factory

    def remove_minion(self, minion_id):
        factory = self.minions.pop(minion_id)
        factory.terminate()
        self.master.salt_key_cli().run("-y", "-d", minion_id)

    # ---------------------------------------------------------------- running
    def call(self, minion_id, *args, **kwargs):
        """``salt <minion_id> <args>`` -> ret.data (asserts the call succeeded)."""
        ret = self.salt_cli.run(*args, minion_tgt=minion_id, **kwargs)
        assert ret.returncode == 0, ret
        return ret.data

    def apply(self, target, sls, **kwargs):
        """``salt <target> state.apply <sls>``; returns the CLI result (not asserted)."""
        args = ["state.apply", sls]
        args += ["{}={}".format(k, v) for k, v in kwargs.items()]
        return self.salt_cli.run(*args, minion_tgt=target)

    def runner(self, *args):
        return self.run_cli.run(*args)


def _minion_overrides():
    return {"log_level_logfile": "info"}


def integration_lab(base, stack_user):
    """pillar.example with every path under ``base`` and a real stack user."""
    with open(REPO / "pillar.example", encoding="utf-8") as fh:
        lab = yaml.safe_load(fh)["netlab"]
    lab["netnode"]["id"] = NETNODE
    lab["netnode"]["storage"] = str(base / "netnode" / "srv" / "netlab")
    lab["devstack"]["user"] = stack_user
    # the image's salt-minion is the Salt under test: never newer than the master
    lab["image"]["salt_version"] = netlab_saltcompat.salt_version()
    for node_id, node in lab["nodes"].items():
        node.setdefault("devstack", {})["dest"] = str(base / node_id / "opt" / "stack")
    # no git mirror runs here (the deploy's cache step is skipped): with it on, node
    # preparation would check DevStack's projects out from the networking node
    lab["cache"]["git"]["enabled"] = False
    return lab


@pytest.fixture(scope="session")
def stack_user():
    """A real unprivileged user for DevStack (created here, removed afterwards)."""
    # marked with this pytest's pid: a killed run's user is swept by the next run
    name = testusers.create("nlstack")
    try:
        pwd.getpwnam(name)
        yield name
    finally:
        # with its home and the sudoers file netlab.node.prepare gave it
        testusers.remove(name)


@pytest.fixture(scope="session")
def integration_base():
    """World-readable base dir (pytest's tmp dirs are 0700; the stack user needs in)."""
    base = testdirs.make("netlab-it-")
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def netlab_env(salt_factories, integration_base, stack_user):
    base = integration_base
    pillar_dir = base / "pillar"
    pillar_dir.mkdir()
    (pillar_dir / "top.sls").write_text(
        "base:\n"
        "  # the whole lab, BMC credentials included: the networking node only\n"
        "  'L@{0},{0}_master':\n"
        "    - netlab.lab\n".format(NETNODE),
        encoding="utf-8",
    )
    lab = integration_lab(base, stack_user)
    (pillar_dir / "netlab").mkdir()
    with open(pillar_dir / "netlab" / "lab.sls", "w", encoding="utf-8") as fh:
        yaml.safe_dump({"netlab": lab}, fh, default_flow_style=False, sort_keys=True)

    master = salt_factories.salt_master_daemon(
        NETNODE,
        overrides={
            "file_roots": {"base": [str(REPO)]},
            "pillar_roots": {"base": [str(pillar_dir)]},
            "ext_pillar": [{"netlab": {"sls": "netlab.lab"}}],
            "log_level_logfile": "info",
            "timeout": 60,
            # Salt's default (salt-factories sets 0). With 0, every file list request
            # rebuilds the list under a lock, and a request that finds the lock
            # taken sleeps a whole second: three minions syncing at once then
            # spend about 13 s in saltutil.sync_all instead of 4. The served tree
            # is this repository, which no test changes while it runs.
            "fileserver_list_cache_time": 20,
        },
    )
    master.start()
    minions = {}
    try:
        run = master.salt_run_cli(timeout=300)
        ret = run.run("saltutil.sync_all")
        assert ret.returncode == 0, ret
        for minion_id in (NETNODE,) + LAB_NODES:
            minions[minion_id] = master.salt_minion_daemon(
                minion_id, overrides=_minion_overrides())
            minions[minion_id].start()
        env = NetlabEnv(master, minions, base, lab, stack_user)
        ret = env.salt_cli.run("saltutil.sync_all", minion_tgt="*")
        assert ret.returncode == 0, ret
        env.refresh_pillar()
        yield env
    finally:
        for factory in minions.values():
            factory.terminate()
        master.terminate()
