"""
netlab_image module + states through Salt's loaders, with a fake builder.

The real build (mmdebstrap, minutes) is covered by test/e2e/test_image_build.py;
here ``netlab_image_build.DEFAULT_BUILDER`` is replaced by a fast fake that makes a tiny
root with a kernel and an initrd, so the state logic (no-op on the same hash,
rebuild on change, failed build keeps the last good image, test-mode
prediction, publish links, retention) runs in milliseconds against a temp dir.
"""

import copy
import json
import os
import shutil

import pytest
import salt.config
import salt.loader

import netlab_image
import netlab_image_build
import netlab_lab
import netlab_saltcompat

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class FakeBuilder:
    """Records calls; makes a minimal root (or fails half-way when told to)."""

    def __init__(self):
        self.calls = []
        self.fail = False
        self.host_problems = lambda rec: []  # the fake needs no mmdebstrap

    def __call__(self, rec, rootfs, stage_dir, links, logfile):
        self.calls.append({"recipe": rec, "rootfs": rootfs, "stage": stage_dir})
        assert os.path.isfile(os.path.join(stage_dir, "configure.sh"))
        assert os.path.isfile(os.path.join(stage_dir, "build.env"))
        os.makedirs(os.path.join(rootfs, "boot"))
        os.makedirs(os.path.join(rootfs, "var", "lib", "dpkg"))
        with open(logfile, "a", encoding="utf-8") as fh:
            fh.write("fake build of {} {}\n".format(rec["distro"], rec["release"]))
        if self.fail:
            with open(logfile, "a", encoding="utf-8") as fh:
                fh.write("E: fake failure half-way\n")
            raise netlab_image.ImageError("fake builder failed half-way")
        version = "6.1.0-{}-amd64".format(len(self.calls))
        for name, data in (("vmlinuz-" + version, b"kernel" + version.encode()),
                           ("initrd.img-" + version, b"initrd" + version.encode())):
            with open(os.path.join(rootfs, "boot", name), "wb") as fh:
                fh.write(data)
        with open(os.path.join(rootfs, "var", "lib", "dpkg", "status"), "w",
                  encoding="utf-8") as fh:
            fh.write("Package: salt-free\nStatus: install ok installed\nVersion: 1\n\n")


@pytest.fixture
def fake_builder(monkeypatch):
    builder = FakeBuilder()
    monkeypatch.setattr(netlab_image_build, "DEFAULT_BUILDER", builder)
    return builder


@pytest.fixture
def lab_raw(example_pillar, tmp_path):
    raw = copy.deepcopy(example_pillar)
    raw["netnode"]["storage"] = str(tmp_path / "srv")
    return raw


@pytest.fixture
def files_dir(tmp_path):
    dst = tmp_path / "image-files"
    shutil.copytree(netlab_image.DEFAULT_FILES_DIR, dst)
    return str(dst)


@pytest.fixture
def salt_env(tmp_path):
    """``make(pillar, test=False)`` -> (modules, states), netlab's own dirs loaded."""

    def make(pillar, test=False):
        root = tmp_path / "salt-{}".format(int(test))
        opts = salt.config.minion_config(None)
        opts.update({
            "id": "netnode",
            "file_client": "local",
            "file_roots": {"base": [REPO]},
            "root_dir": str(root),
            "cachedir": str(root / "cache"),
            "extension_modules": str(root / "extmods"),
            "module_dirs": [os.path.join(REPO, "_modules")],
            "states_dirs": [os.path.join(REPO, "_states")],
            "utils_dirs": [os.path.join(REPO, "_utils")],
            "grains": {"id": "netnode"},
            "pillar": pillar,
            "test": test,
        })
        utils = salt.loader.utils(opts)
        mods = salt.loader.minion_mods(opts, utils=utils)
        states = salt.loader.states(opts, mods, utils, {})
        return mods, states

    return make


def _paths(raw):
    return netlab_image.paths(netlab_lab.load(raw))


def _current_id(raw):
    return os.readlink(_paths(raw)["current"])


# --------------------------------------------------------------------------- built
def test_first_run_builds_publishes_and_switches_current(lab_raw, salt_env, fake_builder,
                                                         files_dir):
    _, states = salt_env({"netlab": lab_raw})
    ret = states["netlab_image.built"]("img", files=files_dir)
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"]["image"]["old"] is None
    new = ret["changes"]["image"]["new"]
    assert len(fake_builder.calls) == 1
    p = _paths(lab_raw)
    build_id = _current_id(lab_raw)
    assert build_id == new["build_id"]
    assert netlab_image.BUILD_ID_RE.match(build_id)
    bdir = os.path.join(p["images_dir"], build_id)
    for name in ("rootfs", "vmlinuz", "initrd.img", "manifest.json", "build.log"):
        assert os.path.exists(os.path.join(bdir, name)), name
    assert not os.path.exists(os.path.join(bdir, "inputs")), "staged inputs left in build"
    with open(os.path.join(bdir, "manifest.json"), encoding="utf-8") as fh:
        manifest = json.load(fh)
    assert manifest["input_hash"] == new["input_hash"]
    assert manifest["kernel_version"] == "6.1.0-1-amd64"
    assert manifest["recipe"]["release"] == "bookworm"
    assert manifest["packages"] == {"salt-free": "1"}
    # boot files are served from http and tftp, through an atomic 'current' link
    for base in (p["http_images"], p["tftp_images"]):
        assert os.readlink(os.path.join(base, "current")) == build_id
        with open(os.path.join(base, "current", "vmlinuz"), "rb") as fh:
            assert fh.read() == b"kernel6.1.0-1-amd64"
        assert oct(os.stat(os.path.join(base, "current", "initrd.img")).st_mode & 0o777) \
            == "0o644"
    # nothing temporary left
    assert not [n for n in os.listdir(p["images_dir"]) if n.startswith(".tmp-")]


def test_same_inputs_are_a_no_op(lab_raw, salt_env, fake_builder, files_dir):
    _, states = salt_env({"netlab": lab_raw})
    first = states["netlab_image.built"]("img", files=files_dir)
    build_id = _current_id(lab_raw)
    ret = states["netlab_image.built"]("img", files=files_dir)
    assert ret["result"] is True
    assert ret["changes"] == {}
    assert "is current" in ret["comment"]
    assert len(fake_builder.calls) == 1
    assert _current_id(lab_raw) == build_id == first["changes"]["image"]["new"]["build_id"]


def test_changed_inputs_rebuild(lab_raw, salt_env, fake_builder, files_dir):
    _, states = salt_env({"netlab": lab_raw})
    states["netlab_image.built"]("img", files=files_dir)
    old = _current_id(lab_raw)
    lab_raw["image"]["packages"] = ["git", "htop"]
    _, states = salt_env({"netlab": lab_raw})
    ret = states["netlab_image.built"]("img", files=files_dir)
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"]["image"]["old"]["build_id"] == old
    assert _current_id(lab_raw) != old
    assert len(fake_builder.calls) == 2
    assert "htop" in fake_builder.calls[1]["recipe"]["packages"]
    assert "inputs changed" in ret["comment"]


def test_changed_image_file_rebuilds(lab_raw, salt_env, fake_builder, files_dir):
    _, states = salt_env({"netlab": lab_raw})
    states["netlab_image.built"]("img", files=files_dir)
    with open(os.path.join(files_dir, "overlay", "etc", "salt", "minion"), "a",
              encoding="utf-8") as fh:
        fh.write("# new line\n")
    ret = states["netlab_image.built"]("img", files=files_dir)
    assert ret["changes"], ret["comment"]
    assert len(fake_builder.calls) == 2


def test_per_node_change_is_a_no_op(lab_raw, salt_env, fake_builder, files_dir):
    _, states = salt_env({"netlab": lab_raw})
    states["netlab_image.built"]("img", files=files_dir)
    lab_raw["nodes"]["nuc2"]["root"] = {"mode": "stateless"}
    lab_raw["netnode"]["salt_master"] = "192.168.42.3"
    _, states = salt_env({"netlab": lab_raw})
    ret = states["netlab_image.built"]("img", files=files_dir)
    assert ret["changes"] == {}
    assert len(fake_builder.calls) == 1


def test_failed_build_keeps_last_good_image(lab_raw, salt_env, fake_builder, files_dir):
    _, states = salt_env({"netlab": lab_raw})
    states["netlab_image.built"]("img", files=files_dir)
    good = _current_id(lab_raw)
    p = _paths(lab_raw)
    before = sorted(os.listdir(p["images_dir"]))
    lab_raw["image"]["salt_version"] = "3007.1"
    fake_builder.fail = True
    _, states = salt_env({"netlab": lab_raw})
    ret = states["netlab_image.built"]("img", files=files_dir)
    assert ret["result"] is False
    assert ret["changes"] == {}
    assert "fake builder failed half-way" in ret["comment"]
    assert "the last good image {} stays current".format(good) in ret["comment"]
    assert _current_id(lab_raw) == good
    for base in (p["http_images"], p["tftp_images"]):
        assert os.readlink(os.path.join(base, "current")) == good
    # no half build left; the failure is recorded with the log tail
    after = sorted(n for n in os.listdir(p["images_dir"])
                   if n not in ("last-failure.json", "last-failure.log"))
    assert after == before
    with open(p["last_failure"], encoding="utf-8") as fh:
        failure = json.load(fh)
    assert "fake failure half-way" in failure["log_tail"]
    # the build's log is kept where the failure record points
    assert failure["log"] == p["last_failure_log"]
    with open(p["last_failure_log"], encoding="utf-8") as fh:
        assert "fake failure half-way" in fh.read()
    # the next good build succeeds and clears the failure record
    fake_builder.fail = False
    ret = states["netlab_image.built"]("img", files=files_dir)
    assert ret["result"] is True and ret["changes"]
    assert not os.path.exists(p["last_failure"])
    assert not os.path.exists(p["last_failure_log"])


def test_failed_first_build_leaves_nothing(lab_raw, salt_env, fake_builder, files_dir):
    fake_builder.fail = True
    _, states = salt_env({"netlab": lab_raw})
    ret = states["netlab_image.built"]("img", files=files_dir)
    assert ret["result"] is False
    assert "there is no image yet" in ret["comment"]
    p = _paths(lab_raw)
    assert not os.path.lexists(p["current"])
    assert not os.path.lexists(os.path.join(p["http_images"], "current"))
    # nothing but the lock and the failure record with the build's log
    assert sorted(os.listdir(p["images_dir"])) == [".lock", "last-failure.json",
                                                   "last-failure.log"]


def test_test_mode_predicts_without_building(lab_raw, salt_env, fake_builder, files_dir):
    _, states = salt_env({"netlab": lab_raw}, test=True)
    ret = states["netlab_image.built"]("img", files=files_dir)
    assert ret["result"] is None
    assert ret["changes"]["image"]["new"]["action"] == "build"
    assert "would be rebuilt" in ret["comment"]
    assert fake_builder.calls == []
    assert not os.path.lexists(_paths(lab_raw)["current"])
    # after a real build, test mode predicts nothing for the same inputs ...
    _, states_real = salt_env({"netlab": lab_raw})
    states_real["netlab_image.built"]("img", files=files_dir)
    ret = states["netlab_image.built"]("img", files=files_dir)
    assert ret["result"] is True and ret["changes"] == {}
    # ... and a rebuild (with old and new) for changed ones
    lab_raw["image"]["variant"] = "important"
    _, states = salt_env({"netlab": lab_raw}, test=True)
    ret = states["netlab_image.built"]("img", files=files_dir)
    assert ret["result"] is None
    assert ret["changes"]["image"]["old"]["build_id"] == _current_id(lab_raw)
    assert len(fake_builder.calls) == 1


def test_missing_publish_link_is_repaired_without_rebuild(lab_raw, salt_env, fake_builder,
                                                          files_dir):
    _, states = salt_env({"netlab": lab_raw})
    states["netlab_image.built"]("img", files=files_dir)
    p = _paths(lab_raw)
    os.unlink(os.path.join(p["http_images"], "current"))
    ret = states["netlab_image.built"]("img", files=files_dir)
    assert ret["result"] is True
    assert "Republished" in ret["comment"]
    assert len(fake_builder.calls) == 1
    assert os.readlink(os.path.join(p["http_images"], "current")) == _current_id(lab_raw)


def test_force_rebuilds_same_inputs(lab_raw, salt_env, fake_builder, files_dir):
    _, states = salt_env({"netlab": lab_raw})
    states["netlab_image.built"]("img", files=files_dir)
    ret = states["netlab_image.built"]("img", files=files_dir, force=True)
    assert ret["changes"], ret["comment"]
    assert len(fake_builder.calls) == 2


def test_retention_keeps_current_and_previous(lab_raw, salt_env, fake_builder, files_dir,
                                              monkeypatch):
    stamps = iter(range(10, 60))

    def fake_now():
        import datetime  # pylint: disable=import-outside-toplevel
        return datetime.datetime(2026, 1, 1, 0, 0, next(stamps),
                                 tzinfo=datetime.timezone.utc)

    monkeypatch.setattr(netlab_image_build, "_now", fake_now)
    ids = []
    for n in range(4):
        lab_raw["image"]["packages"] = ["pkg{}".format(n)]
        _, states = salt_env({"netlab": lab_raw})
        ret = states["netlab_image.built"]("img", files=files_dir, keep=2)
        assert ret["result"] is True, ret["comment"]
        ids.append(_current_id(lab_raw))
    p = _paths(lab_raw)
    kept = sorted(n for n in os.listdir(p["images_dir"]) if netlab_image.BUILD_ID_RE.match(n))
    assert kept == sorted(ids[-2:])
    for base in (p["http_images"], p["tftp_images"]):
        assert sorted(n for n in os.listdir(base) if n != "current") == sorted(ids[-2:])
    # protect: an old build in use stays
    lab_raw["image"]["packages"] = ["pkg9"]
    mods, states = salt_env({"netlab": lab_raw})
    ret = states["netlab_image.built"]("img", files=files_dir, keep=1, protect=[ids[-1]])
    assert ret["result"] is True
    kept = sorted(n for n in os.listdir(p["images_dir"]) if netlab_image.BUILD_ID_RE.match(n))
    assert kept == sorted([ids[-1], _current_id(lab_raw)])
    assert [b["build_id"] for b in mods["netlab_image.builds"]()] == sorted(kept, reverse=True)


def test_stale_temp_dir_of_a_killed_build_is_removed(lab_raw, salt_env, fake_builder,
                                                     files_dir):
    p = _paths(lab_raw)
    stale = os.path.join(p["images_dir"], ".tmp-20260101T000000Z-0123456789ab", "rootfs")
    os.makedirs(stale)
    _, states = salt_env({"netlab": lab_raw})
    ret = states["netlab_image.built"]("img", files=files_dir)
    assert ret["result"] is True
    assert not [n for n in os.listdir(p["images_dir"]) if n.startswith(".tmp-")]


def test_concurrent_build_is_refused_clearly(lab_raw, salt_env, fake_builder, files_dir):
    lab = netlab_lab.load(lab_raw)
    _, states = salt_env({"netlab": lab_raw})
    with netlab_image.build_lock(lab):
        ret = states["netlab_image.built"]("img", files=files_dir)
    assert ret["result"] is False
    assert "another image build holds" in ret["comment"]
    assert fake_builder.calls == []


def test_invalid_pillar_fails_before_anything(lab_raw, salt_env, fake_builder, files_dir):
    lab_raw["image"]["distro"] = "gentoo"
    _, states = salt_env({"netlab": lab_raw})
    ret = states["netlab_image.built"]("img", files=files_dir)
    assert ret["result"] is False
    assert "netlab:image:distro" in ret["comment"]
    assert fake_builder.calls == []
    assert not os.path.exists(os.path.join(lab_raw["netnode"]["storage"], "images"))


# --------------------------------------------------------------------------- module
def test_module_hash_from_fileserver_equals_repo_hash(lab_raw, salt_env):
    """salt://netlab/files/image (fileserver copy, modes lost) hashes like the repo."""
    mods, _ = salt_env({"netlab": lab_raw})
    lab = netlab_lab.load(lab_raw)
    assert mods["netlab_image.input_hash"]() == netlab_image.input_hash(lab)
    assert mods["netlab_image.recipe"]()["kernel_package"] == "linux-image-amd64"
    assert mods["netlab_image.current"]() is None


def test_module_build_and_current(lab_raw, salt_env, fake_builder):
    mods, _ = salt_env({"netlab": lab_raw})
    res = mods["netlab_image.build"]()
    assert res["changed"] and res["action"] == "build"
    cur = mods["netlab_image.current"]()
    assert cur["build_id"] == res["build_id"]
    assert cur["rootfs"] == os.path.join(_paths(lab_raw)["images_dir"], res["build_id"],
                                         "rootfs")
    assert cur["intact"] is True
    # the fileserver copy of the image files is complete: configure.sh is staged
    assert fake_builder.calls[0]["stage"]
    assert mods["netlab_image.build"]()["action"] == "none"


def test_absent_removes_builds_and_published_files(lab_raw, salt_env, fake_builder,
                                                   files_dir):
    _, states = salt_env({"netlab": lab_raw})
    states["netlab_image.built"]("img", files=files_dir)
    p = _paths(lab_raw)
    _, states_test = salt_env({"netlab": lab_raw}, test=True)
    ret = states_test["netlab_image.absent"]("img")
    assert ret["result"] is None and ret["changes"]["removed"]
    assert os.path.lexists(p["current"])
    ret = states["netlab_image.absent"]("img")
    assert ret["result"] is True and ret["changes"]["removed"]
    assert not os.path.lexists(p["current"])
    assert not os.path.exists(p["http_images"]) and not os.path.exists(p["tftp_images"])
    ret = states["netlab_image.absent"]("img")
    assert ret["result"] is True and ret["changes"] == {}


# --------------------------------------------------------------------------- SLS
@pytest.fixture
def salt_local(tmp_path, lab_raw):
    """``salt-call --local`` with the formula as file_roots (no package installs)."""
    from lib.saltlocal import SaltLocal  # pylint: disable=import-outside-toplevel

    raw = copy.deepcopy(lab_raw)
    raw["lookup"] = {"install_packages": False}
    # the image's salt-minion is this Salt: never newer than the master
    raw["image"]["salt_version"] = netlab_saltcompat.salt_version()
    local = SaltLocal(tmp_path / "salt-local", REPO, pillar={"netlab": raw})
    local.sync()
    return local, raw


def test_sls_test_mode_predicts_a_build_and_changes_nothing(salt_local):
    local, raw = salt_local
    ret = local.apply("netlab.image", test=True)
    assert set(ret) == {"netlab-image-netlab_image-built"}
    built = ret["netlab-image-netlab_image-built"]
    assert built["result"] is None
    assert built["changes"]["image"]["new"]["action"] == "build"
    assert not os.path.exists(os.path.join(raw["netnode"]["storage"], "images", "current"))


def test_sls_is_a_no_op_when_the_current_image_matches(salt_local):
    """The SLS hashes salt://netlab/files/image like the repo copy: an image
    built from the same inputs is current, so applying changes nothing."""
    local, raw = salt_local
    lab = netlab_lab.load(raw)
    res = netlab_image.build(lab, builder=FakeBuilder())
    ret = local.apply("netlab.image")
    built = ret["netlab-image-netlab_image-built"]
    assert built["result"] is True, built["comment"]
    assert built["changes"] == {}
    assert res["build_id"] in built["comment"]
    # clean removes it again
    ret = local.apply("netlab.image.clean")
    absent = ret["netlab-image-clean-netlab_image-absent"]
    assert absent["result"] is True and absent["changes"]["removed"] == [res["build_id"]]
    assert netlab_image.current_build(lab) is None


def test_sls_with_invalid_pillar_only_fails_the_check(salt_local):
    local, raw = salt_local
    raw["image"]["distro"] = "gentoo"
    raw["image"]["packages"] = "git"
    local.set_pillar({"netlab": raw})
    for sls, sid in (("netlab.image", "netlab-image-check-netlab-invalid_pillar"),
                     ("netlab.image.clean",
                      "netlab-image-clean-check-netlab-invalid_pillar")):
        for test in (True, False):
            ret = local.apply(sls, test=test)
            assert set(ret) == {sid}
            assert ret[sid]["result"] is False, "an invalid pillar fails, also under test=True"
        report = ret[sid]["comment"]
        assert "netlab:image:distro" in report
        assert "netlab:image:packages" in report
    assert not os.path.exists(os.path.join(raw["netnode"]["storage"], "images"))


def test_host_that_cannot_build_is_reported_before_trying(lab_raw, salt_env, fake_builder,
                                                         files_dir, monkeypatch):
    """An Ubuntu image without Ubuntu's archive key: test=True and a real run both
    say so (naming the file and the package), nothing is built or changed."""
    lab_raw["image"] = {"distro": "ubuntu"}
    monkeypatch.setitem(netlab_image.KEYRINGS, "ubuntu", "/nonexistent/ubuntu-archive.gpg")
    fake_builder.host_problems = netlab_image.check_build_host  # the real host check
    for test in (True, False):
        _, states = salt_env({"netlab": lab_raw}, test=test)
        ret = states["netlab_image.built"]("img", files=files_dir)
        assert ret["result"] is False
        assert "/nonexistent/ubuntu-archive.gpg" in ret["comment"]
        assert "ubuntu-keyring" in ret["comment"]
        assert ret["changes"] == ({"image": ret["changes"]["image"]} if test else {})
    assert fake_builder.calls == []
    assert not os.path.lexists(_paths(lab_raw)["current"])
