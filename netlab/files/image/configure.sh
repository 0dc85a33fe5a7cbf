#!/bin/sh
# netlab node image: configuration run INSIDE the new root (chroot), as the
# last step of the mmdebstrap build, with a clean environment. The builder
# stages this file, the overlay and build.env under /tmp/netlab-build.
#
# Nothing node-specific may end up in the image: machine-id, hostname, SSH
# host keys and the minion's id/key/master are written into each node's root
# later (one image, many nodes).
set -eu
B=/tmp/netlab-build
. "$B/build.env"
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 HOME=/root
step() { echo "netlab-image: $*"; }

step "overlay"
cp -R --preserve=mode,timestamps "$B/overlay/." /

step "user $NETLAB_USER with passwordless sudo"
if ! getent passwd "$NETLAB_USER" >/dev/null; then
	useradd --create-home --shell /bin/bash --user-group "$NETLAB_USER"
fi
sudoers="/etc/sudoers.d/netlab-$NETLAB_USER"
printf '# netlab: DevStack runs as this user and needs sudo without a password\n%s ALL=(ALL) NOPASSWD:ALL\n' \
	"$NETLAB_USER" > "$sudoers"
chmod 0440 "$sudoers"
visudo -cf "$sudoers"

step "salt $NETLAB_SALT_VERSION in /opt/salt"
python3 -m venv /opt/salt
# the build host's pip settings (certificate, index, find-links), see build.env
PIP_CONFIG_FILE="$B/pip/pip.conf" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
	/opt/salt/bin/pip install $NETLAB_PIP_REQUIREMENTS
/opt/salt/bin/salt-minion --version
for tool in salt-call salt-minion; do
	ln -sf "/opt/salt/bin/$tool" "/usr/local/bin/$tool"
done
mkdir -p /etc/salt/minion.d /etc/salt/pki/minion /var/cache/salt /var/log/salt
chmod 0700 /etc/salt/pki/minion

if [ -n "${NETLAB_BUILD_PACKAGES:-}" ]; then
	step "remove build-only packages: $NETLAB_BUILD_PACKAGES"
	apt-get purge -y -q $NETLAB_BUILD_PACKAGES
	# python3.11 "Suggests" binutils: without this, apt keeps binutils (~35 MB)
	apt-get autoremove --purge -y -q -o APT::AutoRemove::SuggestsImportant=false
fi

step "services"
systemctl enable salt-minion.service netlab-netconf.service
systemctl enable ssh.service 2>/dev/null || true
# Boot time: units a diskless lab node does not need, each costs CPU while the
# minion starts. No local ext4 to scrub or trim (e2scrub, fstrim); no EFI
# pstore to save; dm_mod, loop and drm load on demand when something opens
# /dev/mapper/control or /dev/loop-control (LVM, DevStack's loop devices) and
# no node drives a display.
for unit in e2scrub_reap.service e2scrub_all.timer fstrim.timer systemd-pstore.service \
	modprobe@dm_mod.service modprobe@loop.service modprobe@drm.service; do
	systemctl disable "$unit" 2>/dev/null || true
	systemctl mask "$unit"
done

step "initramfs (NFS root, netlab stateless script)"
for initrd in /boot/initrd.img-*; do
	if ! lsinitramfs "$initrd" | grep -q 'scripts/init-bottom/netlab-stateless$'; then
		update-initramfs -u -k all
		break
	fi
done
for initrd in /boot/initrd.img-*; do
	lsinitramfs "$initrd" | grep -q 'scripts/init-bottom/netlab-stateless$' || {
		echo "netlab-image: $initrd lacks the netlab stateless script" >&2; exit 1; }
	lsinitramfs "$initrd" | grep -q 'scripts/nfs$' || {
		echo "netlab-image: $initrd lacks the nfs boot script" >&2; exit 1; }
done

step "no per-node identity in the image"
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id /etc/hostname /etc/salt/minion_id
rm -f /etc/ssh/ssh_host_*
rm -rf /etc/salt/pki/minion/* /etc/salt/minion.d/netlab.conf
cat > /etc/hosts <<HOSTS
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
HOSTS

step "image facts"
mkdir -p /etc/netlab
cat > /etc/netlab/image <<FACTS
NETLAB_IMAGE_INPUT_HASH=$NETLAB_INPUT_HASH
NETLAB_IMAGE_DISTRO=$NETLAB_DISTRO
NETLAB_IMAGE_RELEASE=$NETLAB_RELEASE
NETLAB_IMAGE_SALT_VERSION=$NETLAB_SALT_VERSION
FACTS

step "clean up"
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /root/.cache /var/cache/debconf/*-old
find /var/log -type f -name '*.log' -size +0 -exec truncate -s 0 {} +
step "done"
