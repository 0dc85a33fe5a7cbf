"""
Building the node image: staging the inputs, the mmdebstrap builder, and
:func:`build`, which builds only when the input hash changed and then publishes
the result through :mod:`netlab_image_store`.

``builder(recipe, rootfs, stage_dir, links, logfile)`` is a collaborator:
:func:`mmdebstrap_builder` by default, a fast fake in the functional tests.
"""

import contextlib
import datetime
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import time

import netlab_cache
import netlab_roots
from netlab_image_recipe import (
    DEFAULT_FILES_DIR, KEYRING_PACKAGES, KEYRINGS, STAGE_IN_ROOT, ImageError, _rel_files,
    file_mode, files_digest, host_pip_settings, input_hash, pip_config, recipe)
from netlab_image_store import (
    DEFAULT_KEEP, TMP_PREFIX, _atomic_symlink, _publish_problems, _remove_stale_temps,
    _stage_boot_files, build_lock, current_build, paths, prune, publish, remove_tree)

log = logging.getLogger(__name__)


def build_sources(lab):
    """Where this build fetches from: the networking node's apt and pip caches when
    they are on. Not an image input (the packages are the same either way; nodes
    get their apt/pip settings in their own root, see netlab_roots)."""
    return {"apt_proxy": netlab_cache.apt_proxy(lab),
            "pip_index": netlab_cache.pip_index(lab)}


def stage_inputs(lab, rec, digest, stage_dir, files_dir=None, pip_settings=None):
    """Put configure.sh, the overlay, build.env and pip settings into ``stage_dir``.

    ``pip_settings``: as :func:`host_pip_settings` returns (default: this host's).
    Returns the host find-links directories to bind-mount (host -> chroot path).
    """
    files_dir = files_dir or DEFAULT_FILES_DIR
    os.makedirs(stage_dir, exist_ok=True)
    for rel in _rel_files(files_dir):
        dst = os.path.join(stage_dir, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(os.path.join(files_dir, rel), dst)
        os.chmod(dst, file_mode(rel))
    for top, dirs, _ in os.walk(stage_dir):
        for d in dirs:
            os.chmod(os.path.join(top, d), 0o755)
    os.chmod(stage_dir, 0o755)
    if pip_settings is None:
        pip_settings = host_pip_settings()
    cache_index = (rec.get("cache") or {}).get("pip_index")
    if cache_index and not rec["pip_index"] and not pip_settings.get("timeout"):
        pip_settings = dict(pip_settings, timeout=str(netlab_cache.PIP_TIMEOUT))
    text, cert_src, links = pip_config(pip_settings, rec["pip_index"] or cache_index)
    os.makedirs(os.path.join(stage_dir, "pip"), exist_ok=True)
    with open(os.path.join(stage_dir, "pip", "pip.conf"), "w", encoding="utf-8") as fh:
        fh.write(text)
    if cert_src:
        shutil.copyfile(cert_src, os.path.join(stage_dir, "pip", "cert.pem"))
    for inside in links.values():
        os.makedirs(os.path.join(stage_dir, "pip", os.path.basename(inside)), exist_ok=True)
    env = {
        "NETLAB_USER": rec["user"],
        "NETLAB_SALT_VERSION": rec["salt_version"],
        "NETLAB_PIP_REQUIREMENTS": " ".join(rec["pip_requirements"]),
        "NETLAB_BUILD_PACKAGES": " ".join(rec["build_packages"]),
        "NETLAB_DISTRO": rec["distro"],
        "NETLAB_RELEASE": rec["release"],
        "NETLAB_INPUT_HASH": digest,
    }
    with open(os.path.join(stage_dir, "build.env"), "w", encoding="utf-8") as fh:
        for key, value in sorted(env.items()):
            fh.write("{}={}\n".format(key, shlex.quote(str(value))))
    return links


def mmdebstrap_command(rec, rootfs, stage_dir, links, mmdebstrap="mmdebstrap"):
    """The full command line (a list) that builds ``rootfs`` from ``rec``.

    Runs under ``unshare --mount`` so every mount made by mmdebstrap or the hooks
    (proc, dev, the read-only find-links binds) dies with the process, even if
    it is killed.
    """
    inside = STAGE_IN_ROOT
    q = shlex.quote
    essential = (
        'mkdir -p "$1{inside}" && cp -a {stage}/. "$1{inside}/" && '
        'cp -R --preserve=mode,timestamps "$1{inside}/overlay/." "$1/"'
    ).format(inside=inside, stage=q(stage_dir))
    binds = " && ".join(
        'mount --bind {src} "$1{dst}" && mount -o remount,bind,ro "$1{dst}"'.format(
            src=q(src), dst=dst)
        for src, dst in sorted(links.items())) or "true"
    configure = (
        'chroot "$1" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:'
        '/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 /bin/sh {inside}/configure.sh'
    ).format(inside=inside)
    unbinds = " ; ".join('umount "$1{}"'.format(dst) for dst in sorted(links.values()))
    finish = (
        '{unbinds}{sep}rm -rf --one-file-system "$1{inside}" && '
        'rm -f "$1/etc/resolv.conf" "$1/etc/hostname"'
    ).format(unbinds=unbinds, sep=" ; " if unbinds else "", inside=inside)
    cmd = [
        "unshare", "--mount", "--propagation", "private", "--",
        mmdebstrap, "--mode=root", "--format=directory",
        "--variant={}".format(rec["variant"]),
        "--architectures={}".format(rec["arch"]),
        "--components={}".format(",".join(rec["components"])),
        "--include={}".format(",".join(rec["packages"] + rec["build_packages"])),
        "--aptopt=APT::Install-Recommends \"false\"",
        # no fsync per unpacked file (the kernel's modules alone are ~4000 files);
        # build() syncs once before the build becomes visible
        "--dpkgopt=force-unsafe-io",
        "--aptopt=Acquire::Languages \"none\"",
    ] + ["--dpkgopt=path-exclude={}".format(p) for p in rec.get("path_excludes", [])] + [
        "--dpkgopt=path-include={}".format(p) for p in rec.get("path_includes", [])]
    if (rec.get("cache") or {}).get("apt_proxy"):
        # every package through the networking node's apt cache
        cmd.append("--aptopt=Acquire::http::Proxy \"{}\"".format(rec["cache"]["apt_proxy"]))
    cmd += [
        "--essential-hook={}".format(essential),
        "--customize-hook={}".format(binds),
        "--customize-hook={}".format(configure),
        "--customize-hook={}".format(finish),
    ]
    if KEYRINGS.get(rec["distro"]):
        cmd.append("--keyring={}".format(KEYRINGS[rec["distro"]]))
    cmd += [rec["release"], rootfs, rec["mirror"]]
    return cmd


def check_build_host(rec, mmdebstrap="mmdebstrap"):
    """Problems that make a build impossible on this host (list of strings)."""
    problems = []
    if shutil.which(mmdebstrap) is None:
        problems.append("{} is not installed (package mmdebstrap)".format(mmdebstrap))
    if shutil.which("unshare") is None:
        problems.append("unshare is not installed (package util-linux)")
    keyring = KEYRINGS.get(rec["distro"])
    if keyring and not os.path.isfile(keyring):
        problems.append("{} is missing: install package {} to build {} images".format(
            keyring, KEYRING_PACKAGES[rec["distro"]], rec["distro"]))
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        problems.append("image builds need root (mmdebstrap --mode=root)")
    return problems


def mmdebstrap_builder(rec, rootfs, stage_dir, links, logfile, mmdebstrap="mmdebstrap"):
    """Default builder: run mmdebstrap; raise :class:`ImageError` with the log tail."""
    problems = check_build_host(rec, mmdebstrap)
    if problems:
        raise ImageError("cannot build the image on this host: " + "; ".join(problems))
    cmd = mmdebstrap_command(rec, rootfs, stage_dir, links, mmdebstrap)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env.update(LC_ALL="C.UTF-8", DEBIAN_FRONTEND="noninteractive")
    returncode = run_logged(cmd, logfile, env)
    if returncode != 0:
        raise ImageError("mmdebstrap failed (exit {}); last lines of {}:\n{}".format(
            returncode, logfile, _tail(logfile)))


def run_logged(cmd, logfile, env=None):
    """Run ``cmd``; every output line goes to ``logfile`` prefixed with the seconds
    since the start (``[  12.3s] ...``: bench/image_build.py reads the phases
    from these). Returns the exit code."""
    t0 = time.monotonic()
    with open(logfile, "ab") as out:
        out.write(("$ " + " ".join(shlex.quote(c) for c in cmd) + "\n").encode())
        out.flush()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env)
        try:
            for line in proc.stdout:
                out.write("[{:7.1f}s] ".format(time.monotonic() - t0).encode() + line)
                out.flush()
        finally:
            proc.stdout.close()
            returncode = proc.wait()
    return returncode


mmdebstrap_builder.host_problems = check_build_host


# The builder build() uses; a replacement (tests) may carry its own
# ``host_problems(recipe) -> [str]`` (plan() reports them before a build).
DEFAULT_BUILDER = mmdebstrap_builder


def _tail(path, lines=25):
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def _kernel_files(rootfs):
    """(version, vmlinuz path, initrd path) of the newest kernel in ``rootfs/boot``."""
    boot = os.path.join(rootfs, "boot")
    try:
        names = os.listdir(boot)
    except OSError:
        names = []
    versions = [n[len("vmlinuz-"):] for n in names if n.startswith("vmlinuz-")]

    def key(v):
        return [int(x) if x.isdigit() else x for x in re.split(r"[.-]", v)]

    for version in sorted(versions, key=key, reverse=True):
        initrd = os.path.join(boot, "initrd.img-" + version)
        if os.path.isfile(initrd):
            return version, os.path.join(boot, "vmlinuz-" + version), initrd
    raise ImageError("the built root has no kernel with an initramfs in {} (found: {})"
                     .format(boot, ", ".join(sorted(names)) or "nothing"))


def plan(lab, files_dir=None, force=False):
    """What :func:`build` would do: ``{'action': 'none'|'publish'|'build', ...}``."""
    want = input_hash(lab, files_dir)
    cur = current_build(lab)
    out = {"input_hash": want, "current": cur, "force": bool(force)}
    if cur is None:
        out.update(action="build", reason="no image built yet")
    elif not cur["intact"]:
        out.update(action="build", reason="current build {} is incomplete".format(
            cur["build_id"]))
    elif cur["input_hash"] != want:
        out.update(action="build", reason="inputs changed (hash {} -> {})".format(
            (cur["input_hash"] or "?")[:12], want[:12]))
    elif force:
        out.update(action="build", reason="rebuild forced")
    else:
        missing = _publish_problems(lab, cur["build_id"])
        if missing:
            out.update(action="publish", reason="; ".join(missing))
        else:
            out.update(action="none", reason="image {} is current".format(cur["build_id"]))
    # what would stop a build on this host (shown by test=True before trying)
    checker = getattr(DEFAULT_BUILDER, "host_problems", check_build_host)
    out["host_problems"] = checker(recipe(lab)) if out["action"] == "build" else []
    return out


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def build(lab, files_dir=None, force=False, builder=None, keep=DEFAULT_KEEP, protect=(),
          lock_wait=0, pip_settings=None):
    """Build (if needed), publish and switch the node image.

    Returns ``{'changed', 'action', 'build_id', 'input_hash', 'previous', 'current',
    'duration', 'reason', 'pruned'}``. Unchanged inputs: no build (``action`` is
    ``none``, or ``publish`` when only the HTTP/TFTP links needed repair). A
    failed build raises :class:`ImageError`; the previous ``current`` stays, the
    temp dir is removed and ``<images_dir>/last-failure.json`` tells why.

    ``builder(recipe, rootfs, stage_dir, links, logfile)`` makes the root file
    system (default: :func:`mmdebstrap_builder`); tests inject a fake one.
    """
    builder = builder or DEFAULT_BUILDER
    p = paths(lab)
    with build_lock(lab, wait=lock_wait):
        pl = plan(lab, files_dir, force)
        cur = pl["current"]
        result = {"changed": False, "action": pl["action"], "reason": pl["reason"],
                  "input_hash": pl["input_hash"], "previous": cur and cur["build_id"],
                  "build_id": cur and cur["build_id"], "duration": 0.0, "pruned": []}
        if pl["action"] == "none":
            result["current"] = cur
            return result
        if pl["action"] == "publish":
            publish(lab, cur["build_id"])
            result.update(changed=True, current=current_build(lab))
            return result
        _remove_stale_temps(p["images_dir"])
        started = _now()
        t0 = time.monotonic()
        digest = pl["input_hash"]
        stamp = started
        while True:  # unique, also for a forced rebuild within the same second
            build_id = "{}-{}".format(stamp.strftime("%Y%m%dT%H%M%SZ"), digest[:12])
            if not os.path.lexists(os.path.join(p["images_dir"], build_id)):
                break
            stamp += datetime.timedelta(seconds=1)
        tmp = os.path.join(p["images_dir"], TMP_PREFIX + build_id)
        logfile = os.path.join(tmp, "build.log")
        rec = recipe(lab)
        rec["cache"] = build_sources(lab)
        try:
            os.makedirs(tmp)
            os.chmod(tmp, 0o755)
            stage = os.path.join(tmp, "inputs")
            links = stage_inputs(lab, rec, digest, stage, files_dir, pip_settings)
            rootfs = os.path.join(tmp, "rootfs")
            _make_rootfs_dir(rootfs, lab.netnode.nfs_server)
            builder(rec, rootfs, stage, links, logfile)
            version, kernel, initrd = _kernel_files(rootfs)
            for src, name in ((kernel, "vmlinuz"), (initrd, "initrd.img")):
                shutil.copyfile(src, os.path.join(tmp, name))
                os.chmod(os.path.join(tmp, name), 0o644)
            remove_tree(stage)
            manifest = {
                "build_id": build_id, "input_hash": digest, "recipe": rec,
                "files_digest": files_digest(files_dir),
                "kernel_version": version,
                "built_at": started.isoformat(), "duration": round(time.monotonic() - t0, 1),
                "sizes": {"vmlinuz": os.path.getsize(os.path.join(tmp, "vmlinuz")),
                          "initrd.img": os.path.getsize(os.path.join(tmp, "initrd.img")),
                          "rootfs_mb": _size_mb(rootfs)},
                "packages": _package_list(rootfs),
            }
            with open(os.path.join(tmp, "manifest.json"), "w", encoding="utf-8") as fh:
                json.dump(manifest, fh, indent=2, sort_keys=True)
                fh.write("\n")
            os.sync()  # dpkg ran with force-unsafe-io: flush before it counts
            final = os.path.join(p["images_dir"], build_id)
            os.rename(tmp, final)
        except BaseException as exc:
            # the build's temp dir goes, its log stays where the error points to
            kept = p["last_failure_log"]
            with contextlib.suppress(OSError):
                shutil.copyfile(logfile, kept)
            _record_failure(p, build_id, digest, exc, kept)
            try:
                remove_tree(tmp)
            except Exception as cleanup_exc:  # pylint: disable=broad-except
                log.error("netlab image: cleanup of %s failed: %s", tmp, cleanup_exc)
            if isinstance(exc, Exception):
                text = str(exc).replace(logfile, kept)
                if kept not in text and os.path.exists(kept):
                    text += " (build log: {})".format(kept)
                if isinstance(exc, ImageError):
                    raise ImageError(text) from exc
                raise ImageError("image build {} failed: {}".format(build_id, text)) from exc
            raise
        # the commit point: current switches only now, after a complete build
        _stage_boot_files(lab, build_id)
        _atomic_symlink(build_id, p["current"])
        publish(lab, build_id)
        for stale in (p["last_failure"], p["last_failure_log"]):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)
        result.update(changed=True, build_id=build_id,
                      duration=round(time.monotonic() - t0, 1),
                      pruned=prune(lab, keep=keep, protect=protect),
                      current=current_build(lab), spare=_spare(lab))
        return result


def _spare(lab):
    """The first reset after a build takes a root cloned now (netlab_roots_spare):
    ``{'method', 'seconds'}``, None without persistent nodes, or the reason it
    could not be made (the reset then clones, as it would without it)."""
    try:
        out = netlab_roots.prepare_spare(lab)
    except (netlab_roots.RootError, OSError) as exc:
        return {"error": str(exc)}
    return out and {"method": out["method"], "seconds": out["seconds"]}


def _make_rootfs_dir(rootfs, nfs_server):
    """On btrfs the rootfs is a subvolume of its own: node roots are then reset
    by snapshot (netlab_roots), in constant time, instead of copied. Not under
    nfs-ganesha, which cannot export subvolumes (stateless nodes mount the image
    rootfs itself): there the rootfs is a plain directory and resets are reflink
    copies (:func:`netlab_roots.snapshots_exportable`)."""
    if (netlab_roots.snapshots_exportable(nfs_server)
            and netlab_roots.fs_type(os.path.dirname(rootfs)) == "btrfs"):
        subprocess.run(["btrfs", "subvolume", "create", rootfs], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _size_mb(path):
    """Disk usage of ``path`` in MB (what each copied node root costs), or None."""
    proc = subprocess.run(["du", "-sxm", path], capture_output=True, text=True, check=False)
    try:
        return int(proc.stdout.split()[0])
    except (IndexError, ValueError):
        return None


def _package_list(rootfs):
    status = os.path.join(rootfs, "var", "lib", "dpkg", "status")
    pkgs = {}
    try:
        with open(status, encoding="utf-8", errors="replace") as fh:
            name = version = None
            installed = False
            for line in fh:
                if line.startswith("Package: "):
                    name = line.split(None, 1)[1].strip()
                elif line.startswith("Version: "):
                    version = line.split(None, 1)[1].strip()
                elif line.startswith("Status: "):
                    installed = line.strip().endswith(" installed")
                elif not line.strip():
                    if name and installed:
                        pkgs[name] = version
                    name = version = None
                    installed = False
            if name and installed:
                pkgs[name] = version
    except OSError:
        pass
    return dict(sorted(pkgs.items()))


def _record_failure(p, build_id, digest, exc, logfile):
    try:
        with open(p["last_failure"], "w", encoding="utf-8") as fh:
            json.dump({"build_id": build_id, "input_hash": digest,
                       "at": _now().isoformat(), "error": str(exc), "log": logfile,
                       "log_tail": _tail(logfile, 60)}, fh, indent=2)
            fh.write("\n")
    except OSError:
        pass
