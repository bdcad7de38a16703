#!/bin/sh
# Prepare this machine (as root) for vfpool's real libvirt/QEMU functional
# tests.  Idempotent.  It only creates the 'libvirt-qemu' system user and
# group that Debian's libvirt daemon expects (without them every qemu://
# connection fails with "Failed to parse user 'libvirt-qemu'").  Everything
# else (libvirtd.conf, qemu.conf, state directories) is private to each test
# "host" and lives under the test's work directory, see
# vfpool/tests/functional/libvirt_hosts.py.
set -eu

if [ "$(id -u)" -ne 0 ]; then
    echo "$0: must run as root" >&2
    exit 1
fi

getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
getent passwd libvirt-qemu >/dev/null || \
    useradd --system -g libvirt-qemu -d /var/lib/libvirt \
        -s /usr/sbin/nologin libvirt-qemu

echo "libvirt-qemu user and group are present."
