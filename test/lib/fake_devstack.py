"""
A stand-in for DevStack's git repository.

:func:`create` makes a bare repository (what nodes clone: ``devstack:repo``) and a
working clone (to add commits and branches). Its scripts behave like DevStack's
where netlab depends on them, and record what happened so tests can assert on it:

``stack.sh``
    refuses to run as root (like DevStack), checks passwordless sudo (optional),
    reads ``local.conf`` next to it and splits it into meta-sections the way
    DevStack's ``inc/meta-config`` does (a section starts at a ``[[group|file]]``
    line), writes the ``[[local|localrc]]`` section to ``.localrc.auto`` and sources
    it in bash, records start/end time (``date +%s.%N``), ``HOST_IP``,
    ``SERVICE_HOST``, the sections found and every localrc variable as bash saw
    it, sleeps a short while (so parallel runs overlap measurably) and exits
    non-zero on request.
    With ``FAKE_CLONE=True`` in localrc it first clones what stack.sh would
    (requirements, the enabled services' projects, ``LIBS_FROM_GIT``, plugins)
    with DevStack's ``git_clone`` rules: ``GIT_BASE``, ``<PROJECT>_REPO`` /
    ``_BRANCH``, ``RECLONE`` and ``ERROR_ON_CLONE`` (a missing destination is
    DevStack's "ERROR_ON_CLONE is set to True so cloning not allowed" error,
    exit 3); with ``FAKE_PIP_PACKAGES`` (comma separated) it downloads them with
    ``pip download`` through the node's pip configuration (exit 4 on failure). The
    record lists what was ``cloned``, ``kept`` and ``recloned``.
``unstack.sh`` / ``tools/discover_hosts.sh``
    record that (and when) they ran.

Records are JSON files in ``$NETLAB_FAKE_RECORDS`` (default ``$DEST/fake-devstack``,
i.e. next to the checkout on each node); :func:`records` reads them back.

Failure on request: ``NETLAB_FAKE_FAIL=1`` in localrc, or a file ``fail`` in the
records directory (a failing ``stack.sh`` prints ``ADMIN_PASSWORD`` and
``DATABASE_PASSWORD`` the way DevStack's xtrace does, for the masking to hide) (``unstack-fail`` there fails ``unstack.sh``). Sleep: ``NETLAB_FAKE_SLEEP`` in localrc, a file ``sleep`` in the
records directory holding seconds, or the default given to :func:`create`.

The virtual lab's CI run uses the same stand-in (served over dumb HTTP, see
``http_ready``), so nothing here may depend on the test host.
"""

import json
import os
import pathlib
import shutil
import subprocess
import tempfile

__all__ = ["FakeDevstack", "create", "records", "write_files"]

_GITHOME = pathlib.Path(tempfile.gettempdir()) / "netlab-fake-devstack-githome-{}".format(
    os.getuid())

_CONFIG = """\
# fake DevStack defaults (written by test/lib/fake_devstack.py)
FAKE_SLEEP={sleep}
FAKE_REQUIRE_SUDO={require_sudo}
"""

# Shared by every script: DevStack's meta-section parser (inc/meta-config) and a
# JSON recorder.
_COMMON = r'''
# --- fake-devstack common functions ---------------------------------------
TOP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$TOP_DIR/fake.conf"

# DevStack's get_meta_section: print the body of [[group|file]] in local.conf.
function get_meta_section {
    local file=$1 matchgroup=$2 configfile=$3
    [[ -r $file ]] || return 0
    [[ -z $configfile ]] && return 0
    awk -v matchgroup="$matchgroup" -v configfile="$configfile" '
        BEGIN { group = "" }
        /^\[\[.+\|.*\]\]/ {
            if (group == "") {
                gsub("[][]", "", $1);
                split($1, a, "|");
                if (a[1] == matchgroup && a[2] == configfile) {
                    group=a[1]
                }
            } else {
                group=""
            }
            next
        }
        {
            if (group != "")
                print $0
        }
    ' "$file"
}

# Every "group|file" header of local.conf, in order.
function get_meta_sections {
    local file=$1
    [[ -r $file ]] || return 0
    awk '/^\[\[.+\|.*\]\]/ { s=$1; gsub("[][]", "", s); print s }' "$file"
}

# record EVENT RC START END : one JSON file per run in $RECORDS
function fake_record {
    local event=$1 rc=$2 start=$3 end=$4
    mkdir -p "$RECORDS"
    FAKE_EVENT=$event FAKE_RC=$rc FAKE_START=$start FAKE_END=$end \
    FAKE_TOP_DIR=$TOP_DIR FAKE_DEST=$DEST FAKE_RECORDS=$RECORDS \
    FAKE_HOST_IP=${HOST_IP:-} FAKE_SERVICE_HOST=${SERVICE_HOST:-} \
    FAKE_SECTIONS="$(get_meta_sections "$TOP_DIR/local.conf" 2>/dev/null)" \
    FAKE_LOCALRC_VARS="$LOCALRC_VARS" FAKE_SERVICES="$ENABLED_SERVICES" \
    FAKE_PLUGINS="$DEVSTACK_PLUGINS" FAKE_CLONED="${FAKE_CLONED:-}" \
    FAKE_KEPT="${FAKE_KEPT:-}" FAKE_RECLONED="${FAKE_RECLONED:-}" \
    FAKE_PIP_FILES="${FAKE_PIP_FILES:-}" \
    FAKE_COMMIT="$(git -C "$TOP_DIR" rev-parse HEAD 2>/dev/null)" \
    FAKE_VERSION="$(cat "$TOP_DIR/VERSION" 2>/dev/null)" \
    /usr/bin/python3 - "$@" <<'PYEOF'
import hashlib, json, os, socket, pwd
e = os.environ
values = {}
for name in filter(None, e.get("FAKE_LOCALRC_VARS", "").split()):
    values[name] = e.get("FAKE_VAL_" + name)
conf = os.path.join(e["FAKE_TOP_DIR"], "local.conf")
try:
    with open(conf, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
except OSError:
    digest = None
rec = {
    "event": e["FAKE_EVENT"], "rc": int(e["FAKE_RC"]),
    "start": float(e["FAKE_START"]), "end": float(e["FAKE_END"]),
    "user": pwd.getpwuid(os.getuid()).pw_name, "uid": os.getuid(),
    "hostname": socket.gethostname(), "top_dir": e["FAKE_TOP_DIR"],
    "dest": e["FAKE_DEST"], "host_ip": e["FAKE_HOST_IP"] or None,
    "service_host": e["FAKE_SERVICE_HOST"] or None,
    "sections": [s for s in e["FAKE_SECTIONS"].splitlines() if s],
    "localrc": values, "local_conf_sha256": digest,
    "services": [x for x in e["FAKE_SERVICES"].split(",") if x],
    "plugins": [x for x in e["FAKE_PLUGINS"].split(",") if x],
    "cloned": e["FAKE_CLONED"].split(), "kept": e["FAKE_KEPT"].split(),
    "recloned": e["FAKE_RECLONED"].split(), "pip_files": e["FAKE_PIP_FILES"].split(),
    "commit": e["FAKE_COMMIT"] or None, "version": e["FAKE_VERSION"] or None,
}
name = "{}-{:.6f}-{}.json".format(rec["event"], rec["start"], os.getpid())
tmp = os.path.join(e["FAKE_RECORDS"], "." + name)
with open(tmp, "w") as fh:
    json.dump(rec, fh, sort_keys=True)
os.rename(tmp, os.path.join(e["FAKE_RECORDS"], name))
PYEOF
}

# DevStack's localrc helpers (functions-common), enough to source a localrc.
ENABLED_SERVICES=""
DEVSTACK_PLUGINS=""
function enable_service {
    local s
    for s in "$@"; do
        disable_service "$s"
        ENABLED_SERVICES+=",$s"
    done
    ENABLED_SERVICES=${ENABLED_SERVICES#,}
}
function disable_service {
    local s tmp
    for s in "$@"; do
        tmp=",$ENABLED_SERVICES,"
        tmp=${tmp//,$s,/,}
        tmp=${tmp#,}
        ENABLED_SERVICES=${tmp%,}
    done
}
function disable_all_services {
    ENABLED_SERVICES=""
}
declare -A GITREPO GITBRANCH
function enable_plugin {
    [[ -n ${1:-} && -n ${2:-} ]] || { echo "enable_plugin needs name and url" >&2; return 1; }
    DEVSTACK_PLUGINS+="${DEVSTACK_PLUGINS:+,}$1"
    GITREPO[$1]=$2
    GITBRANCH[$1]=${3:-master}
}

# DevStack's trueorfalse (functions-common): normalise a boolean variable.
function trueorfalse {
    local default=$1 testval=${!2:-}
    case "$testval" in
        "1" | [yY]es | "YES" | [tT]rue | "TRUE" ) echo "True" ;;
        "0" | [nN]o | "NO" | [fF]alse | "FALSE" ) echo "False" ;;
        * ) echo "$default" ;;
    esac
}
function die {
    local line=$1; shift
    echo "[ERROR] $0:$line $*" >&2
    exit 1
}

# DevStack's git_clone (functions-common) for a branch or tag, with its rules:
# the destination exists -> nothing is fetched unless RECLONE=True (then the
# remote is set to git_remote, fetched and the ref checked out); it does not
# exist -> ERROR_ON_CLONE=True dies naming it, else clone --no-checkout, fetch
# the ref, check out FETCH_HEAD. (DevStack also marks the checkout as a git
# safe.directory with sudo; the stand-in leaves that out.)
function git_clone {
    local git_remote=$1 git_dest=$2 git_ref=$3 orig_dir
    orig_dir=$(pwd)
    RECLONE=$(trueorfalse False RECLONE)
    if [[ ! -d $git_dest ]]; then
        if [[ "$ERROR_ON_CLONE" = "True" ]]; then
            echo "The $git_dest project was not found; if this is a gate job, add"
            echo "the project to the \$PROJECTS variable in the job definition."
            die $LINENO "ERROR_ON_CLONE is set to True so cloning not allowed in this configuration"
        fi
        git clone -q --no-checkout "$git_remote" "$git_dest"
        cd "$git_dest"
        git fetch -q origin "$git_ref"
        git checkout -q FETCH_HEAD
        echo "fake git_clone: cloned $(basename "$git_dest")"
    elif [[ "$RECLONE" = "True" ]]; then
        cd "$git_dest"
        git remote set-url origin "$git_remote"
        git fetch -q origin
        if [[ -n "$(git show-ref refs/tags/$git_ref)" ]]; then
            git checkout -q -f "$git_ref"
        elif [[ -n "$(git show-ref refs/remotes/origin/$git_ref)" ]]; then
            git checkout -q -f "origin/$git_ref"
            git branch -q -D "$git_ref" 2>/dev/null || true
            git checkout -q -b "$git_ref"
        else
            die $LINENO "$git_ref is neither branch nor tag"
        fi
        echo "fake git_clone: recloned $(basename "$git_dest")"
    else
        echo "fake git_clone: kept $(basename "$git_dest")"
    fi
    cd "$git_dest"
    echo "fake git_clone: $git_dest at $(git rev-parse HEAD)"
    cd "$orig_dir"
}

# DevStack's is_service_enabled, enough for the stand-in: exact names plus the
# nova/glance/neutron/swift/cinder prefixes functions-common knows.
function is_service_enabled {
    local s
    for s in "$@"; do
        [[ ,${ENABLED_SERVICES}, =~ ,${s}, ]] && return 0
        [[ $s == nova && ,${ENABLED_SERVICES} =~ ,"n-" ]] && return 0
        [[ $s == glance && ,${ENABLED_SERVICES} =~ ,"g-" ]] && return 0
        [[ $s == neutron && ,${ENABLED_SERVICES} =~ ,"q-" ]] && return 0
        [[ $s == swift && ,${ENABLED_SERVICES} =~ ,"s-" ]] && return 0
        [[ $s == cinder && ,${ENABLED_SERVICES} =~ ,"c-" ]] && return 0
        [[ $s == keystone && ,${ENABLED_SERVICES} =~ ,"key" ]] && return 0
    done
    return 1
}

# stack.sh's clones, with stackrc's repositories, directories and branches:
# requirements (full history) always, the projects of the enabled services, the
# LIBS_FROM_GIT libraries, then every enabled plugin.
function fake_clone_projects {
    GIT_BASE=${GIT_BASE:-https://opendev.org}
    ERROR_ON_CLONE=$(trueorfalse False ERROR_ON_CLONE)
    local TARGET_BRANCH=${FAKE_TARGET_BRANCH:-master} p lib
    GIT_DEPTH=0 git_clone "${REQUIREMENTS_REPO:-$GIT_BASE/openstack/requirements.git}" \
        "$DEST/requirements" "${REQUIREMENTS_BRANCH:-$TARGET_BRANCH}"
    is_service_enabled keystone && git_clone "${KEYSTONE_REPO:-$GIT_BASE/openstack/keystone.git}" \
        "$DEST/keystone" "${KEYSTONE_BRANCH:-$TARGET_BRANCH}"
    is_service_enabled g-api n-api && git_clone "${GLANCE_REPO:-$GIT_BASE/openstack/glance.git}" \
        "$DEST/glance" "${GLANCE_BRANCH:-$TARGET_BRANCH}"
    is_service_enabled cinder && git_clone "${CINDER_REPO:-$GIT_BASE/openstack/cinder.git}" \
        "$DEST/cinder" "${CINDER_BRANCH:-$TARGET_BRANCH}"
    is_service_enabled neutron && git_clone "${NEUTRON_REPO:-$GIT_BASE/openstack/neutron.git}" \
        "$DEST/neutron" "${NEUTRON_BRANCH:-$TARGET_BRANCH}"
    is_service_enabled nova && git_clone "${NOVA_REPO:-$GIT_BASE/openstack/nova.git}" \
        "$DEST/nova" "${NOVA_BRANCH:-$TARGET_BRANCH}"
    is_service_enabled placement-api && git_clone \
        "${PLACEMENT_REPO:-$GIT_BASE/openstack/placement.git}" "$DEST/placement" \
        "${PLACEMENT_BRANCH:-$TARGET_BRANCH}"
    is_service_enabled tempest && git_clone "${TEMPEST_REPO:-$GIT_BASE/openstack/tempest.git}" \
        "$DEST/tempest" "${TEMPEST_BRANCH:-master}"
    for lib in ${LIBS_FROM_GIT//,/ }; do
        git_clone "$GIT_BASE/openstack/$lib.git" "$DEST/$lib" "$TARGET_BRANCH"
    done
    for p in ${DEVSTACK_PLUGINS//,/ }; do
        git_clone "${GITREPO[$p]}" "$DEST/$p" "${GITBRANCH[$p]}"
    done
    return 0
}

# Source localrc (from local.conf) the way DevStack's stackrc does.
function fake_load_localrc {
    DEST=$(cd "$TOP_DIR/.." && pwd)
    rm -f "$TOP_DIR/.localrc.auto"
    if [[ -r $TOP_DIR/local.conf ]]; then
        get_meta_section "$TOP_DIR/local.conf" local localrc > "$TOP_DIR/.localrc.auto"
    fi
    LOCALRC_VARS=""
    if [[ -r $TOP_DIR/.localrc.auto ]]; then
        source "$TOP_DIR/.localrc.auto"
        # every NAME= assigned in the section, with its value as bash sees it
        local name
        for name in $(sed -n 's/^[[:space:]]*\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' \
                      "$TOP_DIR/.localrc.auto" | sort -u); do
            LOCALRC_VARS="$LOCALRC_VARS $name"
            export "FAKE_VAL_$name=${!name}"
        done
    fi
    RECORDS=${NETLAB_FAKE_RECORDS:-$DEST/fake-devstack}
}
# --- end of common functions -----------------------------------------------
'''

_STACK = r'''#!/usr/bin/env bash
# fake DevStack stack.sh (test/lib/fake_devstack.py)
set -o errexit -o pipefail
source "$(dirname "$0")/functions-common"

if [[ $EUID -eq 0 ]]; then
    echo "You are running this script as root."
    echo "Cut it out."
    exit 1
fi
fake_load_localrc
START=$(date +%s.%N)
echo "fake stack.sh: start $START on $(hostname) as $(id -un) in $TOP_DIR"
echo "fake stack.sh: HOST_IP=${HOST_IP:-} SERVICE_HOST=${SERVICE_HOST:-}"
echo "fake stack.sh: sections: $(get_meta_sections "$TOP_DIR/local.conf" | tr '\n' ' ')"
if [[ -n ${LOGFILE:-} ]]; then
    mkdir -p "$(dirname "$LOGFILE")"
    echo "fake stack.sh started $START" > "$LOGFILE"
fi
if [[ $FAKE_REQUIRE_SUDO == 1 ]] && ! sudo -n true; then
    echo "ERROR: passwordless sudo is required for $(id -un)" >&2
    END=$(date +%s.%N)
    fake_record stack 2 "$START" "$END"
    exit 2
fi
# opt-in (localrc FAKE_CLONE=True): clone like stack.sh; a failed clone (or
# ERROR_ON_CLONE refusing one) stops here with DevStack's message
if [[ $(trueorfalse False FAKE_CLONE) == True ]]; then
    # errexit holds inside the subshell only outside an if/&&/|| context
    set +o errexit
    (set -o errexit; fake_clone_projects) > "$TOP_DIR/.fake-clone.log" 2>&1
    CLONE_RC=$?
    set -o errexit
    cat "$TOP_DIR/.fake-clone.log"
    FAKE_CLONED=$(sed -n 's/^fake git_clone: cloned //p' "$TOP_DIR/.fake-clone.log")
    FAKE_KEPT=$(sed -n 's/^fake git_clone: kept //p' "$TOP_DIR/.fake-clone.log")
    FAKE_RECLONED=$(sed -n 's/^fake git_clone: recloned //p' "$TOP_DIR/.fake-clone.log")
    if [[ $CLONE_RC != 0 ]]; then
        cat "$TOP_DIR/.fake-clone.log" >&2
        END=$(date +%s.%N)
        fake_record stack 3 "$START" "$END"
        exit 3
    fi
fi
# opt-in (localrc FAKE_PIP_PACKAGES): what stack.sh's pip_install fetches, with
# the node's pip configuration (/etc/pip.conf, or PIP_CONFIG_FILE)
if [[ -n ${FAKE_PIP_PACKAGES:-} ]]; then
    rm -rf "$DEST/.fake-pip"
    python3 -m pip download -q --no-deps --no-cache-dir --disable-pip-version-check \
        -d "$DEST/.fake-pip" ${FAKE_PIP_PACKAGES//,/ } || {
            END=$(date +%s.%N); fake_record stack 4 "$START" "$END"; exit 4; }
    FAKE_PIP_FILES=$(ls "$DEST/.fake-pip")
fi
SLEEP=${NETLAB_FAKE_SLEEP:-$FAKE_SLEEP}
[[ -r $RECORDS/sleep ]] && SLEEP=$(cat "$RECORDS/sleep")
for step in 1 2 3; do
    echo "fake stack.sh: step $step of 3"
    sleep "$(awk -v s="$SLEEP" 'BEGIN { printf "%.3f", s / 3 }')"
done
RC=0
if [[ ${NETLAB_FAKE_FAIL:-0} == 1 || -e $RECORDS/fail ]]; then
    # what DevStack's xtrace leaves in a failing log (why netlab masks log tails):
    # a password as a bare argument, a secret-named assignment, URL credentials
    echo "+ lib/keystone:bootstrap_keystone:520 keystone-manage bootstrap --bootstrap-password ${ADMIN_PASSWORD:-}"
    echo "+ openrc:source:50 export OS_PASSWORD=${ADMIN_PASSWORD:-}"
    echo "+ lib/database:database_connection_url:30 mysql+pymysql://root:${DATABASE_PASSWORD:-}@${SERVICE_HOST:-localhost}/nova"
    echo "fake stack.sh: failing on request" >&2
    echo "ERROR: fake failure requested for ${HOST_IP:-this node}" >&2
    RC=1
fi
END=$(date +%s.%N)
fake_record stack "$RC" "$START" "$END"
if [[ $RC == 0 ]]; then
    echo "This is your host IP address: ${HOST_IP:-}"
    echo "fake stack.sh: completed"
fi
exit $RC
'''

_UNSTACK = r'''#!/usr/bin/env bash
# fake DevStack unstack.sh (test/lib/fake_devstack.py)
set -o errexit -o pipefail
source "$(dirname "$0")/functions-common"
fake_load_localrc
START=$(date +%s.%N)
echo "fake unstack.sh: stopping services"
if [[ -e $RECORDS/unstack-fail ]]; then
    echo "ERROR: fake unstack failure requested: a service does not stop" >&2
    fake_record unstack 1 "$START" "$(date +%s.%N)"
    exit 1
fi
END=$(date +%s.%N)
fake_record unstack 0 "$START" "$END"
'''

_DISCOVER = r'''#!/usr/bin/env bash
# fake DevStack tools/discover_hosts.sh (test/lib/fake_devstack.py)
set -o errexit -o pipefail
source "$(dirname "$0")/../functions-common"
fake_load_localrc
START=$(date +%s.%N)
echo "fake discover_hosts.sh: nova-manage cell_v2 discover_hosts --verbose"
END=$(date +%s.%N)
fake_record discover 0 "$START" "$END"
'''


def _git(*args, cwd=None):
    # Root-side operations use their own HOME whose global config trusts every
    # repository: the bare repo may belong to the stack user, and git refuses
    # "dubious ownership" even for root (only global/system config can lift it).
    home = _GITHOME
    if not (home / ".gitconfig").exists():
        home.mkdir(parents=True, exist_ok=True)
        (home / ".gitconfig").write_text(
            "[safe]\n\tdirectory = *\n[user]\n\tname = netlab test\n"
            "\temail = test@netlab\n[init]\n\tdefaultBranch = master\n",
            encoding="utf-8")
    env = dict(os.environ, HOME=str(home), GIT_CONFIG_NOSYSTEM="1")
    return subprocess.run(["git"] + list(args), cwd=cwd, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


class FakeDevstack:
    """A created stand-in: ``bare`` (clone source), ``work`` (author clone), ``url``."""

    def __init__(self, root):
        self.root = pathlib.Path(root)
        self.bare = self.root / "devstack.git"
        self.work = self.root / "work"

    @property
    def url(self):
        return "file://" + str(self.bare)

    def head(self, branch="master"):
        return _git("rev-parse", "refs/heads/" + branch, cwd=self.bare)

    def commit(self, message, files=None, branch="master"):
        """Commit ``files`` ({relpath: text}) on ``branch`` and push it to the bare repo."""
        branches = _git("branch", "--list", branch, cwd=self.work)
        if branches:
            _git("checkout", "-q", branch, cwd=self.work)
        else:
            _git("checkout", "-q", "-b", branch, cwd=self.work)
        for rel, text in (files or {}).items():
            target = self.work / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            _git("add", rel, cwd=self.work)
        _git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        _git("push", "-q", "origin", branch, cwd=self.work)
        _git("checkout", "-q", "master", cwd=self.work)
        self._update_server_info()
        return self.head(branch)

    def add_branch(self, branch, version=None):
        """A new branch whose ``VERSION`` file says ``version`` (default: branch name)."""
        return self.commit("branch " + branch, {"VERSION": (version or branch) + "\n"},
                           branch=branch)

    def _update_server_info(self):
        _git("update-server-info", cwd=self.bare)

    def http_ready(self):
        """Make the bare repo clonable over dumb HTTP (serve ``bare`` with any web server)."""
        hook = self.bare / "hooks" / "post-update"
        hook.write_text("#!/bin/sh\nexec git update-server-info\n", encoding="utf-8")
        hook.chmod(0o755)
        self._update_server_info()


EXECUTABLES = ("stack.sh", "unstack.sh", "tools/discover_hosts.sh")


def write_files(work, sleep=1.5, require_sudo=True, version="master"):
    """Write the stand-in's files into the working tree ``work`` (scripts
    executable); returns their relative paths, for ``git add``."""
    work = pathlib.Path(work)
    files = {
        "stack.sh": _STACK,
        "unstack.sh": _UNSTACK,
        "tools/discover_hosts.sh": _DISCOVER,
        "functions-common": _COMMON,
        "fake.conf": _CONFIG.format(sleep=float(sleep), require_sudo=1 if require_sudo else 0),
        "VERSION": version + "\n",
        "README.rst": "Stand-in for DevStack, made by netlab's test/lib/fake_devstack.py\n",
    }
    for rel, text in files.items():
        target = work / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    for rel in EXECUTABLES:
        (work / rel).chmod(0o755)
    return sorted(files)


def create(root, sleep=1.5, require_sudo=True, version="master", owner=None):
    """Create the stand-in under ``root`` (bare + working clone); return :class:`FakeDevstack`.

    The tree is made world-readable so the (non-root) stack user can clone it.
    git refuses to clone a local repository owned by another user ("dubious
    ownership"), so pass ``owner`` (the stack user's name) when nodes clone it
    through the file system; over HTTP it does not matter.
    """
    fake = FakeDevstack(root)
    fake.root.mkdir(parents=True, exist_ok=True)
    if fake.bare.exists():
        shutil.rmtree(fake.bare)
    if fake.work.exists():
        shutil.rmtree(fake.work)
    _git("init", "-q", "--bare", "--initial-branch=master", str(fake.bare))
    _git("init", "-q", "--initial-branch=master", str(fake.work))
    _git("remote", "add", "origin", str(fake.bare), cwd=fake.work)
    write_files(fake.work, sleep=sleep, require_sudo=require_sudo, version=version)
    _git("add", "-A", cwd=fake.work)
    _git("commit", "-q", "-m", "fake devstack", cwd=fake.work)
    _git("push", "-q", "origin", "master", cwd=fake.work)
    fake._update_server_info()  # pylint: disable=protected-access
    for dirpath, dirnames, filenames in os.walk(fake.root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode | 0o444)
    if owner is not None:
        for dirpath, dirnames, filenames in os.walk(fake.bare):
            shutil.chown(dirpath, owner)
            for name in filenames:
                shutil.chown(os.path.join(dirpath, name), owner)
    return fake


def records(dest, event=None):
    """The records a node's stand-in wrote under ``<dest>/fake-devstack``, oldest first."""
    rdir = pathlib.Path(dest) / "fake-devstack"
    out = []
    if rdir.is_dir():
        for f in rdir.glob("*.json"):
            rec = json.loads(f.read_text(encoding="utf-8"))
            if event is None or rec["event"] == event:
                out.append(rec)
    return sorted(out, key=lambda r: r["start"])
