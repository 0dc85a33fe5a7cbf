"""
Clients of the networking node's LAN cache, for the e2e tier and bench/cache_effect.py:
apt-get with its own state (the host's dpkg and apt lists are never touched), pip
download, git clone, and bare repositories that stand in for an upstream.
"""

import subprocess
import sys

from lib import daemons as daemons_lib


def git(*args, cwd=None):
    return subprocess.run(["git"] + list(args), cwd=cwd, check=True, capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent",
                                          "GIT_CONFIG_NOSYSTEM": "1",
                                          "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                                          "GIT_COMMITTER_NAME": "t",
                                          "GIT_COMMITTER_EMAIL": "t@t"}).stdout


def bare_repo(top, name, work):
    """``top/<name>.git``: a bare repository with one commit, ready for dumb HTTP."""
    bare = top / (name + ".git")
    git("init", "-q", "--bare", "-b", "master", str(bare))
    (bare / "hooks" / "post-update").write_text("#!/bin/sh\nexec git update-server-info\n")
    (bare / "hooks" / "post-update").chmod(0o755)
    src = work / name.replace("/", "_")
    git("init", "-q", "-b", "master", str(src))
    (src / "README").write_text("{} v1\n".format(name))
    git("add", "README", cwd=src)
    git("commit", "-q", "-m", "v1", cwd=src)
    git("push", "-q", str(bare), "master", cwd=src)
    git("--git-dir", str(bare), "update-server-info")
    return src


def wait_port(ns, port, timeout=60):
    daemons_lib.wait_for(lambda: daemons_lib.port_open(ns, port), timeout=timeout,
                         what="port {} in {}".format(port, ns.name))


class AptClient:
    """apt-get in the node namespace with its own state, cache and sources (the
    host's dpkg and apt lists are never touched), through the apt cache."""

    def __init__(self, ns, top, proxy):
        self.ns = ns
        self.proxy = proxy
        self.top = top
        for d in ("lists/partial", "archives/partial", "etc/apt.conf.d",
                  "etc/preferences.d", "etc/trusted.gpg.d"):
            (top / d).mkdir(parents=True, exist_ok=True)
        (top / "status").write_text("")
        (top / "etc" / "sources.list").write_text(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
            "http://deb.debian.org/debian bookworm main\n")

    def run(self, *args, check=True):
        t = self.top
        opts = ["-o", "Dir::Etc={}".format(t / "etc"),
                "-o", "Dir::Etc::SourceList={}".format(t / "etc" / "sources.list"),
                "-o", "Dir::Etc::SourceParts=/nonexistent",
                "-o", "Dir::State::Lists={}".format(t / "lists"),
                "-o", "Dir::State::status={}".format(t / "status"),
                "-o", "Dir::Cache::Archives={}".format(t / "archives"),
                "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=",
                "-o", "Acquire::http::Proxy={}".format(self.proxy),
                "-o", "Acquire::Languages=none", "-o", "Debug::NoLocking=1",
                "-o", "APT::Sandbox::User=root", "-q", "-y"]
        return self.ns.run(["apt-get"] + opts + list(args), check=check,
                           env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})

    def debs(self):
        return sorted(p.name for p in (self.top / "archives").glob("*.deb"))

    def clear(self):
        for p in (self.top / "archives").glob("*.deb"):
            p.unlink()
        for p in (self.top / "lists").glob("*_*"):
            p.unlink()


def pip_download(ns, dest, index, host, packages):
    dest.mkdir(parents=True, exist_ok=True)
    return ns.run([sys.executable, "-m", "pip", "download", "--isolated", "--no-deps",
                   "--no-cache-dir", "--disable-pip-version-check", "-d", str(dest),
                   # devpi's first answer waits for PyPI's project list (~30 s)
                   "--timeout", "180",
                   "--index-url", index, "--trusted-host", host] + list(packages),
                  env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})


def clone(ns, url, dest):
    ns.run(["rm", "-rf", str(dest)])
    ns.run(["git", "clone", "-q", url, str(dest)],
           env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_TERMINAL_PROMPT": "0"})
    return (dest / "README").read_text()


