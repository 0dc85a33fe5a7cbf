"""The run record that lets orchestration steps stop where a prerequisite failed."""

import json
import os

import netlab_run


def test_begin_starts_a_clean_record(tmp_path):
    state = str(tmp_path / "state")
    netlab_run.add_failure(state, "stack.sh", "old failure", node="cmp1")
    rec = netlab_run.begin(state, "deploy", now=100.0)
    assert rec["kind"] == "deploy" and rec["failures"] == []
    assert netlab_run.excluded(netlab_run.read(state)) == []
    assert oct(os.stat(os.path.join(state, "run.json")).st_mode & 0o777) == "0o600"


def test_failed_nodes_are_excluded_and_the_first_failure_named(tmp_path):
    state = str(tmp_path)
    netlab_run.begin(state, "deploy", now=1.0)
    netlab_run.add_failure(state, "boot", "no start event (console log: /x/serial.log)",
                           node="cmp2", now=5.0)
    netlab_run.add_failure(state, "stack.sh", "exit 1", node="ctl", log="/opt/stack/l.log",
                           log_tail="a\nb\nERROR here", now=9.0)
    rec = netlab_run.read(state)
    assert netlab_run.excluded(rec) == ["cmp2", "ctl"]
    assert netlab_run.blocked(rec) is None
    first = netlab_run.first_failure(rec)
    assert first["node"] == "cmp2" and first["step"] == "boot"
    lines = netlab_run.summary_lines(rec)
    assert lines[0] == ("first failure: boot failed on node cmp2: no start event "
                        "(console log: /x/serial.log)")
    assert lines[-1] == "also: stack.sh failed on node ctl: exit 1"


def test_whole_run_failure_blocks_and_shows_its_log(tmp_path):
    state = str(tmp_path)
    netlab_run.begin(state, "deploy")
    cause = "mmdebstrap failed (exit 1); last lines of /srv/netlab/images/last-failure.log:"
    netlab_run.add_failure(state, "image build", cause,
                           log=netlab_run.log_path(cause), log_tail="E: cannot reach mirror")
    rec = netlab_run.read(state)
    assert netlab_run.blocked(rec)["step"] == "image build"
    assert netlab_run.excluded(rec) == []
    lines = netlab_run.summary_lines(rec)
    assert lines[0].startswith("first failure: image build failed on the networking node: ")
    assert "  log: /srv/netlab/images/last-failure.log" in lines
    assert "  | E: cannot reach mirror" in lines


def test_a_record_that_cannot_be_read_is_no_run(tmp_path):
    (tmp_path / "run.json").write_text("{not json")
    assert netlab_run.read(str(tmp_path)) is None
    (tmp_path / "run.json").write_text(json.dumps([1, 2]))
    assert netlab_run.read(str(tmp_path)) is None
    assert netlab_run.summary_lines(None) == []


def test_state_failures_in_run_order():
    ret = {
        "file_|-b_|-/b_|-managed": {"result": False, "comment": "second", "__run_num__": 4,
                                   "__id__": "b"},
        "pkg_|-a_|-a_|-installed": {"result": False, "comment": "first", "__run_num__": 1},
        "cmd_|-c_|-c_|-run": {"result": True, "comment": "ok", "__run_num__": 2},
        "cmd_|-d_|-d_|-run": {"result": None, "comment": "test", "__run_num__": 3},
    }
    assert netlab_run.state_failures(ret) == [{"id": "a", "comment": "first"},
                                              {"id": "b", "comment": "second"}]
    assert netlab_run.state_failures(["Rendering SLS 'base:netlab.node' failed"]) == [
        {"id": "(render)", "comment": "Rendering SLS 'base:netlab.node' failed"}]
    assert netlab_run.state_failures(None)[0]["id"] == "(no answer)"
    assert netlab_run.state_failures("'state.apply' is not available.")[0]["id"] == "(error)"
    assert netlab_run.state_failures({}) == []


def test_log_path_finds_the_first_log():
    assert netlab_run.log_path("see /var/log/x.log and /y.log") == "/var/log/x.log"
    assert netlab_run.log_path("no log here") is None


def test_job_applies_matches_the_sls_exactly():
    assert netlab_run.job_applies(["netlab.image"], "netlab.image")
    assert netlab_run.job_applies(["netlab.netnode,netlab.image"], "netlab.image")
    assert netlab_run.job_applies([{"mods": "netlab.image", "__kwarg__": True}], "netlab.image")
    assert not netlab_run.job_applies(["netlab.netnode.nfs"], "netlab.netnode")
    assert not netlab_run.job_applies(None, "netlab.netnode")


def test_jid_of_sorts_with_real_jids():
    import time
    now = time.time()
    jid = netlab_run.jid_of(now)
    assert len(jid) == 20 and jid.isdigit()
    assert netlab_run.jid_of(now - 60) < jid < netlab_run.jid_of(now + 60)


def test_job_return_unwraps_what_lookup_jid_gives():
    states = {"a_|-b_|-c_|-d": {"result": False, "comment": "x", "__id__": "b"}}
    assert netlab_run.job_return({"netnode": states}, "netnode") == states
    assert netlab_run.job_return({"outputter": "highstate", "data": {"netnode": states}},
                                 "netnode") == states
    assert netlab_run.job_return({}, "netnode") is None
    assert netlab_run.job_return(None, "netnode") is None


# --------------------------------------------------------------------------- lost events
class Logger:
    def __init__(self):
        self.lines = []

    def warning(self, fmt, *args):
        self.lines.append(fmt % args)


def test_a_lost_event_is_a_warning_in_the_log_and_the_summary(tmp_path):
    netlab_run.begin(str(tmp_path), "deploy")
    logger = Logger()

    def broken(data, tag):
        raise OSError("IPC socket closed")

    assert netlab_run.fire_checked(broken, "netlab/node/nuc1/up", {}, str(tmp_path),
                                   logger) is False
    # Salt's fire_event answers False when it cannot reach the master's bus at all
    assert netlab_run.fire_checked(lambda d, t: False, "netlab/stack/wave1/started", {},
                                   lambda: str(tmp_path), logger) is False
    fired = []
    assert netlab_run.fire_checked(lambda d, t: fired.append(t) or True, "netlab/x", {},
                                   str(tmp_path), logger) is True
    assert fired == ["netlab/x"]
    assert logger.lines == [
        "netlab: event netlab/node/nuc1/up was not fired: IPC socket closed",
        "netlab: event netlab/stack/wave1/started was not fired: the master's event bus "
        "did not take it"]
    lines = netlab_run.summary_lines(netlab_run.read(str(tmp_path)))
    assert lines == ["warning: event netlab/node/nuc1/up was not fired: IPC socket closed",
                     "warning: event netlab/stack/wave1/started was not fired: the "
                     "master's event bus did not take it"]
    # with a failure too: the failure first, then the warnings
    netlab_run.add_failure(str(tmp_path), "stack", "stack.sh failed", node="nuc1")
    lines = netlab_run.summary_lines(netlab_run.read(str(tmp_path)))
    assert lines[0].startswith("first failure: stack failed on node nuc1")
    assert lines[-2:] == ["warning: event netlab/node/nuc1/up was not fired: IPC socket "
                          "closed", "warning: event netlab/stack/wave1/started was not "
                          "fired: the master's event bus did not take it"]


def test_warnings_are_capped_but_counted(tmp_path):
    netlab_run.begin(str(tmp_path), "deploy")
    for i in range(netlab_run.MAX_WARNINGS + 3):
        netlab_run.add_warning(str(tmp_path), "w{}".format(i))
    lines = netlab_run.summary_lines(netlab_run.read(str(tmp_path)))
    assert len(lines) == netlab_run.MAX_WARNINGS + 1
    assert lines[-1] == "warning: ... and 3 more (see the master's log)"


def test_no_run_no_record_only_the_log(tmp_path):
    logger = Logger()
    assert netlab_run.fire_checked(lambda d, t: False, "netlab/x", {}, str(tmp_path),
                                   logger) is False
    assert netlab_run.read(str(tmp_path)) is None and len(logger.lines) == 1


def test_events_a_node_could_not_fire_become_warnings_naming_the_node():
    returns = {
        "nuc3": {"result": True, "events_lost": [
            "event netlab/node/nuc3/stack/started was not fired: the minion could not "
            "send it to the master"]},
        "nuc2": {"result": True, "events_lost": []},
        "nuc4": None,                               # no answer
        "nuc5": {"netlab-node-check": {"result": True}},  # a state run's return
    }
    assert netlab_run.lost_on_nodes(returns) == [
        "nuc3: event netlab/node/nuc3/stack/started was not fired: the minion could not "
        "send it to the master"]
    assert netlab_run.lost_on_nodes({}) == []
