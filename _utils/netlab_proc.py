"""
Process supervision without an init system: pid files, liveness from ``/proc``,
start in a session of its own with default signal handling, stop with SIGTERM
then SIGKILL.

Used by the ``netlab_daemon`` states (``service_control: process``), the test
harness (``test/lib/daemons.py``) and the virtual lab (``tools/vlab.py``).

A daemon started by :func:`start` gets a record next to its pid file
(``<pidfile>.netlab``: pid, argv and the process start time), so a pid reused
by another process after a reboot or a crash is never taken for the daemon, and
a daemon that rewrites its process title (nginx) is still recognised by the
command line it was started with.

Pure Python, Linux only (``/proc``).
"""

import contextlib
import json
import os
import signal
import subprocess
import time


def _stat_fields(pid):
    """The fields of ``/proc/<pid>/stat`` after the command name, or ``None``."""
    try:
        with open("/proc/{}/stat".format(int(pid)), encoding="ascii",
                  errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError, TypeError):
        return None


def alive(pid):
    """True while ``pid`` runs (a zombie nobody reaped yet does not count)."""
    fields = _stat_fields(pid) if pid else None
    return bool(fields) and fields[0] not in ("Z", "X")


def starttime(pid):
    """The process start time (clock ticks since boot) of ``pid``, as text."""
    fields = _stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else None


def read_pid(pidfile):
    try:
        with open(pidfile, encoding="ascii") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def record(pidfile):
    """What :func:`start` wrote next to ``pidfile``: pid, argv, start time."""
    try:
        with open(pidfile + ".netlab", encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def ours(pidfile):
    """The pid of ``pidfile`` if alive and still the process :func:`start` started
    (same start time), else ``None``. A pid file without a record is trusted."""
    pid = read_pid(pidfile)
    if not alive(pid):
        return None
    rec = record(pidfile)
    if rec and (rec.get("pid") != pid or rec.get("starttime") != starttime(pid)):
        return None
    return pid


def status(pidfile, argv):
    """``(pid, matches)``: the pid of ``pidfile`` if alive and started by
    :func:`start` (a record is required), and whether it was started with ``argv``."""
    pid = read_pid(pidfile)
    if not alive(pid):
        return None, False
    rec = record(pidfile)
    if rec.get("pid") != pid or rec.get("starttime") != starttime(pid):
        return None, False
    return pid, rec.get("argv") == argv


def stop(pid, timeout=15, signals=(signal.SIGTERM, signal.SIGKILL), group=False):
    """Send the first signal, wait up to ``timeout`` s for the process to go, then
    the last one (SIGKILL). ``group``: signal its whole process group. True when
    it was running."""
    if not alive(pid):
        return False
    kill = os.killpg if group else os.kill
    with contextlib.suppress(ProcessLookupError, PermissionError):
        kill(pid, signals[0])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signals[-1])
        time.sleep(0.1)
    return True


def stop_all(pids, timeout=20):
    """SIGTERM every pid, wait up to ``timeout`` s for all, then SIGKILL the rest.
    Returns the pids that were running."""
    pids = [p for p in dict.fromkeys(pids) if alive(p)]
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            for pid in pids:
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        if not any(alive(p) for p in pids):
            break
    return pids


def tail(path, size=2000):
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - size))
            return fh.read().decode(errors="replace")
    except (OSError, TypeError):
        return ""


# Signals a daemon must receive with their default action or its own handler. One
# ignored by whoever started netlab (``nohup`` ignores SIGHUP) stays ignored across
# exec, and a shell cannot even trap a signal ignored when it started: a daemon
# reloaded with SIGHUP would never see it. Reset in the child, as an init system
# does, together with the blocked-signal mask.
DEFAULT_SIGNALS = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2",
                   "SIGCHLD", "SIGPIPE")


def _default_signals():
    """In the child before exec: default dispositions and nothing blocked."""
    for name in DEFAULT_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def start(argv, pidfile, log=None, settle=1.0, env=None):
    """Start ``argv`` in the foreground of a session of its own, its output to
    ``log``; write ``pidfile`` and its record. It must stay up ``settle`` seconds.
    Returns ``(pid, None)`` or ``(None, error text with the log's tail)``."""
    for path in (pidfile, log):
        if path:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    out = open(log or os.devnull, "ab")  # pylint: disable=consider-using-with
    try:
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, env=dict(os.environ, **(env or {})),
            preexec_fn=_default_signals)  # pylint: disable=subprocess-popen-preexec-fn
    except OSError as exc:
        return None, "cannot run {}: {}".format(argv[0], exc)
    finally:
        out.close()
    with open(pidfile, "w", encoding="ascii") as fh:
        fh.write("{}\n".format(proc.pid))
    with open(pidfile + ".netlab", "w", encoding="utf-8") as fh:
        json.dump({"pid": proc.pid, "argv": argv, "starttime": starttime(proc.pid)}, fh)
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if proc.poll() is not None:
        text = tail(log).strip() if log else ""
        with contextlib.suppress(OSError):
            os.unlink(pidfile)
        return None, "{} exited at once (code {}){}".format(
            " ".join(argv), proc.returncode, ": " + text if text else "")
    return proc.pid, None


def remove_pidfile(pidfile):
    for path in (pidfile, pidfile + ".netlab"):
        with contextlib.suppress(OSError):
            os.unlink(path)
