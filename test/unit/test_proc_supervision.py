"""
netlab_proc with real processes (``sleep``, ``sh``): start with a pid file and a
record, recognise the process by its start time, stop it, and never take a
reused or foreign pid for the daemon.
"""

import json
import os
import signal
import subprocess
import sys
import time

import netlab_proc

SLEEP = ["sleep", "60"]


def test_start_status_stop(tmp_path):
    pidfile = str(tmp_path / "run" / "d.pid")
    pid, err = netlab_proc.start(SLEEP, pidfile, log=str(tmp_path / "d.log"), settle=0.2)
    try:
        assert err is None and netlab_proc.alive(pid)
        assert netlab_proc.read_pid(pidfile) == pid
        assert netlab_proc.record(pidfile)["argv"] == SLEEP
        assert netlab_proc.status(pidfile, SLEEP) == (pid, True)
        assert netlab_proc.status(pidfile, ["sleep", "61"]) == (pid, False)
        assert netlab_proc.ours(pidfile) == pid
    finally:
        assert netlab_proc.stop(pid, timeout=5) is True
    assert not netlab_proc.alive(pid)
    assert netlab_proc.status(pidfile, SLEEP) == (None, False)
    netlab_proc.remove_pidfile(pidfile)
    assert not os.path.exists(pidfile) and not os.path.exists(pidfile + ".netlab")
    assert netlab_proc.stop(pid) is False


def test_a_daemon_that_exits_at_once_reports_its_log(tmp_path):
    pidfile = str(tmp_path / "d.pid")
    log = str(tmp_path / "d.log")
    pid, err = netlab_proc.start(["sh", "-c", "echo bad config >&2; exit 3"], pidfile,
                                 log=log, settle=2)
    assert pid is None
    assert "exited at once (code 3): bad config" in err
    assert not os.path.exists(pidfile)
    assert netlab_proc.start(["/nonexistent/daemon"], pidfile)[1].startswith(
        "cannot run /nonexistent/daemon")


def test_a_reused_pid_is_not_ours(tmp_path):
    """The pid file names a live process that this module did not start (the
    start time differs): neither status nor ours claims it."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pidfile = str(tmp_path / "d.pid")
        with open(pidfile, "w", encoding="ascii") as fh:
            fh.write("{}\n".format(other.pid))
        with open(pidfile + ".netlab", "w", encoding="utf-8") as fh:
            json.dump({"pid": other.pid, "argv": SLEEP, "starttime": "1"}, fh)
        assert netlab_proc.status(pidfile, SLEEP) == (None, False)
        assert netlab_proc.ours(pidfile) is None
    finally:
        other.kill()
        other.wait()


def test_stop_all_terms_then_kills(tmp_path):
    stubborn = subprocess.Popen(["sh", "-c", "trap '' TERM; exec sleep 60"])
    polite = subprocess.Popen(SLEEP)
    try:
        ran = netlab_proc.stop_all([stubborn.pid, polite.pid, stubborn.pid], timeout=0.5)
        assert ran == [stubborn.pid, polite.pid]
        stubborn.wait(timeout=5)
        polite.wait(timeout=5)
    finally:
        for p in (stubborn, polite):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert netlab_proc.stop_all([stubborn.pid]) == []


# A daemon that rereads its config on SIGHUP, written in shell: it logs each one.
HUP_DAEMON = """trap 'echo reread >> "$1"' HUP
echo started >> "$1"
while :; do sleep 0.2 & wait $!; done
"""


def test_a_daemon_gets_sighup_even_when_netlab_runs_under_nohup(tmp_path):
    """``nohup`` (a common way to keep a minion running without an init system)
    ignores SIGHUP, and an ignored signal stays ignored across exec: a shell
    cannot even trap it. A daemon netlab starts gets default signal handling."""
    script, log = tmp_path / "d.sh", tmp_path / "d.log"
    script.write_text(HUP_DAEMON)
    argv = ["/bin/sh", str(script), str(log)]
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)   # as under nohup
    try:
        pid, err = netlab_proc.start(argv, str(tmp_path / "d.pid"), settle=0.2)
    finally:
        signal.signal(signal.SIGHUP, before)
    assert err is None, err
    try:
        deadline = time.monotonic() + 30
        while "started" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "the daemon did not start"
            time.sleep(0.05)
        with open("/proc/{}/status".format(pid), encoding="ascii") as fh:
            ignored = int([ln for ln in fh if ln.startswith("SigIgn:")][0].split()[1], 16)
        assert not ignored & (1 << (signal.SIGHUP - 1))
        os.kill(pid, signal.SIGHUP)
        while "reread" not in log.read_text():
            assert time.monotonic() < deadline, "SIGHUP never reached the daemon"
            time.sleep(0.05)
        assert netlab_proc.alive(pid)
    finally:
        assert netlab_proc.stop(pid, timeout=5) is True
