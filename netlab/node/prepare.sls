# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- Prepare a lab node for DevStack, from its slice only (pillar netlab_node):
    the packages DevStack needs before its own installer runs (git, sudo), the
    stack user (netlab:devstack:user; an existing one, e.g. from the node image,
    is left as it is) with passwordless sudo, and the DevStack checkout at
    netlab:devstack:repo / branch in <dest>/devstack, cloned as the stack user.
    The checkout follows pillar: change repo or branch and the next apply
    (netlab.deploy, netlab.restack) moves the checkout there. When
    netlab:devstack:git_base names a mirror and repo is left at its default,
    DevStack is cloned from <git_base>/openstack/devstack.git. With the
    networking node's git mirror on (netlab:cache:git), every repository this
    node's stack.sh clones is checked out from the mirror into <dest> too
    (local.conf's ERROR_ON_CLONE=True forbids stack.sh any clone of its own). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}

include:
  - {{ tplroot }}.node.check
{#- without a slice this is no lab node: the check above fails with the reason #}
{%- if salt['pillar.get']('netlab_node:devstack') %}
{%- set src = salt['devstack.checkout_source']() %}
{%- set user = src.user %}

netlab-node-prepare-pkg-installed:
  pkg.installed:
    - pkgs: {{ mapdata.pkgs.node | json }}
    - require:
      - devstack: netlab-node-check-devstack-node_valid

netlab-node-prepare-user-present:
  user.present:
    - name: {{ user | json }}
    - shell: /bin/bash
    - home: {{ src.dest | json }}
    - createhome: false
    - usergroup: true
    # a stack user that exists already (the node image creates one) is kept as is
    - unless: {{ ('id -u ' ~ user) | json }}
    - require:
      - devstack: netlab-node-check-devstack-node_valid

netlab-node-prepare-file-managed-sudoers:
  file.managed:
    - name: {{ (mapdata.node.sudoers_dir ~ '/50_netlab_' ~ user) | json }}
    - contents: {{ ("# managed by netlab (netlab.node.prepare): DevStack's stack user\n"
                    ~ user ~ " ALL=(ALL) NOPASSWD: ALL\n") | json }}
    - user: root
    - group: root
    - mode: '0440'
    - check_cmd: /usr/sbin/visudo -cf
    - require:
      - pkg: netlab-node-prepare-pkg-installed
      - user: netlab-node-prepare-user-present

netlab-node-prepare-file-directory-dest:
  file.directory:
    - name: {{ src.dest | json }}
    - user: {{ user | json }}
    - mode: '0755'
    - makedirs: true
    - require:
      - user: netlab-node-prepare-user-present

netlab-node-prepare-file-directory-logs:
  file.directory:
    - name: {{ (src.dest ~ '/logs') | json }}
    - user: {{ user | json }}
    - mode: '0755'
    - require:
      - file: netlab-node-prepare-file-directory-dest

{%- if salt['pillar.get']('netlab_checkout', True) %}

netlab-node-prepare-git-latest:
  git.latest:
    - name: {{ src.repo | json }}
    - target: {{ src.target | json }}
    - rev: {{ src.branch | json }}
    - branch: {{ src.branch | json }}
    - user: {{ user | json }}
    # follow the remote when it moved (new branch, force-push); keep local edits otherwise
    - force_reset: remote-changes
    - force_fetch: true
    # <dest>/devstack may hold only local.conf (netlab.node.localconf applied alone)
    - force_clone: true
    - require:
      - pkg: netlab-node-prepare-pkg-installed
      - file: netlab-node-prepare-file-directory-dest
{%- for project in src.get('projects') or [] %}

{{ ('netlab-node-prepare-git-latest-' ~ project.name) | json }}:
  git.latest:
    - name: {{ project.repo | json }}
    - target: {{ project.target | json }}
    - rev: {{ project.branch | json }}
    - branch: {{ project.branch | json }}
    - user: {{ user | json }}
    - force_reset: remote-changes
    - force_fetch: true
    - require:
      - pkg: netlab-node-prepare-pkg-installed
      - file: netlab-node-prepare-file-directory-dest
{%- endfor %}
{%- endif %}
{%- endif %}
