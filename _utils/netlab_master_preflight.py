"""
The checks of ``salt-run netlab.preflight`` that ask the master: Salt versions of
the master and the networking node's minion, netlab's modules synced on both,
where pillar ``netlab`` reaches, plus the networking node's own checks
(:mod:`netlab_preflight`) wired to this host (the master is the networking
node). ``opts`` is the runner's ``__opts__``; Salt is imported when used.
"""

import hashlib
import os

import netlab_dhcp
import netlab_master
import netlab_options
import netlab_preflight as pf


def _available(opts, lab):
    """check name -> a function returning that check's problems."""
    import salt.client  # pylint: disable=import-outside-toplevel
    import salt.pillar  # pylint: disable=import-outside-toplevel
    import salt.version  # pylint: disable=import-outside-toplevel

    netnode = lab.netnode.id
    master_id = opts.get("id", "")
    run = pf.command_runner()
    clients = []

    def local():
        if not clients:
            clients.append(salt.client.get_local_client(mopts=opts))
        return clients[0]

    def salt_check():
        ret = local().cmd(netnode, "test.version", timeout=30)
        return pf.check_salt_versions(salt.version.__version__, {netnode: ret.get(netnode)})

    def modules_check():
        expected = fileserver_module_hashes(opts)
        on_master = pf.file_hashes(opts["extension_modules"], ("runners", "pillar", "utils"),
                                   hasher=hashlib.md5)
        minion = minion_module_hashes(local(), netnode)
        return pf.check_modules_synced(
            {k: v for k, v in expected.items() if k.split("/")[0] in
             ("runners", "pillar", "utils")}, {"master": on_master}) + \
            pf.check_modules_synced(
                {k: v for k, v in expected.items() if k.split("/")[0] in
                 ("modules", "states", "utils")}, {netnode: minion})

    def pillar_check():
        # in an orchestration __opts__['pillar'] is the master's own pillar, which
        # Salt merges into every pillar compiled with these opts: leave it out
        clean = {k: v for k, v in opts.items() if k != "pillar"}
        ids = [master_id, netnode] + list(lab.nodes)
        has = {i: salt.pillar.get_pillar(
            clean, clean.get("grains", {}), i, saltenv=clean.get("saltenv"),
            pillarenv=clean.get("pillarenv")).compile_pillar().get("netlab") is not None
            for i in ids}
        return pf.check_pillar_targeting(has, master_id, netnode, list(lab.nodes))

    return {
        "salt": salt_check,
        "modules": modules_check,
        "pillar": pillar_check,
        "interface": lambda: pf.check_interface(
            lab, pf.interface_state(lab.network.interface, run)),
        "ports": lambda: pf.check_ports(lab, lambda proto, port: pf.listeners(
            proto, port, run)),
        "storage": lambda: pf.check_storage(lab, os.statvfs, pf.fs_type(
            pf.existing_parent(lab.netnode.storage), pf.read_mounts())),
        "dhcp": lambda: pf.check_dhcp(lab, lambda iface, timeout: netlab_dhcp.probe(
            iface, timeout=timeout, own=[lab.netnode.ip])),
        "outside": lambda: pf.check_reachable(lab, pf.http_ok),
    }


def run(opts, lab, wanted):
    """Run the ``wanted`` checks; netlab_preflight.run's report."""
    available = _available(opts, lab)
    return pf.run([(c, available[c]) for c in wanted])


def fileserver_module_hashes(opts):
    """``{'<kind>/<file>': md5}`` of netlab's custom modules on the master's fileserver."""
    import salt.fileclient  # pylint: disable=import-outside-toplevel

    client = salt.fileclient.FSClient(opts)
    out = {}
    try:
        for path in client.file_list("base"):
            kind, _, name = path.partition("/")
            if kind.startswith("_") and kind[1:] in ("modules", "states", "runners", "pillar",
                                                     "utils") and name.endswith(".py") \
                    and "/" not in name:
                local = client.cache_file("salt://" + path, "base")
                with open(local, "rb") as fh:
                    out[kind[1:] + "/" + name] = hashlib.md5(fh.read()).hexdigest()  # nosec
    finally:
        client.destroy()
    return out


def minion_module_hashes(client, minion_id):
    """Same as :func:`fileserver_module_hashes` for what a minion has synced."""
    ret = client.cmd(minion_id, "config.get", ["extension_modules"], timeout=30)
    extmods = ret.get(minion_id)
    if not extmods:
        return None
    found = client.cmd(minion_id, "file.find", [extmods],
                       kwarg={"type": "f", "name": "*.py", "print": "path,md5"}, timeout=30)
    out = {}
    for entry in found.get(minion_id) or []:
        if isinstance(entry, (list, tuple)) and len(entry) == 2:
            rel = os.path.relpath(entry[0], extmods)
            if rel.count("/") == 1:
                out[rel] = entry[1]
    return out


def wanted(lab, checks=None, deploy=None, published=pf.image_published):
    """The checks to run: ``checks`` (a list or ``"a,b"``; default: all) or, for
    ``netlab.deploy`` (``deploy``: its options), the ones its steps need (``[]``:
    its ``preflight: false``). An unknown name is refused before anything runs."""
    if deploy is not None:
        try:
            names = pf.deploy_checks(deploy, published(lab))
        except netlab_options.OptionError as exc:
            netlab_master.refuse(exc)
    elif not checks:
        names = list(pf.CHECKS)
    else:
        names = [c.strip() for c in (checks if isinstance(checks, (list, tuple))
                                     else str(checks).split(","))]
    unknown = [c for c in names if c not in pf.CHECKS]
    if unknown:
        netlab_master.refuse("unknown check(s) {} (known: {})".format(
            ", ".join(unknown), ", ".join(pf.CHECKS)))
    return names


def preflight(lab, run_checks, checks=None, deploy=None, record_failure=None,
              published=pf.image_published):
    """``salt-run netlab.preflight``: ``run_checks(names)`` (:func:`run` wired to the
    master) on :func:`wanted`'s checks. Returns ``{ok, passed, problems}`` plus
    ``Error`` (a summary) when there is a problem; for a deploy the problems go to
    ``record_failure(step, cause)`` too, so the deploy's summary names preflight as
    the run's first failure."""
    names = wanted(lab, checks, deploy, published)
    if deploy is not None and not names:
        return {"ok": True, "passed": [], "problems": [],
                "comment": "preflight skipped (netlab_deploy:preflight is false)"}
    report = run_checks(names)
    out = {"ok": report["ok"], "passed": report["passed"], "problems": report["problems"]}
    if not report["ok"]:
        out["Error"] = "preflight found {} problem(s); nothing was changed".format(
            len(report["problems"]))
        if deploy is not None and record_failure is not None:
            record_failure("preflight", "; ".join(str(p) for p in report["problems"]))
    return out
