# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- The node's DevStack local.conf, rendered on the master from the lab model and
    handed to this node in its slice (pillar netlab_node:local_conf): owner the
    stack user, mode 0600 (it holds passwords). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- set node = salt['pillar.get']('netlab_node', {}) %}
{%- set ds = node.get('devstack') or {} %}
{#- user and dest are filled in by the lab model (devstack defaults): a slice
    without them is no slice, and the check reports that instead #}
{%- set user = ds.get('user') %}
{%- set dest = (ds.get('dest') or '').rstrip('/') %}

include:
  - {{ tplroot }}.node.check
{%- if user and dest %}

netlab-node-localconf-file-directory-dest:
  file.directory:
    - name: {{ dest | json }}
    - user: {{ user | json }}
    - mode: '0755'
    - makedirs: true
    - require:
      - devstack: netlab-node-check-devstack-node_valid

netlab-node-localconf-file-directory-devstack:
  file.directory:
    - name: {{ (dest ~ '/devstack') | json }}
    - user: {{ user | json }}
    - require:
      - file: netlab-node-localconf-file-directory-dest

netlab-node-localconf-devstack-local_conf_managed:
  devstack.local_conf_managed:
    - name: {{ (dest ~ '/devstack/local.conf') | json }}
    - user: {{ user | json }}
    - mode: '0600'
    - require:
      - devstack: netlab-node-check-devstack-node_valid
      - file: netlab-node-localconf-file-directory-devstack
{%- endif %}
