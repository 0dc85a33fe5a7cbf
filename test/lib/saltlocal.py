"""
``salt-call --local`` against a throw-away root: the formula checkout as file_roots,
a given ``netlab`` pillar, everything else (cache, pki, logs) under ``root``.

Used by the functional tier (states against a temp root) and the e2e tier (the same
states applied inside a network namespace: pass ``prefix=namespace.prefix``)::

    salt = SaltLocal(tmp_path / "salt", REPO, pillar={"netlab": lab}, prefix=ns.prefix)
    salt.sync()
    ret = salt.apply("netlab.netnode")            # {state id: result dict}
    ret = salt.apply("netlab.netnode", test=True)
    salt.call("netlab.dhcp_probe")                # any execution function -> its return
"""

import json
import os
import pathlib
import subprocess
import sys

import yaml

SALT_CALL = os.path.join(os.path.dirname(sys.executable), "salt-call")


class SaltError(RuntimeError):
    pass


class SaltLocal:
    """One local minion (id ``minion_id``) with its own config dir under ``root``."""

    def __init__(self, root, repo, pillar, minion_id="netnode", prefix=None,
                 timeout=600, overlay=None):
        """``overlay``: a directory searched before ``repo`` (a test's changed copy
        of some formula files, same relative paths)."""
        self.root = pathlib.Path(root)
        self.repo = pathlib.Path(repo)
        self.prefix = list(prefix or [])
        self.timeout = timeout
        self.minion_id = minion_id
        self.conf_dir = self.root / "conf"
        self.pillar_dir = self.root / "pillar"
        for d in (self.conf_dir, self.pillar_dir):
            d.mkdir(parents=True, exist_ok=True)
        conf = {
            "id": minion_id,
            "root_dir": str(self.root),
            "file_client": "local",
            "file_roots": {"base": ([str(overlay)] if overlay else []) + [str(self.repo)]},
            "pillar_roots": {"base": [str(self.pillar_dir)]},
            "log_file": str(self.root / "minion.log"),
            "log_level_logfile": "info",
            "state_output": "full",
            "grains_cache": False,
            "enable_fqdns_grains": False,
        }
        (self.conf_dir / "minion").write_text(yaml.safe_dump(conf))
        (self.pillar_dir / "top.sls").write_text(yaml.safe_dump({"base": {"*": ["netlab"]}}))
        self.set_pillar(pillar)

    def set_pillar(self, pillar):
        """Replace the whole pillar (a dict with top-level keys, e.g. ``{'netlab': ...}``)."""
        self.pillar = pillar
        (self.pillar_dir / "netlab.sls").write_text(yaml.safe_dump(pillar))

    def run(self, *args, check=True):
        cmd = self.prefix + [SALT_CALL, "--local", "-c", str(self.conf_dir), "--out=json",
                             "--log-level=quiet"] + [str(a) for a in args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout,
                             check=False)
        try:
            out = json.loads(res.stdout)["local"] if res.stdout.strip() else None
        except (ValueError, KeyError, TypeError):
            out = None
        if check and out is None:
            raise SaltError("salt-call {} gave no JSON (rc {}):\n{}\n{}".format(
                " ".join(map(str, args)), res.returncode, res.stdout, res.stderr))
        return out

    def sync(self):
        return self.run("saltutil.sync_all")

    def call(self, fun, *args, **kwargs):
        return self.run(fun, *args, *["{}={}".format(k, json.dumps(v) if not isinstance(
            v, str) else v) for k, v in kwargs.items()])

    def apply(self, sls, test=False):
        """``state.apply sls`` -> ``{state id: result}`` (raises on render errors)."""
        args = ["state.apply", sls]
        if test:
            args.append("test=True")
        out = self.run(*args)
        if not isinstance(out, dict):
            raise SaltError("state.apply {} failed to render:\n{}".format(
                sls, "\n".join(out) if isinstance(out, list) else out))
        return by_id(out)


def by_id(out):
    """Raw state.apply return -> ``{state id: result}``; a state id used by several
    ``names`` becomes ``id:name``."""
    ids = {}
    for key in out:
        parts = key.split("_|-")
        ids.setdefault(parts[1] if len(parts) == 4 else key, []).append(key)
    res = {}
    for sid, keys in ids.items():
        for key in keys:
            res[sid if len(keys) == 1 else "{}:{}".format(sid, key.split("_|-")[2])] = out[key]
    return res


def changed(ret):
    """State ids that changed something (or would, in test mode)."""
    return sorted(k for k, v in ret.items() if v.get("changes"))


def failed(ret):
    """``{state id: comment}`` of failed states."""
    return {k: v.get("comment") for k, v in ret.items() if v.get("result") is False}


def temp_root_lookup(root):
    """``netlab:lookup`` that puts every file the netnode states write under
    ``root`` and starts no daemon (``service_control: none``, no packages)."""
    root = pathlib.Path(root)
    return {
        "service_control": "none", "install_packages": False,
        "run_dir": str(root / "run"),
        "dnsmasq": {"conf": str(root / "etc" / "dnsmasq.conf"),
                    "leasefile": str(root / "leases")},
        "nginx": {"conf": str(root / "etc" / "nginx-netlab.conf"), "user": "root"},
        "nfs": {"exports": str(root / "etc" / "netlab.exports"),
                "ganesha_conf": str(root / "etc" / "ganesha.conf"),
                "ganesha_recovery": str(root / "recov")},
    }
