# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- netlab.deploy: from pillar to a stacked multi-node DevStack.

      salt-run state.orchestrate netlab.deploy
      salt-run state.orchestrate netlab.deploy pillar='{"netlab_deploy": {"force": true} }'

    First syncs netlab's custom modules to the master, then runs the deploy
    itself (netlab.orch.deploy), which needs those modules to render: validate
    the pillar (stop with the full report, nothing changed) -> preflight
    (netlab.preflight: stop with every problem found, nothing changed) -> sync minions ->
    networking node -> image -> every node up -> prepare + local.conf ->
    stack.sh on the controller -> stack.sh on every compute at once -> host
    discovery -> summary. Options (orchestration pillar netlab_deploy):
      netnode: false        skip the networking node SLS (netlab.netnode)
      image: false          skip the image build (netlab.image)
      boot: false           do not boot/reimage nodes (use the minions that answer)
      boot_timeout: 900     seconds to wait for booting minions
      force: true           stack nodes that are ready already, too
      checkout: false       do not clone/update DevStack on the nodes
      stack: false          stop after the nodes have their local.conf
      preflight: false      skip the preflight checks (or a list: only those)
    See docs/operations.rst. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- set options = salt['pillar.get']('netlab_deploy', {}) %}

netlab-deploy-salt-runner-saltutil-sync_all:
  salt.runner:
    - name: saltutil.sync_all

netlab-deploy-salt-runner-state-orchestrate:
  salt.runner:
    - name: state.orchestrate
    - mods: {{ tplroot }}.orch.deploy
    - pillar: {{ {'netlab_deploy': options} | json }}
    - require:
      - salt: netlab-deploy-salt-runner-saltutil-sync_all
