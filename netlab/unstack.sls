# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- netlab.unstack: unstack.sh on the lab's nodes at once (DevStack's services
    stop; the nodes stay up, their state goes back from ready to up).

      salt-run state.orchestrate netlab.unstack
      salt-run state.orchestrate netlab.unstack pillar='{"netlab_unstack": {"computes_only": true} }'
      salt-run state.orchestrate netlab.unstack pillar='{"netlab_unstack": {"nodes": ["nuc3"]} }'

    The node list and the options are read by the runner (devstack.unstack), so
    this file renders without netlab's modules; they are synced first. #}
{%- set options = salt['pillar.get']('netlab_unstack', {}) %}

netlab-unstack-salt-runner-saltutil-sync_all:
  salt.runner:
    - name: saltutil.sync_all

# a run of its own: a node whose unstack.sh fails is recorded in it, not in the
# last deploy's or restack's run
netlab-unstack-salt-runner-devstack-begin:
  salt.runner:
    - name: devstack.begin
    - kind: unstack
    - require:
      - salt: netlab-unstack-salt-runner-saltutil-sync_all

netlab-unstack-salt-runner-unstack:
  salt.runner:
    - name: devstack.unstack
    - nodes: {{ options.get('nodes') | json }}
    - computes_only: {{ options.get('computes_only') | json }}
    - require:
      - salt: netlab-unstack-salt-runner-devstack-begin
