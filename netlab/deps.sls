# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- netlab's custom modules need netaddr in Salt's OWN Python (the one running
    this minion; onedir packages: salt-pip). Apply this first on a new machine:
    salt-call state.apply netlab.deps. It installs netaddr where it can and
    otherwise fails with a message that says what to do. #}
{%- set python = grains['pythonexecutable'] %}
{%- set have = salt['cmd.retcode'](python ~ ' -c "import netaddr"',
                                   python_shell=True, ignore_retcode=True) == 0 %}

{%- if have %}

netlab-deps-test-succeed_without_changes:
  test.succeed_without_changes:
    - name: netaddr is importable by Salt's Python ({{ python }})
{%- else %}

netlab-deps-pip-installed-netaddr:
  pip.installed:
    - name: netaddr
    - reload_modules: true

netlab-deps-test-fail_without_changes:
  test.fail_without_changes:
    - name: >-
        netlab needs the Python package netaddr in Salt's own Python ({{ python }})
        and could not install it. Install it by hand: 'salt-pip install netaddr'
        (Salt onedir packages) or '{{ python }} -m pip install netaddr', then
        run 'saltutil.sync_all'.
    - onfail:
      - pip: netlab-deps-pip-installed-netaddr
{%- endif %}
