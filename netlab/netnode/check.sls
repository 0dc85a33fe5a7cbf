# -*- coding: utf-8 -*-
# vim: ft=sls
# The first state of every netlab.netnode run: with an invalid pillar it fails
# with the full report, and the other netnode SLS render nothing else, so
# nothing changes.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tpldir ~ "/libdata.jinja" import report with context %}
{%- from tplroot ~ "/libcheck.jinja" import invalid_pillar with context %}
{%- if not report.valid %}
{{ invalid_pillar('netlab-netnode-check-netlab-invalid_pillar', report) }}
{%- endif %}
