# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- netlab.restack: unstack.sh + stack.sh again, e.g. after changing local.conf
    settings or devstack:repo / devstack:branch in pillar (the checkout follows
    pillar before stack.sh runs).

      salt-run state.orchestrate netlab.restack
      salt-run state.orchestrate netlab.restack pillar='{"netlab_restack": {"computes_only": true} }'
      salt-run state.orchestrate netlab.restack pillar='{"netlab_restack": {"nodes": ["nuc3"]} }'

    Options (orchestration pillar netlab_restack):
      computes_only: true   leave the controller running, restack every compute
      nodes: [ids]          restack only these nodes
    See docs/operations.rst. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- set options = salt['pillar.get']('netlab_restack', {}) %}

netlab-restack-salt-runner-saltutil-sync_all:
  salt.runner:
    - name: saltutil.sync_all

netlab-restack-salt-runner-state-orchestrate:
  salt.runner:
    - name: state.orchestrate
    - mods: {{ tplroot }}.orch.restack
    - pillar: {{ {'netlab_restack': options} | json }}
    - require:
      - salt: netlab-restack-salt-runner-saltutil-sync_all
