# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- The steps of netlab.deploy (run that one: it syncs the modules this file
    needs to render). Orchestration pillar netlab_deploy: see netlab/deploy.sls.
    Which nodes to boot, reimage or stack is decided when each step runs (by the
    runners devstack.bring_up / devstack.stack), from the lifecycle state, so a
    re-run only does what is left: nodes already ready are not stacked again
    (unless force), host discovery runs again. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- set options = salt['pillar.get']('netlab_deploy', {}) %}
{%- set force = options.get('force', False) in (True, 'true', 'True', 1) %}
{%- set stack = options.get('stack', True) not in (False, 'false', 'False', 0) %}
{%- set checkout = options.get('checkout', True) not in (False, 'false', 'False', 0) %}
{%- set report = salt['netlab.validate']() %}
{%- from tplroot ~ "/libcheck.jinja" import invalid_pillar with context %}
{%- if not report.valid %}
{{ invalid_pillar('netlab-orch-deploy-check-test-configurable_test_state', report) }}
{%- else %}
{%- set lab = salt['netlab.lab']() %}
{%- set netnode = lab.netnode.id %}
{%- set node_ids = lab.nodes | list %}

netlab-orch-deploy-salt-function-sync_all-netnode:
  salt.function:
    - name: saltutil.sync_all
    - tgt: {{ netnode | json }}
{%- if options.get('netnode', True) not in (False, 'false', 'False') %}

netlab-orch-deploy-salt-state-netnode:
  salt.state:
    - tgt: {{ netnode | json }}
    - sls:
      - {{ tplroot }}.netnode
    - require:
      - salt: netlab-orch-deploy-salt-function-sync_all-netnode
{%- endif %}
{%- if options.get('image', True) not in (False, 'false', 'False') %}

netlab-orch-deploy-salt-state-image:
  salt.state:
    - tgt: {{ netnode | json }}
    - sls:
      - {{ tplroot }}.image
    - require:
      - salt: netlab-orch-deploy-salt-function-sync_all-netnode
{%- endif %}

# nodes removed from pillar: their minion keys go (boot answer/export: netlab.netnode)
netlab-orch-deploy-salt-runner-forget_removed:
  salt.runner:
    - name: devstack.forget_removed
{%- if options.get('boot', True) not in (False, 'false', 'False') %}

netlab-orch-deploy-salt-runner-bring_up:
  salt.runner:
    - name: devstack.bring_up
    - timeout: {{ options.get('boot_timeout', 900) | int }}
    - require:
      - salt: netlab-orch-deploy-salt-function-sync_all-netnode
{%- endif %}

netlab-orch-deploy-salt-function-sync_all-nodes:
  salt.function:
    - name: saltutil.sync_all
    - tgt: {{ node_ids | join(',') | json }}
    - tgt_type: list

netlab-orch-deploy-salt-function-refresh_pillar-nodes:
  salt.function:
    - name: saltutil.refresh_pillar
    - tgt: {{ node_ids | join(',') | json }}
    - tgt_type: list
    - kwarg:
        wait: true

# packages, stack user, DevStack checkout at devstack:repo/branch, local.conf
netlab-orch-deploy-salt-state-node:
  salt.state:
    - tgt: {{ node_ids | join(',') | json }}
    - tgt_type: list
    - sls:
      - {{ tplroot }}.node
{%- if not checkout %}
    - pillar:
        netlab_checkout: false
{%- endif %}
{%- if stack %}

# the controller first: computes register with its database, queue and APIs
netlab-orch-deploy-salt-runner-stack-controller:
  salt.runner:
    - name: devstack.stack
    - role: controller
    - force: {{ force | tojson }}

# every compute at once (one job, list target); one failing stops no other
netlab-orch-deploy-salt-runner-stack-computes:
  salt.runner:
    - name: devstack.stack
    - role: compute
    - force: {{ force | tojson }}

netlab-orch-deploy-salt-runner-discover:
  salt.runner:
    - name: devstack.discover

netlab-orch-deploy-salt-runner-summary:
  salt.runner:
    - name: devstack.summary
{%- else %}

netlab-orch-deploy-test-succeed_without_changes-stack:
  test.succeed_without_changes:
    - name: netlab-orch-deploy-stack
    - comment: >-
        stack.sh not run (netlab_deploy:stack is false): nodes are up and have
        their local.conf{{ '' if checkout else ' (DevStack not checked out)' }}
{%- endif %}
{%- endif %}
