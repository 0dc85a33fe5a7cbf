# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- First state of every netlab.node SLS: fail with the full report, before any
    change, when this minion has no usable slice of the lab (pillar netlab_node
    from netlab's ext_pillar) or the lab pillar on the master is invalid.
    Other netlab.node SLS include this file and require its state. #}

netlab-node-check-devstack-node_valid:
  devstack.node_valid:
    - name: {{ grains['id'] | json }}
