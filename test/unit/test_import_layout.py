"""
netlab's own modules import each other at module level only.

Salt's loader puts the synced ``_utils`` directory on ``sys.path`` only while
it loads a module (salt/loader/lazy.py: extra module dirs are added for the
load and removed after). An ``import netlab_x`` inside a function then works
only when some earlier load happened to import ``netlab_x``: a minion job that
called ``netlab_image.build`` failed at its prune step with ``No module named
'netlab_lifecycle'`` while the same build through the image state worked.
"""

import ast
import importlib
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
LOADED = ("_utils", "_modules", "_states", "_runners", "_pillar")


def _function_imports(path):
    """(line, module) of every ``import netlab_*`` inside a function of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [(node.lineno, n) for n in names if n.startswith("netlab_")]
    return found


def _files():
    return sorted(p for d in LOADED if (REPO / d).is_dir() for p in (REPO / d).glob("*.py"))


def test_no_netlab_import_inside_a_function():
    bad = ["{}:{}: import {}".format(p.relative_to(REPO), line, mod)
           for p in _files() for line, mod in _function_imports(p)]
    assert not bad, "import these at module level (see this test's docstring):\n" + \
        "\n".join(bad)


def test_the_check_finds_an_import_inside_a_function(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text("import netlab_lab\n\ndef f():\n    import netlab_lifecycle\n"
                   "    from netlab_roots import x\n    import os\n")
    assert _function_imports(mod) == [(4, "netlab_lifecycle"), (5, "netlab_roots")]


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "_utils").glob("*.py")))
def test_each_util_imports_first_in_a_fresh_interpreter(name):
    """Import order does not matter: every _utils module imports on its own
    (a module-level cycle would fail for one of them)."""
    res = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, {!r}); "
                          "import {}".format(str(REPO / "_utils"), name)],
                         capture_output=True, text=True, check=False, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


def test_a_cached_sibling_is_imported_off_sys_path(monkeypatch):
    """netlab_cache's call-time imports (of the modules that import it) work when
    _utils is not on sys.path, as in a minion job."""
    import netlab_cache  # pylint: disable=import-outside-toplevel

    utils = str(REPO / "_utils")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != utils])
    monkeypatch.delitem(sys.modules, "netlab_localconf", raising=False)
    mod = netlab_cache._sibling("netlab_localconf")  # pylint: disable=protected-access
    assert mod.__file__ == str(REPO / "_utils" / "netlab_localconf.py")
    assert utils not in sys.path
    assert importlib.import_module("netlab_localconf") is mod
