"""netlab_stack: checkout source, waves, what to stack, bring-up plan, summary."""

import copy

import pytest

import netlab_lab
import netlab_stack


@pytest.fixture
def lab(example_pillar):
    return netlab_lab.load(copy.deepcopy(example_pillar))


def test_checkout_source_is_the_repo_and_branch_from_pillar():
    src = netlab_stack.checkout_source({"repo": "https://example.org/ds.git",
                                        "branch": "stable/2025.1", "git_base": None})
    assert src == {"repo": "https://example.org/ds.git", "branch": "stable/2025.1"}


def test_git_base_mirror_replaces_the_default_repo_only():
    mirror = "http://192.168.42.2:8080/git/"
    src = netlab_stack.checkout_source({"repo": netlab_lab.DEVSTACK_DEFAULTS["repo"],
                                        "branch": "master", "git_base": mirror})
    assert src["repo"] == "http://192.168.42.2:8080/git/openstack/devstack.git"
    own = netlab_stack.checkout_source({"repo": "file:///srv/devstack.git",
                                        "branch": "master", "git_base": mirror})
    assert own["repo"] == "file:///srv/devstack.git"


def test_waves_controller_first_then_every_compute(lab):
    assert netlab_stack.wave(lab, "controller") == ["nuc1"]
    assert netlab_stack.wave(lab, "compute") == ["nuc2", "nuc3"]
    assert netlab_stack.wave(lab) == ["nuc1", "nuc2", "nuc3"]
    assert netlab_stack.wave(lab, nodes="nuc3,nuc1") == ["nuc1", "nuc3"]


def test_unknown_node_or_role_is_named(lab):
    with pytest.raises(netlab_stack.StackError, match="nuc9"):
        netlab_stack.wave(lab, nodes=["nuc9"])
    with pytest.raises(netlab_stack.StackError, match="'storage'"):
        netlab_stack.wave(lab, "storage")


def test_plan_skips_ready_nodes_unless_forced():
    states = {"nuc2": "ready", "nuc3": "failed"}
    assert netlab_stack.plan(["nuc2", "nuc3"], states) == (["nuc3"], ["nuc2"])
    assert netlab_stack.plan(["nuc2", "nuc3"], states, force=True) == (["nuc2", "nuc3"], [])


def test_bring_up_plan(lab):
    plan = netlab_stack.bring_up_plan(
        lab, states={"nuc1": "ready", "nuc2": "ready", "nuc3": "registered"},
        answering=["nuc1"], stacked_roles={"nuc1": "controller", "nuc2": "compute"})
    assert plan["up"] == ["nuc1"]
    assert plan["boot"] == ["nuc2"]          # known, does not answer
    assert plan["reimage"] == ["nuc3"]       # never set up
    changed = netlab_stack.bring_up_plan(
        lab, states={"nuc1": "ready", "nuc2": "ready", "nuc3": "ready"},
        answering=["nuc1", "nuc2", "nuc3"],
        stacked_roles={"nuc1": "controller", "nuc2": "controller", "nuc3": "compute"})
    assert changed["reimage"] == ["nuc2"]
    assert "role changed from controller to compute" in changed["reasons"]["nuc2"]
    assert changed["up"] == ["nuc1", "nuc3"]


def test_outcome_of_a_failure_names_the_last_log_line():
    out = netlab_stack.outcome("nuc2", {"result": False, "retcode": 1, "duration": 12.4,
                                        "log": "/opt/stack/logs/netlab-stack.log",
                                        "log_tail": "step 3\nERROR: no database\n\n"},
                               role="compute")
    assert out["result"] is False and out["role"] == "compute"
    assert out["reason"] == "stack.sh failed after 12 s (exit 1): ERROR: no database"
    silent = netlab_stack.outcome("nuc3", None)
    assert "no answer" in silent["reason"] and "salt nuc3 test.ping" in silent["reason"]


def test_summary_lists_ready_and_failed_with_log_tail(lab, tmp_path):
    ok = netlab_stack.outcome("nuc1", {"result": True, "retcode": 0, "duration": 75,
                                       "log": "/l", "log_tail": "done"}, "controller")
    bad = netlab_stack.outcome("nuc3", {"result": False, "retcode": 1, "duration": 5,
                                        "log": "/opt/stack/logs/netlab-stack.log",
                                        "log_tail": "a\nb\nERROR: boom"}, "compute")
    netlab_stack.save_results(str(tmp_path), [ok, bad])
    results = netlab_stack.load_results(str(tmp_path))
    assert netlab_stack.stacked_roles(results) == {"nuc1": "controller", "nuc3": "compute"}
    rows = [{"node": "nuc1", "state": "ready", "result": "stacked in 75 s"},
            {"node": "nuc2", "state": "up", "result": None},
            {"node": "nuc3", "state": "failed", "result": bad["reason"]}]
    out = netlab_stack.summary(lab, rows, results)
    assert out["ready"] == ["nuc1"]
    assert out["pending"] == {"nuc2": "up"}
    assert out["failed"]["nuc3"]["log_tail"] == "a\nb\nERROR: boom"
    text = out["text"]
    assert "1 of 3 nodes ready" in text
    assert "FAILED  nuc3" in text and "| ERROR: boom" in text
    assert "stacked in 75 s" in text


def test_tail():
    assert netlab_stack.tail("1\n2\n3\n", 2) == "2\n3"
    assert netlab_stack.tail("", 2) == ""


# --------------------------------------------------------------------------- masking
STACK_LOG = """2026-11-30 10:00:01.123 | + lib/keystone:main:12 : local ADMIN_PASSWORD=s3cret-Admin
2026-11-30 10:00:02.456 | ++ export OS_PASSWORD=s3cret-Admin
2026-11-30 10:00:03.000 | + mysql -uroot -ps3cret-DB -h 127.0.0.1
2026-11-30 10:00:04.000 | connection = mysql+pymysql://root:s3cret-DB@192.168.42.11/nova
2026-11-30 10:00:05.000 | service_token: abcdef123456
2026-11-30 10:00:06.000 | stack.sh failed: keystone did not start"""


def test_log_tails_are_masked_like_local_conf_diffs():
    import netlab_localconf

    secrets = netlab_localconf.secret_values({
        "ADMIN_PASSWORD": "s3cret-Admin", "DATABASE_PASSWORD": "s3cret-DB",
        "RABBIT_PASSWORD": "$ADMIN_PASSWORD", "LOGFILE": "/opt/stack/logs/stack.sh.log"})
    assert secrets == {"s3cret-Admin", "s3cret-DB"}
    text = netlab_localconf.mask_log(STACK_LOG, secrets)
    assert "s3cret" not in text
    assert "abcdef123456" not in text
    assert "ADMIN_PASSWORD=******" in text and "root:******@192.168.42.11" in text
    assert text.splitlines()[-1].endswith("stack.sh failed: keystone did not start")


def test_outcome_masks_the_tail_the_master_keeps():
    out = netlab_stack.outcome("nuc2", {"result": False, "retcode": 1, "duration": 3,
                                        "log_tail": "OS_PASSWORD=hunter22\nboom"},
                               "compute")
    assert "hunter22" not in out["log_tail"] and "hunter22" not in out["reason"]


def test_outcome_masks_with_the_masters_own_secrets_what_a_node_sent_unmasked(
        example_pillar):
    """A node (broken, or hostile) may return its tail, its comment or an error
    unmasked: the master masks them again, also the bare values of the node's
    secret-named localrc variables, which it knows from pillar."""
    raw = copy.deepcopy(example_pillar)
    raw["devstack"]["localrc"]["ADMIN_PASSWORD"] = "s3cret-Admin"
    lab = netlab_lab.load(raw)
    secrets = netlab_stack.node_secrets(lab, "nuc2")
    assert "s3cret-Admin" in secrets
    assert netlab_stack.node_secrets(lab, "gone") == set()
    leak = "keystone-manage bootstrap --bootstrap-password s3cret-Admin"
    out = netlab_stack.outcome("nuc2", {"result": False, "retcode": 1, "duration": 3,
                                        "log_tail": leak + "\nboom"}, "compute", secrets=secrets)
    assert "s3cret-Admin" not in out["log_tail"] and "--bootstrap-password ******" in \
        out["log_tail"]
    said = netlab_stack.outcome("nuc2", {"result": False, "comment": leak}, secrets=secrets)
    raised = netlab_stack.outcome("nuc2", "ERROR: " + leak, secrets=secrets)
    for reason in (said["reason"], raised["reason"]):
        assert "s3cret-Admin" not in reason and "******" in reason


def test_a_lab_node_finds_its_secrets_in_the_local_conf_it_was_given(example_pillar):
    """A lab node gets no pillar localrc: the literal secrets its log tails are
    masked with come from its rendered local.conf, quoted values included."""
    import netlab_localconf

    raw = copy.deepcopy(example_pillar)
    raw["devstack"]["localrc"].update(ADMIN_PASSWORD="s3cret-Admin",
                                      SERVICE_PASSWORD='sp ace"d`q\\x$-9',
                                      RABBIT_PASSWORD='pre\\$ADMIN_PASSWORD')
    text = netlab_localconf.render(netlab_lab.load(raw), "nuc2")
    # DATABASE_PASSWORD=$ADMIN_PASSWORD is a reference: masked where its target is
    assert netlab_localconf.localrc_secrets(text) == {"s3cret-Admin", 'sp ace"d`q\\x$-9'}
    assert netlab_localconf.localrc_secrets("") == set()
