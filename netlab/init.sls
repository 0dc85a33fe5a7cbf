# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- state.apply netlab does the right thing on every minion of a lab:
    - the networking node (it has the whole `netlab` pillar): netnode + image;
    - a lab node (it has its slice `netlab_node`): stack user, checkout, local.conf;
    - any other minion: a failure that says why, and no change. #}
{%- if salt['pillar.get']('netlab_node') %}
include:
  - .node
{%- elif salt['pillar.get']('netlab') %}
include:
  - .netnode
  - .cache
  - .image
{%- else %}

netlab-init-test-fail_without_changes:
  test.fail_without_changes:
    - name: {{ (grains['id'] ~ " is neither the networking node (pillar netlab) nor a lab"
                ~ " node (pillar netlab_node from netlab's ext_pillar); see docs/pillar.rst.")
               | json }}
{%- endif %}
