"""
A networking node under test: the ``netlab.netnode`` states applied with
``salt-call --local`` *inside* the server namespace of a :class:`lib.netns.Segment`,
with ``service_control: process`` (the states start dnsmasq, nginx, rpcbind and
nfs-ganesha themselves, with pid files under ``<root>/run``) and every path under
a temp ``root``.

Reusable by every e2e test that needs netboot services (the virtual lab's VMs
attach taps to ``segment.bridge`` and boot from it)::

    seg = Segment(cidr="10.77.0.0/24", server_ip="10.77.0.2")
    nn = NetnodeLab(seg, tmp_path, nodes={"nuc1": {"mac": "52:54:00:77:00:11",
                                                   "ip": "10.77.0.11",
                                                   "role": "controller"}},
                    dhcp_mode="full")
    try:
        nn.apply()                     # real run (asserts no failed state)
        nn.apply(test=True)            # prediction
        nn.update(lambda lab: lab["nodes"].pop("nuc1"))   # change pillar, re-apply
    finally:
        nn.stop()                      # SIGTERM + wait every daemon it started
        seg.destroy()

``probe_timeout`` is the rogue-DHCP guard's listening time in full mode (a
dnsmasq "router" ping-checks an address ~3 s before it offers it).

``nn.pillar`` is the ``netlab`` pillar (a plain dict; pass ``extra`` to deep-merge
more keys, e.g. image settings or roles), ``nn.storage`` the netnode storage
(``roots/``, ``images/``, ``http/``, ``tftp/``), ``nn.run_dir`` the daemons' pid
files and logs.
"""

import copy
import pathlib

import netlab_lab

from lib import daemons
from lib.saltlocal import SaltLocal, by_id, changed, failed  # noqa: F401 (re-exported)

REPO = pathlib.Path(__file__).resolve().parents[2]


class NetnodeLab:
    def __init__(self, segment, root, nodes, dhcp_mode="full", nfs_server="ganesha",
                 http_port=8080, domain="lab.test", extra=None, lookup=None, ra=False,
                 probe_timeout=4):
        self.segment = segment
        self.root = pathlib.Path(root)
        self.storage = self.root / "srv"
        self.run_dir = self.root / "run"
        self.etc = self.root / "etc"
        for d in (self.storage, self.run_dir, self.etc):
            d.mkdir(parents=True, exist_ok=True)
        lab = {
            "network": {
                "interface": segment.bridge,
                "cidr": str(segment.cidr),
                "domain": domain,
                "dhcp": {"mode": dhcp_mode, "probe_timeout": probe_timeout},
                "dns": {"enabled": True, "upstream": []},
            },
            "netnode": {
                "id": "netnode", "ip": segment.server_ip, "storage": str(self.storage),
                "nfs": {"server": nfs_server}, "http": {"port": http_port},
            },
            "nodes": copy.deepcopy(nodes),
            "lookup": netlab_lab.deep_merge({
                "service_control": "process",
                "install_packages": False,
                "run_dir": str(self.run_dir),
                "dnsmasq": {"conf": str(self.etc / "dnsmasq.conf"),
                            "leasefile": str(self.root / "dnsmasq.leases"),
                            "user": "root", "ra": ra},
                # pytest's temp dirs are private to root: workers run as root
                "nginx": {"conf": str(self.etc / "nginx-netlab.conf"), "user": "root"},
                "nfs": {"exports": str(self.etc / "netlab.exports"),
                        "ganesha_conf": str(self.etc / "ganesha.conf"),
                        "ganesha_recovery": str(self.root / "ganesha-recov")},
            }, lookup or {}),
        }
        self.pillar = netlab_lab.deep_merge(lab, extra or {})
        self.salt = SaltLocal(self.root / "salt", REPO, {"netlab": self.pillar},
                              prefix=segment.server.prefix)
        self.salt.sync()

    @property
    def lab(self):
        return netlab_lab.load(self.pillar)

    def apply(self, test=False, sls="netlab.netnode", expect_ok=True):
        """Apply ``sls``; ``{state id: result}``. Raises listing failed states
        unless ``expect_ok=False``."""
        ret = self.salt.apply(sls, test=test)
        if expect_ok and failed(ret):
            raise AssertionError("{} failed: {}\n(logs in {})".format(
                sls, failed(ret), self.run_dir))
        return ret

    def update(self, change, apply=True, **kw):
        """Change the pillar with ``change(pillar_dict)``; re-apply unless told not to."""
        change(self.pillar)
        self.salt.set_pillar({"netlab": self.pillar})
        return self.apply(**kw) if apply else None

    def make_root(self, node_id, marker=None):
        """A persistent node root (a directory with a marker file) to export."""
        root = self.storage / "roots" / node_id
        root.mkdir(parents=True, exist_ok=True)
        (root / "netlab-marker").write_text(marker or "root of {}\n".format(node_id))
        return root

    def fake_boot_files(self, kernel=b"fake-kernel", initrd=b"fake-initrd"):
        """The image build's published boot files (``http/images/current/{vmlinuz,initrd.img}``)."""
        d = self.storage / "http" / "images" / "b0"
        d.mkdir(parents=True, exist_ok=True)
        (d / "vmlinuz").write_bytes(kernel)
        (d / "initrd.img").write_bytes(initrd)
        link = self.storage / "http" / "images" / "current"
        if not link.is_symlink():
            link.symlink_to("b0")
        return d

    def pids(self):
        return {n: daemons.read_pid(self.run_dir / (n + ".pid"))
                for n in ("dnsmasq", "nginx", "rpcbind", "ganesha")}

    def stop(self):
        """Stop every daemon the states started (SIGTERM and wait)."""
        return daemons.stop_pidfiles(self.run_dir)
