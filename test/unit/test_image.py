"""Unit tests of the image recipe, input hash and build command (no builds)."""

import copy
import os
import shutil

import pytest
import salt.config
import salt.grains
import salt.loader
import yaml

import netlab_image
import netlab_image_recipe
import netlab_image_store
import netlab_lab


@pytest.fixture
def raw(example_pillar):
    return copy.deepcopy(example_pillar)


@pytest.fixture
def files_dir(tmp_path):
    """A private copy of netlab/files/image (tests edit it)."""
    dst = tmp_path / "image-files"
    shutil.copytree(netlab_image.DEFAULT_FILES_DIR, dst)
    return str(dst)


def lab_of(raw):
    return netlab_lab.load(raw)


# --------------------------------------------------------------------------- recipe
def test_recipe_debian_defaults(raw):
    raw["image"] = {}
    rec = netlab_image.recipe(lab_of(raw))
    assert rec["distro"] == "debian"
    assert rec["release"] == "bookworm"
    assert rec["mirror"] == "http://deb.debian.org/debian"
    assert rec["components"] == ["main"]
    assert rec["kernel_package"] == "linux-image-amd64"
    assert "linux-image-amd64" in rec["packages"]
    assert "linux-image-generic" not in rec["packages"]
    for pkg in ("initramfs-tools", "openssh-server", "sudo", "python3-venv", "busybox",
                "systemd-sysv", "nfs-common"):
        assert pkg in rec["packages"]
    assert rec["pip_requirements"] == ["salt==3008.3", "netaddr"]
    assert rec["variant"] == "minbase"
    assert rec["user"] == "stack"
    assert rec["packages"] == sorted(set(rec["packages"]))


def test_recipe_ubuntu(raw):
    raw["image"] = {"distro": "ubuntu", "packages": ["git"]}
    rec = netlab_image.recipe(lab_of(raw))
    assert rec["release"] == "noble"
    assert rec["mirror"] == "http://archive.ubuntu.com/ubuntu"
    assert rec["components"] == ["main", "universe"]
    assert rec["kernel_package"] == "linux-image-generic"
    assert "linux-image-generic" in rec["packages"]
    assert "linux-image-amd64" not in rec["packages"]
    assert "git" in rec["packages"] and rec["extra_packages"] == ["git"]


def test_recipe_extra_packages_and_salt_version(raw):
    raw["image"]["packages"] = ["vim-tiny", "git", "git"]
    raw["image"]["salt_version"] = "3007.1"
    rec = netlab_image.recipe(lab_of(raw))
    assert rec["extra_packages"] == ["git", "vim-tiny"]
    assert rec["pip_requirements"][0] == "salt==3007.1"


# --------------------------------------------------------------------------- hash
def test_same_inputs_same_hash(raw, files_dir):
    a = netlab_image.input_hash(lab_of(raw), files_dir)
    b = netlab_image.input_hash(lab_of(copy.deepcopy(raw)), files_dir)
    assert a == b
    assert len(a) == 64


@pytest.mark.parametrize("key, value", [
    ("distro", "ubuntu"),
    ("release", "trixie"),
    ("mirror", "http://mirror.example/debian"),
    ("packages", ["git", "sudo", "vim-tiny", "htop"]),
    ("salt_version", "3007.1"),
    ("variant", "important"),
    ("pip_index", "https://pypi.example/simple"),
])
def test_each_image_input_changes_hash(raw, files_dir, key, value):
    before = netlab_image.input_hash(lab_of(raw), files_dir)
    raw["image"][key] = value
    assert netlab_image.input_hash(lab_of(raw), files_dir) != before


def test_devstack_user_changes_hash(raw, files_dir):
    before = netlab_image.input_hash(lab_of(raw), files_dir)
    raw["devstack"]["user"] = "devstack"
    assert netlab_image.input_hash(lab_of(raw), files_dir) != before


def test_file_content_changes_hash(raw, files_dir):
    lab = lab_of(raw)
    before = netlab_image.input_hash(lab, files_dir)
    script = os.path.join(files_dir, "overlay", "etc", "initramfs-tools", "scripts",
                          "init-bottom", "netlab-stateless")
    with open(script, "a", encoding="utf-8") as fh:
        fh.write("# changed\n")
    changed = netlab_image.input_hash(lab, files_dir)
    assert changed != before
    with open(os.path.join(files_dir, "configure.sh"), "a", encoding="utf-8") as fh:
        fh.write("# changed\n")
    assert netlab_image.input_hash(lab, files_dir) not in (before, changed)


def test_new_overlay_file_changes_hash(raw, files_dir):
    lab = lab_of(raw)
    before = netlab_image.input_hash(lab, files_dir)
    extra = os.path.join(files_dir, "overlay", "etc", "motd")
    with open(extra, "w", encoding="utf-8") as fh:
        fh.write("hello\n")
    assert netlab_image.input_hash(lab, files_dir) != before


def test_file_modes_do_not_change_hash(raw, files_dir):
    """The Salt fileserver drops modes; modes come from the path, not the source."""
    lab = lab_of(raw)
    before = netlab_image.input_hash(lab, files_dir)
    os.chmod(os.path.join(files_dir, "configure.sh"), 0o600)
    assert netlab_image.input_hash(lab, files_dir) == before


def test_recipe_version_changes_hash(raw, files_dir, monkeypatch):
    lab = lab_of(raw)
    before = netlab_image.input_hash(lab, files_dir)
    monkeypatch.setattr(netlab_image_recipe, "RECIPE_VERSION",
                        netlab_image_recipe.RECIPE_VERSION + 1)
    assert netlab_image.input_hash(lab, files_dir) != before


@pytest.mark.parametrize("edit", [
    lambda r: r["nodes"].pop("nuc3"),
    lambda r: r["nodes"]["nuc2"].update(mac="94:c6:91:aa:00:22", ip="192.168.42.22"),
    lambda r: r["nodes"]["nuc2"].update(root={"mode": "stateless"}),
    lambda r: r["nodes"]["nuc2"].update(devstack={"localrc": {"X": "1"}}),
    lambda r: r["netnode"].update(salt_master="192.168.42.3"),
    lambda r: r["netnode"].update(ip="192.168.42.3", storage="/data/netlab"),
    lambda r: r["network"].update(domain="other.example"),
    lambda r: r["image"].update(kernel_cmdline="quiet"),
    lambda r: r["devstack"]["localrc"].update(ADMIN_PASSWORD="other"),
])
def test_per_node_and_per_lab_data_do_not_change_hash(raw, files_dir, edit):
    """One image serves many nodes (and labs): node data, the master address,
    storage paths and the boot-time kernel line are not image inputs."""
    before = netlab_image.input_hash(lab_of(raw), files_dir)
    edit(raw)
    assert netlab_image.input_hash(lab_of(raw), files_dir) == before


def test_host_pip_settings_not_in_hash(raw, files_dir, monkeypatch):
    lab = lab_of(raw)
    before = netlab_image.input_hash(lab, files_dir)
    monkeypatch.setenv("PIP_INDEX_URL", "https://elsewhere.example/simple")
    monkeypatch.setenv("PIP_CERT", "/nonexistent.pem")
    assert netlab_image.input_hash(lab, files_dir) == before


def test_files_digest_rejects_wrong_dir(tmp_path):
    with pytest.raises(netlab_image.ImageError, match="configure.sh"):
        netlab_image.files_digest(str(tmp_path))


def test_file_mode_rules():
    assert netlab_image.file_mode("configure.sh") == 0o755
    assert netlab_image.file_mode(
        "overlay/etc/initramfs-tools/scripts/init-bottom/netlab-stateless") == 0o755
    assert netlab_image.file_mode("overlay/etc/initramfs-tools/hooks/netlab") == 0o755
    assert netlab_image.file_mode("overlay/usr/local/sbin/netlab-netconf") == 0o755
    assert netlab_image.file_mode("overlay/etc/salt/minion") == 0o644
    assert netlab_image.file_mode("overlay/etc/initramfs-tools/conf.d/netlab") == 0o644


# --------------------------------------------------------------------------- pip
def test_host_pip_settings_env_over_conf(tmp_path):
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\ncert = /conf/ca.pem\nindex-url = https://conf/simple\n"
                    "find-links = /conf/wheels\n")
    out = netlab_image.host_pip_settings(
        environ={"PIP_INDEX_URL": "https://env/simple", "PIP_FIND_LINKS": "/a /b"},
        conf_files=[str(conf)])
    assert out["cert"] == "/conf/ca.pem"
    assert out["index-url"] == "https://env/simple"
    assert out["find-links"] == ["/a", "/b"]


def test_host_pip_settings_cert_fallback(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    out = netlab_image.host_pip_settings(environ={"REQUESTS_CA_BUNDLE": str(ca)},
                                         conf_files=[])
    assert out == {"cert": str(ca)}


def test_pip_config_maps_host_paths_into_chroot(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (tmp_path / "pypi" / "simple").mkdir(parents=True)
    text, cert_src, links = netlab_image.pip_config(
        {"cert": str(ca), "index-url": "https://host/simple",
         "extra-index-url": ["file://{}/pypi/simple".format(tmp_path),
                             "file:///does/not/exist/simple", "https://extra/simple"],
         "find-links": [str(wheels), "/does/not/exist", "https://links.example/"],
         "trusted-host": ["host"]},
        pip_index="https://lab/simple")
    assert cert_src == str(ca)
    assert "cert = /tmp/netlab-build/pip/cert.pem" in text
    assert "index-url = https://lab/simple" in text  # image:pip_index wins
    assert "trusted-host = host" in text
    assert links == {str(tmp_path / "pypi"): "/tmp/netlab-build/pip/host0",
                     str(wheels): "/tmp/netlab-build/pip/host1"}
    assert ("extra-index-url = file:///tmp/netlab-build/pip/host0/simple "
            "https://extra/simple") in text
    assert "find-links = /tmp/netlab-build/pip/host1 https://links.example/" in text
    assert "/does/not/exist" not in text


def test_pip_config_trusts_a_plain_http_index_host():
    """The networking node's pip cache is plain http on the lab IP: without
    trusted-host pip ignores it and the chroot's ``pip install salt`` finds nothing."""
    text, _, _ = netlab_image.pip_config(
        {"extra-index-url": ["http://extra.lab:8080/simple", "https://secure/simple"],
         "trusted-host": ["host"]},
        pip_index="http://10.81.0.2:3141/root/pypi/+simple/")
    assert "index-url = http://10.81.0.2:3141/root/pypi/+simple/" in text
    assert "trusted-host = host 10.81.0.2 extra.lab\n" in text
    # an https index is verified as before
    text, _, _ = netlab_image.pip_config({}, pip_index="https://lab/simple")
    assert "trusted-host" not in text


def test_pip_config_without_cert():
    text, cert_src, links = netlab_image.pip_config({"cert": "/does/not/exist.pem"})
    assert cert_src is None and links == {}
    assert "cert" not in text


# --------------------------------------------------------------------------- staging/command
def test_stage_inputs(raw, files_dir, tmp_path):
    lab = lab_of(raw)
    rec = netlab_image.recipe(lab)
    stage = tmp_path / "stage"
    links = netlab_image.stage_inputs(lab, rec, "abc", str(stage), files_dir,
                                      pip_settings={"index-url": "https://x/simple"})
    assert links == {}
    assert os.stat(stage / "configure.sh").st_mode & 0o777 == 0o755
    script = stage / "overlay/etc/initramfs-tools/scripts/init-bottom/netlab-stateless"
    assert os.stat(script).st_mode & 0o777 == 0o755
    env = (stage / "build.env").read_text()
    assert "NETLAB_USER=stack" in env
    assert "NETLAB_PIP_REQUIREMENTS='salt==3008.3 netaddr'" in env
    assert "NETLAB_INPUT_HASH=abc" in env
    assert "index-url = https://x/simple" in (stage / "pip/pip.conf").read_text()


def test_mmdebstrap_command(raw):
    raw["image"] = {"distro": "ubuntu", "packages": ["git"]}
    rec = netlab_image.recipe(lab_of(raw))
    cmd = netlab_image.mmdebstrap_command(rec, "/x/rootfs", "/x/inputs",
                                          {"/opt/wheels": "/tmp/netlab-build/pip/host0"})
    assert cmd[:5] == ["unshare", "--mount", "--propagation", "private", "--"]
    assert cmd[-3:] == ["noble", "/x/rootfs", "http://archive.ubuntu.com/ubuntu"]
    assert "--variant=minbase" in cmd
    assert "--components=main,universe" in cmd
    assert "--keyring=/usr/share/keyrings/ubuntu-archive-keyring.gpg" in cmd
    include = [c for c in cmd if c.startswith("--include=")][0]
    assert "linux-image-generic" in include and "gcc" in include and "git" in include
    hooks = [c for c in cmd if c.startswith("--customize-hook=")]
    assert "mount -o remount,bind,ro" in hooks[0]
    assert "env -i" in hooks[1] and "configure.sh" in hooks[1]
    assert 'umount "$1/tmp/netlab-build/pip/host0"' in hooks[2]
    assert "--one-file-system" in hooks[2]


def test_check_build_host_names_missing_keyring(raw, monkeypatch):
    raw["image"] = {"distro": "ubuntu"}
    rec = netlab_image.recipe(lab_of(raw))
    monkeypatch.setitem(netlab_image.KEYRINGS, "ubuntu", "/nonexistent/ubuntu.gpg")
    problems = netlab_image.check_build_host(rec, mmdebstrap="no-such-mmdebstrap")
    assert any("ubuntu-keyring" in p for p in problems)
    assert any("no-such-mmdebstrap" in p for p in problems)


def test_kernel_files_picks_newest(tmp_path):
    boot = tmp_path / "boot"
    boot.mkdir()
    for v in ("6.1.0-9-amd64", "6.1.0-10-amd64"):
        (boot / ("vmlinuz-" + v)).write_text("k")
        (boot / ("initrd.img-" + v)).write_text("i")
    (boot / "vmlinuz-6.1.0-11-amd64").write_text("k")  # no initrd: skipped
    version, kernel, initrd = netlab_image._kernel_files(str(tmp_path))
    assert version == "6.1.0-10-amd64"
    assert kernel.endswith("vmlinuz-6.1.0-10-amd64")
    assert initrd.endswith("initrd.img-6.1.0-10-amd64")


def test_kernel_files_missing(tmp_path):
    with pytest.raises(netlab_image.ImageError, match="no kernel"):
        netlab_image._kernel_files(str(tmp_path))


def test_paths_follow_storage(raw):
    raw["netnode"]["storage"] = "/data/nl"
    p = netlab_image.paths(lab_of(raw))
    assert p["images_dir"] == "/data/nl/images"
    assert p["current"] == "/data/nl/images/current"
    assert p["http_images"] == "/data/nl/http/images"
    assert p["tftp_images"] == "/data/nl/tftp/images"


def test_run_logged_prefixes_seconds_and_returns_exit_code(tmp_path):
    log = tmp_path / "build.log"
    rc = netlab_image.run_logged(["sh", "-c", "echo I: one; echo two >&2; exit 3"], str(log))
    assert rc == 3
    lines = log.read_text().splitlines()
    assert lines[0].startswith("$ sh -c ")
    assert [ln.split("] ", 1)[1] for ln in lines[1:]] == ["I: one", "two"]
    assert all(ln.startswith("[") and "s] " in ln for ln in lines[1:])


def test_remove_tree_refuses_other_filesystems_and_symlinks(tmp_path):
    target = tmp_path / "keep"
    target.mkdir()
    (target / "file").write_text("x")
    link = tmp_path / "link"
    link.symlink_to(target)
    netlab_image.remove_tree(str(link))
    assert not link.exists() and (target / "file").exists()
    netlab_image.remove_tree(str(target))
    assert not target.exists()
    netlab_image.remove_tree(str(tmp_path / "absent"))  # nothing to do


def test_link_or_copy_replaces_atomically_and_is_idempotent(tmp_path):
    src = tmp_path / "vmlinuz"
    src.write_bytes(b"new")
    dst = tmp_path / "pub" / "vmlinuz"
    dst.parent.mkdir()
    dst.write_bytes(b"old")
    netlab_image._link_or_copy(str(src), str(dst))
    assert dst.read_bytes() == b"new" and os.path.samefile(src, dst)
    ino = os.stat(dst).st_ino
    netlab_image._link_or_copy(str(src), str(dst))
    assert os.stat(dst).st_ino == ino
    assert sorted(os.listdir(dst.parent)) == ["vmlinuz"]


def test_remove_tree_of_a_link_leaves_mounts_below_its_target_alone(tmp_path, monkeypatch):
    target = tmp_path / "cache-build"
    target.mkdir()
    link = tmp_path / "images-build"
    link.symlink_to(target)
    calls = []
    monkeypatch.setattr(netlab_image_store.subprocess, "run",
                        lambda *a, **k: calls.append(a))
    netlab_image.remove_tree(str(link))
    assert calls == [] and not os.path.lexists(link) and target.is_dir()


# --------------------------------------------------------------------------- node minion
MINION_CONF = os.path.join(netlab_image.DEFAULT_FILES_DIR, "overlay", "etc", "salt", "minion")
# grain modules a lab node needs: core (id, os_family, pythonexecutable for netlab;
# os/init/... for Salt's own modules), extra (shell: cmd states), minion_process
# (pid: minion.restart)
KEPT_GRAINS = {"core", "extra", "minion_process"}


def test_minion_config_decides_every_grain_module():
    """The image's minion turns off every grain module of this Salt line but the
    kept ones: a grain module a new Salt release adds fails here until it is
    either turned off or kept on purpose."""
    with open(MINION_CONF, encoding="utf-8") as fh:
        disabled = set(yaml.safe_load(fh)["disable_grains"])
    grains_dir = os.path.dirname(salt.grains.__file__)
    present = {n[:-3] for n in os.listdir(grains_dir) if n.endswith(".py") and n != "__init__.py"}
    assert not disabled & KEPT_GRAINS
    assert present - disabled == KEPT_GRAINS


def test_minion_config_still_gives_the_grains_in_use(tmp_path):
    """Salt's grain loader with the image's minion config (this host's Salt): the
    grains netlab and Salt's cmd states and minion module read are there, those
    of the modules turned off are not."""
    opts = salt.config.minion_config(MINION_CONF, minion_id="node01")
    opts.update(grains_cache=False, cachedir=str(tmp_path))
    grains = salt.loader.grains(opts)
    for key in ("id", "os_family", "pythonexecutable", "os", "init", "shell", "pid"):
        assert key in grains, key
    assert grains["id"] == "node01"
    for key in ("disks", "SSDs", "ca_truststore", "package"):
        assert key not in grains, key
