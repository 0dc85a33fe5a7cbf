"""
VM test helpers: a salt-master inside the lab namespace, stray VMs, waiting.

The lab's own VMs are started by netlab itself (power driver ``virtual``, through
the runner), so what the tests need here is only what netlab does not do:

* :class:`Master`: a real ``salt-master`` running inside the networking node's
  namespace (node minions connect to the bridge address), configured with the
  formula's runners/utils straight from the checkout, its pki/sock/cache dirs
  under the test's directory; ``run(...)`` runs ``salt-run``/``salt``/``salt-key``
  against it inside the namespace.
* :func:`stray_vm`: a qemu VM with a MAC that is *not* in pillar, on the same
  bridge (same command line as netlab's ``virtual`` driver).
* :func:`wait_for`, :func:`serial_text`: polling with a clear failure message.

Everything started here is stopped by ``stop()``/the context managers, also
after a failure.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import yaml

VENV_BIN = os.path.dirname(sys.executable)


def wait_for(predicate, timeout, what, interval=1.0):
    """Poll ``predicate`` until it returns a truthy value; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = predicate()
        except Exception as exc:  # pylint: disable=broad-except
            last = exc
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() > deadline:
            raise AssertionError("timed out after {} s waiting for {} (last: {!r})".format(
                timeout, what, last))
        time.sleep(interval)


def serial_text(path):
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _kill_pidfile(pidfile, timeout=10):
    try:
        with open(pidfile, encoding="utf-8") as fh:
            pid = int(fh.read().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.exists("/proc/{}".format(pid)):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class Master:
    """A salt-master in namespace ``ns`` (a :class:`lib.netns.Namespace`).

    ``base``: directory for its config, pki, cache, sockets and logs.
    ``pillar``: the ``netlab`` value (written to a pillar SLS targeted to the
    networking node and ``<id>_master``). ``extra``: more master options.
    """

    def __init__(self, ns, base, repo, lab_pillar, netnode_id="netnode", extra=None):
        self.ns = ns
        self.base = str(base)
        self.conf_dir = os.path.join(self.base, "etc")
        self.pki_dir = os.path.join(self.base, "pki")
        self.sock_dir = os.path.join(self.base, "sock")
        self.log = os.path.join(self.base, "master.log")
        self.pillar_dir = os.path.join(self.base, "pillar")
        self.proc = None
        for d in (self.conf_dir, self.pki_dir, self.sock_dir, self.pillar_dir,
                  os.path.join(self.pillar_dir, "netlab")):
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(self.pillar_dir, "top.sls"), "w", encoding="utf-8") as fh:
            fh.write("base:\n  'L@{0},{0}_master':\n    - netlab.lab\n".format(netnode_id))
        self.write_pillar(lab_pillar)
        opts = {
            "id": netnode_id + "_master",
            "interface": "0.0.0.0",
            "root_dir": self.base,
            "pki_dir": self.pki_dir,
            "sock_dir": self.sock_dir,
            "cachedir": os.path.join(self.base, "cache"),
            "pidfile": os.path.join(self.base, "master.pid"),
            "log_file": self.log,
            "log_level_logfile": "info",
            "user": "root",
            "auto_accept": False,
            "open_mode": False,
            "file_roots": {"base": [str(repo)]},
            "pillar_roots": {"base": [self.pillar_dir]},
            "runner_dirs": [os.path.join(str(repo), "_runners")],
            "utils_dirs": [os.path.join(str(repo), "_utils")],
            "netlab_pillar_id": netnode_id,
            "timeout": 30,
            "worker_threads": 3,
        }
        opts.update(extra or {})
        self.opts = opts
        with open(os.path.join(self.conf_dir, "master"), "w", encoding="utf-8") as fh:
            yaml.safe_dump(opts, fh, default_flow_style=False)

    def write_pillar(self, lab_pillar):
        with open(os.path.join(self.pillar_dir, "netlab", "lab.sls"), "w",
                  encoding="utf-8") as fh:
            yaml.safe_dump({"netlab": lab_pillar}, fh, default_flow_style=False)

    def start(self, timeout=90):
        self.proc = self.ns.popen(
            [os.path.join(VENV_BIN, "salt-master"), "-c", self.conf_dir, "-l", "warning"],
            stdout=subprocess.DEVNULL, stderr=open(  # pylint: disable=consider-using-with
                os.path.join(self.base, "master.stderr"), "wb"),
            start_new_session=True)
        wait_for(lambda: self.run("salt-run", "manage.present", check=False).returncode == 0
                 or self.proc.poll() is not None, timeout, "salt-master to answer")
        if self.proc.poll() is not None:
            raise RuntimeError("salt-master exited: {}".format(serial_text(self.log)[-3000:]))
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        _kill_pidfile(os.path.join(self.base, "master.pid"))

    def run(self, tool, *args, check=True, timeout=900):
        """Run ``salt-run``/``salt``/``salt-key`` against this master, inside its
        namespace (the CLI reaches the master's request port over TCP loopback)."""
        cmd = self.ns.prefix + [os.path.join(VENV_BIN, tool), "-c", self.conf_dir] + [
            str(a) for a in args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              check=False)
        if check and proc.returncode != 0:
            raise AssertionError("{} failed ({}):\nstdout: {}\nstderr: {}".format(
                " ".join(cmd), proc.returncode, proc.stdout[-5000:], proc.stderr[-5000:]))
        return proc

    def run_json(self, tool, *args, check=True, timeout=900):
        extra = ["--static"] if tool == "salt" else []
        proc = self.run(tool, "--out=json", *extra, *args, check=check, timeout=timeout)
        try:
            return json.loads(proc.stdout) if proc.stdout.strip() else None, proc
        except ValueError:
            raise AssertionError("{} did not print JSON: {}\n{}".format(
                args, proc.stdout[-3000:], proc.stderr[-3000:])) from None

    def cmd(self, target, command, timeout=60):
        """``salt <target> cmd.run <command>`` -> the output text (fails if no answer)."""
        data, proc = self.run_json("salt", "-t", str(timeout), target, "cmd.run", command,
                                   check=False, timeout=timeout + 60)
        if not data or target not in data:
            raise AssertionError("minion {} did not answer `{}`: {} {}".format(
                target, command, proc.stdout[-2000:], proc.stderr[-2000:]))
        return data[target]

    def key_lists(self):
        data, _ = self.run_json("salt-key", "-L")
        return data


@contextlib.contextmanager
def stray_vm(netns, bridge, mac, vm_dir, firmware="bios", memory=512):
    """A VM whose MAC is not in pillar, booting from the network on ``bridge``."""
    import netlab_power  # pylint: disable=import-outside-toplevel

    os.makedirs(vm_dir, exist_ok=True)
    tap = "nlstray{}".format(mac.replace(":", "")[-4:])
    ipns = ["ip", "netns", "exec", netns]
    subprocess.run(ipns + ["ip", "tuntap", "add", "dev", tap, "mode", "tap"], check=True)
    try:
        subprocess.run(ipns + ["ip", "link", "set", tap, "master", bridge], check=True)
        subprocess.run(ipns + ["ip", "link", "set", tap, "up"], check=True)
        cmd = netlab_power.qemu_command("netlab-stray", mac, tap, vm_dir, memory=memory,
                                        firmware=firmware)
        subprocess.run(ipns + cmd, check=True, capture_output=True)
        try:
            yield os.path.join(vm_dir, "serial.log")
        finally:
            _kill_pidfile(os.path.join(vm_dir, "qemu.pid"))
    finally:
        subprocess.run(ipns + ["ip", "link", "del", tap], check=False, capture_output=True)


def stop_lab_vms(lab):
    """Stop every ``virtual`` node's qemu (fixture finalizer; the taps go with the
    test's namespace)."""
    import netlab_power  # pylint: disable=import-outside-toplevel

    for node in lab.nodes.values():
        if node.power_driver != "virtual":
            continue
        with contextlib.suppress(Exception):
            netlab_power.driver(lab, node.id).off()


def copy_logs(src_dirs, dest):
    """Keep logs of a failed run (serial logs, daemon logs) for the CI artifacts."""
    os.makedirs(dest, exist_ok=True)
    for d in src_dirs:
        if os.path.isdir(d):
            try:
                shutil.copytree(d, os.path.join(dest, os.path.basename(d.rstrip("/"))),
                                dirs_exist_ok=True, ignore=shutil.ignore_patterns(
                                    "*.sock", "*.fd", "*.ipc", "pki", "cache"))
            except shutil.Error as exc:  # sockets, vanished files: keep the rest
                print("copy_logs: {}".format(str(exc)[:500]))
