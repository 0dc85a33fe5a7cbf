# -*- coding: utf-8 -*-
# vim: ft=sls
# nginx on the networking node's lab address only: boot scripts, kernels, initrds.
# The config is checked (nginx -t) before nginx restarts; it restarts once, only
# when its config changed.
{%- from tpldir ~ "/libdata.jinja" import report, boot, mapdata, control, run_dir, files
    with context %}
include:
  - .check
  - .bootfiles
{%- if report.valid %}
{%- set main_conf = run_dir ~ '/nginx.conf' %}

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

{%- if control != 'service' %}

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

netlab-netnode-http-cmd-run-check:
  cmd.run:
{%- if control == 'service' %}
    - name: {{ mapdata.nginx.binary }} -t -q
{%- else %}
    - name: {{ mapdata.nginx.binary }} -t -q -c {{ main_conf }}
{%- endif %}
    - onchanges:
      - file: netlab-netnode-http-file-managed-conf
{%- if control != 'service' %}
      - file: netlab-netnode-http-file-managed-main
{%- endif %}

{%- if control == 'service' %}

netlab-netnode-http-service-running:
  service.running:
    - name: {{ mapdata.nginx.service | json }}
    - enable: true
    - require:
      - cmd: netlab-netnode-http-cmd-run-check
      - sls: {{ tpldir | replace('/', '.') }}.bootfiles
    - watch:
      - file: netlab-netnode-http-file-managed-conf
{%- elif control == 'process' %}

netlab-netnode-http-netlab_daemon-running:
  netlab_daemon.running:
    - name: nginx
    - cmd: {{ [mapdata.nginx.binary, '-c', main_conf, '-g', 'daemon off;'] | json }}
    - pidfile: {{ (run_dir ~ '/nginx.pid') | json }}
    - log: {{ (run_dir ~ '/nginx.out') | json }}
    - require:
      - cmd: netlab-netnode-http-cmd-run-check
      - sls: {{ tpldir | replace('/', '.') }}.bootfiles
    - watch:
      - file: netlab-netnode-http-file-managed-conf
      - file: netlab-netnode-http-file-managed-main
{%- endif %}
{%- endif %}
