# -*- coding: utf-8 -*-
# vim: ft=sls
# The first state of every netlab.netnode run: with an invalid pillar it fails
# with the full report, and the other netnode SLS render nothing else, so
# nothing changes.
{%- from tpldir ~ "/libdata.jinja" import report with context %}
{%- if not report.valid %}

netlab-netnode-check-test-configurable_test_state:
  test.configurable_test_state:
    - name: netlab pillar
    - result: false
    - changes: false
    - allow_test_mode_failure: true
    - comment: |
        invalid netlab pillar ({{ report.errors | length }} problem(s)):
        {%- for e in report.errors %}
          {{ e }}
        {%- endfor %}
    - failhard: true
{%- endif %}
