"""
A built node image for tests (e2e VM tests, the virtual lab, benchmarks).

Builds once with the real code path (``netlab_image.build``: mmdebstrap, the
formula's overlay and configure.sh) into a cache dir keyed by the image's input
hash, so later runs on the same machine reuse it::

    from lib.image import ensure_test_image
    img = ensure_test_image()          # builds on first use (~3-4 min), else instant
    img["rootfs"], img["kernel"], img["initrd"], img["build_id"], img["input_hash"]

or, in a conftest / test module, the session fixture (re-export it)::

    from lib.image import test_image   # noqa: F401  (pytest finds it by name)

Cache: ``$NETLAB_TEST_CACHE`` (default ``/var/cache/netlab-test``), one
directory per input hash: ``<cache>/image-<hash16>/images/<build_id>/...``.
The image is Debian bookworm, minbase, with salt-minion (``TEST_SALT_VERSION``)
in /opt/salt and the DevStack user ``stack``.

Treat the cached rootfs as read-only: clone it (``cp -a`` / reflink / btrfs
snapshot) for a writable node root.

:func:`clone_rebuild` rebuilds a lab's image in seconds through the real
``netlab_image.build`` (a clone of the current build plus a marker file), for
tests of what a rebuild does to running nodes.
"""

import copy
import os
import subprocess
import sys

import pytest

_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "_utils")
if _UTILS not in sys.path:
    sys.path.insert(0, _UTILS)

import netlab_image  # noqa: E402  pylint: disable=wrong-import-position
import netlab_lab  # noqa: E402  pylint: disable=wrong-import-position

DEFAULT_CACHE = "/var/cache/netlab-test"
TEST_SALT_VERSION = "3008.3"
TEST_USER = "stack"
# A build holding the lock (another pytest process) is waited for this long.
LOCK_WAIT = 20 * 60
# Cached images (one per input hash, ~1 GB each) kept: the most recently used.
CACHE_KEEP = 3

# The smallest valid lab whose image is the test image. Only `image` and
# `devstack.user` matter for the image; the rest just satisfies validation.
TEST_LAB = {
    "network": {"interface": "br0", "cidr": "10.99.0.0/24"},
    "netnode": {"id": "netnode", "ip": "10.99.0.1"},
    "image": {"distro": "debian", "release": "bookworm", "packages": [],
              "salt_version": TEST_SALT_VERSION, "variant": "minbase"},
    "devstack": {"user": TEST_USER},
    "nodes": {"node01": {"mac": "52:54:00:99:00:01", "ip": "10.99.0.101",
                         "role": "controller"}},
    # built straight from Debian's mirror and PyPI: no LAN cache runs for it (the
    # cache is not an image input, so the image is the same either way)
    "cache": {part: {"enabled": False} for part in ("apt", "pip", "git", "files")},
}


def cache_dir():
    return os.environ.get("NETLAB_TEST_CACHE") or DEFAULT_CACHE


def image_lab(image=None, devstack_user=TEST_USER, storage=None):
    """The test image's lab model; ``image`` overrides keys of ``netlab:image``."""
    raw = copy.deepcopy(TEST_LAB)
    raw["image"].update(image or {})
    raw["devstack"]["user"] = devstack_user
    if storage:
        raw["netnode"]["storage"] = storage
    lab = netlab_lab.load(raw)
    if storage is None:
        digest = netlab_image.input_hash(lab)
        raw["netnode"]["storage"] = os.path.join(cache_dir(), "image-" + digest[:16])
        lab = netlab_lab.load(raw)
    return lab


def ensure_test_image(image=None, devstack_user=TEST_USER, force=False):
    """Build (or reuse) the test image; returns :func:`netlab_image.current_build`'s
    dict plus ``lab`` (the model it was built from) and ``result`` (what build did:
    ``result['action']`` is ``none`` when the cache was used)."""
    lab = image_lab(image, devstack_user)
    result = netlab_image.build(lab, force=force, keep=1, lock_wait=LOCK_WAIT)
    cur = netlab_image.current_build(lab)
    if not cur or not cur["intact"]:
        raise RuntimeError("test image build left no intact current build in {}".format(
            lab.netnode.images_dir))
    stamp = os.path.join(lab.netnode.storage, ".last-used")
    with open(stamp, "w", encoding="utf-8") as fh:
        fh.write(cur["build_id"] + "\n")
    prune_cache(keep=CACHE_KEEP, spare=lab.netnode.storage)
    out = dict(cur)
    out.update(lab=lab, result=result)
    return out


def clone_rebuild(lab, marker="etc/netlab-test-build"):
    """A rebuild of ``lab``'s image while its nodes run, in seconds: the real
    :func:`netlab_image.build` (forced: temp dir, kernel files, manifest, the
    ``current`` switch, publish, prune) with a builder that clones the current
    build's root file system (hard links: the source is only read, as a real
    build's output is) and adds the file ``marker`` holding the new build's
    temp name, so a root made from the new build can be told apart. Same kernel
    as the current build; no mmdebstrap, no download. Returns build's result.
    """
    src = os.path.realpath(netlab_image.current_build(lab)["rootfs"])

    def builder(rec, rootfs, stage, links, logfile):  # pylint: disable=unused-argument
        os.makedirs(rootfs, exist_ok=True)  # a btrfs subvolume made by build itself
        for cmd in (["cp", "-al", src + "/.", rootfs],
                    ["cp", "-a", "--reflink=auto", src + "/.", rootfs]):
            if subprocess.run(cmd, capture_output=True, check=False).returncode == 0:
                break
        else:
            raise netlab_image.ImageError("cannot clone {} into {}".format(src, rootfs))
        path = os.path.join(rootfs, marker)
        if os.path.lexists(path):  # a hard link into the source: never write through it
            os.unlink(path)
        build_id = os.path.basename(os.path.dirname(rootfs))
        if build_id.startswith(netlab_image.TMP_PREFIX):
            build_id = build_id[len(netlab_image.TMP_PREFIX):]
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(build_id + "\n")
        with open(logfile, "a", encoding="utf-8") as fh:
            fh.write("test rebuild: cloned {}\n".format(src))

    return netlab_image.build(lab, force=True, builder=builder, pip_settings={},
                              lock_wait=LOCK_WAIT)


def prune_cache(keep=CACHE_KEEP, spare=None):
    """Delete cached test images beyond the ``keep`` most recently used ones.

    An image whose build lock is held (a build or use in another process right
    now) is never deleted; neither is ``spare``.
    """
    base = cache_dir()
    try:
        names = [n for n in os.listdir(base) if n.startswith("image-")]
    except OSError:
        return []

    def last_used(name):
        try:
            return os.path.getmtime(os.path.join(base, name, ".last-used"))
        except OSError:
            return 0.0

    removed = []
    for name in sorted(names, key=last_used, reverse=True)[keep:]:
        storage = os.path.join(base, name)
        if spare and os.path.realpath(storage) == os.path.realpath(spare):
            continue
        lab = image_lab(storage=storage)
        try:
            with netlab_image.build_lock(lab):
                netlab_image.remove_tree(storage)
        except netlab_image.ImageError:
            continue  # in use by another process
        removed.append(storage)
    return removed


@pytest.fixture(scope="session")
def test_image():
    """Session fixture: the cached bookworm test image (built on first use)."""
    return ensure_test_image()


if __name__ == "__main__":  # pragma: no cover - manual use / CI warm-up
    import json
    import time

    t0 = time.monotonic()
    img = ensure_test_image(force="--force" in sys.argv)
    img.pop("lab")
    print(json.dumps(img, indent=2, default=str))
    print("took {:.1f}s".format(time.monotonic() - t0))
