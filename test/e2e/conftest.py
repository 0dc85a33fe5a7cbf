"""
Fixtures for the e2e tier: real daemons in network namespaces the tests create
and remove.

Reusable pieces (also for the virtual lab's VMs):

``segment_factory``
    ``segment_factory(cidr=..., server_ip=..., bridge="br0", ipv6=False)`` ->
    :class:`lib.netns.Segment` (server namespace with a bridge, private ``/run``);
    every segment is destroyed (processes stopped, namespaces deleted) at teardown,
    also when the test failed.
``netnode_factory``
    ``netnode_factory(segment, nodes, dhcp_mode="full", nfs_server="ganesha", ...)``
    -> :class:`lib.netnodelab.NetnodeLab` (netnode states applied with salt-call
    inside the server namespace; daemons stopped at teardown).
``daemons``
    a :class:`lib.daemons.Daemons` registry; ``stop_all()`` at teardown.

Client helpers are plain functions in ``lib.clients`` (``udhcpc``, ``pxe_discover``).
"""

import os
import pathlib
import shutil

import pytest

from lib import daemons as daemons_lib
from lib import netns
from lib.netnodelab import NetnodeLab

REPO = pathlib.Path(__file__).resolve().parents[2]
NEEDED = ("ip", "unshare", "nsenter", "dnsmasq", "nginx", "ganesha.nfsd", "rpcbind",
          "udhcpc", "tftp", "curl", "dig", "nfs-cat")


def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
    here = pathlib.Path(__file__).parent
    for item in items:
        if pathlib.Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def e2e_ready():
    """Root and the tools the e2e tier drives; skip (visibly) otherwise."""
    if os.geteuid() != 0:
        pytest.skip("e2e tests need root (network namespaces, mounts)")
    missing = [t for t in NEEDED if not shutil.which(t) and not os.path.exists(
        os.path.join("/usr/sbin", t))]
    if missing:
        pytest.skip("e2e tools missing: {} (see test/apt-packages.txt)".format(
            ", ".join(missing)))
    return True


@pytest.fixture
def segment_factory(e2e_ready, request):  # pylint: disable=unused-argument,redefined-outer-name
    made = []

    def make(**kw):
        seg = netns.Segment(**kw)
        made.append(seg)
        return seg

    yield make
    for seg in reversed(made):
        seg.destroy()


@pytest.fixture
def netnode_factory(tmp_path):
    made = []

    def make(segment, nodes, root=None, **kw):
        root = root or tmp_path / "netnode{}".format(len(made))
        nn = NetnodeLab(segment, root, nodes, **kw)
        made.append(nn)
        return nn

    yield make
    for nn in reversed(made):
        nn.stop()


@pytest.fixture
def daemons():
    reg = daemons_lib.Daemons()
    yield reg
    reg.stop_all()
