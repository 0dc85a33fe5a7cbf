# -*- coding: utf-8 -*-
# vim: ft=sls
{#- Orchestration: reimage lab nodes (power off, fresh root, power on, wait for
    the minion). Runs on the master (= the networking node):

      salt-run state.orchestrate netlab.reimage pillar='{"nodes": ["nuc2", "nuc3"]}'
      salt-run state.orchestrate netlab.reimage pillar='{"nodes": "all", "timeout": 900}'

    Follow it with: salt-run state.event 'netlab/node/*' pretty=True #}
{%- set nodes = salt['pillar.get']('nodes', []) %}
{%- set timeout = salt['pillar.get']('timeout', 600) %}

netlab-reimage-netlab-check:
  salt.runner:
    - name: netlab.check

{%- if not nodes %}

netlab-reimage-nodes-missing:
  test.fail_without_changes:
    - name: >-
        pillar nodes is required: salt-run state.orchestrate netlab.reimage
        pillar='{"nodes": ["<node id>", ...]}' (or "all")
    - require:
      - salt: netlab-reimage-netlab-check
{%- else %}

netlab-reimage-netlab-reimage:
  salt.runner:
    - name: netlab.reimage
    - nodes: {{ nodes | json }}
    - timeout: {{ timeout | json }}
    - require:
      - salt: netlab-reimage-netlab-check
{%- endif %}
