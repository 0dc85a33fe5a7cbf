"""
netlab states: the validation-first state of every netlab SLS and orchestration.

``netlab/libcheck.jinja`` renders it, alone, when the ``netlab`` pillar is invalid:

.. code-block:: yaml

    netlab-netnode-check-netlab-invalid_pillar:
      netlab.invalid_pillar:
        - name: netlab pillar
        - errors:
          - "netlab:nodes:nuc3:ip: 10.1.1.1 is outside network:cidr 192.168.42.0/24"
        - failhard: true

It fails with the full report also under ``test=True``: an invalid pillar is a
failure whether or not anything would change. Salt's own
``test.configurable_test_state`` only fails in test mode from Salt 3007 on
(``allow_test_mode_failure``), and netlab behaves the same on 3006 and 3008.
"""

__virtualname__ = "netlab"


def __virtual__():
    return __virtualname__


def invalid_pillar(name, errors):
    """
    Fail, also in test mode, with every problem of the ``netlab`` pillar.

    name
        what failed (``netlab pillar``)
    errors
        the problems, each with its pillar path (``netlab.validate``'s ``errors``)
    """
    if isinstance(errors, str):
        errors = [errors]
    lines = ["invalid netlab pillar ({} problem(s)):".format(len(errors))]
    lines += ["  {}".format(err) for err in errors]
    return {"name": name, "changes": {}, "result": False, "comment": "\n".join(lines)}
