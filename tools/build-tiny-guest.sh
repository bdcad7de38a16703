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
# Guest networking (format 3), off unless the kernel command line asks:
#   vfpool.net=bond,IP/PREFIX,VF_MAC,STANDBY_MAC
#       an active-backup bond0 (MAC VF_MAC, address IP/PREFIX) over the NIC
#       with VF_MAC (primary) and the NIC with STANDBY_MAC;
#   vfpool.net=plain,IP/PREFIX,MAC
#       the address on the NIC with MAC itself.
# A NIC hot-plugged later is configured the same way, run for each kernel
# uevent by busybox's uevent (as a udev rule would be), and the
# guest reports its network on ttyS0 whenever it changes:
#   VFPOOL-GUEST-NET: bond active=DRIVER:IFACE slaves=DRIVER:IFACE,...
#   VFPOOL-GUEST-NET: plain up=DRIVER:IFACE   (or up=none)
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
NET_PREFIX=VFPOOL-GUEST-NET:
# Bump when the guest changes; vfpool/tests/functional/libvirt_hosts.py
# checks it (GUEST_FORMAT) so stale builds are rebuilt, not misused.
FORMAT=3
# Kernel modules to put in the initramfs; their dependencies are resolved
# from the modules themselves (the package carries no modules.dep).
MODULES="virtio_pci virtio_net e1000e bonding"

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
    # No bond until vfpool.net asks for one (see /bin/vfnet).
    case \$m in bonding) args=max_bonds=0 ;; *) args= ;; esac
    insmod /modules/\$m.ko \$args 2>/dev/null
done
nics() {
    for n in /sys/class/net/*; do
        [ -e \$n/device ] && cat \$n/address
    done 2>/dev/null | grep -v '^00:00:00:00:00:00' | sort -u | tr '\n' ' '
}
/bin/vfnet setup
last=\$(nics)
lastnet=\$(/bin/vfnet report)
echo "$NICS_PREFIX \$last" >/dev/ttyS0
[ -n "\$lastnet" ] && echo "$NET_PREFIX \$lastnet" >/dev/ttyS0
echo "$READY_LINE" >/dev/ttyS0
# PID 1 must live for ever; report the NICs the guest sees when they change.
while :; do
    now=\$(nics)
    if [ "\$now" != "\$last" ]; then
        echo "$NICS_PREFIX \$now" >/dev/ttyS0
        last=\$now
    fi
    net=\$(/bin/vfnet report)
    if [ "\$net" != "\$lastnet" ]; then
        echo "$NET_PREFIX \$net" >/dev/ttyS0
        lastnet=\$net
    fi
    sleep 0.5
done
INIT
chmod 0755 "$ROOT/init"

# The guest's network, set up as ifupdown, NetworkManager or networkd would;
# run by /init at boot and for every kernel uevent (busybox uevent),
# which is how a hot-plugged NIC joins the bond.
cat >"$ROOT/bin/vfnet" <<'VFNET'
#!/bin/sh
# vfnet setup | add IFACE | report ; else run by busybox uevent.
cfg=$(sed -n 's/.*vfpool\.net=\([^ ]*\).*/\1/p' /proc/cmdline)
[ -n "$cfg" ] || exit 0
mode=${cfg%%,*}; rest=${cfg#*,}
addr=${rest%%,*}; rest=${rest#*,}
mac1=${rest%%,*}; mac2=${rest#*,}
[ "$mac2" = "$rest" ] && [ "$mode" = plain ] && mac2=
B=/sys/class/net/bond0/bonding

lock() { until mkdir /tmp/vfnet.lock 2>/dev/null; do usleep 20000; done; }
unlock() { rmdir /tmp/vfnet.lock; }
driver() { basename "$(readlink /sys/class/net/$1/device/driver)"; }

add() {
    n=$1
    [ -e /sys/class/net/$n/device ] || return 0
    [ -e /tmp/vfnet.ready ] || return 0
    mac=$(cat /sys/class/net/$n/address)
    if [ "$mode" = bond ]; then
        [ -e /sys/class/net/$n/master ] && return 0
        [ "$mac" = "$mac1" ] || [ "$mac" = "$mac2" ] || return 0
        ip link set $n down
        echo +$n >$B/slaves
        [ "$mac" = "$mac1" ] && echo $n >$B/primary
    elif [ "$mac" = "$mac1" ]; then
        ip addr add $addr dev $n 2>/dev/null
        ip link set $n up
    fi
    return 0
}

case "$1" in
setup)
    ip link set lo up
    if [ "$mode" = bond ]; then
        echo +bond0 >/sys/class/net/bonding_masters
        echo active-backup >$B/mode
        echo 100 >$B/miimon
        echo always >$B/primary_reselect
        ip link set bond0 address $mac1
        ip addr add $addr dev bond0
        ip link set bond0 up
    fi
    # What udev does: run the rules (here: vfnet) for every kernel uevent.
    uevent /bin/vfnet >/dev/null 2>&1 &
    lock
    touch /tmp/vfnet.ready
    for n in $(ls /sys/class/net); do add $n; done
    unlock
    ip addr >/dev/ttyS0
    ;;
add)
    lock; add "$2"; unlock ;;
report)
    if [ "$mode" = bond ]; then
        a=$(cat $B/active_slave 2>/dev/null)
        s=
        for n in $(cat $B/slaves 2>/dev/null); do
            s="$s${s:+,}$(driver $n):$n"
        done
        echo "bond active=${a:+$(driver $a):}${a:-none} slaves=${s:-none}"
    else
        up=none
        for n in $(ls /sys/class/net); do
            [ -e /sys/class/net/$n/device ] || continue
            [ "$(cat /sys/class/net/$n/address)" = "$mac1" ] || continue
            ip addr show dev $n | grep -q "inet " && up=$(driver $n):$n
        done
        echo "plain up=$up"
    fi
    ;;
*)  # From busybox uevent, once per kernel uevent (as a udev rule).
    if [ "$SUBSYSTEM" = net ] && [ "$ACTION" = add ]; then
        lock; add "$INTERFACE"; unlock
    fi
    ;;
esac
VFNET
chmod 0755 "$ROOT/bin/vfnet"

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
