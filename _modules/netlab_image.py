"""
netlab_image: the diskless node image, seen from Salt (networking node).

Thin face over ``_utils/netlab_image.py`` (recipe, input hash, mmdebstrap build,
publish, retention). The image's files (overlay, configure.sh) come from the
formula: ``salt://netlab/files/image`` by default, or a local directory.
"""

import logging
import os
import shutil
import tempfile

from salt.exceptions import CommandExecutionError

try:
    import netlab_image as _img
    import netlab_lab

    if not hasattr(_img, "RECIPE_VERSION"):  # shadowed by this very module
        raise ImportError("netlab_image from _utils is not importable")
    HAS_LIBS = True
    IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on sync state
    HAS_LIBS = False
    IMPORT_ERROR = "netlab's _utils are not synced ({}); run saltutil.sync_all".format(exc)

log = logging.getLogger(__name__)

__virtualname__ = "netlab_image"
DEFAULT_FILES = "salt://netlab/files/image"


def __virtual__():
    if not HAS_LIBS:
        return (False, IMPORT_ERROR)
    return __virtualname__


def _lab(pillar=None):
    """The lab model from ``pillar`` (the value, or a dict holding it under
    ``netlab``) or this minion's pillar; every problem in the error."""
    if pillar is None:
        pillar = __pillar__.get("netlab")  # pylint: disable=undefined-variable
    elif isinstance(pillar, dict) and "netlab" in pillar:
        pillar = pillar["netlab"]
    try:
        return netlab_lab.load(pillar)
    except netlab_lab.LabError as exc:
        raise CommandExecutionError(str(exc), info={"errors": exc.errors}) from None


class _Files:
    """A local directory holding the image files, fresh from the fileserver.

    ``cp.cache_dir`` keeps files that were deleted from the source; only the
    files the fileserver lists now are copied into a private temp dir, so a
    stale cache never reaches the hash or the image.
    """

    def __init__(self, source, saltenv):
        self.source = source or DEFAULT_FILES
        self.saltenv = saltenv or "base"
        self.tmp = None

    def __enter__(self):
        if not self.source.startswith("salt://"):
            if not os.path.isdir(self.source):
                raise CommandExecutionError(
                    "image files directory {} does not exist".format(self.source))
            return self.source
        prefix = self.source[len("salt://"):].strip("/") + "/"
        listed = [f for f in __salt__["cp.list_master"](  # pylint: disable=undefined-variable
            saltenv=self.saltenv, prefix=prefix) if f.startswith(prefix)]
        if not listed:
            raise CommandExecutionError(
                "no image files at {} (saltenv {}): is the netlab formula in file_roots?"
                .format(self.source, self.saltenv))
        self.tmp = tempfile.mkdtemp(prefix="netlab-image-files-")
        for rel_master in listed:
            cached = __salt__["cp.cache_file"](  # pylint: disable=undefined-variable
                "salt://" + rel_master, saltenv=self.saltenv)
            if not cached:
                raise CommandExecutionError("cannot fetch salt://{}".format(rel_master))
            dst = os.path.join(self.tmp, rel_master[len(prefix):])
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(cached, dst)
        return self.tmp

    def __exit__(self, *exc):
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


def recipe(pillar=None):
    """
    What the node image is built from (distro, release, mirror, packages, salt
    version, DevStack user...), as resolved from pillar ``netlab:image``.

    CLI Example:

    .. code-block:: bash

        salt-call netlab_image.recipe
    """
    return _img.recipe(_lab(pillar))


def input_hash(files=None, saltenv=None, pillar=None):
    """
    The image's input hash: the recipe plus the content of the image files.
    Equal hash = equal image; ``netlab_image.build`` is a no-op then.

    CLI Example:

    .. code-block:: bash

        salt-call netlab_image.input_hash
    """
    lab = _lab(pillar)
    with _Files(files, saltenv) as files_dir:
        try:
            return _img.input_hash(lab, files_dir)
        except _img.ImageError as exc:
            raise CommandExecutionError(str(exc)) from None


def plan(files=None, force=False, saltenv=None, pillar=None):
    """
    What ``build`` would do now: ``action`` none / publish / build and why.

    CLI Example:

    .. code-block:: bash

        salt-call netlab_image.plan
    """
    lab = _lab(pillar)
    with _Files(files, saltenv) as files_dir:
        try:
            return _img.plan(lab, files_dir, force=force)
        except _img.ImageError as exc:
            raise CommandExecutionError(str(exc)) from None


def build(force=False, files=None, keep=2, protect=None,
          lock_wait=0, saltenv=None, pillar=None):
    """
    Build the node image when its inputs changed (or ``force=True``), publish
    kernel and initrd for HTTP/TFTP boot and switch ``<images_dir>/current``.
    A failed build raises and leaves the last good image in place.

    keep
        builds to keep (current included; default 2)
    protect
        build ids never to delete (e.g. still used by running stateless nodes)

    CLI Example:

    .. code-block:: bash

        salt-call netlab_image.build
        salt-call netlab_image.build force=True
    """
    lab = _lab(pillar)
    with _Files(files, saltenv) as files_dir:
        try:
            result = _img.build(lab, files_dir=files_dir, force=force, keep=keep,
                                protect=tuple(protect or ()), lock_wait=lock_wait)
        except _img.ImageError as exc:
            raise CommandExecutionError(str(exc)) from None
    return result


def current(pillar=None):
    """
    The current build (``build_id``, ``rootfs``, ``kernel``, ``initrd``,
    ``input_hash``, ``kernel_version``...), or ``None`` before the first build.

    CLI Example:

    .. code-block:: bash

        salt-call netlab_image.current
    """
    return _img.current_build(_lab(pillar))


def builds(pillar=None):
    """
    Every kept build, newest first.

    CLI Example:

    .. code-block:: bash

        salt-call netlab_image.builds
    """
    return _img.builds(_lab(pillar))


def remove(pillar=None):
    """
    Delete every build and the published boot files (what ``netlab.image.clean``
    does). Returns the removed paths.

    CLI Example:

    .. code-block:: bash

        salt-call netlab_image.remove
    """
    try:
        return _img.remove_all(_lab(pillar))
    except _img.ImageError as exc:
        raise CommandExecutionError(str(exc)) from None
