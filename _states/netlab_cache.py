"""
The networking node's LAN cache, as states (``netlab.cache`` SLS).

.. code-block:: yaml

    netlab-cache-refreshed:
      netlab_cache.refreshed:
        - name: netlab cache

Refreshes the git mirrors and fetches missing files (``netlab.cache_refresh``);
a mirror that could not be updated keeps serving its last good copy, and the
comment says so. Fails only when something the lab needs is not served at all.
"""

__virtualname__ = "netlab_cache"


def __virtual__():
    if "netlab.cache_refresh" not in __salt__:  # pylint: disable=undefined-variable
        return (False, "the netlab execution module is not loaded (saltutil.sync_all)")
    return __virtualname__


def refreshed(name, git=True, files=True):
    """Git mirrors up to date and every pillar file cached."""
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    if __opts__.get("test"):  # pylint: disable=undefined-variable
        ret["result"] = None
        ret["comment"] = "the git mirrors would be refreshed and missing files fetched"
        return ret
    res = __salt__["netlab.cache_refresh"](git=git, files=files)  # pylint: disable=undefined-variable
    ret.update(result=res["result"], comment=res["comment"], changes=res["changes"])
    return ret


def bounded(name):
    """The apt and pip caches within their ``max_size``."""
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    usage = __salt__["netlab.cache_usage"]()  # pylint: disable=undefined-variable
    over = [p for p in ("apt", "pip") if usage[p]["over"]]
    if not over:
        ret["comment"] = "; ".join("{} {}".format(p, u["summary"])
                                   for p, u in usage.items() if u["enabled"])
        return ret
    if __opts__.get("test"):  # pylint: disable=undefined-variable
        ret["result"] = None
        ret["comment"] = "would prune: " + ", ".join(over)
        return ret
    removed = __salt__["netlab.cache_prune"]()  # pylint: disable=undefined-variable
    ret["changes"] = {p: "{} file(s) removed".format(len(f)) for p, f in removed.items() if f}
    ret["comment"] = "pruned the least recently used packages of: " + ", ".join(over)
    return ret
