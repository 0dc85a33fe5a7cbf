# -*- coding: utf-8 -*-
# vim: ft=sls
# nginx on the networking node's lab address only: boot scripts, kernels, initrds.
# The config is checked (nginx -t) before nginx restarts, on every apply; it
# restarts once, only when its config changed.
{%- from tpldir ~ "/libdata.jinja" import report, boot, mapdata, run_dir, files
    with context %}
{%- from tpldir.split('/')[0] ~ "/libdaemon.jinja" import running %}
include:
  - .check
  - .bootfiles
{%- if report.valid %}
{%- set nginx = boot.daemons.nginx %}
{#- main_conf: netlab runs nginx itself, with its own main config #}
{%- set main_conf = nginx.main_conf %}

{%- if mapdata.install_packages %}

netlab-netnode-http-pkg-installed:
  pkg.installed:
    - pkgs: {{ mapdata.pkgs.http | json }}
    - require_in:
      - file: netlab-netnode-http-file-managed-conf
{%- endif %}

netlab-netnode-http-file-managed-conf:
  file.managed:
    - name: {{ mapdata.nginx.conf | json }}
    - source: {{ (files ~ '/nginx-server.conf.jinja') | json }}
    - template: jinja
    - context:
        d: {{ boot.nginx | json }}  # yamllint disable-line rule:line-length
    - mode: '0644'
    - makedirs: true

{%- if main_conf %}

# no init system: nginx runs with its own main config that includes the server block
netlab-netnode-http-file-managed-main:
  file.managed:
    - name: {{ main_conf | json }}
    - source: {{ (files ~ '/nginx-main.conf.jinja') | json }}
    - template: jinja
    - mode: '0644'
    - makedirs: true
    - context:
        tpldir: {{ tpldir }}
        user: {{ mapdata.nginx.user | json }}
        run_dir: {{ run_dir | json }}
        server_conf: {{ mapdata.nginx.conf | json }}
{%- endif %}

{%- set main = [{'file': 'netlab-netnode-http-file-managed-main'}] if main_conf else [] %}

# checked on every apply, not only when a file changed: a config nginx refused
# stays on disk (nginx reads its includes itself, so the new file cannot be
# checked alone before it replaces the old one), and every later apply must fail
# here too while nginx still serves what it loaded before
netlab-netnode-http-netlab_daemon-config_valid:
  netlab_daemon.config_valid:
    - name: nginx
    - check: {{ nginx.check | json }}
    - require: {{ ([{'file': 'netlab-netnode-http-file-managed-conf'}] + main) | json }}
{{- running('netlab-netnode-http', '', nginx,
            require=[{'netlab_daemon': 'netlab-netnode-http-netlab_daemon-config_valid'},
                     {'sls': tpldir | replace('/', '.') ~ '.bootfiles'}],
            watch=[{'file': 'netlab-netnode-http-file-managed-conf'}] + main) }}
{%- endif %}
