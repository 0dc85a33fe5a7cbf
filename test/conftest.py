"""
Shared test harness for every tier.

- ``_utils`` is put on ``sys.path`` so unit tests import the pure-Python logic the
  way Salt does when it loads netlab's modules.
- ``REPO`` is the formula checkout; integration tests point salt's file_roots at it.
- salt-factories gets its own ``root_dir`` under pytest's ``--basetemp``.
"""

import logging
import os
import pathlib
import sys

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parent.parent
UTILS = REPO / "_utils"
if str(UTILS) not in sys.path:
    sys.path.insert(0, str(UTILS))
LIB = REPO / "test" / "lib"
if str(LIB.parent) not in sys.path:
    sys.path.insert(0, str(LIB.parent))


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: needs root, network namespaces, real daemons, qemu")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line(
        "markers", "guests: boots an operating system in qemu guests, which under TCG "
        "need the CPU: test/run-tests runs these alone, every other test of the suite "
        "beside one another")
    config.addinivalue_line(
        "markers", "one_guest: a guests test that boots a single qemu guest: test/run-tests "
        "runs it beside the unit, functional and integration tiers, after the e2e tests "
        "that boot no guest")


# A time bound per test (pytest-timeout; setup, call and teardown together, so the
# first test of a module also pays for its module fixtures: an e2e module's VMs,
# the session's image build). A hang fails that test with a stack dump and its
# fixtures still clean up (the "signal" method raises inside the test), instead
# of eating CI's budget. A test's own `@pytest.mark.timeout(N)` wins.
TIER_TIMEOUTS = {"unit": 120, "functional": 600, "integration": 900, "e2e": 2400}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    if not config.pluginmanager.hasplugin("timeout"):
        return
    tests = REPO / "test"
    for item in items:
        if item.get_closest_marker("timeout") is not None:
            continue
        try:
            tier = pathlib.Path(str(item.fspath)).relative_to(tests).parts[0]
        except ValueError:
            continue
        if tier in TIER_TIMEOUTS:
            item.add_marker(pytest.mark.timeout(TIER_TIMEOUTS[tier], method="signal"))


def pytest_sessionstart(session):  # pylint: disable=unused-argument
    """Remove what killed test runs left behind (their test users, sudoers files,
    scratch directories under /tmp)."""
    from lib import testdirs, testusers  # pylint: disable=import-outside-toplevel

    testusers.sweep()
    testdirs.sweep()


def pytest_unconfigure(config):
    """Drop salt's temporary log handler (and what it buffered).

    Salt installs a deferred stderr handler at import time and flushes it at exit;
    by then pytest has closed its capture streams, which gives ~100 lines of
    "--- Logging error ---" after the summary.
    """
    try:
        import salt._logging.impl as impl  # pylint: disable=import-outside-toplevel
    except ImportError:
        return
    handler = impl.get_temp_handler()
    if handler is None:
        return
    handler.sync_with_handlers(())  # empties the buffer without emitting anything
    if handler in logging.root.handlers:
        logging.root.removeHandler(handler)


def pytest_sessionfinish(session, exitstatus):
    """Under test/run-tests (and CI) a skipped test is a failure, not a pass.

    The e2e tier skips visibly when it lacks root or tools; test/run-tests installs
    everything first, so there a skip means something is wrong.
    """
    if not (os.environ.get("NETLAB_NO_SKIPS") or os.environ.get("CI") == "true"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and exitstatus == 0:
        reporter.write_line("netlab: {} test(s) skipped ({}); skips fail this run "
                            "(NETLAB_NO_SKIPS/CI)".format(
                                len(skipped), ", ".join(r.nodeid for r in skipped)),
                            red=True)
        session.exitstatus = 1


@pytest.fixture(scope="session")
def repo_root():
    return REPO


@pytest.fixture(scope="session")
def example_pillar():
    """The ``netlab`` value of pillar.example (a fresh copy per use via copy.deepcopy)."""
    with open(REPO / "pillar.example", encoding="utf-8") as fh:
        return yaml.safe_load(fh)["netlab"]


@pytest.fixture(scope="session")
def platform_defaults():
    """The platform parameters of netlab/parameters/defaults.yaml (``values``: what
    map.jinja gives a state run before os_family and lookup overrides)."""
    with open(REPO / "netlab" / "parameters" / "defaults.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)["values"]


@pytest.fixture(scope="session")
def salt_factories_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("salt-factories")
    return {"root_dir": str(root)}
