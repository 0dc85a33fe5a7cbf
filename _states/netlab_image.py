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

try:
    import netlab_image_state

    HAS_LIBS = True
except ImportError:  # pragma: no cover
    HAS_LIBS = False

__virtualname__ = "netlab_image"


def __virtual__():
    if not HAS_LIBS:
        return (False, "netlab's _utils are not synced; run saltutil.sync_all")
    if "netlab_image.plan" not in __salt__:  # pylint: disable=undefined-variable
        return (False, "the netlab_image execution module is not available "
                       "(sync netlab's _modules and _utils)")
    return __virtualname__


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
    saltenv = saltenv or globals().get("__env__") or "base"
    call = __salt__  # pylint: disable=undefined-variable
    return netlab_image_state.built(
        name, lambda: call["netlab_image.plan"](files=files, force=force, saltenv=saltenv),
        lambda: call["netlab_image.build"](
            force=force, files=files, keep=keep, protect=protect, lock_wait=lock_wait,
            saltenv=saltenv),
        bool(__opts__["test"]), errors=(CommandExecutionError,))  # pylint: disable=undefined-variable


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
