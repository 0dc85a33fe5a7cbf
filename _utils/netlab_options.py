"""
The options of netlab's orchestrations (pillar ``netlab_deploy``,
``netlab_restack``, ``netlab_unstack``) and of runner arguments, read in one
place: on/off in any spelling Salt hands over (YAML booleans, ``salt-run``'s
strings), defaults filled in, unknown values refused naming the option.

The orchestration SLS files ask ``netlab.orchestration`` for the normalised
options and the nodes to act on, so no decision is made in Jinja. Pure Python.
"""

TRUE = (True, 1, "1", "true", "True", "yes", "on")
FALSE = (False, 0, "0", "false", "False", "no", "off")

# orchestration -> {option: default}; flags are on/off, the rest as noted
DEPLOY = {"force": False, "netnode": True, "image": True, "boot": True, "stack": True,
          "checkout": True, "boot_timeout": 900, "preflight": True}
RESTACK = {"computes_only": False, "nodes": None}
UNSTACK = {"computes_only": False, "nodes": None}
KINDS = {"deploy": DEPLOY, "restack": RESTACK, "unstack": UNSTACK}
NOT_FLAGS = ("boot_timeout", "preflight", "nodes")


class OptionError(ValueError):
    """An option with a value netlab cannot read; the message names it."""


def flag(value, default=False, name="option"):
    """On/off: ``True``/``False``, ``1``/``0``, ``"true"``/``"false"``, yes/no,
    on/off; absent (``None``) or empty: ``default``."""
    if value is None or value == "":
        return default
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise OptionError("{} must be true or false, not {!r}".format(name, value))


def node_ids(value):
    """A list or a comma-separated string of node ids -> list (``[]`` when absent)."""
    if not value:
        return []
    if isinstance(value, str):
        value = value.split(",")
    return [str(n).strip() for n in value if str(n).strip()]


def orchestration(kind, options):
    """The options of orchestration ``kind`` with defaults, flags as booleans.
    Raises :class:`OptionError` naming ``netlab_<kind>:<option>``."""
    defaults = KINDS[kind]
    options = dict(options or {})
    out = {}
    for key, default in defaults.items():
        name = "netlab_{}:{}".format(kind, key)
        value = options.get(key)
        if key == "boot_timeout":
            try:
                out[key] = int(value) if value not in (None, "") else default
            except (TypeError, ValueError):
                raise OptionError("{} must be a number of seconds, not {!r}".format(
                    name, value)) from None
        elif key == "nodes":
            out[key] = node_ids(value)
        elif key == "preflight":
            out[key] = value if value not in (None, "") else default
        else:
            out[key] = flag(value, default, name)
    return out


def targets(lab, nodes=None, computes_only=False):
    """The nodes a restack or unstack acts on, in the lab's order, and the
    controller's place: ``{'targets': [...], 'controller': id or None,
    'computes': [...]}``. Unknown ids raise :class:`OptionError`."""
    wanted = node_ids(nodes)
    unknown = [n for n in wanted if n not in lab.nodes]
    if unknown:
        raise OptionError("not nodes of this lab: {} (known: {})".format(
            ", ".join(unknown), ", ".join(lab.nodes)))
    ctl = lab.controller.id
    chosen = [n for n in lab.nodes if (n in wanted if wanted else
                                       not (computes_only and n == ctl))]
    return {"targets": chosen, "controller": ctl if ctl in chosen else None,
            "computes": [n for n in chosen if n != ctl]}
