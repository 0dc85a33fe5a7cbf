# -*- coding: utf-8 -*-
# vim: ft=sls
# Undo netlab.netnode in reverse: stop the services netlab started, remove their
# netlab configs, the boot scripts and the boot binaries. Node roots and images
# (netnode:storage roots/, images/) are left alone.
{%- from tpldir ~ "/libdata.jinja" import report, boot, mapdata with context %}
{%- from tpldir.split('/')[0] ~ "/libdaemon.jinja" import stopped %}
include:
  - .check
{%- if report.valid %}
{%- set nfs = mapdata.nfs %}
{%- set daemons = boot.daemons_clean %}

{#- NFS #}
{{- stopped('netlab-netnode-clean-nfs', '-ganesha', daemons.ganesha,
            before=[{'file': 'netlab-netnode-clean-nfs-file-absent'}]) }}
{{- stopped('netlab-netnode-clean-nfs', '-rpcbind', daemons.rpcbind,
            before=[{'file': 'netlab-netnode-clean-nfs-file-absent'}]) }}

netlab-netnode-clean-nfs-file-absent:
  file.absent:
    - name: {{ nfs.exports if boot.nfs_server == 'kernel' else nfs.ganesha_conf }}

{%- if daemons.exportfs %}

netlab-netnode-clean-nfs-cmd-run-exportfs:
  cmd.run:
    - name: {{ nfs.exportfs }} -ra
    - onchanges:
      - file: netlab-netnode-clean-nfs-file-absent
{%- endif %}

{#- HTTP: nginx may serve other sites; the service only reloads (libdaemon.stopped) #}
{{- stopped('netlab-netnode-clean-http', '', daemons.nginx,
            require=[{'file': 'netlab-netnode-clean-nfs-file-absent'}],
            before=[{'file': 'netlab-netnode-clean-http-file-absent'}]) }}

netlab-netnode-clean-http-file-absent:
  file.absent:
    - names:
      - {{ mapdata.nginx.conf }}
{%- if daemons.nginx.main_conf %}
      - {{ daemons.nginx.main_conf }}
{%- endif %}
    - require:
      - file: netlab-netnode-clean-nfs-file-absent

{#- DHCP / TFTP / DNS #}
{{- stopped('netlab-netnode-clean-dnsmasq', '', daemons.dnsmasq,
            require=[{'file': 'netlab-netnode-clean-http-file-absent'}],
            before=[{'file': 'netlab-netnode-clean-dnsmasq-file-absent'}]) }}

netlab-netnode-clean-dnsmasq-file-absent:
  file.absent:
    - names:
      - {{ mapdata.dnsmasq.conf }}
      - {{ boot.dnsmasq.leasefile }}
    - require:
      - file: netlab-netnode-clean-http-file-absent

{#- boot files #}

netlab-netnode-clean-bootfiles-file-absent:
  file.absent:
    - names:
      - {{ boot.dirs.boot_dir }}
      - {{ boot.dirs.pxelinux_cfg }}
      - {{ boot.dirs.tftp_root }}/images
{%- for name in boot.tftp_files %}
      - {{ boot.dirs.tftp_root }}/{{ name }}
{%- endfor %}
{%- for path in (mapdata.pxelinux.pxelinux, mapdata.pxelinux.ldlinux) %}
      - {{ boot.dirs.tftp_root }}/{{ path.split('/')[-1] }}
{%- endfor %}
    - require:
      - file: netlab-netnode-clean-dnsmasq-file-absent
{%- endif %}
