"""
Emulated power hardware for the e2e tier, each a small server the test starts
inside a lab namespace, backed by a qemu VM's QMP socket (:mod:`qmpvm`):

``ipmi``      an IPMI 2.0 (RMCP+, ``lanplus``) BMC: pyghmi's BMC server class
              (``pyghmi.ipmi.bmc.Bmc``) with chassis power on/off/cycle/reset/
              status and the boot device, for the real ``ipmitool``;
``redfish``   a Redfish service over HTTPS (service root, one system, its
              ``PowerState``, ``Boot`` override and ``ComputerSystem.Reset``),
              HTTP basic authentication (sushy-tools' emulator drives libvirt or
              OpenStack, not a plain qemu: hence this small one over QMP);
``wol``       a Wake-on-LAN receiver on UDP 9 that powers the VM on only when a
              magic packet names the VM's MAC;
``dhcpwatch`` exits once a BOOTP/DHCP request from a MAC crosses an interface
              (proof that a powered-on VM really network-boots).

Every server prints ``ready`` once it listens (the test waits for that line,
never for a fixed time) and appends one JSON line per request it acted on (or
refused) to ``--log``: the test asserts what the "hardware" saw.

Run: ``python bmc_emulators.py <kind> [options]`` (see ``main``).
"""

import argparse
import base64
import json
import os
import socket
import ssl
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmpvm import QmpPower  # noqa: E402  pylint: disable=wrong-import-position


class Log:
    def __init__(self, path):
        self.path = path

    def __call__(self, **entry):
        entry["t"] = time.time()
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")


def ready():
    print("ready", flush=True)


# --------------------------------------------------------------------------- ipmi
def serve_ipmi(args, power, log):
    import pyghmi.ipmi.bmc as bmc  # pylint: disable=import-outside-toplevel

    class QmpBmc(bmc.Bmc):
        bootdev = "default"

        def get_power_state(self):
            return "on" if power.is_on() else "off"

        def power_on(self):
            log(kind="ipmi", action="on", bootdev=self.bootdev)
            power.on()

        def power_off(self):
            log(kind="ipmi", action="off")
            power.off()

        def power_cycle(self):
            if not power.is_on():
                return 0xd5  # not supported in present state (as real BMCs answer)
            log(kind="ipmi", action="cycle", bootdev=self.bootdev)
            power.off()
            power.on()
            return None

        def power_reset(self):
            log(kind="ipmi", action="reset", bootdev=self.bootdev)
            power.reset()

        def power_shutdown(self):
            log(kind="ipmi", action="soft")
            power.off()

        def get_boot_device(self):
            return self.bootdev

        def set_boot_device(self, bootdevice):
            log(kind="ipmi", action="bootdev", device=bootdevice)
            self.bootdev = bootdevice

        def cold_reset(self):
            return 0

    server = QmpBmc({args.user: args.password}, port=args.port, address=args.address)
    ready()
    server.listen(timeout=30)


# --------------------------------------------------------------------------- redfish
SYSTEM = "/redfish/v1/Systems/{}"


def serve_redfish(args, power, log):
    state = {"target": "None", "enabled": "Disabled"}
    sysid = args.system
    want = "Basic " + base64.b64encode("{}:{}".format(args.user, args.password).encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *a):  # quiet: the JSON log says what happened
            return

        def _send(self, code, body=None):
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(code)
            if code == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="redfish"')
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self):
            if self.headers.get("Authorization") == want:
                return True
            log(kind="redfish", action="refused", method=self.command, path=self.path)
            self._send(401, {"error": {"code": "Base.1.0.GeneralError",
                                       "message": "authentication required"}})
            return False

        def _body(self):
            n = int(self.headers.get("Content-Length") or 0)
            try:
                return json.loads(self.rfile.read(n) or b"{}")
            except ValueError:
                return None

        def do_GET(self):  # noqa: N802
            path = self.path.rstrip("/")
            if path == "/redfish/v1":  # the service root needs no credentials
                return self._send(200, {"Id": "RootService", "RedfishVersion": "1.6.0",
                                        "Systems": {"@odata.id": "/redfish/v1/Systems"}})
            if not self._authorized():
                return None
            if path == "/redfish/v1/Systems":
                return self._send(200, {"Members": [{"@odata.id": SYSTEM.format(sysid)}],
                                        "Members@odata.count": 1})
            if path == SYSTEM.format(sysid):
                return self._send(200, {
                    "@odata.id": path, "Id": sysid,
                    "PowerState": "On" if power.is_on() else "Off",
                    "Boot": {"BootSourceOverrideTarget": state["target"],
                             "BootSourceOverrideEnabled": state["enabled"]},
                    "Actions": {"#ComputerSystem.Reset": {
                        "target": path + "/Actions/ComputerSystem.Reset"}}})
            return self._send(404, {"error": {"message": "no such resource"}})

        def do_PATCH(self):  # noqa: N802
            if not self._authorized():
                return None
            if self.path.rstrip("/") != SYSTEM.format(sysid):
                return self._send(405, {"error": {"message": "not patchable"}})
            boot = (self._body() or {}).get("Boot") or {}
            target = boot.get("BootSourceOverrideTarget")
            if target not in ("None", "Pxe", "Hdd", "Cd", "BiosSetup"):
                return self._send(400, {"error": {"message": "bad boot target"}})
            state["target"] = target
            state["enabled"] = boot.get("BootSourceOverrideEnabled", "Once")
            log(kind="redfish", action="bootdev", device=target, enabled=state["enabled"])
            return self._send(204)

        def do_POST(self):  # noqa: N802
            if not self._authorized():
                return None
            if self.path.rstrip("/") != SYSTEM.format(sysid) + \
                    "/Actions/ComputerSystem.Reset":
                return self._send(404, {"error": {"message": "no such action"}})
            kind = (self._body() or {}).get("ResetType")
            if kind == "On":
                log(kind="redfish", action="on", bootdev=state["target"])
                power.on()
            elif kind in ("ForceOff", "GracefulShutdown"):
                log(kind="redfish", action="off")
                power.off()
            elif kind in ("ForceRestart", "PowerCycle", "GracefulRestart"):
                log(kind="redfish", action="cycle", bootdev=state["target"])
                power.reset()
            else:
                return self._send(400, {"error": {"message": "bad ResetType"}})
            return self._send(204)

    server = ThreadingHTTPServer((args.address, args.port), Handler)
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    ready()
    server.serve_forever()


# --------------------------------------------------------------------------- wol
def serve_wol(args, power, log):
    mine = bytes.fromhex(args.mac.replace(":", ""))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("", args.port))
        ready()
        while True:
            data, peer = sock.recvfrom(2048)
            named = data[6:12].hex(":") if len(data) >= 102 else None
            if data[:6] == b"\xff" * 6 and data[6:102] == mine * 16:
                log(kind="wol", action="on", mac=named, sender=peer[0])
                power.on()
            else:
                log(kind="wol", action="ignored", mac=named, sender=peer[0])


# --------------------------------------------------------------------------- dhcp
def dhcpwatch(args):
    mac = bytes.fromhex(args.mac.replace(":", ""))
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800)) as sock:
        sock.bind((args.iface, 0))
        ready()
        while True:
            frame = sock.recv(2048)
            if len(frame) < 14 + 20 + 8 + 34 or frame[23] != 17:
                continue
            ihl = (frame[14] & 0x0F) * 4
            udp = 14 + ihl
            if struct.unpack("!H", frame[udp + 2:udp + 4])[0] != 67:
                continue
            bootp = udp + 8
            if frame[bootp + 28:bootp + 34] == mac:
                print("dhcp request from {}".format(args.mac), flush=True)
                return


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=("ipmi", "redfish", "wol", "dhcpwatch"))
    p.add_argument("--qmp")
    p.add_argument("--log")
    p.add_argument("--address", default="0.0.0.0")
    p.add_argument("--port", type=int)
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--system", default="node1")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--mac")
    p.add_argument("--iface")
    args = p.parse_args(argv)
    if args.kind == "dhcpwatch":
        return dhcpwatch(args)
    power, log = QmpPower(args.qmp), Log(args.log)
    if args.kind == "ipmi":
        args.port = args.port or 623
        return serve_ipmi(args, power, log)
    if args.kind == "redfish":
        args.port = args.port or 443
        return serve_redfish(args, power, log)
    args.port = args.port or 9
    return serve_wol(args, power, log)


if __name__ == "__main__":
    sys.exit(main())
