"""
netlab_managed.managed (the pipeline of ``devstack.local_conf_managed``) without
Salt: a real file in a temp dir, the owner of the current user, a masking function
that hides the word "secret".
"""

import os
import pwd
import stat

import pytest

import netlab_managed

ME = pwd.getpwuid(os.getuid()).pw_name


def mask(text):
    return text.replace("secret", "******")


def render(text="PASSWORD=secret\n", user=ME):
    return lambda: (text, user)


def test_creates_then_keeps_and_test_mode_predicts_the_real_changes(tmp_path):
    path = str(tmp_path / "local.conf")
    dry = netlab_managed.managed(path, render(), "0600", True, mask)
    assert dry["result"] is None and not os.path.exists(path)
    real = netlab_managed.managed(path, render(), "0600", False, mask)
    assert real["result"] is True and real["changes"] == dry["changes"]
    assert set(real["changes"]) == {"diff", "user", "group", "mode"}
    assert "+PASSWORD=******" in real["changes"]["diff"] and "secret" not in str(real)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert open(path, encoding="utf-8").read() == "PASSWORD=secret\n"
    assert os.listdir(tmp_path) == ["local.conf"]          # no temp file left
    again = netlab_managed.managed(path, render(), "0600", False, mask)
    assert again == {"name": path, "changes": {}, "result": True,
                     "comment": "{} is in the correct state".format(path)}


def test_only_the_mode_is_fixed_when_the_text_is_right(tmp_path):
    path = str(tmp_path / "local.conf")
    netlab_managed.managed(path, render(), "0600", False, mask)
    os.chmod(path, 0o644)
    ret = netlab_managed.managed(path, render(), "0600", False, mask)
    assert ret["changes"] == {"mode": "0600"} and ret["comment"] == path + " updated"


def test_a_symlink_is_refused_not_written_through(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("x")
    path = tmp_path / "local.conf"
    path.symlink_to(target)
    ret = netlab_managed.managed(str(path), render(), "0600", False, mask)
    assert ret["result"] is False and "symbolic link" in ret["comment"]
    assert target.read_text() == "x"


def test_a_missing_directory_fails_a_real_run_but_is_predicted(tmp_path):
    path = str(tmp_path / "devstack" / "local.conf")
    assert netlab_managed.managed(path, render(), "0600", True, mask)["result"] is None
    ret = netlab_managed.managed(path, render(), "0600", False, mask)
    assert ret["result"] is False and "does not exist" in ret["comment"]


class RenderFailed(Exception):
    pass


def _fails():
    raise RenderFailed("no slice for nuc9")


@pytest.mark.parametrize("name,rend,mode,comment", [
    ("relative/local.conf", render(), "0600", "relative/local.conf is not an absolute path"),
    ("/tmp/x", render(), "99", "mode '99' is not an octal file mode"),
    ("/tmp/x", _fails, "0600", "no slice for nuc9"),
    ("/tmp/x", render(user="no-such-user-netlab"), "0600",
     "user 'no-such-user-netlab' does not exist on this node"),
])
def test_bad_input_is_a_clear_failure_before_anything_is_written(name, rend, mode, comment):
    ret = netlab_managed.managed(name, rend, mode, False, mask, errors=(RenderFailed,))
    assert ret["result"] is False and ret["comment"].startswith(comment)
    assert ret["changes"] == {}
