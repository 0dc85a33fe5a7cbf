# -*- coding: utf-8 -*-
# vim: ft=sls
# netlab.image: build the diskless node image on the networking node and publish
# its kernel and initrd for network boot (<http_root>/images/current/,
# <tftp_root>/images/current/). Unchanged inputs: no change. A failed build keeps
# the last good image. Details: docs/image.rst
#
# Validation first: with an invalid pillar only the failing check renders, so
# nothing is installed or built.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- from tplroot ~ "/libcheck.jinja" import invalid_pillar with context %}
{%- set report = salt['netlab.validate']() %}
{%- if not report.valid %}
{{ invalid_pillar('netlab-image-check-netlab-invalid_pillar', report) }}
{%- else %}
{#- the distro as the lab model reads it (its default included) #}
{%- set distro = salt['netlab.lab']().image.distro %}
{%- set pkgs = mapdata.pkgs.image + (mapdata.pkgs.get('image_' ~ distro, []) or []) %}
{%- if mapdata.install_packages %}

netlab-image-pkg-installed:
  pkg.installed:
    - pkgs: {{ pkgs | json }}
    - require_in:
      - netlab_image: netlab-image-netlab_image-built
{%- endif %}

netlab-image-netlab_image-built:
  netlab_image.built:
    - name: netlab-node-image
    - files: salt://{{ tplroot }}/files/image
    - keep: {{ mapdata.image.keep | json }}
    - lock_wait: {{ mapdata.image.lock_wait | json }}
{%- endif %}
