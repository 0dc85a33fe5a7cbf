# -*- coding: utf-8 -*-
# vim: ft=sls
# nginx on the networking node's lab address only: boot scripts, kernels, initrds.
# The config is checked (nginx -t) before nginx restarts; it restarts once, only
# when its config changed.
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

netlab-netnode-http-cmd-run-check:
  cmd.run:
    - name: {{ nginx.check }}
    - onchanges: {{ ([{'file': 'netlab-netnode-http-file-managed-conf'}] + main) | json }}
{{- running('netlab-netnode-http', '', nginx,
            require=[{'cmd': 'netlab-netnode-http-cmd-run-check'},
                     {'sls': tpldir | replace('/', '.') ~ '.bootfiles'}],
            watch=[{'file': 'netlab-netnode-http-file-managed-conf'}] + main) }}
{%- endif %}
