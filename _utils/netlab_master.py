"""
What the two runners (``netlab`` and ``devstack``, on the master) share: the lab
from the master-side pillar, one way to refuse a request, and the parsing of
options that arrive as strings from ``salt-run`` or as YAML from an
orchestration.

Refusal convention: a runner function raises :class:`Refused` (through
:func:`refuse`) for a request netlab will not carry out (bad pillar, unknown
node, busy lock); :func:`guard` turns it into ``{'Error': message, 'retcode':
1}``. ``retcode`` in the return is salt-run's exit status; ``__context__
['retcode']`` is what fails an orchestration's ``salt.runner`` state: both are
set, on every Salt line.
"""

import functools
import importlib
import os
import sys

# imported with this module, while Salt's loader has _utils on sys.path (at run
# time it may not be)
import netlab_lab
import netlab_lock
import netlab_options

# the master option naming the networking node's minion id (whose pillar holds
# the lab) when the master's own id has no ``netlab`` pillar
PILLAR_ID_OPTION = "netlab_pillar_id"


class Refused(Exception):
    """A request netlab refuses: reported to the caller, not a crash."""


def refuse(message):
    raise Refused(str(message))


def refusal(context, message):
    """The return of a refused request (``context``: the runner's ``__context__``)."""
    if context is not None:
        context["retcode"] = 1
    return {"Error": str(message), "retcode": 1}


def finish(context, ret, ok=None):
    """Both exit channels set from ``ok`` (default: ``ret['result']``, absent:
    success); returns ``ret`` with its ``retcode``."""
    ok = ret.get("result", True) if ok is None else ok
    ret["retcode"] = 0 if ok else 1
    if ret["retcode"] and context is not None:
        context["retcode"] = 1
    return ret


def guard(func, refusals=()):
    """A runner function whose :class:`Refused` (and ``refusals``: the exception
    types of a user's mistake) becomes :func:`refusal`'s return."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (Refused,) + tuple(refusals) as exc:
            return refusal(func.__globals__.get("__context__"), exc)

    return wrapper


def flag(value, default=False, name="option"):
    """An on/off option (netlab_options.flag); a value that is neither refused."""
    try:
        return netlab_options.flag(value, default, name)
    except netlab_options.OptionError as exc:
        return refuse(exc)


def import_utils(names, opts=None):
    """``{name: module}`` of netlab's ``_utils``; with ``opts``, the master's synced
    ``<extension_modules>/utils`` is put on ``sys.path`` first (Salt adds it only
    while it loads the modules it knew when it started; an orchestration syncs
    during the run)."""
    if opts is not None:
        utils = os.path.join(opts.get("extension_modules", ""), "utils")
        if os.path.isdir(utils) and utils not in sys.path:
            sys.path.append(utils)
    return {name: importlib.import_module(name) for name in names}


def pillar_ids(opts):
    """The minion ids whose pillar may hold the lab, in order: the master's own id,
    the ``netlab_pillar_id`` option, then the id with or without ``_master``."""
    my_id = opts.get("id", "")
    twin = my_id[:-len("_master")] if my_id.endswith("_master") else my_id + "_master"
    return list(dict.fromkeys(i for i in (my_id, opts.get(PILLAR_ID_OPTION), twin) if i))


def compile_pillar(opts, minion_id):
    """The pillar the master compiles for ``minion_id``."""
    import salt.pillar  # pylint: disable=import-outside-toplevel

    return salt.pillar.get_pillar(opts, opts.get("grains", {}), minion_id,
                                  saltenv=opts.get("saltenv"),
                                  pillarenv=opts.get("pillarenv")).compile_pillar()


def raw_lab(opts, pillar=None, compiler=compile_pillar):
    """The ``netlab`` pillar value: from ``pillar`` (the value, or a dict holding it
    under ``netlab``) or compiled for :func:`pillar_ids`; ``None`` when none has it."""
    if pillar is not None:
        return pillar.get("netlab", pillar) if isinstance(pillar, dict) else pillar
    for minion_id in pillar_ids(opts):
        raw = compiler(opts, minion_id).get("netlab")
        if raw is not None:
            return raw
    return None


def load_lab(opts, pillar=None, compiler=compile_pillar):
    """The lab model (see :func:`raw_lab`); :class:`Refused` with the full report
    when the pillar is missing or invalid."""
    raw = raw_lab(opts, pillar, compiler)
    if raw is None:
        refuse("no 'netlab' pillar for the master (compiled for {}); target the lab SLS "
               "to '<netnode id>_master' too, or pass pillar=".format(
                   ", ".join(pillar_ids(opts))))
    try:
        return netlab_lab.load(raw)
    except netlab_lab.LabError as exc:
        return refuse(exc)


def node_list(lab, nodes):
    """Node ids from a list, a comma-separated string or ``all``; unknown ids refused."""
    if nodes is None or nodes == "":
        refuse("name the nodes (a list or comma-separated ids; 'all' for every node)")
    if isinstance(nodes, str):
        nodes = [n.strip() for n in nodes.split(",") if n.strip()]
    if nodes == ["all"]:
        return list(lab.nodes)
    unknown = [n for n in nodes if n not in lab.nodes]
    if unknown:
        refuse("not nodes of this lab: {} (known: {})".format(
            ", ".join(unknown), ", ".join(lab.nodes)))
    return list(dict.fromkeys(nodes))


def lock_wait(opts):
    """Seconds a run waits for another run's lock (master option netlab_lock_wait)."""
    try:
        return float(opts.get("netlab_lock_wait", netlab_lock.DEFAULT_WAIT))
    except (TypeError, ValueError):
        return netlab_lock.DEFAULT_WAIT


# How long a job to a lab node waits for the node to say "still running"
# (saltutil.find_job) before counting it gone. Salt's default is 10 s; a node
# busy with a state run on a slow CPU (an old NUC compiling) can take longer to
# fork that answer, and a node counted gone in the middle of its state run fails
# the deploy for nothing.
FIND_JOB_TIMEOUT = 30
# A node with the ``virtual`` power driver is a qemu guest. Where KVM cannot run
# it, its CPU is emulated (TCG), many times slower: busy with a state run on a
# host that is busy too, it has taken longer than a minute to answer. The cost
# of the longer wait falls only on a virtual node that really died mid-job.
FIND_JOB_TIMEOUT_VIRTUAL = 120


def job_kwargs(opts, lab=None, targets=()):
    """Keyword arguments for the local client's long jobs to lab nodes (state
    runs, stack.sh, syncs): Salt's ``gather_job_timeout`` from the master config,
    at least :data:`FIND_JOB_TIMEOUT`, or :data:`FIND_JOB_TIMEOUT_VIRTUAL` when
    one of ``targets`` (node ids of ``lab``) is a virtual machine. Not for
    ``test.ping``: a live minion answers it at once, and a longer wait only
    delays naming a node that is off."""
    try:
        configured = int(opts.get("gather_job_timeout") or 0)
    except (TypeError, ValueError):
        configured = 0
    floor = FIND_JOB_TIMEOUT
    if lab is not None and any(
            n in lab.nodes and lab.nodes[n].power_driver == "virtual" for n in targets):
        floor = FIND_JOB_TIMEOUT_VIRTUAL
    return {"gather_job_timeout": max(configured, floor)}


def seconds(value, name="timeout"):
    """A positive number of seconds; refused otherwise."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        refuse("{} must be a number of seconds, not {!r}".format(name, value))
    if value <= 0:
        refuse("{} must be positive".format(name))
    return value
