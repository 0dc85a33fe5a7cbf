# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- netlab.cache: the networking node's LAN cache (pillar netlab:cache), on the lab
    IP only. apt-cacher-ng (apt), devpi-server (pip), git mirrors and downloaded
    files (served by netlab.netnode's nginx). Configs are checked before a daemon
    restarts; a daemon restarts only when its config changed. Run it alone to
    refresh the git mirrors and fetch new files:
      salt-call state.apply netlab.cache
    The deploy runs it after netlab.netnode. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- from tplroot ~ "/libcheck.jinja" import invalid_pillar with context %}
{%- set report = salt['netlab.cache_report'](mapdata) %}
{%- from tplroot ~ "/libdaemon.jinja" import running, stopped %}
{%- set c = mapdata.cache %}
{%- if not report.valid %}
{{ invalid_pillar('netlab-cache-check-netlab-invalid_pillar', report) }}
{%- else %}
{%- set d = report.data %}

netlab-cache-file-directory-storage:
  file.directory:
    - name: {{ d.storage | json }}
    - mode: '0755'
    - makedirs: true
{%- if 'apt' in d.parts %}
{%- set apt = d.apt %}
{%- if mapdata.install_packages %}

netlab-cache-pkg-installed-apt:
  pkg.installed:
    - pkgs: {{ mapdata.pkgs.cache_apt | json }}
    - require_in:
      - file: netlab-cache-file-managed-acng-conf
{%- endif %}
{#- the package's own daemon listens on every interface: netlab runs its own #}
{{- stopped('netlab-cache', '-acng-package', d.daemons.acng_package) }}

netlab-cache-file-directory-apt:
  file.directory:
    - names:
      - {{ apt.dir | json }}
      - {{ apt.log_dir | json }}
    - user: {{ c.apt_user | json }}
    - makedirs: true
    - require:
      - file: netlab-cache-file-directory-storage

netlab-cache-file-managed-acng-conf:
  file.managed:
    - name: {{ (apt.conf_dir ~ '/acng.conf') | json }}
    - contents: |
        {{ apt.conf | indent(8) }}
    - mode: '0644'
    - makedirs: true

netlab-cache-cmd-run-acng-check:
  cmd.run:
    - name: {{ apt.check | map('quote') | join(' ') | json }}
    - onchanges:
      - file: netlab-cache-file-managed-acng-conf
{%- endif %}
{%- if 'pip' in d.parts %}
{%- set pip = d.pip %}
{%- if mapdata.install_packages %}

netlab-cache-pkg-installed-pip:
  pkg.installed:
    - pkgs: {{ mapdata.pkgs.cache_pip | json }}
    - require_in:
      - cmd: netlab-cache-cmd-run-devpi-venv
{%- endif %}

netlab-cache-cmd-run-devpi-venv:
  cmd.run:
    - name: >-
        python3 -m venv {{ pip.venv | quote }} &&
        {{ (pip.venv ~ '/bin/pip') | quote }} install --quiet {{ c.devpi_requirement | quote }}
    - creates: {{ (pip.venv ~ '/bin/devpi-server') | json }}

netlab-cache-cmd-run-devpi-init:
  cmd.run:
    - name: {{ pip.init | map('quote') | join(' ') | json }}
    - creates: {{ (pip.dir ~ '/.serverversion') | json }}
    - require:
      - cmd: netlab-cache-cmd-run-devpi-venv
      - file: netlab-cache-file-directory-storage
{%- endif %}
{%- if 'git' in d.parts %}

netlab-cache-file-directory-git:
  file.directory:
    - names:
      - {{ (d.git.dir ~ '/mirrors') | json }}
      - {{ (d.git.dir ~ '/served') | json }}
    - mode: '0755'
    - makedirs: true
{%- endif %}
{%- if 'files' in d.parts %}

netlab-cache-file-directory-files:
  file.directory:
    - name: {{ d.files.dir | json }}
    - mode: '0755'
    - makedirs: true
{%- endif %}
{%- for part, watch in [('apt', {'file': 'netlab-cache-file-managed-acng-conf'}),
                         ('pip', {'cmd': 'netlab-cache-cmd-run-devpi-init'})]
      if part in d.daemons %}
{{- running('netlab-cache', '-' ~ part, d.daemons[part], watch=[watch],
            require=[{'cmd': 'netlab-cache-cmd-run-acng-check'},
                     {'file': 'netlab-cache-file-directory-apt'}] if part == 'apt' else []) }}
{%- endfor %}
{#- a part turned off (netlab:cache:<part>:enabled: false): its daemon stops, so
    no cache keeps listening that the lab no longer uses (_utils/netlab_daemons.py) #}
{%- for part in ['apt', 'pip'] if ('off_' ~ part) in d.daemons %}
{{- stopped('netlab-cache', '-' ~ part, d.daemons['off_' ~ part]) }}
{%- endfor %}
{%- if 'git' in d.parts or 'files' in d.parts %}

netlab-cache-netlab_cache-refreshed:
  netlab_cache.refreshed:
    - name: git mirrors and files
    - require:
      - file: netlab-cache-file-directory-storage
{%- endif %}
{%- if 'apt' in d.parts or 'pip' in d.parts %}

netlab-cache-netlab_cache-bounded:
  netlab_cache.bounded:
    - name: apt and pip caches within max_size
{%- endif %}
{%- endif %}
