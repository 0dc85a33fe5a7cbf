"""
Power drivers behind one interface: ``on``, ``off``, ``cycle``, ``status``.

``driver(lab, node_id, ...)`` returns the driver object for a node (pillar
``netlab:nodes:<id>:power``). Every method returns a dict
``{'node', 'driver', 'action', 'done', 'message'}``; ``done`` is False when a
person has to act (``manual``) and ``message`` says what to do. ``status()``
returns ``'on'``, ``'off'`` or ``'unknown'``. Failures raise :class:`PowerError`
whose message names the node and the driver.

Drivers:

``wol``      Wake-on-LAN magic packet (same packet as Salt's ``network.wol``) to the
             lab network's broadcast address (or ``broadcast``), UDP ``port`` (9).
             Off / cycle go through the node's running minion (``minion_call``);
             "off" needs both ping and an ARP probe (``arp``) unanswered: a
             node that drops ICMP is not taken for off.
``ipmi``     ``ipmitool -I lanplus -H <address> -U <username> -E chassis power ...``;
             the password travels in the environment (``IPMI_PASSWORD``), never on
             the command line. ``on``/``cycle`` first set the next boot to PXE
             (``chassis bootdev pxe``) unless ``bootdev: none``.
``redfish``  a BMC's Redfish service over HTTPS (``address``, ``username``,
             ``password``; ``port``, ``system``, ``verify``): boot override Pxe, then
             ``ComputerSystem.Reset`` (On, ForceOff, ForceRestart).
``reboot``   through the node's running minion (``system.reboot`` /
             ``system.poweroff``); cannot power on a machine that is off.
``manual``   tells the user what to press (``instructions`` in pillar adds to it).
``virtual``  a qemu VM netlab starts itself: no disk, one NIC with the node's MAC on
             a tap in ``bridge`` (optionally inside network namespace ``netns``),
             network boot, BIOS (SeaBIOS) or UEFI (OVMF). KVM when it works, else TCG.
             pid file, serial log and monitor socket in ``<state_dir>/vms/<node>/``
             (:mod:`netlab_power_virtual`).

The shared interface is :mod:`netlab_power_base`; this module is the one callers
import.
"""

import os
import re
import socket
import time

import netlab_lab
# pylint: disable=unused-import
from netlab_power_base import Driver, PowerError, _pillar, _run_cmd  # noqa: F401
from netlab_power_virtual import (  # noqa: F401
    OVMF_CODE, OVMF_VARS, Virtual, accel_args, kvm_works, qemu_command)



# --------------------------------------------------------------------------- wol
def magic_packet(mac):
    """The Wake-on-LAN magic packet for ``mac`` (6 x 0xff + 16 x the MAC)."""
    norm = netlab_lab.normalize_mac(mac)
    if norm is None:
        raise ValueError("{!r} is not a MAC address".format(mac))
    raw = bytes.fromhex(norm.replace(":", ""))
    return b"\xff" * 6 + raw * 16


ETH_P_ARP = 0x0806


def arp_answers(interface, ip, src_ip, timeout=1.0):
    """True when ``ip`` answers an ARP request sent on ``interface`` within
    ``timeout`` seconds. A machine that is on answers ARP even when it drops ICMP.
    Needs root (a raw socket); raises OSError when the probe cannot run."""
    with open("/sys/class/net/{}/address".format(interface), encoding="ascii") as fh:
        own = bytes.fromhex(fh.read().strip().replace(":", ""))
    target = socket.inet_aton(ip)
    arp = (b"\x00\x01\x08\x00\x06\x04\x00\x01" + own + socket.inet_aton(src_ip)
           + b"\x00" * 6 + target)
    frame = b"\xff" * 6 + own + ETH_P_ARP.to_bytes(2, "big") + arp
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
        sock.bind((interface, ETH_P_ARP))
        sock.sendto(frame, (interface, ETH_P_ARP))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            sock.settimeout(left)
            try:
                data = sock.recv(128)
            except socket.timeout:
                return False
            # an ARP reply (op 2) whose sender protocol address is the node's IP
            if len(data) >= 42 and data[12:14] == b"\x08\x06" and data[20:22] == b"\x00\x02" \
                    and data[28:32] == target:
                return True


class Wol(Driver):
    name = "wol"

    def __init__(self, lab, node_id, minion_call=None, run=None, sender=None, arp=None):
        super().__init__(lab, node_id, minion_call, run)
        self.arp = arp or (lambda ip: arp_answers(lab.network.interface, ip, lab.netnode.ip))
        import netaddr  # pylint: disable=import-outside-toplevel

        self.broadcast = self.power.get("broadcast") or str(
            netaddr.IPNetwork(lab.network.cidr).broadcast)
        port = self.power.get("port", 9)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise PowerError("{}: {!r} is not a UDP port".format(_pillar(node_id, "port"),
                                                                  port))
        self.port = port
        self.sender = sender or self._send

    def _send(self, packet, addr):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.sendto(packet, addr)

    def on(self):
        try:
            self.sender(magic_packet(self.node.mac), (self.broadcast, self.port))
        except OSError as exc:
            raise self.error("on", "sending the magic packet for {} to {}:{}: {}".format(
                self.node.mac, self.broadcast, self.port, exc)) from exc
        return self._ret("on", message="magic packet for {} sent to {}:{}".format(
            self.node.mac, self.broadcast, self.port))

    def off(self, wait=90):
        """Power off through the minion, then wait until the node stops answering
        ping (a magic packet sent while it is still shutting down is lost)."""
        try:
            ret = self._via_minion("off", "system.poweroff")
        except PowerError:
            rc = self._ping(2, 10)
            if rc == 1 and self._arp_alive():
                raise self.error("off", "{} answers ARP but not ping (ICMP blocked?) and "
                                 "its minion does not answer: the node is on; cannot "
                                 "switch it off".format(self.node.ip)) from None
            if rc == 1:  # no minion, no answer on its IP: it is off already
                return self._ret("off", message="already off (neither its minion nor {} "
                                 "answers ping or ARP)".format(self.node.ip))
            raise
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            rc = self._ping(1, 5)
            if rc == 1 and not self._arp_alive():
                time.sleep(5)  # the NIC goes into WoL standby after the last packet
                return dict(ret, message=ret["message"] + "; {} no longer answers ping"
                            .format(self.node.ip))
            time.sleep(2)
        raise self.error("off", "{} still answers ping or ARP {} s after "
                         "system.poweroff".format(self.node.ip, wait))

    def cycle(self):
        return self._via_minion("cycle", "system.reboot")

    def _arp_alive(self):
        """A silent ping is not "off" when ICMP is dropped: ask ARP, which a running
        machine answers. A probe that cannot run is an error, not "off"."""
        try:
            return bool(self.arp(self.node.ip))
        except OSError as exc:
            raise self.error("off", "cannot tell whether {} is off: ping gets no answer "
                             "and the ARP probe failed: {}".format(self.node.ip, exc)) \
                from exc

    def _ping(self, count, timeout):
        """ping's exit status: 0 answers, 1 no answer. Anything else (ping missing:
        127, not permitted, bad address: 2) is an error: taking it for "off" would
        reset the root under a running node."""
        rc, out, err = self._run(["ping", "-c", str(count), "-W", "1", self.node.ip],
                                 timeout=timeout)
        if rc not in (0, 1):
            raise self.error("off", "cannot tell whether {} is off: ping exit {}: {}".format(
                self.node.ip, rc, (err or out).strip() or "no output"))
        return rc


# --------------------------------------------------------------------------- ipmi
class Ipmi(Driver):
    name = "ipmi"

    def _cmd(self, action, what=("chassis", "power")):
        p = self.power
        # -v: the session's failure reason (wrong password, no answer) goes to stderr;
        # without it every one of them is "Unable to establish IPMI v2 / RMCP+ session"
        cmd = ["ipmitool", "-I", str(p.get("interface") or "lanplus"),
               "-H", str(p["address"]), "-U", str(p["username"]), "-E", "-v"]
        if p.get("port"):
            cmd += ["-p", str(p["port"])]
        cmd += list(what) + [action]
        env = dict(os.environ, IPMI_PASSWORD=str(p["password"]))
        rc, out, err = self._run(cmd, env=env, timeout=30)
        if rc != 0:
            # the BMC's address stays out of the text: it reaches events and job returns
            text = ipmi_error(err or out, self.node.id).replace(str(p["address"]), "<bmc>")
            label = action if what[-1] == "power" else "{} {}".format(what[-1], action)
            raise self.error(label, "BMC: {}".format(text or "ipmitool exit {}".format(rc)))
        return out.strip()

    def _pxe(self, action):
        """Next boot from the network (pillar ``bootdev: none`` leaves the BIOS
        order alone): a node whose local disk boots first would never reach netlab."""
        if self.power.get("bootdev", "pxe") == "pxe":
            self._cmd("pxe", what=("chassis", "bootdev"))
        del action

    def on(self):
        self._pxe("on")
        return self._ret("on", message=self._cmd("on"))

    def off(self):
        return self._ret("off", message=self._cmd("off"))

    def cycle(self):
        self._pxe("cycle")
        # `chassis power cycle` fails on a machine that is off: switch it on then
        if self.status() == "off":
            return self._ret("cycle", message=self._cmd("on"))
        return self._ret("cycle", message=self._cmd("cycle"))

    def status(self):
        out = self._cmd("status").lower()
        if out.endswith(" on"):
            return "on"
        if out.endswith(" off"):
            return "off"
        return "unknown"


def ipmi_error(text, node_id):
    """ipmitool's (verbose) error output -> its error line and what it means."""
    lines = [line.strip(" >") for line in str(text).splitlines() if line.strip(" >")]
    errors = [line for line in lines if line.startswith("Error")] or lines[-1:]
    msg = errors[-1] if errors else ""
    low = str(text).lower()
    if any(t in low for t in ("hmac is invalid", "unauthorized name",
                              "invalid authentication")):
        msg += " (the BMC refused the user name or password in {})".format(
            _pillar(node_id))
    elif "no response from rakp 1" in low:
        msg += " (the BMC did not answer the session request: an unknown user name in " \
            "{}, or IPMI over LAN disabled for it)".format(_pillar(node_id))
    elif "get auth capabilities error" in low or "no response" in low:
        msg += " (no answer from the BMC: check {} and {} and that IPMI over LAN is " \
            "enabled)".format(_pillar(node_id, "address"), _pillar(node_id, "port"))
    return msg


# --------------------------------------------------------------------------- redfish
class Redfish(Driver):
    """A BMC's Redfish service over HTTPS (DMTF Redfish: the ComputerSystem's
    ``PowerState``, ``Boot`` override and ``ComputerSystem.Reset`` action).

    Plain ``urllib`` and ``ssl`` from the standard library: netlab needs four
    requests (find the system, read it, PATCH its boot override, POST a reset),
    which does not justify sushy and its dependency tree on the networking node.
    """

    name = "redfish"

    def __init__(self, lab, node_id, minion_call=None, run=None, urlopen=None):
        super().__init__(lab, node_id, minion_call, run)
        import urllib.request  # pylint: disable=import-outside-toplevel

        p = self.power
        self.base = "https://{}:{}".format(p["address"], p.get("port") or 443)
        self._urlopen = urlopen or urllib.request.urlopen
        self._system = ("/redfish/v1/Systems/" + str(p["system"])) if p.get("system") \
            else None
        self._ssl = self._ssl_context(p.get("verify", True))

    @staticmethod
    def _ssl_context(verify):
        import ssl  # pylint: disable=import-outside-toplevel

        if verify is False:  # a BMC's self-signed certificate, accepted knowingly
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        if isinstance(verify, str):  # the CA bundle that signed the BMC's certificate
            ctx = ssl.create_default_context(cafile=verify)
            ctx.check_hostname = False  # BMCs are reached by address, not by name
            return ctx
        return ssl.create_default_context()

    def _request(self, action, method, path, body=None):
        import base64  # pylint: disable=import-outside-toplevel
        import json  # pylint: disable=import-outside-toplevel
        import urllib.error  # pylint: disable=import-outside-toplevel
        import urllib.request  # pylint: disable=import-outside-toplevel

        p = self.power
        auth = base64.b64encode("{}:{}".format(p["username"], p["password"]).encode())
        req = urllib.request.Request(
            self.base + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": "Basic " + auth.decode(), "Accept": "application/json",
                     "Content-Type": "application/json"})
        try:
            with self._urlopen(req, timeout=30, context=self._ssl) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise self.error(action, "the BMC refused the user name or password in {} "
                                 "(HTTP {})".format(_pillar(self.node.id), exc.code)) from None
            raise self.error(action, "{} {}: HTTP {} {}".format(
                method, path, exc.code, _redfish_message(exc))) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = str(getattr(exc, "reason", exc)).replace(str(p["address"]), "<bmc>")
            raise self.error(action, "cannot reach the BMC's Redfish service: {}".format(
                reason)) from None
        try:
            return json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise self.error(action, "{} {} did not answer JSON".format(method, path)) \
                from None

    def system(self, action="status"):
        """The ComputerSystem's path: pillar ``system``, else the only member."""
        if self._system is None:
            members = self._request(action, "GET", "/redfish/v1/Systems").get("Members") or []
            if len(members) != 1:
                raise self.error(action, "the BMC lists {} systems; name one in {}".format(
                    len(members), _pillar(self.node.id, "system")))
            self._system = members[0]["@odata.id"].rstrip("/")
        return self._system

    def _reset(self, action, kind):
        if self.power.get("bootdev", "pxe") == "pxe" and kind != "ForceOff":
            self._request(action, "PATCH", self.system(action), {"Boot": {
                "BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}})
        self._request(action, "POST", self.system(action) + "/Actions/ComputerSystem.Reset",
                      {"ResetType": kind})
        return self._ret(action, message="ComputerSystem.Reset {} accepted".format(kind))

    def status(self):
        state = str(self._request("status", "GET", self.system()).get("PowerState", ""))
        return {"on": "on", "off": "off"}.get(state.lower(), "unknown")

    def on(self):
        if self.status() == "on":
            return self._ret("on", message="already on")
        return self._reset("on", "On")

    def off(self):
        if self.status() == "off":
            return self._ret("off", message="already off")
        return self._reset("off", "ForceOff")

    def cycle(self):
        if self.status() == "off":
            return dict(self._reset("cycle", "On"))
        return self._reset("cycle", "ForceRestart")


def _redfish_message(exc):
    import json  # pylint: disable=import-outside-toplevel

    try:
        err = json.loads(exc.read() or b"{}").get("error") or {}
        return str(err.get("message") or err.get("code") or exc.reason)
    except (ValueError, OSError, AttributeError):
        return str(exc.reason)


# --------------------------------------------------------------------------- reboot
class Reboot(Driver):
    name = "reboot"
    can_off_on = False

    def on(self):
        raise self.error("on", "the reboot driver can only restart a running node; "
                         "switch it on by hand (or give it a wol/ipmi power driver)")

    def off(self):
        return self._via_minion("off", "system.poweroff")

    def cycle(self):
        return self._via_minion("cycle", "system.reboot")


# --------------------------------------------------------------------------- manual
class Manual(Driver):
    name = "manual"
    can_off_on = False

    def _tell(self, action, what):
        n = self.node
        text = "node {} ({}, MAC {}): {}".format(n.id, n.fqdn, n.mac, what)
        extra = self.power.get("instructions")
        if extra:
            text += " -- " + str(extra)
        return self._ret(action, done=False, message=text)

    def on(self):
        return self._tell("on", "press the power button to switch it on "
                          "(it boots from the network)")

    def off(self):
        return self._tell("off", "hold the power button until it is off")

    def cycle(self):
        return self._tell("cycle", "press reset (or switch it off and on again) "
                          "so it boots from the network")


def console_tail(lab, node_id, lines=15):
    """The last ``lines`` lines of a ``virtual`` node's serial console (what a
    person would read on the screen of a node that did not come back), printable
    characters only; None for other drivers or when there is no log."""
    node = lab.node(node_id)
    if node.power_driver != "virtual":
        return None
    path = os.path.join(lab.netnode.state_dir, "vms", node_id, "serial.log")
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1bc", "", text)
    text = "".join(c for c in text.replace("\r\n", "\n").replace("\r", "\n")
                   if c == "\n" or c == "\t" or c.isprintable())
    kept = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


DRIVERS = {"wol": Wol, "ipmi": Ipmi, "redfish": Redfish, "reboot": Reboot, "manual": Manual,
           "virtual": Virtual}


def driver(lab, node_id, **kw):
    """The power driver object of ``node_id``.

    Keyword arguments: ``minion_call(node_id, fun)`` (wol/reboot off and cycle go
    through the node's minion), ``run(cmd, env=None, timeout=30) -> (rc, out, err)``
    (command runner, replaced in tests), ``vm_dir``/``qemu`` (virtual), ``sender``
    (wol: ``sender(packet, (addr, port))``).
    """
    node = lab.node(node_id)
    cls = DRIVERS.get(node.power_driver)
    if cls is None:  # pragma: no cover - the lab model validates the driver
        raise PowerError("{}: unknown power driver {!r}".format(
            _pillar(node_id, "driver"), node.power_driver))
    accepted = {"minion_call", "run"}
    if cls is Virtual:
        accepted |= {"vm_dir", "qemu"}
    if cls is Wol:
        accepted |= {"sender", "arp"}
    if cls is Redfish:
        accepted |= {"urlopen"}
    return cls(lab, node_id, **{k: v for k, v in kw.items() if k in accepted})


def power(lab, node_id, action, **kw):
    """Run ``action`` (on, off, cycle, status) on ``node_id``; see :func:`driver`."""
    return driver(lab, node_id, **kw).act(action)
