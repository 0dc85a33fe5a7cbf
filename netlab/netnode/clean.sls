# -*- coding: utf-8 -*-
# vim: ft=sls
# Undo netlab.netnode in reverse: stop the services netlab started, remove their
# netlab configs, the boot scripts and the boot binaries. Node roots and images
# (netnode:storage roots/, images/) are left alone.
{%- from tpldir ~ "/libdata.jinja" import report, boot, mapdata, control, run_dir
    with context %}
include:
  - .check
{%- if report.valid %}
{%- set nfs = mapdata.nfs %}

{#- NFS #}
{%- if control == 'service' %}
{%-   if boot.nfs_server == 'ganesha' %}

netlab-netnode-clean-nfs-service-dead-ganesha:
  service.dead:
    - name: {{ nfs.ganesha_service | json }}
    - enable: false
    - require_in:
      - file: netlab-netnode-clean-nfs-file-absent
{%-   endif %}
{%- elif control == 'process' %}
{%-   for name in ('nfs-ganesha', 'rpcbind') %}

netlab-netnode-clean-nfs-netlab_daemon-dead-{{ name }}:
  netlab_daemon.dead:
    - name: {{ name | json }}
    - pidfile: {{ run_dir }}/{{ 'ganesha' if name == 'nfs-ganesha' else name }}.pid
    - require_in:
      - file: netlab-netnode-clean-nfs-file-absent
{%-   endfor %}
{%- endif %}

netlab-netnode-clean-nfs-file-absent:
  file.absent:
    - name: {{ nfs.exports if boot.nfs_server == 'kernel' else nfs.ganesha_conf }}

{%- if boot.nfs_server == 'kernel' and control != 'none' %}

netlab-netnode-clean-nfs-cmd-run-exportfs:
  cmd.run:
    - name: {{ nfs.exportfs }} -ra
    - onchanges:
      - file: netlab-netnode-clean-nfs-file-absent
{%- endif %}

{#- HTTP #}
{%- if control == 'process' %}

netlab-netnode-clean-http-netlab_daemon-dead:
  netlab_daemon.dead:
    - name: nginx
    - pidfile: {{ (run_dir ~ '/nginx.pid') | json }}
    - require:
      - file: netlab-netnode-clean-nfs-file-absent
{%- endif %}

netlab-netnode-clean-http-file-absent:
  file.absent:
    - names:
      - {{ mapdata.nginx.conf }}
{%- if control != 'service' %}
      - {{ run_dir }}/nginx.conf
{%- endif %}
    - require:
      - file: netlab-netnode-clean-nfs-file-absent
{%- if control == 'process' %}
      - netlab_daemon: netlab-netnode-clean-http-netlab_daemon-dead
{%- endif %}

{%- if control == 'service' %}

# nginx keeps running for other sites; it reloads without netlab's server block
netlab-netnode-clean-http-service-running:
  service.running:
    - name: {{ mapdata.nginx.service | json }}
    - reload: true
    - watch:
      - file: netlab-netnode-clean-http-file-absent
{%- endif %}

{#- DHCP / TFTP / DNS #}
{%- if control == 'service' %}

netlab-netnode-clean-dnsmasq-service-dead:
  service.dead:
    - name: {{ mapdata.dnsmasq.service | json }}
    - enable: false
    - require:
      - file: netlab-netnode-clean-http-file-absent
    - require_in:
      - file: netlab-netnode-clean-dnsmasq-file-absent
{%- elif control == 'process' %}

netlab-netnode-clean-dnsmasq-netlab_daemon-dead:
  netlab_daemon.dead:
    - name: dnsmasq
    - pidfile: {{ (run_dir ~ '/dnsmasq.pid') | json }}
    - require:
      - file: netlab-netnode-clean-http-file-absent
    - require_in:
      - file: netlab-netnode-clean-dnsmasq-file-absent
{%- endif %}

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
