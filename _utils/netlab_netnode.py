"""
Everything the ``netlab.netnode`` states render, prepared once per state run
(``netlab.boot_report``): the lab model and the platform parameters (map.jinja's
``mapdata``) -> dnsmasq (:mod:`netlab_boot_dhcp`), nginx, the NFS exports and the
boot files (:mod:`netlab_boot`), and how each daemon runs (:mod:`netlab_daemons`).
Pure Python.
"""

import os

import netlab_daemons
import netlab_lifecycle
import netlab_params
from netlab_boot import (BOOT_DIR, IPXE_BIOS, IPXE_EFI, PXELINUX_CFG, BootError, check,
                         exports, ipxe_scripts, menu, nginx, pxelinux_configs)
from netlab_boot_dhcp import dnsmasq, off_mode_snippets


def prepare(lab, params=None, realpath=os.path.realpath, exists=os.path.isdir, builds=None):
    """All netnode data for the states, from the lab and the platform ``params``
    (``mapdata`` of map.jinja). ``builds``: ``{node id: build id}`` (default: as the
    lifecycle records on this machine say, netlab_lifecycle.node_builds).
    Raises :class:`BootError` on boot problems."""
    params = params or {}
    if builds is None:
        try:
            builds = netlab_lifecycle.node_builds(lab)
        except netlab_lifecycle.LifecycleError:
            builds = {}  # unreadable records: every node boots the current build
    errors = check(lab)
    if errors:
        raise BootError("netlab cannot boot this lab ({} problem{}):\n  {}".format(
            len(errors), "" if len(errors) == 1 else "s", "\n  ".join(errors)))
    try:
        control = netlab_params.service_control(params)
    except netlab_params.ParamError as exc:
        raise BootError(str(exc)) from None
    dm = dict(params.get("dnsmasq", {}) or {})
    nn = lab.netnode
    scripts = ipxe_scripts(lab, realpath, builds, exists)
    pxe = pxelinux_configs(lab, realpath, builds, exists)
    return {
        "service_control": control,
        "nfs_server": nn.nfs_server,
        "dhcp_mode": lab.network.dhcp_mode,
        "allow_other_servers": lab.network.allow_other_servers,
        "probe_timeout": lab.network.probe_timeout,
        "interface": lab.network.interface,
        "netnode_ip": nn.ip,
        "dnsmasq": dnsmasq(lab, dict(dm, log_facility=netlab_params.dnsmasq_log(params))),
        "run_dir": netlab_params.run_dir(params),
        # how each daemon runs (service_control): the SLS macros follow these
        "daemons": netlab_daemons.netnode(params),
        "daemons_clean": netlab_daemons.netnode_clean(params, nn.nfs_server),
        "nginx": nginx(lab),
        "exports": exports(lab, exists=exists, realpath=realpath, builds=builds),
        "dirs": {
            "storage": nn.storage, "http_root": nn.http_root, "tftp_root": nn.tftp_root,
            "roots_dir": nn.roots_dir, "images_dir": nn.images_dir,
            "boot_dir": os.path.join(nn.http_root, BOOT_DIR),
            "pxelinux_cfg": os.path.join(nn.tftp_root, PXELINUX_CFG),
            "http_images": os.path.join(nn.http_root, "images"),
        },
        "scripts": {"{}.ipxe".format(k): v for k, v in scripts.items()},
        "menu": menu(lab),
        "pxelinux": pxe,
        "needs_pxelinux": bool(pxe),
        "tftp_files": {IPXE_BIOS: "bios", IPXE_EFI: "uefi"},
        "off_mode": off_mode_snippets(lab) if lab.network.dhcp_mode == "off" else None,
        "power_pkgs": power_packages(lab, params),
    }


def power_packages(lab, params):
    """The packages holding the commands the power drivers of the lab's nodes run
    on the networking node (``pkgs:power:<driver>`` of the platform parameters):
    ipmitool for ``ipmi``, ping for ``wol``'s wait for a node to go off."""
    per_driver = (params.get("pkgs") or {}).get("power") or {}
    return sorted({pkg for node in lab.nodes.values()
                   for pkg in per_driver.get(node.power_driver) or []})

