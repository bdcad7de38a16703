#!/bin/bash
# README's two commands on the machine README describes: a fresh Debian 12
# with python3 and git only.  Run by hand, as root (not by CI):
#
#   tools/test-fresh-root.sh [all]    build, prepare, run, clean
#   tools/test-fresh-root.sh build    debootstrap the root, clone this repo
#   tools/test-fresh-root.sh prepare  tools/run-tests.sh --install-only
#   tools/test-fresh-root.sh run      quickstart, stop, then run-tests.sh
#   tools/test-fresh-root.sh quickstart | tests   one half of "run"
#   tools/test-fresh-root.sh clean [--remove]     stop, unmount, (remove)
#
# The root (VFPOOL_FRESH_ROOT, /var/tmp/vfpool-fresh-root) comes from
# "debootstrap bookworm" with python3 and git added, from the Debian
# mirror apt uses here (VFPOOL_FRESH_MIRROR overrides); the repository is
# cloned into it at the current commit (VFPOOL_FRESH_REF overrides).
#
# The commands run in the root under a network namespace of its own
# (vfpool-fresh, only "lo"), so that its RabbitMQ, MariaDB and PostgreSQL
# never meet this machine's on 5672, 3306 and 5432.  That namespace has no
# route out, so "prepare" runs in this machine's network first: it is the
# install half of README's test command (apt packages, pip wheels, tox
# environments, the tiny guest), with a policy-rc.d that keeps apt from
# starting the servers (they would meet this machine's).  In the namespace
# the quickstart then installs from the wheelhouse run-tests.sh filled
# (pip has no index there) and run-tests.sh finds its installs done.
# Each command's time is printed and summed up at the end.
set -o errexit -o nounset -o pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=${VFPOOL_FRESH_ROOT:-/var/tmp/vfpool-fresh-root}
NETNS=vfpool-fresh
REPO=/root/vfpool                   # the clone, inside the root
SUITE=bookworm
TIMES=()

die() { echo "test-fresh-root: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "must run as root (debootstrap, chroot, netns)"

# The Debian mirror of apt's configured sources.
mirror() {
    if [[ -n ${VFPOOL_FRESH_MIRROR:-} ]]; then
        echo "$VFPOOL_FRESH_MIRROR"
        return
    fi
    local url
    url=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
          sed -n 's,^URIs: *\([^ ]*/debian\)/*$,\1,p' | head -n 1)
    [[ -n $url ]] || url=$(sed -n 's,^deb *\([^ ]*/debian\)/* .*,\1,p' \
        /etc/apt/sources.list 2>/dev/null | head -n 1)
    [[ -n $url ]] || die "no Debian mirror in /etc/apt/sources.list*;" \
        "set VFPOOL_FRESH_MIRROR"
    echo "$url"
}

# timed NAME COMMAND...: runs it, prints and records its time.
timed() {
    local name=$1 start rc=0
    shift
    start=$SECONDS
    echo "=== $name: $* ($(date -u +%H:%M:%S))"
    "$@" || rc=$?
    TIMES+=("$(printf '%-44s %5d s  exit %d' "$name" $((SECONDS - start)) $rc)")
    echo "=== $name: exit $rc after $((SECONDS - start)) s"
    return $rc
}

summary() {
    [[ ${#TIMES[@]} -gt 0 ]] || return 0
    echo
    echo "=== times ($(date -u +%H:%M:%S))"
    printf '%s\n' "${TIMES[@]}"
}
trap summary EXIT

# in_root [--netns] COMMAND...: COMMAND in the root, as root, with the
# environment of a fresh login (none of this machine's PIP_* and the like).
in_root() {
    local netns=()
    if [[ $1 == --netns ]]; then
        netns=(ip netns exec "$NETNS")
        shift
    fi
    "${netns[@]}" nice -n 10 chroot "$ROOT" env -i HOME=/root \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 TERM=dumb "${TRUST[@]}" "$@"
}

# This machine may reach the network through a TLS proxy whose CA only
# its own trust store holds: the root gets the CAs this machine trusts
# beyond Debian's, and the variables that make pip (also the pip of tox's
# virtualenvs, which brings its own CA list) use the system's store.
TRUST=()
if [[ -n ${PIP_CERT:-}${REQUESTS_CA_BUNDLE:-}${SSL_CERT_FILE:-} ]]; then
    TRUST=(PIP_CERT=/etc/ssl/certs/ca-certificates.crt
           REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
           SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt)
fi
host_cas() {
    local dir=$ROOT/usr/local/share/ca-certificates
    mkdir -p "$dir"
    python3 - /etc/ssl/certs/ca-certificates.crt \
        "$ROOT/etc/ssl/certs/ca-certificates.crt" "$dir" <<'PY'
import re, sys
def certs(path):
    text = open(path).read()
    return re.findall(r'-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----',
                      text, re.S)
ours = set(certs(sys.argv[2]))
extra = [c for c in certs(sys.argv[1]) if c not in ours]
for n, cert in enumerate(extra):
    with open('%s/vfpool-fresh-host-%d.crt' % (sys.argv[3], n), 'w') as f:
        f.write(cert + '\n')
print('CAs of this machine added to the root: %d' % len(extra))
PY
    in_root update-ca-certificates >/dev/null
}

mounted() { mountpoint -q "$ROOT/$1"; }

mount_all() {
    # The root a mount point of its own, as / is on a machine: "unshare
    # -m" (the libvirt tests' private hosts) cannot make a / private that
    # is not one.
    mountpoint -q "$ROOT" || mount --bind "$ROOT" "$ROOT"
    mounted proc || mount -t proc proc "$ROOT/proc"
    mounted sys || mount -t sysfs sysfs "$ROOT/sys"
    if ! mounted dev; then
        # QEMU and the tests' helpers need the real devices, pts and shm.
        mount --rbind /dev "$ROOT/dev"
        mount --make-rslave "$ROOT/dev"
    fi
}

umount_all() {
    local dir
    for dir in run dev sys proc; do
        if mounted "$dir"; then
            umount -R "$ROOT/$dir" || umount -R -l "$ROOT/$dir"
        fi
    done
    if mountpoint -q "$ROOT"; then
        umount -R "$ROOT" || umount -R -l "$ROOT"
    fi
}

# The processes whose root is the fresh root (the services it started).
root_pids() {
    local proc root
    root=$(readlink -f "$ROOT")
    for proc in /proc/[0-9]*; do
        [[ $(readlink "$proc/root" 2>/dev/null) == "$root" ]] &&
            echo "${proc#/proc/}"
    done
    return 0
}

stop_root_processes() {
    local pids
    pids=$(root_pids)
    [[ -n $pids ]] || return 0
    echo "stopping the root's processes:" $pids
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 1 30); do
        pids=$(root_pids)
        [[ -n $pids ]] || return 0
        sleep 1
    done
    echo "killing what did not stop within 30 s:" $pids
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
}

build() {
    command -v debootstrap >/dev/null ||
        die "debootstrap is missing: apt-get install debootstrap"
    [[ ! -e $ROOT ]] || die "$ROOT exists: '$0 clean --remove' first"
    local url ref
    url=$(mirror)
    timed "debootstrap $SUITE (+python3, git)" nice -n 10 \
        debootstrap --include=python3,git "$SUITE" "$ROOT" "$url"
    # What an installed machine has and debootstrap leaves out: its own
    # name in /etc/hosts (Erlang's node name, RabbitMQ's, needs it).
    printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n' "$(hostname)" \
        > "$ROOT/etc/hosts"
    ref=${VFPOOL_FRESH_REF:-$(git -C "$TOP" rev-parse HEAD)}
    timed "git clone ($ref)" git clone -q "$TOP" "$ROOT$REPO"
    git -C "$ROOT$REPO" checkout -q "$ref"
    in_root python3 -m pip --version 2>&1 | sed 's/^/fresh root: /' || true
}

prepare() {
    [[ -d $ROOT$REPO ]] || die "no root at $ROOT: '$0 build' first"
    mount_all
    # apt in a chroot must not start the servers: they would bind this
    # machine's ports (a real machine starts them with systemd).
    host_cas
    printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"
    chmod 755 "$ROOT/usr/sbin/policy-rc.d"
    local rc=0
    timed "run-tests.sh --install-only (host network)" \
        in_root bash -c "cd $REPO && tools/run-tests.sh --install-only" ||
        rc=$?
    rm -f "$ROOT/usr/sbin/policy-rc.d"
    # pg_createcluster gave the root's cluster the next free port, as this
    # machine's PostgreSQL holds 5432 in this network: give it 5432 back,
    # as on a machine of its own.
    local conf
    for conf in "$ROOT"/etc/postgresql/*/main/postgresql.conf; do
        [[ -f $conf ]] && sed -i -E 's/^port = [0-9]+/port = 5432/' "$conf"
    done
    return $rc
}

netns_up() {
    ip netns list | grep -qw "$NETNS" || ip netns add "$NETNS"
    ip netns exec "$NETNS" ip link set lo up
    mount_all
    # A fresh boot's /run: empty (no /run/mysqld, /run/postgresql).
    mounted run || mount -t tmpfs -o mode=755 tmpfs "$ROOT/run"
    mkdir -p "$ROOT/run/lock"
}

quickstart() {
    netns_up
    # pip has no index in the namespace: the wheels run-tests.sh fetched.
    local offline="PIP_NO_INDEX=1 PIP_FIND_LINKS=$REPO/build/quickstart-wheels"
    local qs=/root/.vfpool/quickstart rc=0
    timed "quickstart.sh (netns, first run)" in_root --netns bash -c \
        "cd $REPO && $offline tools/quickstart.sh" || rc=$?
    if [[ $rc == 0 ]]; then
        timed "quickstart.sh (netns, second run)" in_root --netns bash -c \
            "cd $REPO && $offline tools/quickstart.sh" >/dev/null || rc=$?
        # README: exits 2 on the quickstart's setup, and says why.
        timed "vfpool-status upgrade check (README: 2)" in_root --netns \
            bash -c "cd $qs && /root/.vfpool/venv/bin/vfpool-status --config-file vfpool.conf --config-dir vfpool.conf.d upgrade check" ||
            true
    fi
    timed "quickstart.sh stop (netns)" in_root --netns bash -c \
        "cd $REPO && tools/quickstart.sh stop" || rc=$?
    return $rc
}

tests() {
    netns_up
    timed "run-tests.sh (netns) $*" in_root --netns bash -c \
        "cd $REPO && tools/run-tests.sh \"\$@\"" run-tests "$@"
}

clean() {
    if [[ -d $ROOT ]]; then
        stop_root_processes
        umount_all
    fi
    ! ip netns list | grep -qw "$NETNS" || ip netns delete "$NETNS"
    if [[ ${1:-} == --remove && -d $ROOT ]]; then
        # Only when nothing is mounted below it any more.
        ! grep -q " $(readlink -f "$ROOT")/" /proc/mounts ||
            die "still mounted below $ROOT; not removing it"
        rm -rf --one-file-system "$ROOT"
        echo "removed $ROOT"
    fi
}

case ${1:-all} in
    all)
        build
        prepare
        rc=0
        quickstart || rc=$?
        tests || rc=$?
        clean
        exit $rc ;;
    build) build ;;
    prepare) prepare ;;
    run)
        rc=0
        quickstart || rc=$?
        tests || rc=$?
        exit $rc ;;
    quickstart) quickstart ;;
    tests) shift; tests "$@" ;;
    clean) shift; clean "$@" ;;
    *) die "usage: $0 [all|build|prepare|run|quickstart|tests|clean [--remove]]" ;;
esac
