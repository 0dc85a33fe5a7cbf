# -*- coding: utf-8 -*-
# vim: ft=sls
# netlab.image.clean: remove every node image build and the published kernel and
# initrd (<http_root>/images, <tftp_root>/images). The build tools (mmdebstrap)
# stay installed: other software may use them.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/libcheck.jinja" import invalid_pillar with context %}
{%- set report = salt['netlab.validate']() %}
{%- if not report.valid %}
{{ invalid_pillar('netlab-image-clean-check-netlab-invalid_pillar', report) }}
{%- else %}

netlab-image-clean-netlab_image-absent:
  netlab_image.absent:
    - name: netlab-node-image
{%- endif %}
