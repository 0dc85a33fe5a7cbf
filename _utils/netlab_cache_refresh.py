"""
The LAN cache's storage on the networking node: git mirrors refreshed (a failed
refresh keeps the last good copy) and published for nginx, files downloaded once,
disk usage measured and the apt/pip caches pruned to their ``max_size``, and the
reports the ``netlab_cache`` states and ``netlab.cache_usage`` show. Commands and
measurements are passed in (``run``, ``download``, ``du``).
"""

import os

from netlab_cache import PARTS, enabled, file_path, git_repos, human_size


def refresh_mirror(directory, upstream, run):
    """Create or update one ``git clone --mirror`` in ``directory``.

    ``run(argv) -> (returncode, output)``. A new mirror is cloned next to its final
    place and renamed in, so a failed first clone leaves nothing; a failed update
    leaves the last good copy. Returns ``{'changed': bool, 'error': str|None,
    'created': bool}``; ``update-server-info`` keeps git's dumb HTTP current."""
    if os.path.isdir(directory):
        before = _refs(directory, run)
        code, out = run(["git", "-C", directory, "remote", "update", "--prune"])
        if code != 0:
            return {"changed": False, "created": False,
                    "error": "update from {} failed: {}".format(upstream, _last(out))}
        run(["git", "-C", directory, "update-server-info"])
        return {"changed": _refs(directory, run) != before, "created": False,
                "error": None}
    tmp = directory + ".new"
    if os.path.isdir(tmp):
        run(["rm", "-rf", "--one-file-system", tmp])
    os.makedirs(os.path.dirname(directory), exist_ok=True)
    code, out = run(["git", "clone", "--mirror", "--quiet", upstream, tmp])
    if code != 0:
        run(["rm", "-rf", "--one-file-system", tmp])
        return {"changed": False, "created": False,
                "error": "clone of {} failed: {}".format(upstream, _last(out))}
    run(["git", "-C", tmp, "update-server-info"])
    os.rename(tmp, directory)
    return {"changed": True, "created": True, "error": None}


def _refs(directory, run):
    return run(["git", "-C", directory, "show-ref"])[1]


def _last(text, n=3):
    lines = [l for l in (text or "").strip().splitlines() if l.strip()]
    return " / ".join(lines[-n:]) or "no output"


def refresh_git(lab, run, du):
    """Refresh every mirror of :func:`git_repos`; ``du(dir) -> bytes``. A new
    mirror is not created once the cache is over ``cache:git:max_size``.
    Returns ``{rel: result}`` (see :func:`refresh_mirror`)."""
    cfg = lab.cache["git"]
    mirrors = os.path.join(cfg["dir"], "mirrors")
    results = {}
    for rel, upstream in git_repos(lab).items():
        directory = os.path.join(mirrors, rel)
        if not os.path.isdir(directory) and du(cfg["dir"]) >= cfg["max_size"]:
            results[rel] = {"changed": False, "created": False, "error": (
                "not mirrored: the git cache holds {} (netlab:cache:git:max_size {})"
                .format(human_size(du(cfg["dir"])), human_size(cfg["max_size"])))}
            continue
        results[rel] = refresh_mirror(directory, upstream, run)
    publish_mirrors(lab)
    return results


def publish_mirrors(lab):
    """Make exactly the mirrors the lab names visible to nginx: ``<git>/served``
    holds a symlink per wanted mirror that exists; anything else is unlinked (its
    mirror stays on disk, unserved). Returns ``(added, removed)`` (lists)."""
    cfg = lab.cache["git"]
    mirrors = os.path.join(cfg["dir"], "mirrors")
    served = os.path.join(cfg["dir"], "served")
    os.makedirs(served, exist_ok=True)
    wanted = {rel for rel in git_repos(lab) if os.path.isdir(os.path.join(mirrors, rel))}
    present = set()
    removed = []
    for top, dirs, files in os.walk(served):
        for name in list(dirs) + files:
            full = os.path.join(top, name)
            if os.path.islink(full):
                rel = os.path.relpath(full, served)
                if dirs.count(name):
                    dirs.remove(name)
                if rel in wanted and os.readlink(full) == os.path.join(mirrors, rel):
                    present.add(rel)
                else:
                    os.unlink(full)
                    removed.append(rel)
    added = []
    for rel in sorted(wanted - present):
        link = os.path.join(served, rel)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.join(mirrors, rel), link)
        added.append(rel)
    return added, sorted(removed)


def stale_mirrors(lab):
    """Mirror directories no longer named by the lab (listed, never served)."""
    wanted = set(git_repos(lab))
    root = os.path.join(lab.cache["git"]["dir"], "mirrors")
    out = []
    for top, dirs, _ in os.walk(root):
        for d in list(dirs):
            full = os.path.join(top, d)
            if d.endswith(".git"):
                rel = os.path.relpath(full, root)
                if rel not in wanted:
                    out.append(rel)
                dirs.remove(d)
    return sorted(out)


def fetch_files(lab, download, du):
    """Fetch every ``cache:files:urls`` entry not in the cache yet.

    ``download(url, dest) -> None`` (raises on failure, leaves no ``dest``). A file
    already cached is never fetched again. Returns ``{url: {'changed', 'error'}}``."""
    cfg = lab.cache["files"]
    out = {}
    for url in cfg["urls"]:
        dest = os.path.join(cfg["dir"], file_path(url))
        if os.path.isfile(dest):
            out[url] = {"changed": False, "error": None}
            continue
        if du(cfg["dir"]) >= cfg["max_size"]:
            out[url] = {"changed": False, "error": (
                "not fetched: the files cache holds {} (netlab:cache:files:max_size {})"
                .format(human_size(du(cfg["dir"])), human_size(cfg["max_size"])))}
            continue
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        try:
            download(url, dest)
        except Exception as exc:  # pylint: disable=broad-except
            out[url] = {"changed": False, "error": "download failed: {}".format(exc)}
            continue
        out[url] = {"changed": True, "error": None}
    return out


def usage(lab, du):
    """Per part: enabled, bytes used, bound, over (bool), where."""
    out = {}
    for part in PARTS:
        cfg = lab.cache[part]
        used = du(cfg["dir"]) if cfg["enabled"] else 0
        out[part] = {"enabled": cfg["enabled"], "used": used, "max_size": cfg["max_size"],
                     "over": used > cfg["max_size"], "dir": cfg["dir"],
                     "summary": "{} of {}".format(human_size(used),
                                                  human_size(cfg["max_size"]))}
    return out


def disk_usage(directory):
    """Bytes under ``directory`` (files only, symlinks not followed)."""
    total = 0
    for top, _, files in os.walk(directory):
        for name in files:
            try:
                total += os.lstat(os.path.join(top, name)).st_size
            except OSError:
                pass
    return total


def prune_plan(entries, limit):
    """Which files to delete so the total fits ``limit``: ``entries`` are
    ``(path, size, last_used)``; the least recently used go first."""
    total = sum(e[1] for e in entries)
    out = []
    for path, size, _ in sorted(entries, key=lambda e: (e[2], e[0])):
        if total <= limit:
            break
        out.append(path)
        total -= size
    return out


PRUNABLE = {"apt": (".deb", ".udeb"), "pip": (".whl", ".tar.gz", ".zip", ".tar.bz2")}


def prunable(directory, suffixes):
    """``(path, size, last_used)`` of every package file under ``directory``."""
    out = []
    for top, _, files in os.walk(directory):
        for name in files:
            if name.endswith(suffixes):
                full = os.path.join(top, name)
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                out.append((full, st.st_size, max(st.st_atime, st.st_mtime)))
    return out


def prune(lab, part):
    """Bring ``part``'s cache under its bound by removing the least recently used
    package files (they are fetched again when next asked for). Returns the removed
    paths."""
    cfg = lab.cache[part]
    if part not in PRUNABLE or not cfg["enabled"] or not os.path.isdir(cfg["dir"]):
        return []
    entries = prunable(cfg["dir"], PRUNABLE[part])
    other = disk_usage(cfg["dir"]) - sum(e[1] for e in entries)
    removed = prune_plan(entries, max(0, cfg["max_size"] - other))
    for full in removed:
        try:
            os.unlink(full)
        except OSError:
            pass
    return removed


def refresh_report(git_results, file_results, mirrors_dir=None):
    """``(ok, comment, changes)`` of a refresh: a repository that failed but has a
    last good copy is a warning (still served); one never mirrored, or a file never
    fetched, is a failure."""
    lines, changes, ok = [], {}, True
    for rel, res in sorted((git_results or {}).items()):
        if res["error"]:
            have = mirrors_dir and os.path.isdir(os.path.join(mirrors_dir, rel))
            if have:
                lines.append("git {}: {}; serving its last good copy".format(
                    rel, res["error"]))
            else:
                ok = False
                lines.append("git {}: {}; not served".format(rel, res["error"]))
        elif res["changed"]:
            changes["git " + rel] = "created" if res.get("created") else "updated"
    for url, res in sorted((file_results or {}).items()):
        if res["error"]:
            ok = False
            lines.append("file {}: {}".format(url, res["error"]))
        elif res["changed"]:
            changes["file " + url] = "fetched"
    summary = "{} git mirror(s), {} file(s) checked".format(
        len(git_results or {}), len(file_results or {}))
    return ok, "\n".join([summary] + lines), changes


def usage_table(usage):
    """:func:`usage` as the plain text table ``salt-run netlab.status`` appends."""
    head = ("CACHE", "STATE", "USED", "BOUND", "WHERE")
    rows = []
    for part in PARTS:
        u = usage[part]
        state = "off" if not u["enabled"] else ("OVER BOUND" if u["over"] else "on")
        rows.append((part, state, human_size(u["used"]) if u["enabled"] else "-",
                     human_size(u["max_size"]), u["dir"]))
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    widths[-1] = 0
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
                     for row in [head] + rows)


def usage_report(lab, measure=None):
    """``usage`` of every part (``measure``: disk_usage) plus, with the git mirror on,
    the mirrors the lab no longer names (``git.unused_mirrors``): what both the
    execution module and the runner show."""
    out = usage(lab, measure or disk_usage)
    if enabled(lab, "git"):
        out["git"]["unused_mirrors"] = stale_mirrors(lab)
    return out

