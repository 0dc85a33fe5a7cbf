"""
The networking node's daemons restarted under running nodes, the way netlab
restarts them (e2e VM test, bench/daemon_restarts.py).

In process mode netlab restarts a daemon in one place: a ``state.apply
netlab.netnode`` in which its config changed. dnsmasq and nginx ``watch``
their configs (``netlab_daemon``'s ``mod_watch``: SIGTERM, wait for the exit,
start, ``netlab_proc``); nfs-ganesha reloads changed exports and is restarted
only when settings outside its EXPORT blocks changed
(``netlab_ganesha.decide``). That is what an upgrade of netlab whose templates
changed does to a running lab, all daemons in one state run.

:func:`restart` makes the configs on disk differ from what netlab renders, as
an older netlab's configs would (a comment for dnsmasq and nginx, whose whole
file is watched; a core block for ganesha, whose reread would not apply it),
and runs ``state.apply netlab.netnode`` through the networking node's minion:
no signal or kill from the test, the daemons go down and up through netlab's
own states, one after the other in the state order (dnsmasq, nginx,
nfs-ganesha). :func:`boot_answer` then asks for a node's boot like the node's
iPXE does: DHCP, then its script over HTTP.

``raw`` is the lab pillar of test/e2e/test_vms.py's shape: ``lookup`` holds the
config paths and ``run_dir``.
"""

import os
import time

import netlab_proc
from lib.clients import pxe_discover

DAEMONS = ("dnsmasq", "nginx", "ganesha")

# per daemon: its pid file (under run_dir), the state that restarts it, and how
# an older netlab's config differs from the one netlab renders now
_STATE = {"dnsmasq": "netlab-netnode-dnsmasq-netlab_daemon-running",
          "nginx": "netlab-netnode-http-netlab_daemon-running",
          "ganesha": "netlab-netnode-nfs-netlab_daemon-reloaded-ganesha"}
_OLDER = {"dnsmasq": "# rendered by an older netlab\n",
          "nginx": "# rendered by an older netlab\n",
          # outside the EXPORT blocks: a reread does not apply it, a restart does
          "ganesha": "# rendered by an older netlab\nNFS_KRB5 {\n    Active_krb5 = false;\n}\n"}


def _conf(raw, daemon):
    look = raw["lookup"]
    return {"dnsmasq": look["dnsmasq"]["conf"], "nginx": look["nginx"]["conf"],
            "ganesha": look["nfs"]["ganesha_conf"]}[daemon]


def pids(raw):
    """``{daemon: pid}`` of the daemons netlab runs now (``None``: not running)."""
    run = raw["lookup"]["run_dir"]
    return {d: netlab_proc.ours(os.path.join(run, d + ".pid")) for d in DAEMONS}


def restart(master, raw, daemons=DAEMONS, netnode="netnode"):
    """Restart ``daemons`` in one ``state.apply netlab.netnode`` (see the module
    text). Returns ``{seconds, states, before, after}``: the whole state run's
    seconds, each restart state's seconds by daemon, the pids before and after.
    Fails when a state failed or a daemon was not restarted with a new pid (or
    one not named was)."""
    before = pids(raw)
    for d in daemons:
        with open(_conf(raw, d), "a", encoding="utf-8") as fh:
            fh.write(_OLDER[d])
    t0 = time.monotonic()
    data, proc = master.run_json("salt", "-t", "600", netnode, "state.apply",
                                 "netlab.netnode", check=False, timeout=900)
    took = time.monotonic() - t0
    states = (data or {}).get(netnode)
    assert isinstance(states, dict), proc.stdout[-3000:] + proc.stderr[-2000:]
    by_id = {k.split("_|-")[1]: v for k, v in states.items()}
    bad = ["{}: {}".format(k, str(v.get("comment"))[:300]) for k, v in by_id.items()
           if not v.get("result")]
    assert not bad, "netlab.netnode failed:\n" + "\n".join(bad[:5])
    after = pids(raw)
    for d in DAEMONS:
        changes = by_id[_STATE[d]]["changes"]
        if d in daemons:
            assert "restarted" in changes and "reload_failed" not in changes, (d, changes)
            assert after[d] and after[d] != before[d], (d, before, after)
        else:
            assert after[d] == before[d], (d, before, after)
    return {"seconds": round(took, 1),
            "states": {d: round(by_id[_STATE[d]].get("duration", 0) / 1000, 1)
                       for d in daemons},
            "before": before, "after": after}


def boot_answer(seg, mac, ip, name="bootask"):
    """What a lab node that boots now gets, asked from a client namespace with
    its MAC (use a node that is not running: the bridge must not see its MAC
    twice): iPXE's DHCP answer (the node's address and script URL), then, with
    that address, the script over HTTP. Returns ``(offers, url, script)``."""
    cli = seg.add_client(name, mac)
    try:
        offers = pxe_discover(cli, arch=0, user_class="iPXE")
        mine = [o for o in offers if o.get("yiaddr") == ip]
        if not mine:
            return offers, None, None
        url = mine[0]["boot"]
        seg.set_client_ip(name, ip)
        script = cli.run(["curl", "-fsS", "-m", "60", url], timeout=90).stdout
        return offers, url, script
    finally:
        seg.clients.pop(name).delete()
