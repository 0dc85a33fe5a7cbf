# -*- coding: utf-8 -*-
# vim: ft=sls
# The commands the lab's power drivers run here (ipmitool for ipmi, ping for the
# wol driver's wait for a node to go off): installed only for drivers a node in
# pillar uses (netlab_netnode.power_packages).
{%- from tpldir ~ "/libdata.jinja" import report, boot, mapdata with context %}
include:
  - .check
{%- if report.valid and mapdata.install_packages and boot.power_pkgs %}

netlab-netnode-power-pkg-installed:
  pkg.installed:
    - pkgs: {{ boot.power_pkgs | json }}
{%- endif %}
