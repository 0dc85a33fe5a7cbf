# -*- coding: utf-8 -*-
# vim: ft=sls
# Boot files: iPXE binaries (and pxelinux) in tftp_root, per-node iPXE scripts and
# pxelinux configs. Files of nodes no longer in pillar are removed (clean).
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tpldir ~ "/libdata.jinja" import report, boot, mapdata, files with context %}
include:
  - .check
{%- if report.valid %}
{%- set dirs = boot.dirs %}

{%- if mapdata.install_packages %}

netlab-netnode-bootfiles-pkg-installed:
  pkg.installed:
    - pkgs: {{ (mapdata.pkgs.ipxe + (mapdata.pkgs.pxelinux if boot.needs_pxelinux else []))
               | json }}
    - require_in:
      - file: netlab-netnode-bootfiles-file-managed-{{ 'undionly.kpxe' }}
{%- endif %}

{%- for d in ('storage', 'http_root', 'tftp_root', 'roots_dir', 'images_dir', 'http_images',
               'boot_dir', 'pxelinux_cfg') %}

netlab-netnode-bootfiles-file-directory-{{ d }}:
  file.directory:
    - name: {{ dirs[d] | json }}
    - makedirs: true
{%- endfor %}

{%- for name, kind in boot.tftp_files.items() %}

netlab-netnode-bootfiles-file-managed-{{ name }}:
  file.managed:
    - name: {{ (dirs.tftp_root ~ '/' ~ name) | json }}
    - source: {{ ('file://' ~ mapdata.ipxe[kind]) | json }}
    - mode: '0644'
    - require:
      - file: netlab-netnode-bootfiles-file-directory-tftp_root
{%- endfor %}

{#- Per-node files are rendered here, in this SLS's one Jinja run (the template is
    compiled once), and handed to file.managed as contents: a template per state
    would be compiled again for every node. Data and contents go in as one JSON
    line each (not YAML structure: line-length does not apply to them). #}
{%- for s_name, s in boot.scripts.items() %}
{%-   set text %}{% include tplroot ~ '/files/netnode/node.ipxe.jinja' %}{% endset %}

netlab-netnode-bootfiles-file-managed-{{ s_name }}:
  file.managed:
    - name: {{ (dirs.boot_dir ~ '/' ~ s_name) | json }}
    - contents: {{ text | json }}  # yamllint disable-line rule:line-length
    - mode: '0644'
    - makedirs: true
    - require:
      - file: netlab-netnode-bootfiles-file-directory-boot_dir
{%- endfor %}

netlab-netnode-bootfiles-file-managed-boot.ipxe:
  file.managed:
    - name: {{ (dirs.boot_dir ~ '/boot.ipxe') | json }}
    - source: {{ (files ~ '/boot.ipxe.jinja') | json }}
    - template: jinja
    - context:
        menu: {{ boot.menu | json }}  # yamllint disable-line rule:line-length
    - mode: '0644'
    - makedirs: true
    - require:
      - file: netlab-netnode-bootfiles-file-directory-boot_dir

{#- cleaning only when the directory exists at render time: test=True then
    predicts exactly what a real run does #}
{%- if salt['file.directory_exists'](dirs.boot_dir) %}

# removes the scripts of nodes that left the pillar
netlab-netnode-bootfiles-file-directory-clean-boot_dir:
  file.directory:
    - name: {{ dirs.boot_dir | json }}
    - clean: true
    - require:
      - file: netlab-netnode-bootfiles-file-managed-boot.ipxe
{%- for s_name in boot.scripts %}
      - file: netlab-netnode-bootfiles-file-managed-{{ s_name }}
{%- endfor %}
{%- endif %}

{%- if boot.needs_pxelinux %}
{%- for name in ('pxelinux', 'ldlinux') %}

netlab-netnode-bootfiles-file-managed-{{ name }}:
  file.managed:
    - name: {{ (dirs.tftp_root ~ '/' ~ mapdata.pxelinux[name].split('/')[-1]) | json }}
    - source: {{ ('file://' ~ mapdata.pxelinux[name]) | json }}
    - mode: '0644'
    - require:
      - file: netlab-netnode-bootfiles-file-directory-tftp_root
{%- endfor %}

{%- set tftp_images = dirs.tftp_root ~ '/images' %}
{%- if salt['file.directory_exists'](tftp_images) and not salt['file.is_link'](tftp_images) %}

# an image build already published its kernel and initrd into tftp_root/images
# (a directory of its own, kept up to date by netlab.image): pxelinux uses that
netlab-netnode-bootfiles-file-exists-images:
  file.exists:
    - name: {{ (tftp_images ~ '/current/vmlinuz') | json }}
{%- else %}

# pxelinux fetches kernel and initrd over TFTP: tftp_root/images -> http_root/images
netlab-netnode-bootfiles-file-symlink-images:
  file.symlink:
    - name: {{ tftp_images | json }}
    - target: {{ dirs.http_images | json }}
    - require:
      - file: netlab-netnode-bootfiles-file-directory-http_images
{%- endif %}
{%- endif %}

{%- for cfg_name, p in boot.pxelinux.items() %}
{%-   set text %}{% include tplroot ~ '/files/netnode/pxelinux.cfg.jinja' %}{% endset %}

netlab-netnode-bootfiles-file-managed-pxelinux-{{ cfg_name }}:
  file.managed:
    - name: {{ (dirs.pxelinux_cfg ~ '/' ~ cfg_name) | json }}
    - contents: {{ text | json }}  # yamllint disable-line rule:line-length
    - mode: '0644'
    - makedirs: true
    - require:
      - file: netlab-netnode-bootfiles-file-directory-pxelinux_cfg
{%- endfor %}
{%- if salt['file.directory_exists'](dirs.pxelinux_cfg) %}

# removes the pxelinux configs of nodes that left the pillar (or switched to iPXE)
netlab-netnode-bootfiles-file-directory-clean-pxelinux_cfg:
  file.directory:
    - name: {{ dirs.pxelinux_cfg | json }}
    - clean: true
{%-   if boot.pxelinux %}
    - require:
{%-     for cfg_name in boot.pxelinux %}
      - file: netlab-netnode-bootfiles-file-managed-pxelinux-{{ cfg_name }}
{%-     endfor %}
{%-   endif %}
{%- endif %}
{%- endif %}
