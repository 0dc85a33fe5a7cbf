# -*- coding: utf-8 -*-
# vim: ft=sls
# The networking node: boot files (iPXE, pxelinux, per-node scripts), DHCP/TFTP/DNS
# (dnsmasq), HTTP (nginx), NFS exports (nfs-kernel-server or nfs-ganesha) and the
# commands the lab's power drivers run.
include:
  - .check
  - .bootfiles
  - .dnsmasq
  - .http
  - .nfs
  - .power
