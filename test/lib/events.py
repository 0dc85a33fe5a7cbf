"""
Watching a real master's event bus from a test, subscribed before the run.

``salt-run state.event`` prints every event whose tag matches; it subscribes
some time after it starts, and an event fired before that is lost. So
:meth:`EventWatcher.wait_live` does not sleep: it fires a probe event
(``salt-run event.send netlab/probe/<uuid>``) until the watcher prints it, and
only then is the run started. Probe events are dropped from :meth:`events`.

    with EventWatcher(cmd_prefix, "netlab/*", send=send_probe) as watch:
        watch.wait_live()
        ... run the deploy ...
    tags = [tag for tag, data in watch.events()]

``cmd_prefix`` runs ``salt-run`` against the master (``[".../salt-run", "-c",
conf_dir]``, optionally inside a namespace); ``send(tag)`` fires one event.
"""

import json
import subprocess
import threading
import time
import uuid

from lib import vm

PROBE = "netlab/probe/"


class EventWatcher:
    def __init__(self, cmd_prefix, pattern, send):
        self.cmd = list(cmd_prefix) + ["state.event", pattern]
        self.send = send
        self.lines = []
        self.proc = None
        self._thread = None
        self._lock = threading.Lock()

    def __enter__(self):
        return self.start()

    def start(self):
        """Start the watcher (once: a second call keeps the running one)."""
        if self.proc is not None:
            return self
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            self.cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def _read(self):
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _seen(self, tag):
        with self._lock:
            return any(line.split("\t", 1)[0].split(" ", 1)[0] == tag for line in self.lines)

    def wait_live(self, timeout=120, resend=2.0):
        """Fire probes until the watcher prints one; fail after ``timeout`` s."""
        tag = PROBE + uuid.uuid4().hex
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("salt-run state.event exited ({})".format(
                    self.proc.returncode))
            self.send(tag)
            until = time.monotonic() + resend
            while time.monotonic() < until:
                if self._seen(tag):
                    return True
                time.sleep(0.05)  # polling the reader thread's list, not a wait for time
        raise AssertionError("the event watcher did not see its probe within {} s".format(
            timeout))

    def start_live(self, timeout=120):
        """Start, then wait until the watcher sees the bus (wait_live); a watcher
        that never does is stopped before the error goes up."""
        self.start()
        try:
            self.wait_live(timeout=timeout)
        except Exception:
            self.stop()
            raise
        return self

    def wait_for(self, tag, timeout=120):
        """Return once the watcher printed an event tagged ``tag``; fail after
        ``timeout`` s (a run's own event proves it reached that point)."""
        vm.wait_for(lambda: self._seen(tag), timeout, "a {} event".format(tag),
                    interval=0.05)

    def events(self, settle_tag=None, timeout=60):
        """``[(tag, data)]`` in the order the bus delivered them, probes left out.
        With ``settle_tag``: first wait until that tag arrived (the run's last
        event can reach the watcher after the run's command returned)."""
        if settle_tag is not None:
            deadline = time.monotonic() + timeout
            while not self._seen(settle_tag) and time.monotonic() < deadline:
                time.sleep(0.05)
        out = []
        with self._lock:
            lines = list(self.lines)
        seen = set()
        for line in lines:
            tag, _, rest = line.partition("\t")
            if not tag or tag.startswith(PROBE):
                continue
            # the same event (same tag, data and _stamp to the microsecond) can reach
            # state.event twice through the master's publishers: one firing, one entry
            if line in seen:
                continue
            seen.add(line)
            try:
                data = json.loads(rest) if rest.strip() else {}
            except ValueError:
                data = {"raw": rest}
            out.append((tag, data))
        return out
