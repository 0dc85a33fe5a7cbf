"""
test/run-tests (README's test command) with a stand-in venv whose python records
its arguments: which temp directory it removes and hands to pytest.

run-tests removes pytest's temp directory before a run. A ``--basetemp`` among
the pytest arguments is the directory pytest uses, so that one is removed, never
the default one, which another run of the script (CI's, a colleague's) may be
using at the same moment.
"""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]

# Answers run-tests' version probe; records a pytest call's arguments.
FAKE_PYTHON = """#!/bin/sh
if [ "$1" = -c ]; then echo 3008.3; exit 0; fi
printf '%s\\n' "$@" > "{record}"
echo "NETLAB_NO_SKIPS=$NETLAB_NO_SKIPS" >> "{record}"
"""


def _venv(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    record = tmp_path / "pytest-args"
    python = venv / "bin" / "python"
    python.write_text(FAKE_PYTHON.format(record=record))
    python.chmod(0o755)
    shutil.copy(REPO / "test" / "requirements.txt", venv / ".netlab-requirements")
    return venv, record


def _run(tmp_path, venv, *args):
    env = dict(os.environ, NETLAB_VENV=str(venv),
               NETLAB_BASETEMP=str(tmp_path / "default"))
    for name in ("NETLAB_SALT", "NETLAB_NO_SKIPS", "CI"):  # this run's own
        env.pop(name, None)
    return subprocess.run([str(REPO / "test" / "run-tests")] + list(args), env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _with_file(path):
    path.mkdir(parents=True)
    (path / "kept").write_text("x")
    return path


def test_a_basetemp_argument_is_removed_and_the_default_is_left_alone(tmp_path):
    venv, record = _venv(tmp_path)
    default = _with_file(tmp_path / "default")
    mine = _with_file(tmp_path / "mine")
    for args in (["--basetemp={}".format(mine), "test/unit"],
                 ["test/unit", "--basetemp", str(mine)]):
        (mine / "kept").parent.mkdir(exist_ok=True)
        (mine / "kept").write_text("x")
        proc = _run(tmp_path, venv, *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert (default / "kept").exists(), args
        assert not (mine / "kept").exists(), args
        assert str(mine) in record.read_text().split("--basetemp=")[1].splitlines()[0]


def test_without_a_basetemp_argument_the_default_is_used_and_emptied(tmp_path):
    venv, record = _venv(tmp_path)
    default = _with_file(tmp_path / "default")
    proc = _run(tmp_path, venv, "test/unit", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (default / "kept").exists()
    assert record.read_text().splitlines()[:4] == [
        "-m", "pytest", "--basetemp={}".format(default), "test/unit"]
    # pytest runs with skips turned into failures (test/conftest.py; below)
    assert record.read_text().splitlines()[-1] == "NETLAB_NO_SKIPS=1"


TINY_TESTS = """
import pytest

def test_runs():
    pass

def test_needs_a_tool():
    pytest.skip("the tool is missing")
"""


@pytest.mark.parametrize("env, failed", [({"NETLAB_NO_SKIPS": "1"}, True), ({}, False)])
def test_a_skipped_test_fails_the_run_under_run_tests(tmp_path, env, failed):
    """README: a skipped test fails the run (run-tests exports NETLAB_NO_SKIPS; CI=true
    takes the same branch of test/conftest.py); a plain pytest run keeps a skip a
    skip. Real pytest on a
    file with one skipping test, with the repo's pytest.ini and test/conftest.py
    (loaded as a plugin: the file lies outside test/, where no run of the suite
    collects it)."""
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "test_tiny.py").write_text(TINY_TESTS)
    full = dict(os.environ, PYTHONPATH=str(REPO / "test"), **env)
    for name in {"NETLAB_NO_SKIPS", "CI"} - set(env):
        full.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(REPO / "pytest.ini"), "-p", "conftest",
         "--rootdir", str(tmp_path / "tiny"), "--basetemp", str(tmp_path / "bt"),
         str(tmp_path / "tiny" / "test_tiny.py")],
        cwd=str(tmp_path / "tiny"), env=full, capture_output=True, text=True, timeout=120,
        check=False)
    assert "1 passed, 1 skipped" in proc.stdout, proc.stdout + proc.stderr
    named = "netlab: 1 test(s) skipped (test_tiny.py::test_needs_a_tool); skips fail this run"
    assert proc.returncode == (1 if failed else 0), proc.stdout + proc.stderr
    assert (named in proc.stdout) is failed, proc.stdout


# Records when each pytest run starts and ends (the runs beside the 3008 tiers
# take a moment, so an overlap would show).
TIMED_PYTHON = """#!/bin/sh
if [ "$1" = -c ]; then echo {version}; exit 0; fi
echo "start {version} $(nice) $*" >> "{record}"
sleep {seconds}
echo "end {version} $(nice) $*" >> "{record}"
"""


def test_ci_run_phases_the_lowered_tiers_yield_beside_both_phases(tmp_path):
    """With no arguments (CI's run): Salt 3008's unit and integration tiers and the
    e2e tests that boot no guest run at the same time (the ``one_guest`` tests
    after the latter, in the same job); the other ``guests`` tests start after all
    of them ended, on Salt 3008. Salt 3008's functional tier and Salt 3006's fast
    tiers run beside both phases at nice 10 (here the 3006 ones take longer than
    everything else: the guests do not wait for them)."""
    record = tmp_path / "runs"
    venvs = {}
    for version, req, seconds in (("3008.3", "requirements.txt", 0.5),
                                  ("3006.29", "requirements-3006.txt", 4)):
        venv = tmp_path / version
        (venv / "bin").mkdir(parents=True)
        python = venv / "bin" / "python"
        python.write_text(TIMED_PYTHON.format(version=version, record=record, seconds=seconds))
        python.chmod(0o755)
        shutil.copy(REPO / "test" / req, venv / ".netlab-requirements")
        venvs[version] = venv
    env = dict(os.environ, NETLAB_VENV=str(venvs["3008.3"]),
               NETLAB_VENV_3006=str(venvs["3006.29"]), NETLAB_BASETEMP=str(tmp_path / "bt"))
    env.pop("NETLAB_SALT", None)
    proc = subprocess.run([str(REPO / "test" / "run-tests")], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = record.read_text().splitlines()
    runs, nice = {}, {}
    base = os.nice(0)
    for i, line in enumerate(lines):
        what, version, niceness, args = line.split(" ", 3)
        assert args.endswith(" --durations=15"), line  # CI's log names its slowest tests
        args = args[:-len(" --durations=15")]
        key = (version, args.split("--basetemp=")[1].split(" ", 1)[1])
        runs.setdefault(key, {})[what] = i
        nice[key] = int(niceness) - base
    fast = "test/unit test/functional test/integration"
    assert set(runs) == {("3008.3", "test/unit test/integration"), ("3006.29", fast),
                         ("3008.3", "test/functional"),
                         ("3008.3", "test/e2e -m not guests"),
                         ("3008.3", "test/e2e -m one_guest"),
                         ("3008.3", "test/e2e -m guests and not one_guest")}, lines
    lowered = {("3006.29", fast), ("3008.3", "test/functional")}
    # 10 lower than the rest, as far as 19 allows (this test may itself run in a
    # lowered run: then its own lowered runs end at 19)
    low = min(base + 10, 19) - base
    assert nice == {k: low if k in lowered else 0 for k in runs}, nice
    guests = runs.pop(("3008.3", "test/e2e -m guests and not one_guest"))
    one = runs.pop(("3008.3", "test/e2e -m one_guest"))
    starts = [r["start"] for r in runs.values()]
    assert max(starts) < min(r["end"] for r in runs.values()), lines   # side by side
    # the one-guest tests after the tests without guests, in the same job
    assert one["start"] > runs[("3008.3", "test/e2e -m not guests")]["end"], lines
    line3006 = runs.pop(("3006.29", fast))
    runs.pop(("3008.3", "test/functional"))
    assert guests["start"] > max(r["end"] for r in list(runs.values()) + [one]), lines
    assert guests["start"] < line3006["end"], lines
    # the 3006 tiers' output is printed after the guests', the summary names every run
    out = proc.stdout
    assert out.index("pytest test/e2e -m guests and not one_guest: exit 0") < out.index(
        "---- Salt 3006, unit+functional+integration (ran alongside, nice 10"), out
    assert "e2e (booting guests): exit 0" in out
    assert "Salt 3006, unit+functional+integration: exit 0" in out
    assert "Salt 3008, functional: exit 0" in out and "Salt 3008, unit+integration: exit 0" in out
