# -*- coding: utf-8 -*-
# vim: ft=sls
# NFS exports of the node roots, by pillar netnode:nfs:server:
#   kernel  -> nfs-kernel-server, /etc/exports.d/netlab.exports + exportfs -ra
#   ganesha -> nfs-ganesha (userspace) + rpcbind, EXPORT blocks with CLIENT blocks
# Each persistent root is exported to its node's IP only; the shared image
# read-only to the lab subnet. The server reloads only when exports change
# (ganesha: SIGHUP, no restart; kernel: exportfs -ra).
{%- from tpldir ~ "/libdata.jinja" import report, boot, mapdata, files with context %}
{%- from tpldir.split('/')[0] ~ "/libdaemon.jinja" import running %}
include:
  - .check
  - .bootfiles
{%- if report.valid %}
{%- set nfs = mapdata.nfs %}
{%- set daemons = boot.daemons %}
{%- set layout = salt['netlab.storage_layout']() %}
{%- if layout.warning %}

# roots exported from a filesystem shared with the rest of the networking node
netlab-netnode-nfs-test-show_notification-storage-layout:
  test.show_notification:
    {#- folded, not |json, to keep lines short: the text is netlab's own, around
        validated paths (letters, digits, _ . + @ / - only). Folding turns each
        line break into a space, so lines break at spaces only, never inside a
        path (at a hyphen or in a long word) #}
    - text: >-
        {{ layout.warning | wordwrap(80, break_long_words=False, break_on_hyphens=False)
           | indent(8) }}
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

{{- running('netlab-netnode-nfs', '', daemons.nfs_kernel,
            require=[{'file': 'netlab-netnode-nfs-file-managed-exports'}]) }}
{%-   if daemons.nfs_kernel.exportfs %}

netlab-netnode-nfs-cmd-run-exportfs:
  cmd.run:
    - name: {{ nfs.exportfs }} -ra
    - onchanges:
      - file: netlab-netnode-nfs-file-managed-exports
{%-   endif %}

{%- else %}
{%-   set recovery = daemons.ganesha.recovery %}
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

{%-   if daemons.ganesha.mode %}

# a reset root is a new directory at the same path: ganesha keeps an export's
# root by handle, so those exports go in a reload of their own before the new
# config's reload exports the new directories (other exports stay untouched)
netlab-netnode-nfs-netlab_daemon-exports_released-ganesha:
  netlab_daemon.exports_released:
    - name: {{ nfs.ganesha_conf | json }}
    - exports: {{ boot.exports | json }}  # yamllint disable-line rule:line-length
    - daemon: {{ daemons.ganesha | json }}  # yamllint disable-line rule:line-length
    - require_in:
      - file: netlab-netnode-nfs-file-managed-ganesha
{%-   endif %}

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

{{- running('netlab-netnode-nfs', '-rpcbind', daemons.rpcbind) }}
{{- running('netlab-netnode-nfs', '-ganesha', daemons.ganesha,
            after=[('netlab-netnode-nfs', '-rpcbind')],
            require=[{'file': 'netlab-netnode-nfs-file-managed-ganesha'}]) }}
{%-   if daemons.ganesha.mode %}
{%-     set gmod = 'service' if daemons.ganesha.mode == 'service' else 'netlab_daemon' %}

# changed exports: a reload (SIGHUP, then the reread in ganesha's log), not a
# restart, so other nodes' roots never pause; a failed reload restarts ganesha
netlab-netnode-nfs-netlab_daemon-reloaded-ganesha:
  netlab_daemon.reloaded:
    - name: nfs-ganesha
    - config: {{ nfs.ganesha_conf | json }}
    - daemon: {{ daemons.ganesha | json }}  # yamllint disable-line rule:line-length
    - require:
      - {{ gmod }}: netlab-netnode-nfs-{{ gmod }}-running-ganesha
    - watch:
      - file: netlab-netnode-nfs-file-managed-ganesha
{%-   endif %}
{%- endif %}
{%- endif %}
