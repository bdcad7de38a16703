#!/bin/sh
# Build the tiny Linux guest used by vfpool's libvirt/QEMU functional tests.
#
#   tools/build-tiny-guest.sh [DIR]     (default DIR: <repo>/.tiny-guest)
#
# Produces DIR/vmlinuz (Debian's own kernel, fetched with `apt-get download`
# and unpacked with `dpkg-deb -x`, never installed) and DIR/initrd.img (a
# cpio initramfs around the static /bin/busybox of busybox-static).  The
# guest's /init mounts proc, sys and dev, loads the virtio-net and e1000e
# drivers (modules in Debian's kernel) so hot-plugged NICs are really bound,
# prints the MACs it sees (VFPOOL-GUEST-NICS: ...) and VFPOOL-GUEST-READY on
# ttyS0, then keeps reporting every change of its NIC set.
#
# What makes a hot-unplug (libvirt detach) complete, so that DEVICE_REMOVED
# fires: a q35 machine with <features><acpi/></features> (QEMU >= 6.1 does
# hot-plug on pcie-root-ports through ACPI) and a guest kernel with ACPI PCI
# hotplug built in (CONFIG_HOTPLUG_PCI_ACPI=y in Debian's kernel).  The NIC
# driver is not required for that; it is loaded so the guest sees the NIC.
#
# Idempotent: does nothing when DIR already holds a build of this format
# (DIR/vmlinuz, DIR/initrd.img and DIR/format matching FORMAT below).
# Needs root or write access to DIR, apt-get (the Debian mirror), dpkg-deb,
# cpio, gzip and busybox-static.
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
DIR=${1:-$REPO/.tiny-guest}
READY_LINE=VFPOOL-GUEST-READY
NICS_PREFIX=VFPOOL-GUEST-NICS:
# Bump when the guest changes; vfpool/tests/functional/libvirt_hosts.py
# checks it (GUEST_FORMAT) so stale builds are rebuilt, not misused.
FORMAT=2
# Kernel modules to put in the initramfs; their dependencies are resolved
# from the modules themselves (the package carries no modules.dep).
MODULES="virtio_pci virtio_net e1000e"

if [ -s "$DIR/vmlinuz" ] && [ -s "$DIR/initrd.img" ] &&
   [ "$(cat "$DIR/format" 2>/dev/null)" = "$FORMAT" ]; then
    echo "tiny guest already built in $DIR"
    exit 0
fi

for tool in apt-get apt-cache dpkg-deb cpio gzip; do
    command -v "$tool" >/dev/null || {
        echo "$0: '$tool' is missing" >&2; exit 1; }
done
BUSYBOX=/bin/busybox
if ! [ -x "$BUSYBOX" ] || ! "$BUSYBOX" --list | grep -qx insmod; then
    echo "$0: $BUSYBOX (package busybox-static) is missing" >&2
    exit 1
fi
if command -v file >/dev/null &&
   ! file -L "$BUSYBOX" | grep -q 'statically linked'; then
    echo "$0: $BUSYBOX is not statically linked; install busybox-static" >&2
    exit 1
fi

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vfpool-tiny-guest.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 1' INT TERM

# linux-image-amd64 is a meta package: resolve the versioned image it
# depends on (e.g. linux-image-6.1.0-26-amd64) and fetch that.
KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null |
       sed -n 's/^ *Depends: *\(linux-image-[0-9][^ ]*-amd64\)$/\1/p' |
       head -n 1)
if [ -z "$KPKG" ]; then
    echo "$0: cannot resolve the kernel package behind linux-image-amd64" \
         "(run apt-get update?)" >&2
    exit 1
fi
echo "fetching $KPKG"
(cd "$WORK" && apt-get download "$KPKG" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
DEB=$(ls "$WORK"/"$KPKG"_*.deb 2>/dev/null | head -n 1)
if [ -z "$DEB" ]; then
    echo "$0: apt-get download $KPKG failed" >&2
    exit 1
fi
dpkg-deb -x "$DEB" "$WORK/kernel"
VMLINUZ=$(ls "$WORK"/kernel/boot/vmlinuz-* | head -n 1)
MODDIR=$(ls -d "$WORK"/kernel/lib/modules/* | head -n 1)
KCONFIG=$(ls "$WORK"/kernel/boot/config-* | head -n 1)

# --- initramfs tree -------------------------------------------------------
ROOT=$WORK/root
mkdir -p "$ROOT/bin" "$ROOT/proc" "$ROOT/sys" "$ROOT/dev" "$ROOT/tmp" \
         "$ROOT/modules"
cp "$BUSYBOX" "$ROOT/bin/busybox"
ln -s busybox "$ROOT/bin/sh"

# Resolve module load order (dependencies first) from each module's
# "depends=" modinfo string; built-in drivers need nothing.
ORDER=$WORK/modules.order
: >"$ORDER"
add_module() {
    # 'local' is not POSIX but dash, bash and busybox sh all have it.
    local name file alt deps dep
    name=$1
    grep -qx "$name" "$ORDER" && return 0
    file=$(find "$MODDIR/kernel" -name "$name.ko" -o -name "$name.ko.xz" \
               -o -name "$name.ko.zst" -o -name "$name.ko.gz" | head -n 1)
    if [ -z "$file" ]; then
        if grep -q "/$name.ko\$" "$MODDIR/modules.builtin" 2>/dev/null; then
            return 0
        fi
        # Module names use '_' while file names may use '-'.
        alt=$(echo "$name" | tr _ -)
        file=$(find "$MODDIR/kernel" -name "$alt.ko*" | head -n 1)
        [ -n "$file" ] || { echo "$0: module $name not found" >&2; exit 1; }
    fi
    case "$file" in
        *.ko) cp "$file" "$ROOT/modules/$name.ko" ;;
        *.ko.xz) xz -dc "$file" >"$ROOT/modules/$name.ko" ;;
        *.ko.zst) zstd -qdc "$file" >"$ROOT/modules/$name.ko" ;;
        *.ko.gz) gzip -dc "$file" >"$ROOT/modules/$name.ko" ;;
    esac
    deps=$(grep -a -o 'depends=[A-Za-z0-9_,-]*' "$ROOT/modules/$name.ko" |
           head -n 1 | sed 's/^depends=//; s/,/ /g')
    for dep in $deps; do
        add_module "$dep"
    done
    echo "$name" >>"$ORDER"
}
for m in $MODULES; do
    add_module "$m"
done
cp "$ORDER" "$ROOT/modules/order"

cat >"$ROOT/init" <<INIT
#!/bin/sh
# vfpool tiny guest: bring up the bare minimum, bind NIC drivers, report.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mdev -s
for m in \$(cat /modules/order); do
    insmod /modules/\$m.ko 2>/dev/null
done
nics() {
    cat /sys/class/net/*/address 2>/dev/null | grep -v '^00:00:00:00:00:00' |
        sort -u | tr '\n' ' '
}
last=\$(nics)
echo "$NICS_PREFIX \$last" >/dev/ttyS0
echo "$READY_LINE" >/dev/ttyS0
# PID 1 must live for ever; report the NICs the guest sees when they change.
while :; do
    now=\$(nics)
    if [ "\$now" != "\$last" ]; then
        echo "$NICS_PREFIX \$now" >/dev/ttyS0
        last=\$now
    fi
    sleep 0.5
done
INIT
chmod 0755 "$ROOT/init"

(cd "$ROOT" && find . | cpio -o -H newc --quiet | gzip -9) >"$WORK/initrd.img"

# Sanity: the kernel must answer ACPI hot-unplug requests on its own.
if ! grep -q '^CONFIG_HOTPLUG_PCI_ACPI=y' "$KCONFIG"; then
    echo "$0: warning: $KPKG lacks built-in ACPI PCI hotplug;" \
         "device detach will not complete" >&2
fi

cp "$VMLINUZ" "$DIR/vmlinuz.tmp"
mv "$DIR/vmlinuz.tmp" "$DIR/vmlinuz"
cp "$WORK/initrd.img" "$DIR/initrd.img.tmp"
mv "$DIR/initrd.img.tmp" "$DIR/initrd.img"
echo "$KPKG" >"$DIR/kernel-package"
echo "$FORMAT" >"$DIR/format"
echo "tiny guest built in $DIR: kernel $KPKG, modules: $(tr '\n' ' ' <"$ORDER")"
