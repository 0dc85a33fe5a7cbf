"""
netlab_daemons: the one place ``service_control`` decides how each daemon runs.
The specs are fed with the real defaults of netlab/parameters/defaults.yaml.
"""

import copy

import pytest

import netlab_daemons


@pytest.fixture(scope="module")
def mapdata(platform_defaults):
    return platform_defaults


def params(mapdata, control, run_dir="/run/x"):
    out = copy.deepcopy(mapdata)
    out.update(service_control=control, run_dir=run_dir)
    return out


def test_service_mode_uses_the_init_systems_units(mapdata):
    d = netlab_daemons.netnode(params(mapdata, "service"))
    assert {k: v["mode"] for k, v in d.items()} == {
        "dnsmasq": "service", "nginx": "service", "nfs_kernel": "service",
        "rpcbind": "service", "ganesha": "service"}
    assert d["ganesha"]["service"] == "nfs-ganesha" and d["nginx"]["main_conf"] is None
    assert d["nginx"]["check"] == "/usr/sbin/nginx -t -q"
    assert d["ganesha"]["recovery"] == "/var/lib/nfs/ganesha"
    assert d["nfs_kernel"]["exportfs"] is True


def test_process_mode_runs_foreground_processes_with_pid_files_in_run_dir(mapdata):
    d = netlab_daemons.netnode(params(mapdata, "process"))
    assert d["dnsmasq"]["mode"] == "process"
    assert d["dnsmasq"]["cmd"] == ["/usr/sbin/dnsmasq", "-k", "-C",
                                   "/etc/dnsmasq.d/netlab.conf", "--pid-file="]
    assert (d["dnsmasq"]["pidfile"], d["dnsmasq"]["log"]) == ("/run/x/dnsmasq.pid",
                                                              "/run/x/dnsmasq.out")
    assert d["nginx"]["cmd"] == ["/usr/sbin/nginx", "-c", "/run/x/nginx.conf", "-g",
                                 "daemon off;"]
    assert d["nginx"]["check"] == "/usr/sbin/nginx -t -q -c /run/x/nginx.conf"
    # the kernel NFS server has no process of its own
    assert d["nfs_kernel"]["mode"] is None and d["nfs_kernel"]["exportfs"] is True
    assert d["rpcbind"]["unless"] == "rpcinfo -p 127.0.0.1"
    assert (d["ganesha"]["settle"], d["ganesha"]["stop_timeout"]) == (2, 30)
    assert d["ganesha"]["recovery"] == "/run/x/ganesha-recov"


def test_none_mode_starts_nothing_but_still_renders_nginx_main_config(mapdata):
    d = netlab_daemons.netnode(params(mapdata, "none"))
    assert all(v["mode"] is None for v in d.values())
    assert d["nginx"]["main_conf"] == "/run/x/nginx.conf"
    assert d["nfs_kernel"]["exportfs"] is False


def test_clean_stops_what_netlab_started_and_only_reloads_nginx(mapdata):
    svc = netlab_daemons.netnode_clean(params(mapdata, "service"), "kernel")
    assert svc["ganesha"]["mode"] is None and svc["rpcbind"]["mode"] is None
    assert svc["nginx"]["mode"] == "service" and svc["nginx"]["reload"] is True
    assert svc["dnsmasq"]["mode"] == "service" and svc["exportfs"] is True
    assert netlab_daemons.netnode_clean(params(mapdata, "service"),
                                        "ganesha")["ganesha"]["mode"] == "service"
    proc = netlab_daemons.netnode_clean(params(mapdata, "process"), "ganesha")
    assert [proc[k]["pidfile"] for k in ("ganesha", "rpcbind", "nginx", "dnsmasq")] == [
        "/run/x/ganesha.pid", "/run/x/rpcbind.pid", "/run/x/nginx.pid", "/run/x/dnsmasq.pid"]
    assert proc["exportfs"] is False


def test_cache_daemons_get_a_unit_file_in_service_mode(mapdata):
    data = {"run_dir": "/run/x/cache",
            "apt": {"argv": ["/usr/sbin/apt-cacher-ng", "-c", "/etc/acng", "ForeGround=1"]},
            "pip": {"argv": ["/opt/v/bin/devpi-server", "--host", "10.0.0.1"],
                    "env": {"REQUESTS_CA_BUNDLE": "/etc/ssl/ca.crt"}}}
    svc = netlab_daemons.cache(params(mapdata, "service"), data)
    assert svc["acng_package"]["mode"] == "service"
    assert svc["apt"]["unit_path"] == "/etc/systemd/system/netlab-cache-apt.service"
    assert "User=apt-cacher-ng" in svc["apt"]["unit"]
    assert "Environment=REQUESTS_CA_BUNDLE=/etc/ssl/ca.crt" in svc["pip"]["unit"]
    assert "ExecStart=/opt/v/bin/devpi-server \\\n  --host \\\n  10.0.0.1" in svc["pip"]["unit"]
    proc = netlab_daemons.cache(params(mapdata, "process"), data)
    assert proc["acng_package"]["mode"] is None      # no init system runs it
    assert proc["pip"]["pidfile"] == "/run/x/cache/pip.pid" and proc["pip"]["settle"] == 2
    assert "apt" not in netlab_daemons.cache(params(mapdata, "process"),
                                             {"run_dir": "/r", "pip": data["pip"]})


def test_a_cache_part_turned_off_is_stopped_in_the_mode_it_ran(mapdata, monkeypatch):
    only_pip = {"run_dir": "/r", "pip": {"argv": ["/opt/v/bin/devpi-server"]}}
    proc = netlab_daemons.cache(params(mapdata, "process"), only_pip)
    assert "off_pip" not in proc
    assert proc["off_apt"]["mode"] == "process" and proc["off_apt"]["pidfile"] == "/r/apt.pid"
    assert "remove_unit" not in proc["off_apt"]
    # systemd: only a unit netlab installed is stopped, and then removed
    monkeypatch.setattr(netlab_daemons.os.path, "exists", lambda p: False)
    assert netlab_daemons.cache(params(mapdata, "service"), only_pip)["off_apt"]["mode"] is None
    monkeypatch.setattr(netlab_daemons.os.path, "exists",
                        lambda p: p == "/etc/systemd/system/netlab-cache-apt.service")
    svc = netlab_daemons.cache(params(mapdata, "service"), only_pip)["off_apt"]
    assert svc["mode"] == "service" and svc["service"] == "netlab-cache-apt"
    assert svc["remove_unit"] == "/etc/systemd/system/netlab-cache-apt.service"
    assert netlab_daemons.cache(params(mapdata, "none"), only_pip)["off_apt"]["mode"] is None


def test_an_unknown_service_control_is_refused(mapdata):
    import netlab_params  # pylint: disable=import-outside-toplevel

    with pytest.raises(netlab_params.ParamError, match="service_control: 'systemd'"):
        netlab_daemons.netnode(params(mapdata, "systemd"))
