"""
netlab_image states: the diskless node image on the networking node.

.. code-block:: yaml

    netlab-image-netlab_image-built:
      netlab_image.built:
        - name: netlab-node-image
        - files: salt://netlab/files/image

Unchanged inputs (same input hash as ``<images_dir>/current``): no change.
Changed inputs: a new build, published and switched only after it succeeded.
In test mode the state predicts the rebuild (result ``None``) without building.
"""

from salt.exceptions import CommandExecutionError

__virtualname__ = "netlab_image"


def __virtual__():
    if "netlab_image.plan" not in __salt__:  # pylint: disable=undefined-variable
        return (False, "the netlab_image execution module is not available "
                       "(sync netlab's _modules and _utils)")
    return __virtualname__


def _summary(build):
    if not build:
        return None
    return {"build_id": build.get("build_id"), "input_hash": build.get("input_hash"),
            "kernel_version": build.get("kernel_version")}


def built(name, force=False, files=None, keep=2, protect=None, lock_wait=0, saltenv=None):
    """
    Make sure the current node image was built from the current inputs.

    name
        a label for the image (not a path)
    force
        rebuild even when the inputs are unchanged (e.g. to pick up security
        updates from the mirror)
    files
        the image files (overlay, configure.sh): ``salt://netlab/files/image``
        by default, or a local directory
    keep
        builds to keep, current included (default 2)
    protect
        build ids never to delete
    lock_wait
        seconds to wait for another running build (default: fail at once)
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    saltenv = saltenv or globals().get("__env__") or "base"
    try:
        plan = __salt__["netlab_image.plan"](  # pylint: disable=undefined-variable
            files=files, force=force, saltenv=saltenv)
    except CommandExecutionError as exc:
        ret.update(result=False, comment=str(exc))
        return ret
    cur = plan["current"]
    if plan["action"] == "none":
        ret["comment"] = "Node image {} is current (input hash {})".format(
            cur["build_id"], plan["input_hash"][:12])
        return ret

    if __opts__["test"] or plan.get("host_problems"):  # pylint: disable=undefined-variable
        return _predicted(ret, plan, cur, __opts__["test"])  # pylint: disable=undefined-variable

    try:
        res = __salt__["netlab_image.build"](  # pylint: disable=undefined-variable
            force=force, files=files, keep=keep, protect=protect, lock_wait=lock_wait,
            saltenv=saltenv)
    except CommandExecutionError as exc:
        ret.update(result=False, comment="Node image build failed; {}.\n{}".format(
            "the last good image {} stays current".format(cur["build_id"]) if cur
            else "there is no image yet", exc))
        return ret
    return _built(ret, res, cur, plan)


def _predicted(ret, plan, cur, test):
    """Test mode's prediction, or the refusal when this host cannot build."""
    problems = plan.get("host_problems") or []
    if not test:
        ret.update(result=False, comment="Node image needs a build ({}), but this host "
                   "cannot build it: {}".format(plan["reason"], "; ".join(problems)))
        return ret
    new = {"input_hash": plan["input_hash"], "action": plan["action"],
           "reason": plan["reason"]}
    ret.update(result=None, changes={"image": {"old": _summary(cur), "new": new}},
               comment="Node image would be {}: {}".format(
                   "rebuilt" if plan["action"] == "build" else "republished",
                   plan["reason"]))
    if problems:
        ret.update(result=False, comment=ret["comment"] + "; but this host cannot "
                   "build it: " + "; ".join(problems))
    return ret


def _built(ret, res, cur, plan):
    """The state's return after :func:`netlab_image.build` ran."""
    if not res["changed"]:
        ret["comment"] = "Node image {} is current".format(res["build_id"])
        return ret
    ret["changes"] = {"image": {"old": _summary(cur), "new": _summary(res["current"])}}
    if res["action"] == "build":
        ret["comment"] = "Built node image {} in {}s ({})".format(
            res["build_id"], res["duration"], plan["reason"])
        if res.get("pruned"):
            ret["changes"]["pruned"] = res["pruned"]
    else:
        ret["comment"] = "Republished node image {} ({})".format(res["build_id"],
                                                                 plan["reason"])
    return ret


def absent(name):
    """
    Remove every node image build and the published boot files.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        builds = __salt__["netlab_image.builds"]()  # pylint: disable=undefined-variable
    except CommandExecutionError as exc:
        ret.update(result=False, comment=str(exc))
        return ret
    cur = __salt__["netlab_image.current"]()  # pylint: disable=undefined-variable
    if not builds and not cur:
        ret["comment"] = "No node image builds present"
        return ret
    ids = [b["build_id"] for b in builds]
    if __opts__["test"]:  # pylint: disable=undefined-variable
        ret.update(result=None, changes={"removed": ids},
                   comment="Node image builds would be removed: {}".format(", ".join(ids)))
        return ret
    try:
        removed = __salt__["netlab_image.remove"]()  # pylint: disable=undefined-variable
    except CommandExecutionError as exc:
        ret.update(result=False, comment=str(exc))
        return ret
    ret.update(changes={"removed": ids, "paths": removed},
               comment="Removed node image builds: {}".format(", ".join(ids)))
    return ret
