# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- The steps of netlab.restack (run that one: it syncs the modules this file
    needs to render): unstack.sh with the old checkout -> checkout follows
    devstack:repo/branch, local.conf updated -> stack.sh on the controller (unless
    computes_only) -> stack.sh on the computes at once -> host discovery ->
    summary. Options: orchestration pillar netlab_restack (netlab/restack.sls). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- set report = salt['netlab.validate']() %}
{%- from tplroot ~ "/libcheck.jinja" import invalid_pillar with context %}
{%- if not report.valid %}
{{ invalid_pillar('netlab-orch-restack-check-netlab-invalid_pillar', report) }}
{%- else %}
{#- options and the nodes to act on, normalised by the netlab module #}
{%- set run = salt['netlab.orchestration']('restack') %}
{%- if run.error %}

netlab-orch-restack-test-fail_without_changes:
  test.fail_without_changes:
    - name: netlab-orch-restack-check
    - comment: {{ (run.error ~ '; nothing was changed') | json }}
{%- else %}
{%- set targets = run.targets %}
{%- set controller = run.controller %}
{%- set computes = run.computes %}

# a new run: nodes that fail in it are left out of the later steps
netlab-orch-restack-salt-runner-begin:
  salt.runner:
    - name: devstack.begin
    - kind: restack

# unstack.sh (netlab's devstack module) must be the synced one
netlab-orch-restack-salt-function-sync_all-nodes:
  salt.function:
    - name: saltutil.sync_all
    - tgt: {{ targets | join(',') | json }}
    - tgt_type: list

# unstack.sh of the checkout that stacked the node (before it moves)
netlab-orch-restack-salt-runner-unstack:
  salt.runner:
    - name: devstack.unstack
    - nodes: {{ targets | json }}

# sync, pillar refresh, checkout follows pillar, local.conf updated
netlab-orch-restack-salt-runner-prepare:
  salt.runner:
    - name: devstack.prepare
    - sls: {{ tplroot }}.node
    - nodes: {{ targets | json }}
{%- if controller %}

netlab-orch-restack-salt-runner-stack-controller:
  salt.runner:
    - name: devstack.stack
    - nodes: {{ [controller] | json }}
    - force: true
{%- endif %}
{%- if computes %}

netlab-orch-restack-salt-runner-stack-computes:
  salt.runner:
    - name: devstack.stack
    - nodes: {{ computes | json }}
    - force: true
{%- endif %}

netlab-orch-restack-salt-runner-discover:
  salt.runner:
    - name: devstack.discover

netlab-orch-restack-salt-runner-summary:
  salt.runner:
    - name: devstack.summary
{%- endif %}
{%- endif %}
