# -*- coding: utf-8 -*-
# vim: ft=sls
# netlab.image.clean: remove every node image build and the published kernel and
# initrd (<http_root>/images, <tftp_root>/images). The build tools (mmdebstrap)
# stay installed: other software may use them.
{%- set report = salt['netlab.validate']() %}
{%- if not report.valid %}

netlab-image-clean-check-test-fail_without_changes:
  test.fail_without_changes:
    - name: |
        invalid netlab pillar ({{ report.errors | length }} problem(s)):
        {%- for e in report.errors %}
          {{ e }}
        {%- endfor %}
    - failhard: true
{%- else %}

netlab-image-clean-netlab_image-absent:
  netlab_image.absent:
    - name: netlab-node-image
{%- endif %}
