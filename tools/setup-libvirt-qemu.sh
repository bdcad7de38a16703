#!/bin/sh
# Prepare this machine (as root) for vfpool's real libvirt/QEMU functional
# tests.  Idempotent.
#
# Globally it only creates the 'libvirt-qemu' system user and group that
# Debian's libvirt daemon expects (without them every qemu:// connection
# fails with "Failed to parse user 'libvirt-qemu'") and the empty mount
# points a libvirt install normally has.  Everything else (libvirtd.conf,
# qemu.conf, state, sockets, logs) is private to each test "host" and lives
# under the test's work directory, bind-mounted in the host's own mount
# namespace: see vfpool/tests/functional/libvirt_hosts.py.  No daemon is
# started or enabled here.
#
# The packages come from bindep.txt (`bindep -b test`): qemu-system-x86
# libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-utils cpio
# busybox-static.  Then build the guest: tools/build-tiny-guest.sh
set -eu

if [ "$(id -u)" -ne 0 ]; then
    echo "$0: must run as root" >&2
    exit 1
fi

getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
getent passwd libvirt-qemu >/dev/null || \
    useradd --system -g libvirt-qemu -d /var/lib/libvirt \
        -s /usr/sbin/nologin libvirt-qemu

# Mount points the test hosts bind their private folders onto.
mkdir -p /etc/libvirt /var/lib/libvirt /run/libvirt /var/log/libvirt \
    /var/cache/libvirt

missing=
PATH=$PATH:/usr/sbin:/sbin
for tool in libvirtd qemu-system-x86_64 unshare mount; do
    command -v "$tool" >/dev/null || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    echo "$0: missing:$missing (apt-get install --no-install-recommends" \
         "qemu-system-x86 libvirt-daemon libvirt-daemon-driver-qemu" \
         "util-linux mount)" >&2
    exit 1
fi
echo "libvirt-qemu user and group present; libvirtd and QEMU found."
