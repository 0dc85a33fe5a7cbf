# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- A lab node, set up from its slice of the lab (pillar netlab_node).
    Salt runs included SLS in the order listed: the check first, then
    the node preparation (packages, stack user) and the DevStack checkout,
    then the local.conf inside that checkout. Add new parts to this list. #}
{%- set tplroot = tpldir.split('/')[0] %}

include:
  - {{ tplroot }}.node.check
  - {{ tplroot }}.node.prepare
  - {{ tplroot }}.node.localconf
