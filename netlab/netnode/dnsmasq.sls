# -*- coding: utf-8 -*-
# vim: ft=sls
# DHCP (full | proxy | off), TFTP and DNS with dnsmasq, on network:interface only.
# full mode: the rogue-DHCP guard probes the segment first and refuses when another
# DHCP server answers. The config is checked (dnsmasq --test) before it replaces
# the old one; dnsmasq restarts once, only when its config (or lease file) changed.
{%- from tpldir ~ "/libdata.jinja" import report, boot, mapdata, files with context %}
{%- from tpldir.split('/')[0] ~ "/libdaemon.jinja" import running %}
include:
  - .check
  - .bootfiles
{%- if report.valid %}
{%- set d = boot.dnsmasq %}
{%- set conf = mapdata.dnsmasq.conf %}

{%- if mapdata.install_packages %}

netlab-netnode-dnsmasq-pkg-installed:
  pkg.installed:
    - pkgs: {{ mapdata.pkgs.dhcp | json }}
    - require_in:
      - file: netlab-netnode-dnsmasq-file-managed-conf
{%- endif %}

{%- if boot.dhcp_mode == 'full' %}

netlab-netnode-dnsmasq-netlab_daemon-dhcp_guard:
  netlab_daemon.dhcp_guard:
    - name: {{ ('rogue-DHCP guard on ' ~ boot.interface) | json }}
    - interface: {{ boot.interface | json }}
    - timeout: {{ boot.probe_timeout | json }}
    - own: {{ [boot.netnode_ip] | json }}
    - allow_other_servers: {{ boot.allow_other_servers | json }}
    - require_in:
      - file: netlab-netnode-dnsmasq-file-managed-conf
{%- endif %}

{%- if boot.dhcp_mode != 'off' %}

# leases of machines that left the pillar go with their dhcp-host line
netlab-netnode-dnsmasq-netlab_daemon-leases_pruned:
  netlab_daemon.leases_pruned:
    - name: {{ d.leasefile | json }}
    - require:
      - file: netlab-netnode-dnsmasq-file-managed-conf
{%- endif %}

netlab-netnode-dnsmasq-file-managed-conf:
  file.managed:
    - name: {{ conf | json }}
    - source: {{ (files ~ '/dnsmasq.conf.jinja') | json }}
    - template: jinja
    - context:
        d: {{ boot.dnsmasq | json }}  # yamllint disable-line rule:line-length
    - mode: '0644'
    - makedirs: true
    - check_cmd: {{ mapdata.dnsmasq.binary }} --test -C
    - require:
      - sls: {{ tpldir | replace('/', '.') }}.bootfiles

{%- set leases = [{'netlab_daemon': 'netlab-netnode-dnsmasq-netlab_daemon-leases_pruned'}]
                 if boot.dhcp_mode != 'off' else [] %}
{{- running('netlab-netnode-dnsmasq', '', boot.daemons.dnsmasq,
            watch=[{'file': 'netlab-netnode-dnsmasq-file-managed-conf'}] + leases) }}
{%- endif %}
