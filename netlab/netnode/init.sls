# -*- coding: utf-8 -*-
# vim: ft=sls
# The networking node: boot files (iPXE, pxelinux, per-node scripts), DHCP/TFTP/DNS
# (dnsmasq), HTTP (nginx) and NFS exports (nfs-kernel-server or nfs-ganesha).
include:
  - .check
  - .bootfiles
  - .dnsmasq
  - .http
  - .nfs
