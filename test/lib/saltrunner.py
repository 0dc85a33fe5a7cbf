"""
netlab's runner functions called in-process through Salt's own loader, without a
running master: a master config under a throw-away ``root`` whose
``extension_modules`` are the checkout's ``_runners`` and ``_utils`` (what
``salt-run saltutil.sync_all`` would copy). For runner functions that take
``pillar=`` and need no minion (``netlab.discover``, the local checks of
``netlab.preflight``)::

    runners = runner_loader(tmp_path / "master")
    ret = runners["netlab.discover"](log=str(log), pillar=lab)
"""

import pathlib

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]


def runner_loader(root):
    import salt.config  # pylint: disable=import-outside-toplevel
    import salt.loader  # pylint: disable=import-outside-toplevel

    opts = salt.config.master_config(str(master_conf(root)))
    return salt.loader.runner(opts, utils=salt.loader.utils(opts))


def master_conf(root):
    """Write ``<root>/master`` (see :func:`runner_loader`) and return its path;
    ``salt-run -c <root> netlab.<fun> ... pillar=...`` then runs netlab's runner
    through Salt's own CLI without a running master."""
    root = pathlib.Path(root)
    ext = root / "extmods"
    ext.mkdir(parents=True, exist_ok=True)
    for kind in ("runners", "utils"):
        link = ext / kind
        if not link.exists():
            link.symlink_to(REPO / ("_" + kind))
    conf = root / "master"
    # paths are relative to root_dir (Salt prefixes them with it)
    conf.write_text(yaml.safe_dump({
        "root_dir": str(root), "extension_modules": "/extmods",
        "file_roots": {"base": [str(REPO)]}, "pillar_roots": {"base": [str(root / "pillar")]},
        "log_file": "/master.log",
    }))
    # salt-run records its job here (Salt makes it only when a master starts)
    (root / "var" / "cache" / "salt" / "master" / "proc").mkdir(parents=True, exist_ok=True)
    return conf


def lab_in_pillar_roots(root, lab, target="*"):
    """A runner loader (see :func:`runner_loader`) whose master compiles pillar from
    real pillar_roots under ``root``: ``top.sls`` gives ``netlab.lab`` (``{'netlab':
    lab}``) to ``target``; the master's id is ``netnode_master``, as on a lab's
    networking node. For runner functions that read the lab from the master's own
    pillar (no ``pillar=`` argument)."""
    pillar = pathlib.Path(root) / "pillar"
    (pillar / "netlab").mkdir(parents=True, exist_ok=True)
    (pillar / "top.sls").write_text(yaml.safe_dump({"base": {target: ["netlab.lab"]}}))
    (pillar / "netlab" / "lab.sls").write_text(yaml.safe_dump({"netlab": lab}))
    runners = runner_loader(root)
    runners.opts["id"] = "netnode_master"
    return runners
