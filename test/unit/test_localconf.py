"""
DevStack local.conf rendering (``_utils/netlab_localconf.py``).

The two central tests read the rendered file the way DevStack does:

- the ``[[local|localrc]]`` section is extracted like ``inc/meta-config``'s
  ``get_meta_section`` (awk: a section starts at a ``[[group|file]]`` line) and
  sourced in a real ``bash``; every variable must come back exactly, with
  ``$NAME``/``${NAME}`` expanded and nothing executed;
- every other meta-section goes through the same path as DevStack's
  ``merge_config_file``: awk turns ``key = value`` lines into
  ``iniset <file> <section> <key> "<value>"`` lines that ``while read a; do eval
  "$a"; done`` runs; a stub ``iniset`` records what it receives.

The awk programs below are written for these tests and follow DevStack's
documented semantics.
"""

import copy
import os
import re
import subprocess

import pytest

import netlab_lab
import netlab_localconf
import netlab_slice

# the LAN cache off: local.conf names the upstreams as pillar gives them
CACHE_OFF = {part: {"enabled": False} for part in ("apt", "pip", "git", "files")}

BASH = "/bin/bash"

# DevStack's get_meta_section semantics: print the body of [[group|file]]
GET_SECTION_AWK = r"""
/^\[\[.+\|.*\]\]/ {
    head = $1
    gsub(/[][]/, "", head)
    split(head, part, "|")
    inside = (part[1] == group && part[2] == file)
    next
}
inside { print }
"""
# DevStack's get_meta_section_files: the files of one group, in file order
SECTION_FILES_AWK = r"""
/^\[\[.+\|.*\]\]/ {
    head = $1
    gsub(/[][]/, "", head)
    split(head, part, "|")
    if (part[1] == group) print part[2]
}
"""
# DevStack's merge_config_file: INI lines -> iniset commands (single-valued keys)
MERGE_AWK = r"""
/^\[.+\]/ { sec = $1; gsub(/[][]/, "", sec); next }
/^ *#/ { next }
/^[^ \t]+/ {
    eq = index($0, "=")
    attr = substr($0, 1, eq - 1)
    value = substr($0, eq + 1)
    sub(/[ \t]*$/, "", attr)
    sub(/^[ \t]*/, "", value)
    sub(/[ \t]*$/, "", value)
    print "iniset " file " " sec " " attr " \"" value "\""
}
"""


def awk(program, path, **variables):
    cmd = ["awk"]
    for name, value in variables.items():
        cmd += ["-v", "{}={}".format(name, value)]
    proc = subprocess.run(cmd + [program, str(path)], capture_output=True, text=True,
                          check=True)
    return proc.stdout


@pytest.fixture
def raw(example_pillar):
    return copy.deepcopy(example_pillar)


def render(raw, node_id, generation=0):
    return netlab_localconf.render(netlab_lab.load(raw), node_id, generation=generation)


def localrc_lines(text):
    body = text.split("[[local|localrc]]\n", 1)[1]
    body = body.split("\n[[", 1)[0]
    return [line for line in body.splitlines() if line and not line.startswith("#")]


def assignments(text):
    return [line.split("=", 1)[0] for line in localrc_lines(text)
            if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", line)]


# --------------------------------------------------------------------------- bash
TRICKY = {
    "SPACES": "two words  and   more ",
    "SINGLE": "it's 'quoted'",
    "DOUBLE": 'say "hi" ""',
    "BACKTICK": "`touch {canary}`",
    "SUBST": "$(touch {canary})",
    "ARITH": "$((6*7))",
    "BACKSLASH": "a\\b\\\\c\\",
    "BACKSLASH_QUOTE": '\\" \\$HOST_IP \\`',
    "NOT_A_REF": "${UNDEFINED:-fallback} $1 $$ $? $@ $* $# $! $ end$",
    "GLOB": "* ? [abc] ~ ~root a=~ {a,b}",
    "OPERATORS": "; touch {canary} | & && || < > ( ) # ! \\n",
    "CONTROL": "line1\nline2\ttab\rcr\x1besc",
    "HEADER_INJECTION": "x\n[[post-config|/tmp/evil.conf]]\n[DEFAULT]\nevil = 1",
    "UNICODE": "ünïcødé ✓ 日本",
    "EMPTY": "",
    "NONE": None,
    "YES": True,
    "NO": False,
    "INT": 42,
    "FLOAT": 4.5,
    "EQUALS": "=a=b=",
    "DASH": "-n",
    "REF": "$HOST_IP:${ADMIN_PASSWORD}/x",
    "REF_CHAIN": "[$REF]",
    "SELF": "$SELF_BASE-suffix",
}


def expected_value(value, env):
    text = netlab_localconf.scalar(value)
    return netlab_lab.SHELL_REF.sub(lambda m: env.get(m.group(1) or m.group(2), ""), text)


def source_localrc(tmp_path, text, names):
    """Extract [[local|localrc]] like DevStack, source it in bash, return
    ``(values, calls)``: every name's value and the recorded service/plugin calls."""
    conf = tmp_path / "local.conf"
    conf.write_text(text, encoding="utf-8")
    files = awk(SECTION_FILES_AWK, conf, group="local").split()
    assert files == ["localrc"]
    section = awk(GET_SECTION_AWK, conf, group="local", file="localrc")
    auto = tmp_path / ".localrc.auto"
    auto.write_text("# Generated file, do not edit\n" + section, encoding="utf-8")
    out = tmp_path / "vars.bin"
    calls = tmp_path / "calls.txt"
    script = r"""
record() { printf '%s\n' "$*" >> "$CALLS"; }
disable_all_services() { record disable_all_services; }
enable_service() { record enable_service "$@"; }
disable_service() { record disable_service "$@"; }
enable_plugin() { local a; for a in "$@"; do printf '%s\0' "$a" >> "$CALLS.plugins"; done
                  printf '\0' >> "$CALLS.plugins"; }
source "$1"
shift
for name in "$@"; do
    if [[ -v $name ]]; then printf 'set\0%s\0%s\0' "$name" "${!name}"
    else printf 'unset\0%s\0\0' "$name"; fi
done > "$OUT"
"""
    env = {"PATH": "/usr/bin:/bin", "OUT": str(out), "CALLS": str(calls)}
    proc = subprocess.run([BASH, "--noprofile", "--norc", "-c", script, "bash", str(auto)]
                          + list(names), env=env, cwd=str(tmp_path), capture_output=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b"", proc.stderr.decode()
    fields = out.read_bytes().split(b"\0")
    values = {}
    for i in range(0, len(fields) - 1, 3):
        status, name, value = fields[i:i + 3]
        assert status == b"set", "{} is not set".format(name.decode())
        values[name.decode()] = value.decode("utf-8")
    plugin_calls = []
    if os.path.exists(str(calls) + ".plugins"):
        data = open(str(calls) + ".plugins", "rb").read().decode()
        plugin_calls = [c.split("\0") for c in data.split("\0\0") if c]
    service_calls = calls.read_text().splitlines() if calls.exists() else []
    return values, service_calls, plugin_calls


def test_localrc_sourced_in_bash_gives_back_every_value_and_runs_nothing(raw, tmp_path):
    raw["cache"] = CACHE_OFF  # upstream URLs as given (the LAN cache: test_cache_localconf)
    canary = tmp_path / "pwned"
    tricky = {k: (v.replace("{canary}", str(canary)) if isinstance(v, str) else v)
              for k, v in TRICKY.items()}
    raw["devstack"]["localrc"].update(tricky)
    raw["roles"]["compute"]["devstack"] = {"localrc": {"SELF_BASE": "b a s e"}}
    raw["devstack"]["plugins"] = {
        "weird": {"repo": "https://example.invalid/a?b=1&c=$({{touch,{}}})#frag".format(canary),
                  "branch": "stable/`x`"},
        "plain": {"repo": "$GIT_BASE/openstack/plain", "branch": "master"},
    }
    raw["devstack"]["git_base"] = "https://opendev.org"
    lab = netlab_lab.load(raw)
    for node_id in ("nuc1", "nuc2", "nuc3"):
        text = netlab_localconf.render(lab, node_id)
        items = netlab_localconf.localrc_items(lab, node_id)
        env = {}
        for name, value, _ in items:  # file order: references are already defined
            env[name] = expected_value(value, env)
        workdir = tmp_path / node_id
        workdir.mkdir()
        values, services, plugins = source_localrc(workdir, text, [n for n, _, _ in items])
        assert values == env
        assert not canary.exists(), "a value was executed"
        assert not list(workdir.glob("pwned*"))
        # spot checks against hand-written expectations
        assert values["SUBST"] == "$(touch {})".format(canary)
        assert values["BACKSLASH"] == "a\\b\\\\c\\"
        assert values["NOT_A_REF"] == TRICKY["NOT_A_REF"]
        assert values["CONTROL"] == TRICKY["CONTROL"]
        assert values["REF"] == "{}:change-me/x".format(lab.node(node_id).ip)
        assert values["REF_CHAIN"] == "[{}]".format(values["REF"])
        assert values["YES"] == "True" and values["NO"] == "False" and values["NONE"] == ""
        assert values["INT"] == "42" and values["FLOAT"] == "4.5"
        assert values["SELF"] == ("b a s e-suffix" if node_id != "nuc1" else "-suffix")
        assert plugins == [
            ["plain", "https://opendev.org/openstack/plain", "master"],
            ["weird", "https://example.invalid/a?b=1&c=$({{touch,{}}})#frag".format(canary),
             "stable/`x`"],
        ]
        if node_id == "nuc1":
            assert services == ["disable_service tempest"]
        else:
            assert services[0] == "disable_all_services"
            assert "enable_service n-cpu" in services
        # nothing sneaked a meta-section in
        headers = [line for line in text.splitlines() if line.startswith("[[")]
        assert headers == ["[[local|localrc]]", "[[post-config|$NOVA_CONF]]"]


def test_values_stay_on_one_line(raw):
    raw["devstack"]["localrc"]["MULTI"] = "a\nb\n"
    text = render(raw, "nuc1")
    line = [ln for ln in text.splitlines() if ln.startswith("MULTI=")]
    assert line == ["MULTI=\"a\"$'\\n'\"b\"$'\\n'"]


def test_simple_values_are_written_bare_like_devstack_docs(raw):
    text = render(raw, "nuc2")
    for line in ("HOST_IP=192.168.42.12", "SERVICE_HOST=192.168.42.11",
                 "GLANCE_HOSTPORT=$SERVICE_HOST:9292", "ADMIN_PASSWORD=change-me",
                 "LOGFILE=$DEST/logs/stack.sh.log", "NOVA_VNC_ENABLED=True",
                 "NOVNCPROXY_URL=http://$SERVICE_HOST:6080/vnc_lite.html"):
        assert line in text.splitlines()


# --------------------------------------------------------------------------- meta-sections
def devstack_ini(tmp_path, text, env):
    """Every meta-section except localrc, read like DevStack's merge_config_group:
    ``{(phase, real file): [(section, key, value), ...]}`` plus the phases order."""
    conf = tmp_path / "local.conf"
    conf.write_text(text, encoding="utf-8")
    record = tmp_path / "iniset.bin"
    result, order = {}, []
    for phase in netlab_lab.LOCAL_CONF_PHASES:
        for cfg in awk(SECTION_FILES_AWK, conf, group=phase).split():
            if phase == "local" and cfg == "localrc":
                continue
            body = awk(GET_SECTION_AWK, conf, group=phase, file=cfg)
            part = tmp_path / "part.txt"
            part.write_text(body, encoding="utf-8")
            commands = awk(MERGE_AWK, part, file=cfg)
            if record.exists():
                record.unlink()
            script = r"""
iniset() { printf '%s\0' "$1" "$2" "$3" "$4" >> "$RECORD"; }
real=$(eval echo "$1")
printf '%s' "$real" > "$RECORD.file"
while read a; do eval "$a"; done
"""
            proc = subprocess.run(
                [BASH, "--noprofile", "--norc", "-c", script, "bash", cfg],
                input=commands.encode(), env=dict(env, RECORD=str(record),
                                                  PATH="/usr/bin:/bin"),
                cwd=str(tmp_path), capture_output=True, check=False)
            assert proc.returncode == 0, proc.stderr.decode()
            real = (tmp_path / "iniset.bin.file").read_text()
            fields = record.read_bytes().decode().split("\0")[:-1] if record.exists() else []
            triples = []
            for i in range(0, len(fields), 4):
                assert fields[i] == real
                triples.append(tuple(fields[i + 1:i + 4]))
            result[(phase, real)] = triples
            order.append(phase)
    return result, order


def test_meta_sections_parse_the_way_devstack_reads_them(raw, tmp_path):
    canary = tmp_path / "pwned"
    raw["devstack"]["local_conf"] = {
        # given out of order on purpose: output follows DevStack's phase order
        "test-config": {"$TEMPEST_CONFIG": {"compute": {"min_compute_nodes": 2}}},
        "post-extra": {"/etc/extra.conf": {"x": {"y": "z"}}},
        "extra": {"$CINDER_CONF": {"DEFAULT": {"debug": True}}},
        "post-config": {
            "$NOVA_CONF": {
                "DEFAULT": {
                    "cpu_allocation_ratio": 4.0,
                    "quote": 'a "b" c',
                    "tick": "`touch {}`".format(canary),
                    "subst": "$(touch {})".format(canary),
                    "backslash": "C:\\dir\\",
                    "ref": "http://$SERVICE_HOST:8774/v2",
                    "percent": "%(asctime)s %(message)s",
                    "equals": "a=b==c",
                    "hash": "value # not a comment",
                    "unicode": "ünïcødé",
                    "empty": "",
                    "no": False,
                },
                "filter:authtoken": {"paste.filter_factory": "keystonemiddleware:filter"},
                "libvirt": {"virt_type": "qemu"},
            },
            "/etc/neutron/plugins/ml2/ml2_conf.ini": {"ml2": {"mechanism_drivers": "ovn"}},
        },
        "local": {"/etc/local-phase.conf": {"s": {"k": "v"}}},
    }
    text = render(raw, "nuc2")
    env = {"NOVA_CONF": "/etc/nova/nova.conf", "CINDER_CONF": "/etc/cinder/cinder.conf",
           "TEMPEST_CONFIG": "/opt/stack/tempest/etc/tempest.conf",
           "SERVICE_HOST": "192.168.42.11"}
    sections, order = devstack_ini(tmp_path, text, env)
    assert not canary.exists(), "a local.conf value was executed"
    assert order == ["local", "post-config", "post-config", "extra", "post-extra",
                     "test-config"]
    assert sections[("post-config", "/etc/nova/nova.conf")] == [
        ("DEFAULT", "backslash", "C:\\dir\\"),
        ("DEFAULT", "cpu_allocation_ratio", "4.0"),
        ("DEFAULT", "empty", ""),
        ("DEFAULT", "equals", "a=b==c"),
        ("DEFAULT", "hash", "value # not a comment"),
        ("DEFAULT", "no", "False"),
        ("DEFAULT", "percent", "%(asctime)s %(message)s"),
        ("DEFAULT", "quote", 'a "b" c'),
        ("DEFAULT", "ref", "http://192.168.42.11:8774/v2"),
        ("DEFAULT", "subst", "$(touch {})".format(canary)),
        ("DEFAULT", "tick", "`touch {}`".format(canary)),
        ("DEFAULT", "unicode", "ünïcødé"),
        ("filter:authtoken", "paste.filter_factory", "keystonemiddleware:filter"),
        ("libvirt", "virt_type", "qemu"),
    ]
    assert sections[("post-config", "/etc/neutron/plugins/ml2/ml2_conf.ini")] == [
        ("ml2", "mechanism_drivers", "ovn")]
    assert sections[("local", "/etc/local-phase.conf")] == [("s", "k", "v")]
    assert sections[("extra", "/etc/cinder/cinder.conf")] == [("DEFAULT", "debug", "True")]
    assert sections[("post-extra", "/etc/extra.conf")] == [("x", "y", "z")]
    assert sections[("test-config", "/opt/stack/tempest/etc/tempest.conf")] == [
        ("compute", "min_compute_nodes", "2")]
    # meta-section headers appear in DevStack's phase order, files in name order
    headers = [ln for ln in text.splitlines() if ln.startswith("[[")]
    assert headers == [
        "[[local|localrc]]", "[[local|/etc/local-phase.conf]]",
        "[[post-config|$NOVA_CONF]]", "[[post-config|/etc/neutron/plugins/ml2/ml2_conf.ini]]",
        "[[extra|$CINDER_CONF]]", "[[post-extra|/etc/extra.conf]]",
        "[[test-config|$TEMPEST_CONFIG]]",
    ]


# --------------------------------------------------------------------------- ordering
def test_a_referenced_variable_comes_before_its_referrer(raw):
    raw["devstack"]["localrc"] = {
        "Z_BASE": "/srv", "A_USES_M": "$M_MID/a", "M_MID": "${Z_BASE}/m",
        "B_USES_AUTO": "$HOST_IP-$SERVICE_HOST",
    }
    raw["nodes"]["nuc3"]["devstack"]["localrc"] = {"A0": "$A_USES_M/0"}
    names = assignments(render(raw, "nuc3"))
    for before, after in [("Z_BASE", "M_MID"), ("M_MID", "A_USES_M"),
                          ("A_USES_M", "A0"), ("HOST_IP", "B_USES_AUTO"),
                          ("SERVICE_HOST", "B_USES_AUTO"), ("SERVICE_HOST", "MYSQL_HOST"),
                          ("HOST_IP", "VNCSERVER_LISTEN"),
                          ("VNCSERVER_LISTEN", "VNCSERVER_PROXYCLIENT_ADDRESS")]:
        assert names.index(before) < names.index(after), (before, after, names)
    assert len(names) == len(set(names))


def test_automatic_variables_come_first_then_pillar_in_name_order(raw):
    lab = netlab_lab.load(raw)
    items = netlab_localconf.localrc_items(lab, "nuc2")
    origins = [origin for _, _, origin in items]
    assert origins == sorted(origins, key=lambda o: o != "auto")
    pillar_names = [n for n, _, o in items if o == "pillar"]
    assert pillar_names == sorted(pillar_names)
    assert pillar_names == ["ADMIN_PASSWORD", "DATABASE_PASSWORD", "LOGFILE",
                            "RABBIT_PASSWORD", "SERVICE_PASSWORD"]


def test_pillar_overrides_an_automatic_variable_and_dependents_follow_it(raw):
    raw["nodes"]["nuc2"]["devstack"] = {"localrc": {
        "SERVICE_HOST": "$CONTROLLER_ADDR", "CONTROLLER_ADDR": "192.168.42.11",
        "HOST_IP": "192.168.42.99", "DATABASE_TYPE": "postgresql"}}
    text = render(raw, "nuc2")
    lines = localrc_lines(text)
    assert lines.count("SERVICE_HOST=$CONTROLLER_ADDR") == 1
    assert "HOST_IP=192.168.42.99" in lines and "HOST_IP=192.168.42.12" not in lines
    assert "DATABASE_TYPE=postgresql" in lines and "DATABASE_TYPE=mysql" not in lines
    names = assignments(text)
    assert len(names) == len(set(names))
    assert names.index("CONTROLLER_ADDR") < names.index("SERVICE_HOST") \
        < names.index("RABBIT_HOST")


def test_a_cycle_through_automatic_variables_is_an_error_naming_the_node(raw):
    raw["nodes"]["nuc2"]["devstack"] = {"localrc": {"HOST_IP": "$VNCSERVER_LISTEN"}}
    lab = netlab_lab.load(raw)  # no cycle inside pillar alone
    with pytest.raises(netlab_localconf.LocalConfError) as exc:
        netlab_localconf.render(lab, "nuc2")
    message = str(exc.value)
    assert message.startswith("netlab:nodes:nuc2:devstack:localrc: localrc variables form "
                              "a cycle: ")
    assert "HOST_IP" in message and "VNCSERVER_LISTEN" in message


def test_output_is_byte_identical_whatever_the_pillar_order(raw):
    first = {n: render(raw, n) for n in ("nuc1", "nuc2", "nuc3")}
    shuffled = copy.deepcopy(raw)
    shuffled["devstack"]["localrc"] = dict(reversed(list(raw["devstack"]["localrc"].items())))
    shuffled["nodes"] = dict(reversed(list(raw["nodes"].items())))
    shuffled["devstack"]["services"] = {"zz": True, "aa": False, "tempest": False}
    raw["devstack"]["services"] = {"tempest": False, "aa": False, "zz": True}
    for node_id in ("nuc1", "nuc2", "nuc3"):
        assert render(raw, node_id) == render(shuffled, node_id)
        assert render(raw, node_id) == render(copy.deepcopy(raw), node_id)
    assert first["nuc1"] == render(copy.deepcopy(raw), "nuc1").replace(
        "enable_service zz\n", "").replace("disable_service aa\n", "")


# --------------------------------------------------------------------------- wiring
def test_multinode_wiring(raw):
    lab = netlab_lab.load(raw)
    uuids = set()
    for node in lab.nodes.values():
        lines = localrc_lines(netlab_localconf.render(lab, node.id))
        assert "HOST_IP={}".format(node.ip) in lines
        assert "SERVICE_HOST=192.168.42.11" in lines
        uuid = netlab_slice.identity(lab, node.id, 0)["ovn_uuid"]
        assert "OVN_UUID={}".format(uuid) in lines
        uuids.add(uuid)
        subnode_lines = ["DATABASE_TYPE=mysql", "MYSQL_HOST=$SERVICE_HOST",
                         "DATABASE_HOST=$SERVICE_HOST", "RABBIT_HOST=$SERVICE_HOST",
                         "GLANCE_HOSTPORT=$SERVICE_HOST:9292", "Q_HOST=$SERVICE_HOST",
                         "NOVA_VNC_ENABLED=True", "VNCSERVER_LISTEN=$HOST_IP",
                         "VNCSERVER_PROXYCLIENT_ADDRESS=$VNCSERVER_LISTEN",
                         "NOVNCPROXY_URL=http://$SERVICE_HOST:6080/vnc_lite.html"]
        for line in subnode_lines:
            assert (line in lines) == (not node.is_controller), (node.id, line)
    assert len(uuids) == 3


def test_ovn_uuid_changes_with_the_reimage_generation(raw):
    lab = netlab_lab.load(raw)
    gen0 = netlab_localconf.render(lab, "nuc2", generation=0)
    gen1 = netlab_localconf.render(lab, "nuc2", generation=1)
    assert gen0 != gen1
    assert "OVN_UUID={}".format(netlab_slice.identity(lab, "nuc2", 1)["ovn_uuid"]) in gen1
    assert "generation 1" in gen1.splitlines()[0]


def test_dest_and_git_base_are_passed_to_devstack(raw):
    raw["cache"] = CACHE_OFF  # upstream URLs as given (the LAN cache: test_cache_localconf)
    raw["devstack"]["git_base"] = "http://192.168.42.2:8080/git"
    raw["nodes"]["nuc2"]["devstack"] = {"dest": "/srv/stack"}
    lines = localrc_lines(render(raw, "nuc2"))
    assert "DEST=/srv/stack" in lines
    assert "GIT_BASE=http://192.168.42.2:8080/git" in lines
    assert "DEST=/opt/stack" in localrc_lines(render(raw, "nuc3"))


def test_header_names_node_and_role(raw):
    text = render(raw, "nuc3")
    assert text.startswith("# local.conf managed by netlab (salt), node nuc3, role compute")
    assert text.endswith("\n") and not text.endswith("\n\n")


# --------------------------------------------------------------------------- services
def services_block(text):
    return [ln for ln in localrc_lines(text)
            if ln.split(" ")[0] in ("disable_all_services", "enable_service",
                                    "disable_service")]


def test_controller_keeps_devstack_defaults_plus_pillar(raw):
    raw["roles"]["controller"]["devstack"]["services"] = {"horizon": False, "c-bak": True}
    assert services_block(render(raw, "nuc1")) == [
        "enable_service c-bak", "disable_service horizon", "disable_service tempest"]


def test_subnodes_get_devstack_ci_subnode_services(raw):
    block = services_block(render(raw, "nuc2"))
    assert block[0] == "disable_all_services"
    enabled = [ln.split()[1] for ln in block if ln.startswith("enable_service")]
    assert enabled == sorted(enabled)
    assert set(enabled) >= {"n-cpu", "placement-client", "ovn-controller", "ovs-vswitchd",
                            "ovsdb-server", "q-ovn-metadata-agent", "c-vol"}
    assert not set(enabled) & {"key", "n-api", "mysql", "rabbit", "g-api", "q-svc"}
    disabled = [ln.split()[1] for ln in block if ln.startswith("disable_service")]
    assert disabled == sorted(disabled) and "tempest" in disabled


def test_pillar_services_win_over_the_automatic_set(raw):
    raw["roles"]["compute"]["devstack"] = {"services": {"c-vol": False, "c-bak": False}}
    raw["nodes"]["nuc3"]["devstack"]["services"] = {"base": True, "q-agt": True,
                                                    "ovn-controller": False}
    nuc2 = services_block(render(raw, "nuc2"))
    assert "disable_service c-vol" in nuc2 and "enable_service c-vol" not in nuc2
    nuc3 = services_block(render(raw, "nuc3"))
    assert "disable_all_services" not in nuc3
    assert "enable_service q-agt" in nuc3 and "disable_service ovn-controller" in nuc3
    assert "enable_service ovn-controller" not in nuc3


# --------------------------------------------------------------------------- plugins
def test_plugins_are_last_in_localrc_by_name_after_what_they_require(raw):
    raw["cache"] = CACHE_OFF  # upstream URLs as given (the LAN cache: test_cache_localconf)
    raw["devstack"]["plugins"] = {
        "zun": {"repo": "https://opendev.org/openstack/zun", "requires": ["kuryr"]},
        "kuryr": {"repo": "https://opendev.org/openstack/kuryr-libnetwork",
                  "requires": ["zz-base"]},
        "zz-base": "https://opendev.org/x/zz-base stable/2024.1",
        "heat": "https://opendev.org/openstack/heat",
        "gone": "https://opendev.org/x/gone",
    }
    raw["nodes"]["nuc2"]["devstack"] = {"plugins": {"gone": None}}
    text = render(raw, "nuc2")
    lines = localrc_lines(text)
    plugin_lines = [ln for ln in lines if ln.startswith("enable_plugin")]
    assert plugin_lines == [
        "enable_plugin heat https://opendev.org/openstack/heat",
        "enable_plugin zz-base https://opendev.org/x/zz-base stable/2024.1",
        "enable_plugin kuryr https://opendev.org/openstack/kuryr-libnetwork",
        "enable_plugin zun https://opendev.org/openstack/zun",
    ]
    assert lines[-len(plugin_lines):] == plugin_lines
    assert "enable_plugin gone" in render(raw, "nuc3")


# --------------------------------------------------------------------------- layering
def test_layers_merge_lab_then_role_then_node(raw):
    raw["devstack"]["localrc"]["LAYER"] = "lab"
    raw["devstack"]["localrc"]["ROLE_ONLY"] = "lab"
    raw["roles"]["compute"]["devstack"] = {
        "localrc": {"LAYER": "role", "ROLE_ONLY": "role"},
        "local_conf": {"post-config": {"$NOVA_CONF": {"DEFAULT": {"from_role": 1}}}}}
    raw["nodes"]["nuc3"]["devstack"]["localrc"]["LAYER"] = "node"
    raw["nodes"]["nuc3"]["devstack"]["local_conf"] = {
        "post-config": {"$NOVA_CONF": {"DEFAULT": {"cpu_allocation_ratio": 8.0}}}}
    nuc1, nuc2, nuc3 = (localrc_lines(render(raw, n)) for n in ("nuc1", "nuc2", "nuc3"))
    assert "LAYER=lab" in nuc1 and "LAYER=role" in nuc2 and "LAYER=node" in nuc3
    assert "ROLE_ONLY=role" in nuc3
    text = render(raw, "nuc3")
    assert "cpu_allocation_ratio = 8.0\nfrom_role = 1\n" in text
    assert "cpu_allocation_ratio = 4.0" in render(raw, "nuc1")
    assert "from_role" not in render(raw, "nuc1")


# --------------------------------------------------------------------------- quoting helpers
@pytest.mark.parametrize("value, word", [
    ("plain", "plain"),
    ("$A/${B}", "$A/${B}"),
    ("a b", '"a b"'),
    ("$A b", '"$A b"'),
    ("$(x)", '"\\$(x)"'),
    ('"', '"\\""'),
    ("", '""'),
    ("~", '"~"'),
    (True, "True"),
])
def test_shell_word(value, word):
    assert netlab_localconf.shell_word(value) == word


@pytest.mark.parametrize("line, masked", [
    ("ADMIN_PASSWORD=change-me", "ADMIN_PASSWORD=******"),
    ('+DATABASE_PASSWORD="a b"', "+DATABASE_PASSWORD=******"),
    ("-SERVICE_TOKEN=x", "-SERVICE_TOKEN=******"),
    (" password = x", " password = ******"),
    ("connection = mysql+pymysql://root:pw@host/nova",
     "connection = mysql+pymysql://root:******@host/nova"),
    ("HOST_IP=192.168.42.11", "HOST_IP=192.168.42.11"),
    ("--- /opt/stack/devstack/local.conf", "--- /opt/stack/devstack/local.conf"),
])
def test_mask_line(line, masked):
    assert netlab_localconf.mask_line(line) == masked
