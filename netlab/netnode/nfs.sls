# -*- coding: utf-8 -*-
# vim: ft=sls
# NFS exports of the node roots, by pillar netnode:nfs:server:
#   kernel  -> nfs-kernel-server, /etc/exports.d/netlab.exports + exportfs -ra
#   ganesha -> nfs-ganesha (userspace) + rpcbind, EXPORT blocks with CLIENT blocks
# Each persistent root is exported to its node's IP only; the shared image
# read-only to the lab subnet. The server reloads/restarts only when exports change.
{%- from tpldir ~ "/libdata.jinja" import report, boot, mapdata, control, run_dir, files
    with context %}
include:
  - .check
  - .bootfiles
{%- if report.valid %}
{%- set nfs = mapdata.nfs %}
{%- set layout = salt['netlab.storage_layout']() %}
{%- if layout.warning %}

# roots exported from a filesystem shared with the rest of the networking node
netlab-netnode-nfs-test-show_notification-storage-layout:
  test.show_notification:
    {#- folded, not |json, to keep lines short: the text is netlab's own, around
        validated paths (letters, digits, _ . + @ / - only) #}
    - text: >-
        {{ layout.warning | wordwrap(80) | indent(8) }}
{%- endif %}

{%- if boot.nfs_server == 'kernel' %}
{%-   if mapdata.install_packages %}

netlab-netnode-nfs-pkg-installed:
  pkg.installed:
    - pkgs: {{ mapdata.pkgs.nfs_kernel | json }}
    - require_in:
      - file: netlab-netnode-nfs-file-managed-exports
{%-   endif %}

netlab-netnode-nfs-file-managed-exports:
  file.managed:
    - name: {{ nfs.exports | json }}
    - source: {{ (files ~ '/exports.jinja') | json }}
    - template: jinja
    - context:
        exports: {{ boot.exports | json }}  # yamllint disable-line rule:line-length
    - mode: '0644'
    - makedirs: true
    - require:
      - sls: {{ tpldir | replace('/', '.') }}.bootfiles

{%-   if control == 'service' %}

netlab-netnode-nfs-service-running:
  service.running:
    - name: {{ nfs.kernel_service | json }}
    - enable: true
    - require:
      - file: netlab-netnode-nfs-file-managed-exports
{%-   endif %}
{%-   if control != 'none' %}

netlab-netnode-nfs-cmd-run-exportfs:
  cmd.run:
    - name: {{ nfs.exportfs }} -ra
    - onchanges:
      - file: netlab-netnode-nfs-file-managed-exports
{%-   endif %}

{%- else %}
{%-   set recovery = run_dir ~ '/ganesha-recov' if control == 'process' else nfs.ganesha_recovery %}
{%-   if mapdata.install_packages %}

netlab-netnode-nfs-pkg-installed:
  pkg.installed:
    - pkgs: {{ mapdata.pkgs.nfs_ganesha | json }}
    - require_in:
      - file: netlab-netnode-nfs-file-managed-ganesha
{%-   endif %}

netlab-netnode-nfs-file-directory-recovery:
  file.directory:
    - name: {{ recovery | json }}
    - makedirs: true

netlab-netnode-nfs-file-managed-ganesha:
  file.managed:
    - name: {{ nfs.ganesha_conf | json }}
    - source: {{ (files ~ '/ganesha.conf.jinja') | json }}
    - template: jinja
    - mode: '0644'
    - makedirs: true
    - context:
        exports: {{ boot.exports | json }}  # yamllint disable-line rule:line-length
        recovery_root: {{ recovery | json }}
    - require:
      - file: netlab-netnode-nfs-file-directory-recovery
      - sls: {{ tpldir | replace('/', '.') }}.bootfiles

{%-   if control == 'service' %}

netlab-netnode-nfs-service-running-rpcbind:
  service.running:
    - name: {{ nfs.rpcbind_service | json }}
    - enable: true

netlab-netnode-nfs-service-running-ganesha:
  service.running:
    - name: {{ nfs.ganesha_service | json }}
    - enable: true
    - require:
      - service: netlab-netnode-nfs-service-running-rpcbind
    - watch:
      - file: netlab-netnode-nfs-file-managed-ganesha
{%-   elif control == 'process' %}

# klibc's nfsmount (initramfs) speaks NFSv3 only and needs the portmapper
netlab-netnode-nfs-netlab_daemon-running-rpcbind:
  netlab_daemon.running:
    - name: rpcbind
    - cmd: {{ [nfs.rpcbind_binary, '-f', '-w'] | json }}
    - pidfile: {{ (run_dir ~ '/rpcbind.pid') | json }}
    - log: {{ (run_dir ~ '/rpcbind.out') | json }}
    - unless: rpcinfo -p 127.0.0.1

netlab-netnode-nfs-netlab_daemon-running-ganesha:
  netlab_daemon.running:
    - name: nfs-ganesha
    - cmd: {{ [nfs.ganesha_binary, '-F', '-f', nfs.ganesha_conf, '-L', run_dir ~ '/ganesha.log',
              '-p', run_dir ~ '/ganesha.daemon.pid'] | json }}
    - pidfile: {{ (run_dir ~ '/ganesha.pid') | json }}
    - log: {{ (run_dir ~ '/ganesha.out') | json }}
    - settle: 2
    - stop_timeout: 30
    - require:
      - netlab_daemon: netlab-netnode-nfs-netlab_daemon-running-rpcbind
    - watch:
      - file: netlab-netnode-nfs-file-managed-ganesha
{%-   endif %}
{%- endif %}
{%- endif %}
