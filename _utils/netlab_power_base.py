"""
What every power driver shares: :class:`Driver` (the ``on``/``off``/``cycle``/
``status`` interface and its returns), :class:`PowerError` and the command
runner. The drivers are in :mod:`netlab_power` (and the qemu one in
:mod:`netlab_power_virtual`); callers use :func:`netlab_power.driver`.
"""

import subprocess

import netlab_lab


class PowerError(RuntimeError):
    """A power action failed; the message names the node and the driver."""

def _pillar(node_id, *keys):
    return netlab_lab.path("nodes", node_id, "power", *keys)

class Driver:
    name = "?"
    #: True when off() really switches the machine off and on() back on, so a
    #: reimage can reset the root while the node is down. Otherwise the runner
    #: resets the root first and then calls cycle().
    can_off_on = True

    def __init__(self, lab, node_id, minion_call=None, run=None):
        self.lab = lab
        self.node = lab.node(node_id)
        self.power = dict(self.node.power)
        self.minion_call = minion_call
        self._run = run or _run_cmd

    # -- helpers
    def _ret(self, action, done=True, message=""):
        return {"node": self.node.id, "driver": self.name, "action": action,
                "done": done, "message": message}

    def error(self, action, text):
        return PowerError("node {}: {} power {} failed: {}".format(
            self.node.id, self.name, action, text))

    def _via_minion(self, action, fun):
        if self.minion_call is None:
            raise self.error(action, "needs the node's running minion, and no minion "
                             "client was given (use the runner: salt-run netlab.power)")
        try:
            self.minion_call(self.node.id, fun)
        except Exception as exc:  # pylint: disable=broad-except
            raise self.error(action, "minion call {} did not succeed: {}".format(
                fun, exc)) from exc
        return self._ret(action, message="{} sent to the node's minion".format(fun))

    # -- interface
    def on(self):
        raise NotImplementedError

    def off(self):
        raise NotImplementedError

    def cycle(self):
        raise NotImplementedError

    def status(self):
        return "unknown"

    def act(self, action):
        # the CLI parses its arguments as YAML: `salt-run netlab.power nuc1 on` passes True
        action = {True: "on", False: "off"}.get(action, action) \
            if isinstance(action, bool) else action
        if action not in ("on", "off", "cycle", "status"):
            raise PowerError("node {}: unknown power action {!r} (on, off, cycle, status)"
                             .format(self.node.id, action))
        if action == "status":
            return dict(self._ret("status"), status=self.status())
        return getattr(self, action)()

def _run_cmd(cmd, env=None, timeout=30):
    """Run ``cmd`` -> (returncode, stdout, stderr); missing binary -> rc 127."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        return 127, "", "{} is not installed".format(cmd[0])
    except subprocess.TimeoutExpired:
        return 124, "", "timed out after {} s".format(timeout)
    return proc.returncode, proc.stdout, proc.stderr
