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
{%- set report = salt['netlab.validate']() %}
{#- the options, normalised by the netlab module (defaults, any on/off spelling) #}
{%- set run = salt['netlab.orchestration']('deploy', options) %}
{%- from tplroot ~ "/libcheck.jinja" import invalid_pillar with context %}
{%- if not report.valid %}
{{ invalid_pillar('netlab-orch-deploy-check-netlab-invalid_pillar', report) }}
{%- elif run.error %}

netlab-orch-deploy-test-fail_without_changes:
  test.fail_without_changes:
    - name: netlab-orch-deploy-check
    - comment: {{ (run.error ~ '; nothing was changed') | json }}
{%- else %}
{%- set opt = run.options %}
{%- set lab = salt['netlab.lab']() %}
{%- set netnode = lab.netnode.id %}
{#- every node step requires the whole-lab steps: when the networking node or the
    image fails, no node is reimaged, booted, prepared or stacked #}
{%- set prereq = ['netlab-orch-deploy-salt-function-sync_all-netnode'] %}
{%- macro require_prereq() %}
    - require:
{%- for sid in prereq %}
      - salt: {{ sid }}
{%- endfor %}
{%- endmacro %}

# a new run: nodes that fail in it are left out of the later steps
netlab-orch-deploy-salt-runner-begin:
  salt.runner:
    - name: devstack.begin
    - kind: deploy

# every problem a deploy would run into, reported at once before anything changes
# (salt-run netlab.preflight; netlab_deploy:preflight false skips it); every later
# step requires it, the summary names its problems
{%- do prereq.append('netlab-orch-deploy-salt-runner-preflight') %}
netlab-orch-deploy-salt-runner-preflight:
  salt.runner:
    - name: netlab.preflight
    - deploy: {{ options | tojson }}

netlab-orch-deploy-salt-function-sync_all-netnode:
  salt.function:
    - name: saltutil.sync_all
    - tgt: {{ netnode | json }}
    - require:
      - salt: netlab-orch-deploy-salt-runner-preflight
{%- for step, sls in [('netnode', tplroot ~ '.netnode'), ('image', tplroot ~ '.image')] %}
{%- if opt[step] %}
{%- do prereq.append('netlab-orch-deploy-salt-state-' ~ step) %}

netlab-orch-deploy-salt-state-{{ step }}:
  salt.state:
    - tgt: {{ netnode | json }}
    - sls:
      - {{ sls }}
    - require:
      - salt: netlab-orch-deploy-salt-function-sync_all-netnode

# names the failing state in the run's summary
netlab-orch-deploy-salt-runner-step_failed-{{ step }}:
  salt.runner:
    - name: devstack.step_failed
    - step: {{ 'networking node' if step == 'netnode' else 'image build' }}
    - sls: {{ sls }}
    - onfail:
      - salt: netlab-orch-deploy-salt-state-{{ step }}
{%- endif %}
{%- endfor %}

# nodes removed from pillar: their minion keys go (boot answer/export: netlab.netnode)
netlab-orch-deploy-salt-runner-forget_removed:
  salt.runner:
    - name: devstack.forget_removed
{{- require_prereq() }}
{%- if opt.boot %}

netlab-orch-deploy-salt-runner-bring_up:
  salt.runner:
    - name: devstack.bring_up
    - timeout: {{ opt.boot_timeout }}
{{- require_prereq() }}
{%- endif %}

# sync, pillar refresh, then packages, stack user, DevStack checkout at
# devstack:repo/branch, local.conf -- on every node that is up; a node that
# fails is left out of the later steps, the others go on
netlab-orch-deploy-salt-runner-prepare:
  salt.runner:
    - name: devstack.prepare
    - sls: {{ tplroot }}.node
    - checkout: {{ opt.checkout | tojson }}
{{- require_prereq() }}
{%- if opt.stack %}

# the controller first: computes register with its database, queue and APIs
# (when it fails, the computes step stacks none of them and says why)
netlab-orch-deploy-salt-runner-stack-controller:
  salt.runner:
    - name: devstack.stack
    - role: controller
    - force: {{ opt.force | tojson }}
{{- require_prereq() }}

# every compute at once (one job, list target); one failing stops no other
netlab-orch-deploy-salt-runner-stack-computes:
  salt.runner:
    - name: devstack.stack
    - role: compute
    - force: {{ opt.force | tojson }}
{{- require_prereq() }}

netlab-orch-deploy-salt-runner-discover:
  salt.runner:
    - name: devstack.discover
{{- require_prereq() }}
{%- endif %}

# always runs: the nodes' states and the first failure of this run with its log
netlab-orch-deploy-salt-runner-summary:
  salt.runner:
    - name: devstack.summary
    - stacked: {{ opt.stack | tojson }}
{%- endif %}
