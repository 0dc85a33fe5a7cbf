# -*- coding: utf-8 -*-
# vim: ft=sls
# DHCP (full | proxy | off), TFTP and DNS with dnsmasq, on network:interface only.
# full mode: the rogue-DHCP guard probes the segment first and refuses when another
# DHCP server answers. The config is checked (dnsmasq --test) before it replaces
# the old one; dnsmasq restarts once, only when its config (or lease file) changed.
{%- from tpldir ~ "/libdata.jinja" import report, boot, mapdata, control, run_dir, files
    with context %}
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

{%- if control == 'service' %}

netlab-netnode-dnsmasq-service-running:
  service.running:
    - name: {{ mapdata.dnsmasq.service | json }}
    - enable: true
    - watch:
      - file: netlab-netnode-dnsmasq-file-managed-conf
{%-   if boot.dhcp_mode != 'off' %}
      - netlab_daemon: netlab-netnode-dnsmasq-netlab_daemon-leases_pruned
{%-   endif %}
{%- elif control == 'process' %}

netlab-netnode-dnsmasq-netlab_daemon-running:
  netlab_daemon.running:
    - name: dnsmasq
    # the state keeps the pid file; dnsmasq writes none (--pid-file= empty): its own
    # unlink + O_EXCL create would race with the state's write
    - cmd: {{ [mapdata.dnsmasq.binary, '-k', '-C', conf, '--pid-file='] | json }}
    - pidfile: {{ (run_dir ~ '/dnsmasq.pid') | json }}
    - log: {{ (run_dir ~ '/dnsmasq.out') | json }}
    - watch:
      - file: netlab-netnode-dnsmasq-file-managed-conf
{%-   if boot.dhcp_mode != 'off' %}
      - netlab_daemon: netlab-netnode-dnsmasq-netlab_daemon-leases_pruned
{%-   endif %}
{%- endif %}
{%- endif %}
