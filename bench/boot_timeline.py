#!/opt/netlab-venv/bin/python
"""
Boot timeline benchmark (a script, not a test): where a node's boot time goes.

Boots lab VMs for real (the e2e harness of test/e2e/test_vms.py: the formula's
netnode services applied by the networking node's own minion in a namespace,
a salt-master there, ``salt-run netlab.reimage`` powering ``virtual`` nodes),
first one node alone, then all nodes of a 1+2 lab at once, and prints one row
per stage with the seconds since power-on, each read from what a daemon or the
node records:

=====================  ==================================================
stage                  source
=====================  ==================================================
power on               ``booting`` transition in lifecycle.json (runner)
DHCP offer (PXE)       dnsmasq's log: first DHCPOFFER to the node's MAC
iPXE script fetched    nginx access log: ``GET /...ipxe``
kernel+initrd fetched  nginx access log: ``GET .../initrd.img`` (logged
                       when the transfer ends)
kernel started         serial console: ``Linux version`` (time the line
                       appeared; the bench polls the log every 0.1 s)
NFS root mounted       serial console: ``Running /scripts/nfs-bottom``
systemd userspace      serial console: systemd's ``Welcome to`` banner
salt-minion started    serial console: ``Started salt-minion.service``
minion authenticated   master log: ``Authentication accepted from <id>``
                       (the minion has imported Salt and computed its
                       grains; a second line would be a retry)
start event seen       master log: the runner's confirming ``test.ping``
                       published (it sends it when ``salt/minion/<id>/start``
                       arrives)
start event at master  ``up`` transition in lifecycle.json (the runner
                       records it when the minion has answered that ping)
first test.ping        ``salt <id> test.ping`` answered (polled from the
                       moment the runner returns)
=====================  ==================================================

Each scenario runs ``--runs`` times (default 3); the table shows the median.
The node's own view (``systemd-analyze``, ``blame``, the minion's critical
chain, and what ``--probe``, ``--grains-cost`` and ``--trace-minion`` ask for) is
taken after the first run and printed at the end.

Run as root, under the shared e2e lock (VM boots are CPU-heavy)::

    flock /work/wt/e2e.lock /opt/netlab-venv/bin/python bench/boot_timeline.py

``--single-only`` / ``--all-only`` pick one scenario. Needs the test image
(built on first use by test/lib/image.py). Everything it creates
(namespaces, daemons, VMs, temp dirs) is removed, also on failure.
"""

import argparse
import datetime
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
for _p in (REPO / "_utils", REPO / "test", REPO / "test" / "e2e"):
    sys.path.insert(0, str(_p))

import netlab_lab  # noqa: E402

CIDR = "10.96.0.0/24"
NETNODE_IP = "10.96.0.2"
NODES = (("n1", "52:54:00:96:00:11", "10.96.0.11", "controller"),
         ("n2", "52:54:00:96:00:12", "10.96.0.12", "compute"),
         ("n3", "52:54:00:96:00:13", "10.96.0.13", "compute"))
STAGES = ("DHCP offer (PXE)", "iPXE script fetched", "kernel+initrd fetched",
          "kernel started", "NFS root mounted", "systemd userspace",
          "salt-minion started", "minion authenticated", "start event seen",
          "start event at master", "first test.ping")
SERIAL_MARKS = (("kernel started", re.compile(r"Linux version ")),
                ("NFS root mounted", re.compile(r"Running /scripts/nfs-bottom")),
                ("systemd userspace", re.compile(r"Welcome to ")),
                ("salt-minion started", re.compile(r"Started .*salt-minion\.service")))
BOOT_TIMEOUT = 900
MEMORY = 1024


def lab_pillar(base):
    """1 controller + 2 computes, BIOS, persistent roots (the virtual lab's shape)."""
    run = str(base / "run")
    virtual = {"driver": "virtual", "bridge": "br0", "memory": MEMORY, "cpus": 1,
               "firmware": "bios"}
    return {
        "network": {"interface": "br0", "cidr": CIDR, "domain": "lab.test",
                    "dhcp": {"mode": "full", "lease_time": "1h"},
                    "dns": {"enabled": True, "upstream": []}},
        "netnode": {"id": "netnode", "ip": NETNODE_IP, "storage": str(base / "srv"),
                    "nfs": {"server": "ganesha"}, "http": {"port": 80}},
        "devstack": {"user": "stack"},
        "nodes": {n: {"mac": mac, "ip": ip, "role": role, "power": dict(virtual)}
                  for n, mac, ip, role in NODES},
        "lookup": {
            "service_control": "process", "run_dir": run, "install_packages": False,
            "dnsmasq": {"conf": str(base / "etc" / "dnsmasq.conf"),
                        "leasefile": run + "/dnsmasq.leases", "ra": True},
            "nginx": {"conf": str(base / "etc" / "nginx-netlab.conf")},
            "nfs": {"ganesha_conf": str(base / "etc" / "ganesha.conf")},
        },
    }


class SerialWatch(threading.Thread):
    """Records the wall time at which each marker first shows in a node's
    serial log (qemu writes it as the guest prints)."""

    def __init__(self, path, after):
        super().__init__(daemon=True)
        self.path, self.after = path, after
        self.seen = {}
        self.lines = []  # (wall time first seen, line)
        self.stop = threading.Event()
        try:  # the previous boot's log: power on moves it to serial.log.prev
            self.old = os.stat(path).st_ino
        except OSError:
            self.old = None

    def run(self):
        while not self.stop.is_set():
            try:
                st = os.stat(self.path)
                if st.st_ino != self.old and st.st_mtime >= self.after:
                    with open(self.path, "rb") as fh:
                        text = fh.read().decode("utf-8", "replace")
                    now = time.time()
                    lines = text.split("\n")[:-1]  # the last one may be incomplete
                    for line in lines[len(self.lines):]:
                        self.lines.append((now, line))
                    for stage, rx in SERIAL_MARKS:
                        if stage not in self.seen and rx.search(text):
                            self.seen[stage] = now
            except OSError:
                pass
            self.stop.wait(0.1)


def _log_lines(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read().splitlines()
    except OSError:
        return []


def dnsmasq_offer(path, mac, after):
    """Wall time of the first DHCPOFFER to ``mac`` at or after ``after`` (1 s steps)."""
    year = datetime.datetime.now().year
    for line in _log_lines(path):
        if "DHCPOFFER" in line and mac in line.lower():
            try:
                ts = datetime.datetime.strptime("{} {}".format(year, line[:15]),
                                                "%Y %b %d %H:%M:%S").timestamp()
            except ValueError:
                continue
            if ts >= int(after):
                return ts
    return None


NGINX_RE = re.compile(r'^(\S+) \S+ \S+ \[([^\]]+)\] "GET (\S+)')


def nginx_fetches(path, ip, after):
    """{'ipxe': t, 'initrd': t, 'kernel': t}: first fetch of each by ``ip``."""
    out = {}
    for line in _log_lines(path):
        m = NGINX_RE.match(line)
        if not m:
            continue
        try:
            ts = datetime.datetime.strptime(m.group(2), "%d/%b/%Y:%H:%M:%S %z").timestamp()
        except ValueError:
            continue
        if ts < int(after):
            continue
        url = m.group(3)
        kind = ("ipxe" if url.endswith(".ipxe") else "initrd" if url.endswith("initrd.img")
                else "kernel" if url.endswith("vmlinuz") else None)
        # the firmware fetches the script before it has the node's final IP:
        # any client counts for the script, the node's IP for kernel/initrd
        if kind and kind not in out and (kind == "ipxe" or m.group(1) == ip):
            out[kind] = ts
    return out


PUBLISHED = re.compile(r"Published command test\.ping with jid (\d+)")
RETURNED = re.compile(r"Got return from (\S+) for job (\d+)")


def master_marks(path, node, after, up):
    """From the master's log (info level), for ``node`` powered on at ``after`` and
    recorded ``up`` at ``up``: ``{"minion authenticated": t, "start event seen": t,
    "auth lines": n, "pings": n}``. The runner answers a start event with a
    ``test.ping`` to that minion and records ``up`` when it is answered; the
    earliest ping published after the authentication that this node returned
    marks the start event's arrival, ``pings`` counts those published until ``up``
    (more than one: the runner asked again)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = trace_lines(fh.read(), utc=False)
    except OSError:
        return {}
    lines = [(t, msg) for t, _, msg in lines if t >= int(after)]
    auth = [t for t, msg in lines if msg == "Authentication accepted from " + node]
    out = {"auth lines": len(auth)}
    if not auth:
        return out
    out["minion authenticated"] = auth[0]
    end = up or float("inf")
    published = {}
    for t, msg in lines:
        m = PUBLISHED.search(msg)
        if m and auth[0] <= t <= end:
            published[m.group(1)] = t
    returned_by = {}
    for _, msg in lines:
        m = RETURNED.search(msg)
        if m:
            returned_by.setdefault(m.group(2), set()).add(m.group(1))
    # this node's pings: answered by it, or by nobody (a try that timed out)
    mine = sorted(t for jid, t in published.items()
                  if node in returned_by.get(jid, {node}))
    if mine:
        out["start event seen"] = mine[0]
        out["pings"] = len(mine)
    return out


def lifecycle_times(lab, node):
    path = os.path.join(lab.netnode.state_dir, "lifecycle.json")
    with open(path, encoding="utf-8") as fh:
        hist = json.load(fh)["nodes"][node]["history"]
    booting = [h["at"] for h in hist if h["state"] == "booting"]
    up = [h["at"] for h in hist if h["state"] == "up"]
    return (booting[-1] if booting else None), (up[-1] if up else None)


def one_run(env, nodes):
    lab, master = env["lab"], env["master"]
    run_dir = env["base"] / "run"
    t_start = time.time()
    watches = {}
    for n in nodes:
        w = SerialWatch(os.path.join(lab.netnode.state_dir, "vms", n, "serial.log"),
                        t_start)
        w.start()
        watches[n] = w
    data, proc = master.run_json("salt-run", "netlab.reimage", ",".join(nodes),
                                 "timeout={}".format(BOOT_TIMEOUT), check=False,
                                 timeout=BOOT_TIMEOUT + 600)
    if not data or data.get("failed") or proc.returncode:
        for w in watches.values():
            w.stop.set()
        raise RuntimeError("reimage {} failed: {}\n{}".format(
            nodes, proc.stdout[-3000:], proc.stderr[-2000:]))
    pinged = {}
    for _ in range(3):  # one job per try, answered when the node runs it
        left = [n for n in nodes if n not in pinged]
        if not left:
            break
        got, _ = master.run_json("salt", "-t", "120", "-L", ",".join(left), "test.ping",
                                 check=False, timeout=300)
        now = time.time()
        for n, ok in (got or {}).items():
            if ok is True and n not in pinged:
                pinged[n] = now
    rows = {}
    for n in nodes:
        watches[n].stop.set()
        watches[n].join(2)
        power, up = lifecycle_times(lab, n)
        node = lab.node(n)
        fetch = nginx_fetches(str(run_dir / "nginx-access.log"), node.ip, power)
        marks = {
            "DHCP offer (PXE)": dnsmasq_offer(str(run_dir / "dnsmasq.log"), node.mac, power),
            "iPXE script fetched": fetch.get("ipxe"),
            "kernel+initrd fetched": max(filter(None, (fetch.get("initrd"),
                                                       fetch.get("kernel"))), default=None),
            "start event at master": up,
            "first test.ping": pinged.get(n),
        }
        marks.update(watches[n].seen)
        from_master = master_marks(master.log, n, power, up)
        marks.update(from_master)
        rows[n] = {s: (marks[s] - power if marks.get(s) else None) for s in STAGES}
        rows[n]["auth lines"] = from_master.get("auth lines")
        rows[n]["pings"] = from_master.get("pings")
        if env.get("logs"):
            name = "{}-{}nodes-{}.serial".format(n, len(nodes), int(t_start))
            with open(os.path.join(env["logs"], name), "w", encoding="utf-8") as fh:
                for ts, line in watches[n].lines:
                    fh.write("{:7.2f} {}\n".format(ts - power, line.rstrip("\r")))
        rows[n]["reset s"] = data["nodes"][n].get("reset_seconds")
        rows[n]["method"] = data["nodes"][n].get("method")
    return rows


def node_view(master, node):
    """The node's own account: systemd-analyze, blame, the minion's critical chain."""
    cmd = ("systemd-analyze; echo; systemd-analyze blame --no-pager | head -n 12; echo; "
           "systemd-analyze critical-chain --no-pager salt-minion.service; echo; "
           "ls -l /boot/initrd.img* /initrd.img 2>/dev/null; du -sx --block-size=1M / "
           "2>/dev/null | tail -n 1")
    try:
        return master.cmd(node, cmd, timeout=120)
    except AssertionError as exc:
        return "(no answer: {})".format(exc)


# --probe: where the minion's own start goes, measured on the node after its boot.
# The page cache is dropped first so Python reads the venv over NFS as at boot;
# salt-call authenticates with the node's key, fetches its pillar and loads its
# modules as the minion does before its start event.
PROBE = r"""
py=/opt/salt/bin/python3; sc=/opt/salt/bin/salt-call
sync; echo 3 > /proc/sys/vm/drop_caches
ms() { echo $(( $(date +%s%N) / 1000000 )); }
s=$(ms); $py -c 'import salt.minion'; echo "import salt.minion, cold page cache: $(( $(ms) - s )) ms"
s=$(ms); $py -c 'import salt.minion'; echo "import salt.minion, warm: $(( $(ms) - s )) ms"
s=$(ms); $sc --local grains.items --out=txt >/dev/null 2>&1
echo "salt-call --local grains.items (imports + grains): $(( $(ms) - s )) ms"
sync; echo 3 > /proc/sys/vm/drop_caches
s=$(ms); $sc --retcode-passthrough test.ping >/dev/null 2>&1
echo "salt-call test.ping (auth, pillar, modules): $(( $(ms) - s )) ms"
:  2>&1 | cut -c1-160 | tail -n 40
echo; echo "-X importtime, largest cumulative (us):"
$py -X importtime -c 'import salt.minion' 2>&1 | sort -t'|' -k2 -n | tail -n 12
"""


def node_probe(master, node):
    """The minion's start in parts (see PROBE), as the node reports it."""
    try:
        return master.cmd(node, PROBE, timeout=900)
    except AssertionError as exc:
        return "(no answer: {})".format(exc)


# --trace-minion: the minion's own start, line by line. On the booted node the
# minion is restarted with a debug log file and a cold page cache (as at boot);
# the log (on the node's NFS root, read here from the host) says where the time
# between the restart and the minion's readiness goes.
TRACE_ON = r"""
printf 'log_level_logfile: debug\n' > /etc/salt/minion.d/zz-bench-trace.conf
systemd-run --quiet --on-active=3 /bin/sh -c 'sync; echo 3 > /proc/sys/vm/drop_caches; : > /var/log/salt/minion; date +%s.%N > /var/tmp/bench-restart; systemctl restart salt-minion'
echo scheduled
"""
TRACE_OFF = ("rm -f /etc/salt/minion.d/zz-bench-trace.conf /var/tmp/bench-restart; "
             "systemd-run --quiet --on-active=2 systemctl restart salt-minion; echo ok")
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) \[([^\]]+)\]\[[^\]]*\]"
                      r"(?:\[\d+\])? ?(.*)$")


def trace_lines(text, utc=True):
    """(epoch seconds, logger, message) of each line of a Salt log file; ``utc``:
    its times are UTC (a node's), else this host's local time (the master's)."""
    out = []
    for line in text.splitlines():
        m = LOG_LINE.match(line)
        if not m:
            continue
        when = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
        if utc:
            when = when.replace(tzinfo=datetime.timezone.utc)
        when = when.timestamp() + int(m.group(2)) / 1000.0
        out.append((when, m.group(3).split(":")[0].strip(), m.group(4).strip()))
    return out


def trace_report(restart, lines, ready_marks=("salt/minion/", "Minion is ready")):
    """A few lines of text: the restart -> first log line (interpreter start and
    imports until logging is set up), the largest gaps between two log lines
    (what ran between them), and the restart -> start event total."""
    if not lines:
        return "(no minion log lines)"
    # the node image runs on UTC, so its log's local times are UTC
    lines = [(t, who, msg) for t, who, msg in lines if t >= restart - 1]
    if not lines:
        return "(no minion log lines after the restart)"
    end = next((t for t, _, msg in lines if "/start" in msg and any(
        k in msg for k in ready_marks)), lines[-1][0])
    rows = ["restart -> first log line (imports, config): {:.1f} s".format(
        lines[0][0] - restart)]
    gaps = sorted(((b[0] - a[0], a, b) for a, b in zip(lines, lines[1:]) if b[0] <= end),
                  key=lambda g: -g[0])[:10]
    for gap, a, b in gaps:
        rows.append("  {:5.1f} s at +{:5.1f}  after [{}] {}".format(
            gap, a[0] - restart, a[1], a[2][:110]))
    rows.append("restart -> start event fired: {:.1f} s ({} log lines)".format(
        end - restart, len(lines)))
    return "\n".join(rows)


def trace_minion(env, node):
    """Restart ``node``'s minion with a debug log and a cold page cache, wait
    until it answers again, and say where its start went (trace_report)."""
    master, lab = env["master"], env["lab"]
    import netlab_roots  # pylint: disable=import-outside-toplevel

    root = pathlib.Path(netlab_roots.root_path(lab, node))
    stamp = root / "var" / "tmp" / "bench-restart"
    try:
        master.cmd(node, TRACE_ON, timeout=120)
        deadline = time.time() + BOOT_TIMEOUT
        while not stamp.exists() and time.time() < deadline:
            time.sleep(1)
        time.sleep(5)  # the old minion is gone before we ask the new one
        while time.time() < deadline:
            got, _ = master.run_json("salt", "-t", "30", node, "test.ping", check=False,
                                     timeout=120)
            if (got or {}).get(node) is True:
                break
        restart = float(stamp.read_text().strip())
        log = (root / "var" / "log" / "salt" / "minion").read_text(errors="replace")
        return trace_report(restart, trace_lines(log))
    except (OSError, ValueError, AssertionError) as exc:
        return "(no trace: {})".format(exc)
    finally:
        try:
            master.cmd(node, TRACE_OFF, timeout=120)
        except AssertionError:
            pass


# --grains-cost: what each grain module costs on the node (Salt's grain loader,
# run by the node's own Python: each module loaded, then each of its functions
# called as salt.loader.grains calls them, core first). "configured" times one
# whole grains computation with the node's minion config (its disable_grains),
# the grains cache off, as a minion computes them at its first start.
GRAINS_COST = r"""
import inspect, json, sys, time
T = time.perf_counter
t0 = T()
import salt.config, salt.loader
out = {"import s": T() - t0}
opts = salt.config.minion_config("/etc/salt/minion")
opts["grains_cache"] = False
if sys.argv[1] == "configured":
    t = T()
    grains = salt.loader.grains(opts)
    out.update({"grains s": T() - t, "grains": len(grains),
                "disabled": sorted(opts.get("disable_grains") or [])})
else:
    opts["disable_grains"] = []
    funcs = salt.loader.grain_funcs(opts)
    mods, calls, grains = {}, {}, {}
    for mod in sorted(funcs.file_mapping, key=lambda m: (m != "core", m)):
        t = T()
        loaded = funcs._load_module(mod)
        mods[mod] = {"load s": T() - t, "loaded": bool(loaded), "calls s": 0.0, "grains": 0}
    for key in sorted(funcs._dict, key=lambda k: (not k.startswith("core."), k)):
        mod, fn = key.split(".")[0], funcs._dict[key]
        params = inspect.signature(fn).parameters
        kwargs = {k: v for k, v in (("grains", grains), ("proxy", None)) if k in params}
        t = T()
        try:
            ret = fn(**kwargs)
        except Exception as exc:
            ret = None
        calls[key] = T() - t
        mods[mod]["calls s"] += calls[key]
        if isinstance(ret, dict):
            mods[mod]["grains"] += len(ret)
            grains.update(ret)
    out.update(modules=mods, slowest=sorted(calls.items(), key=lambda kv: -kv[1])[:8])
out["total s"] = T() - t0
print("GRAINS-COST " + json.dumps(out))
"""


def grains_cost(env, node, runs=2):
    """Run GRAINS_COST on ``node``: per module (cold page cache, then warm) and the
    configured whole (warm, ``runs`` times). Returns printable text."""
    import netlab_roots  # pylint: disable=import-outside-toplevel

    master, lab = env["master"], env["lab"]
    root = pathlib.Path(netlab_roots.root_path(lab, node))
    (root / "var" / "tmp" / "bench-grains-cost.py").write_text(GRAINS_COST)
    py = "/opt/salt/bin/python3 /var/tmp/bench-grains-cost.py "
    got = []
    for label, cmd in [("modules, cold page cache",
                        "sync; echo 3 > /proc/sys/vm/drop_caches; " + py + "modules"),
                       ("modules, warm", py + "modules")] + [
                           ("configured, warm", py + "configured")] * runs:
        try:
            text = master.cmd(node, cmd, timeout=600)
            line = [ln for ln in text.splitlines() if ln.startswith("GRAINS-COST ")][-1]
            got.append((label, json.loads(line[len("GRAINS-COST "):])))
        except (AssertionError, IndexError, ValueError) as exc:
            got.append((label, {"error": str(exc)[:300]}))
    return grains_cost_text(got)


def grains_cost_text(got):
    rows = ["grain modules on the node (seconds; load = import + __virtual__, calls = "
            "its functions run):"]
    for label, out in got:
        if "error" in out:
            rows.append("  {}: {}".format(label, out["error"]))
        elif "modules" in out:
            rows.append("  {}: import salt.loader {:.2f}, total {:.2f}".format(
                label, out["import s"], out["total s"]))
            for mod, m in sorted(out["modules"].items(),
                                 key=lambda kv: -(kv[1]["load s"] + kv[1]["calls s"])):
                rows.append("    {:15} load {:6.3f}  calls {:6.3f}  grains {:3}{}".format(
                    mod, m["load s"], m["calls s"], m["grains"],
                    "" if m["loaded"] else "  (not loaded here)"))
            rows.append("    slowest functions: " + ", ".join(
                "{} {:.3f}".format(k, v) for k, v in out["slowest"]))
        else:
            rows.append("  {}: grains {:.2f} s ({} grains; disable_grains {}), total "
                        "{:.2f}".format(label, out["grains s"], out["grains"],
                                        out["disabled"] or "none", out["total s"]))
    return "\n".join(rows)


def use_image(lab, img):
    """Make ``img`` the lab's current image (the next reset clones it)."""
    import netlab_image  # pylint: disable=import-outside-toplevel

    images = lab.netnode.images_dir
    os.makedirs(images, exist_ok=True)
    link = os.path.join(images, img["build_id"])
    if not os.path.lexists(link):
        os.symlink(img["dir"], link)
    netlab_image._atomic_symlink(img["build_id"], os.path.join(images, "current"))  # noqa
    netlab_image.publish(lab, img["build_id"])


def load_image(path):
    """A finished build directory (``.../images/<build_id>``) as current_build() shows it."""
    import netlab_image_store  # pylint: disable=import-outside-toplevel

    path = os.path.realpath(path)
    img = netlab_image_store._describe(  # pylint: disable=protected-access
        os.path.dirname(path), os.path.basename(path))
    if not img or not img["intact"]:
        sys.exit("{} is not a finished image build (rootfs, vmlinuz, initrd.img, "
                 "manifest.json)".format(path))
    return img


def setup(base, img):
    import test_vms as T  # pylint: disable=import-outside-toplevel
    from lib.netns import Segment  # pylint: disable=import-outside-toplevel
    from lib.vm import Master  # pylint: disable=import-outside-toplevel

    env = {"base": base, "seg": None, "lab": None, "master": None}
    env["seg"] = seg = Segment(cidr=CIDR, server_ip=NETNODE_IP, bridge="br0", ipv6=True)
    raw = lab_pillar(base)
    env["lab"] = lab = netlab_lab.load(raw)
    use_image(lab, img)
    # a reimage's exports refresh reloads ganesha (no stop command)
    env["master"] = master = Master(seg.server, base / "master", T.REPO, raw)
    master.start()
    T.start_netnode_minion(seg, base, master)
    master.run("salt", "-t", "600", "netnode", "saltutil.sync_all")
    master.run("salt", "-t", "900", "netnode", "state.apply", "netlab.netnode",
               timeout=1200)
    return env


def set_exports_mode(env, mode):
    """How the next reimage makes ganesha export the new root: ``reload`` (netlab's
    default: SIGHUP, exports reread) or ``restart`` (master option
    ``netlab_exports_refresh`` stops ganesha first and the nfs state starts it
    again: what netlab did before the reload path). salt-run reads the master's
    config file on every call, so this applies from the next run on."""
    import yaml  # pylint: disable=import-outside-toplevel

    master = env["master"]
    opts = dict(master.opts)
    opts.pop("netlab_exports_refresh", None)
    if mode == "restart":
        stop = env["base"] / "stop-ganesha.sh"
        stop.write_text("#!/bin/sh\npid=$(cat {0}/ganesha.pid 2>/dev/null) || exit 0\n"
                        "kill -TERM \"$pid\" 2>/dev/null || exit 0\n"
                        "while kill -0 \"$pid\" 2>/dev/null; do sleep 0.1; done\n"
                        "rm -f {0}/ganesha.pid\n".format(env["base"] / "run"))
        opts["netlab_exports_refresh"] = [["sh", str(stop)]]
    with open(os.path.join(master.conf_dir, "master"), "w", encoding="utf-8") as fh:
        yaml.safe_dump(opts, fh, default_flow_style=False)


def teardown(env):
    from lib.vm import stop_lab_vms  # pylint: disable=import-outside-toplevel

    if env.get("logs"):  # the daemons' side of every boot, for a closer look
        for src in [env["base"] / "run" / n for n in ("dnsmasq.log", "nginx-access.log")] + \
                [env["base"] / "master" / "master.log"]:
            if src.exists():
                subprocess.run(["cp", str(src), env["logs"]], check=False)

    try:
        if env.get("lab") is not None:
            stop_lab_vms(env["lab"])
        if env.get("master") is not None:
            env["master"].stop()
    finally:
        if env.get("seg") is not None:
            env["seg"].destroy()
        subprocess.run(["rm", "-rf", "--one-file-system", str(env["base"])], check=False)


def du_mb(path):
    out = subprocess.run(["du", "-sxm", path], capture_output=True, text=True,
                         check=False).stdout.split()
    return out[0] if out else "?"


def fmt(v):
    return "-" if v is None else "{:.1f}".format(v)


def median(values):
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def print_table(title, columns):
    """``columns``: [(header, {stage: [values per run]})]."""
    print("\n" + title)
    head = ["stage (s since power on)"] + [h for h, _ in columns]
    rows = [[s] + [fmt(median(c.get(s, []))) for _, c in columns] for s in STAGES]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for i, row in enumerate([head] + rows):
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--single-only", action="store_true")
    ap.add_argument("--all-only", action="store_true")
    ap.add_argument("--json", help="also write every run's numbers to this file")
    ap.add_argument("--image", action="append", default=[],
                    help="a build directory (<images_dir>/<build_id>) to boot; given "
                    "twice or more, every run boots each image in turn (A/B under the "
                    "same load); default: the test image")
    ap.add_argument("--exports", choices=("reload", "restart", "both"), action="append",
                    default=[], help="how a reimage refreshes nfs-ganesha's exports: "
                    "reload (netlab's default), restart (stop + start, as before the reload "
                    "path) or both in turn within every run; once for every image, or once "
                    "per --image in the same order")
    ap.add_argument("--probe", action="store_true",
                    help="after the first single boot, time the minion's start in parts on "
                    "the node (imports with a cold page cache, grains, a salt-call)")
    ap.add_argument("--trace-minion", action="store_true",
                    help="after the first single boot (of the first image), restart the "
                    "node's minion with a debug log and a cold page cache and show where "
                    "its start goes")
    ap.add_argument("--grains-cost", action="store_true",
                    help="after the first single boot, time each grain module on the node "
                    "and one grains computation with the node's minion config")
    ap.add_argument("--logs", help="keep each boot's serial console here, every line "
                    "prefixed with the seconds since power on at which it appeared")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (namespaces, NFS server, qemu)")
    from lib.image import ensure_test_image  # pylint: disable=import-outside-toplevel
    import netlab_power  # pylint: disable=import-outside-toplevel

    images = [load_image(p) for p in args.image] or [ensure_test_image()]
    img = images[0]
    exports = args.exports or ["reload"]
    if len(exports) not in (1, len(images)):
        sys.exit("--exports: once, or once per --image")
    exports = [["reload", "restart"] if e == "both" else [e]
               for e in (exports * len(images) if len(exports) == 1 else exports)]
    tagged = any(len(e) > 1 or e != ["reload"] for e in exports)
    # every run boots each variant in turn, every image's first exports mode first:
    # (name, image, exports mode); the node's own view is taken on those
    variants = sorted([(j, "ABCD"[k] + ("/" + mode if tagged else ""), image, mode)
                       for k, image in enumerate(images) for j, mode in enumerate(exports[k])],
                      key=lambda v: (v[0], v[1]))
    variants = [v[1:] for v in variants]
    several = len(variants) > 1
    base = pathlib.Path(tempfile.mkdtemp(prefix="bench-boot-", dir="/tmp"))
    os.chmod(base, 0o755)  # nginx (www-data) reads the http tree under it
    scenarios = []
    if not args.all_only:
        scenarios.append(("1 node alone", [NODES[0][0]]))
    if not args.single_only:
        scenarios.append(("1+2 lab at once", [n[0] for n in NODES]))
    results = {}
    views = {}
    loads = []  # the host's 1-minute load average after each run (a shared machine)
    env = {"base": base}
    try:
        env = setup(base, img)
        if args.logs:
            os.makedirs(args.logs, exist_ok=True)
            env["logs"] = args.logs

        for label, nodes in scenarios:
            for i in range(args.runs):
                for k, (name, image, mode) in enumerate(variants):
                    use_image(env["lab"], image)
                    set_exports_mode(env, mode)
                    t0 = time.monotonic()
                    rows = one_run(env, nodes)
                    key = "{} [{}]".format(label, name) if several else label
                    loads.append(os.getloadavg()[0])
                    print("{} run {}: {:.0f} s, host load {:.1f}; {}".format(
                        key, i + 1, time.monotonic() - t0, loads[-1], json.dumps(
                            {n: dict({s: fmt(r[s]) for s in STAGES}, auth_lines=r[
                                "auth lines"], pings=r["pings"]) for n, r in rows.items()})),
                        flush=True)
                    for n, r in rows.items():
                        r["host load"] = loads[-1]
                        results.setdefault(key, {}).setdefault(n, []).append(r)
                    # the first run: a bench stopped at a deadline still has them
                    if i == 0 and label == scenarios[0][0] and \
                            mode == exports["ABCD".index(name[0])][0]:
                        views[k] = node_view(env["master"], NODES[0][0])
                        if args.probe:
                            views[k] += "\n" + node_probe(env["master"], NODES[0][0])
                        if args.grains_cost:
                            views[k] += "\n" + grains_cost(env, NODES[0][0])
                        if args.trace_minion and name[0] == "A":
                            views[k] += "\n" + trace_minion(env, NODES[0][0])
    finally:
        teardown(env)
    columns = []
    for key, per_node in results.items():
        for n, runs in per_node.items():
            tag = key.split(" ")[0] + (" " + key.split(" ")[-1] if several else "")
            columns.append(("{}: {}".format(tag, n), {s: [r[s] for r in runs] for s in STAGES}))
    accel = " ".join(netlab_power.accel_args("auto"))
    print_table("Boot timeline, median of {} runs ({}, {} MiB, 1 vCPU; 1 = one node alone, "
                "1+2 = all three nodes at once)".format(args.runs, accel, MEMORY), columns)
    if loads:
        print("  host load average (1 min) after the runs: {} (2 cores here: above 2, the "
              "VMs waited for CPU)".format(", ".join("{:.1f}".format(x) for x in loads)))
    for k, image in enumerate(images):
        print("  image {}{}: initrd {:.1f} MB, root {} MB".format(
            "ABCD"[k] + " " if len(images) > 1 else "", image["build_id"],
            os.path.getsize(image["initrd"]) / 1e6, du_mb(image["rootfs"])))
    resets = [r["reset s"] for lab_runs in results.values() for runs in lab_runs.values()
              for r in runs if r.get("reset s") is not None]
    methods = sorted({r["method"] for lab_runs in results.values()
                      for runs in lab_runs.values() for r in runs})
    if resets:
        print("\n  root reset ({}): median {:.2f} s over {} resets".format(
            ", ".join(methods), statistics.median(resets), len(resets)))
    for k, view in sorted(views.items()):
        print("\nThe node's own view ({}, first single boot{}):\n{}".format(
            NODES[0][0], " of " + variants[k][0] if several else "", view))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
