"""
The decisions of the ``netlab_image.built`` state, without Salt: is the current
image built from the current inputs, would test mode rebuild it, can this host
build it, and what the state reports after a build.

``plan()`` and ``build()`` are the ``netlab_image.plan`` / ``netlab_image.build``
calls of the execution module; their ``errors`` become a failed state.
"""


def summary(build):
    """What the state's changes show of a build."""
    if not build:
        return None
    return {"build_id": build.get("build_id"), "input_hash": build.get("input_hash"),
            "kernel_version": build.get("kernel_version")}


def predicted(ret, plan, cur, test):
    """Test mode's prediction, or the refusal when this host cannot build."""
    problems = plan.get("host_problems") or []
    if not test:
        ret.update(result=False, comment="Node image needs a build ({}), but this host "
                   "cannot build it: {}".format(plan["reason"], "; ".join(problems)))
        return ret
    new = {"input_hash": plan["input_hash"], "action": plan["action"],
           "reason": plan["reason"]}
    ret.update(result=None, changes={"image": {"old": summary(cur), "new": new}},
               comment="Node image would be {}: {}".format(
                   "rebuilt" if plan["action"] == "build" else "republished",
                   plan["reason"]))
    if problems:
        ret.update(result=False, comment=ret["comment"] + "; but this host cannot "
                   "build it: " + "; ".join(problems))
    return ret


def after_build(ret, res, cur, plan):
    """The state's return after the build ran."""
    if not res["changed"]:
        ret["comment"] = "Node image {} is current".format(res["build_id"])
        return ret
    ret["changes"] = {"image": {"old": summary(cur), "new": summary(res["current"])}}
    if res["action"] == "build":
        ret["comment"] = "Built node image {} in {}s ({})".format(
            res["build_id"], res["duration"], plan["reason"])
        if res.get("pruned"):
            ret["changes"]["pruned"] = res["pruned"]
    else:
        ret["comment"] = "Republished node image {} ({})".format(res["build_id"],
                                                                 plan["reason"])
    return ret


def built(name, plan, build, test, errors=()):
    """The return of ``netlab_image.built``: nothing when the inputs are unchanged,
    a prediction in test mode, a refusal when this host cannot build, else a build
    (the last good image stays current when it fails)."""
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        wanted = plan()
    except errors as exc:
        ret.update(result=False, comment=str(exc))
        return ret
    cur = wanted["current"]
    if wanted["action"] == "none":
        ret["comment"] = "Node image {} is current (input hash {})".format(
            cur["build_id"], wanted["input_hash"][:12])
        return ret
    if test or wanted.get("host_problems"):
        return predicted(ret, wanted, cur, test)
    try:
        res = build()
    except errors as exc:
        ret.update(result=False, comment="Node image build failed; {}.\n{}".format(
            "the last good image {} stays current".format(cur["build_id"]) if cur
            else "there is no image yet", exc))
        return ret
    return after_build(ret, res, cur, wanted)
