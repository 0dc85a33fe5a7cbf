"""
The diskless node image: recipe, input hash, build, publish, retention.

One import for callers; the code lives in three modules by concern:
:mod:`netlab_image_recipe` (recipe, input hash, the host's pip settings),
:mod:`netlab_image_store` (finished builds, publish, prune, the build lock) and
:mod:`netlab_image_build` (staging, the mmdebstrap builder, :func:`build`).

Pure Python plus subprocess (``mmdebstrap``, ``unshare``, ``mount``). Salt's
``_modules/netlab_image.py`` and ``_states/netlab_image.py`` are thin faces over
this; the test helper ``test/lib/image.py`` calls it directly.

Layout (``lab.netnode.images_dir``, ``http_root``, ``tftp_root``)::

    <images_dir>/<build_id>/rootfs/         the root file system (read-only use)
    <images_dir>/<build_id>/vmlinuz         kernel  (0644 copy out of rootfs/boot)
    <images_dir>/<build_id>/initrd.img      initramfs (NFS root + netlab stateless)
    <images_dir>/<build_id>/manifest.json   inputs, hash, kernel version, timings
    <images_dir>/<build_id>/build.log       the build's output
    <images_dir>/current -> <build_id>      switched atomically after success
    <http_root>/images/<build_id>/{vmlinuz,initrd.img}   (hard links)
    <http_root>/images/current -> <build_id>
    <tftp_root>/images/<build_id>/{vmlinuz,initrd.img}   (pxelinux path)
    <tftp_root>/images/current -> <build_id>

One image serves every node: nothing per node or per lab network goes in
(no machine-id, hostname, SSH host keys, minion id/key or master address);
those are written into each node's own root (``netlab_roots``).

No-op rule: the input hash covers the recipe (distro, release, mirror,
components, variant, package lists, pip requirements, pip index, the DevStack
user) and the content of every file under ``netlab/files/image`` (the overlay
and ``configure.sh``) plus :data:`RECIPE_VERSION`. When ``current`` was built
from the same hash, :func:`build` changes nothing (it only repairs missing
publish links). Storage paths, the kernel command line, node data and the
build host's pip/CA settings are deliberately not part of the hash.
"""

# pylint: disable=unused-import
from netlab_image_build import (  # noqa: F401
    DEFAULT_BUILDER, _kernel_files, _now, _package_list, build, check_build_host,
    mmdebstrap_builder, mmdebstrap_command, plan, run_logged, stage_inputs)
from netlab_image_recipe import (  # noqa: F401
    BASE_PACKAGES, BUILD_PACKAGES, COMPONENTS, DEFAULT_FILES_DIR, EXECUTABLE_FILES,
    EXECUTABLE_PREFIXES, KERNEL_PACKAGES, KEYRING_PACKAGES, KEYRINGS, PIP_CONF_FILES,
    PIP_EXTRA, RECIPE_VERSION, STAGE_IN_ROOT, VENV, ImageError, file_mode, files_digest,
    host_pip_settings, input_hash, pip_config, recipe)
from netlab_image_store import (  # noqa: F401
    BUILD_ID_RE, DEFAULT_KEEP, TMP_PREFIX, _atomic_symlink, _link_or_copy, _mounts_under,
    build_lock, builds, current_build, paths, prune, publish, remove_all, remove_tree)
