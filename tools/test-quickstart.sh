#!/bin/bash
# Runs tools/quickstart.sh the way README says, on a clean machine as far
# as vfpool can tell: a fresh HOME (so a fresh ~/.vfpool, virtualenv and
# SQLite database) and no active virtualenv.  Checks what it prints (the
# agents' reports, the VF list, the claim round), runs it a second time,
# stops it with "tools/quickstart.sh stop" and checks that nothing it
# started still runs.  Also checks that it touches only what it made: a
# decoy vfpool.conf and vfpool.conf.d in the fresh HOME's ~/.vfpool (where
# oslo.config looks, as in /etc/vfpool) name another database, which must
# stay untouched; that README's "vfpool-status upgrade check" gives the
# result README explains; that an unreachable broker stops it at once
# with one line; and that "stop" kills, and says so, a service that
# ignores SIGTERM.
#
#   tools/test-quickstart.sh prepare   fill the wheelhouse (needs PyPI)
#   tools/test-quickstart.sh           the test (offline)
#
# The test installs from the wheelhouse only (build/quickstart-wheels,
# filled by "prepare", as tools/run-tests.sh does before the tests), so
# nothing is downloaded while it runs.  It uses the local RabbitMQ
# through a virtual host of its own, deleted at the end, so that it meets
# no other user of the broker; without rabbitmqctl it falls back to the
# default virtual host with a topic of its own.
set -o errexit -o nounset -o pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WHEELS=$TOP/build/quickstart-wheels
PYTHON=${PYTHON:-python3}
SUDO=""
[[ $(id -u) == 0 ]] || SUDO=sudo

fail() {
    echo "quickstart test FAILED: $*" >&2
    exit 1
}

if [[ ${1:-} == prepare ]]; then
    # What the quickstart installs, as wheels: bindep, vfpool's
    # requirements with its libvirt extra (libvirt-python is built here,
    # once), and the build requirements of pyproject.toml.
    # Filled once per set of requirements and Python version, so that a
    # second tools/run-tests.sh needs no network.
    stamp="$(cat "$TOP/setup.cfg" "$TOP/requirements.txt" \
        "$TOP/pyproject.toml" | sha256sum | cut -d' ' -f1) $($PYTHON -V)"
    if [[ $(cat "$WHEELS/.stamp" 2>/dev/null) == "$stamp" ]]; then
        echo "wheelhouse $WHEELS: up to date, $(ls "$WHEELS" | wc -l) wheels"
        exit 0
    fi
    rm -rf "$WHEELS"
    $PYTHON -m pip wheel -q --disable-pip-version-check -w "$WHEELS" \
        "$TOP[libvirt]" bindep pbr setuptools
    rm -f "$WHEELS"/vfpool-*.whl
    echo "$stamp" > "$WHEELS/.stamp"
    echo "wheelhouse $WHEELS: $(ls "$WHEELS" | wc -l) wheels"
    exit 0
fi
[[ -d $WHEELS ]] || fail "no wheelhouse: run '$0 prepare' first"

WORK=$(mktemp -d /tmp/vfpool-quickstart-test.XXXXXX)
VHOST=
finish() {
    local rc=$?
    set +o errexit
    if [[ -d $WORK/home/.vfpool/quickstart ]]; then
        HOME=$WORK/home "$TOP/tools/quickstart.sh" stop > /dev/null
        if [[ $rc -ne 0 ]]; then
            for log in "$WORK"/home/.vfpool/quickstart/*.log; do
                echo "--- $log" >&2
                tail -n 20 "$log" >&2
            done
        fi
    fi
    [[ -n $VHOST ]] && $SUDO rabbitmqctl -q delete_vhost "$VHOST"
    rm -rf "$WORK"
    exit $rc
}
trap finish EXIT

mkdir -p "$WORK/home"
export HOME=$WORK/home
unset VIRTUAL_ENV PYTHONPATH
# pip: the wheelhouse and nothing else.
export PIP_NO_INDEX=1 PIP_FIND_LINKS=$WHEELS
unset PIP_EXTRA_INDEX_URL PIP_INDEX_URL

if $SUDO rabbitmqctl -q add_vhost "vfpool-quickstart-test-$$" \
        > /dev/null 2>&1; then
    VHOST=vfpool-quickstart-test-$$
    $SUDO rabbitmqctl -q set_permissions -p "$VHOST" guest '.*' '.*' '.*' \
        > /dev/null
    export VFPOOL_QUICKSTART_TRANSPORT_URL=rabbit://guest:guest@127.0.0.1:5672/$VHOST
else
    export VFPOOL_QUICKSTART_TOPIC=vfpool-quickstart-test-$$
fi

INSTANCE=00000000-0000-4000-8000-0000000000a1
ADDRESSES=(0000:05:10.1 0000:05:10.3 0000:05:10.5 0000:05:10.7
           0000:05:11.1 0000:05:11.3 0000:05:11.5)
VF_ADDRESS='0000:05:1[01]\.[1357]'

# expect FILE REGEX WHAT
expect() {
    grep -Eq -- "$2" "$1" || fail "$3: no line matches '$2' in $1"
}

check_run() {
    local out=$1 host address
    ! grep -n Traceback "$out" || fail "a traceback in $out"
    for host in quickstart-1 quickstart-2; do
        expect "$out" "^vfpool-agent reported $host: 1 PF\(s\), 7 VF\(s\)$" \
            "report of $host"
        for address in "${ADDRESSES[@]}"; do
            expect "$out" "^\| $host +\| $address +\| 0000:05:00\.1 +\| physnet1 +\| 8086:10ca +\| 1 +\|" \
                "vf list row of $host $address"
        done
    done
    expect "$out" "^allocate: instance $INSTANCE holds $VF_ADDRESS \(PF 0000:05:00\.1, 8086:10ca, NUMA 1\) on quickstart-1, MAC fa:16:3e:00:00:a1$" \
        "allocate"
    expect "$out" "^prepare_migration [0-9a-f-]{36}: claimed $VF_ADDRESS .* on quickstart-2, MAC fa:16:3e:00:00:a1, lease until " \
        "prepare_migration"
    expect "$out" "^complete_migration: instance $INSTANCE now holds $VF_ADDRESS on quickstart-2; $VF_ADDRESS on quickstart-1 is free again$" \
        "complete_migration"
    expect "$out" "^\| quickstart-2 +\| $VF_ADDRESS +\| 0000:05:00\.1 +\| physnet1 +\| allocated +\| fa:16:3e:00:00:a1 " \
        "instance show"
}

pids() {
    cat "$HOME"/.vfpool/quickstart/*.pid
}

# Another deployment's configuration where oslo.config looks by default
# (~/.vfpool, like /etc/vfpool): a file, which --config-file overrides,
# and a directory, which it does not (--config-dir does).
DECOY_DB=$WORK/decoy.sqlite
mkdir -p "$HOME/.vfpool/vfpool.conf.d"
printf '[database]\nconnection = sqlite:///%s\n' "$DECOY_DB" \
    > "$HOME/.vfpool/vfpool.conf"
printf '[DEFAULT]\nrpc_topic = decoy\n[database]\nconnection = sqlite:///%s\n' \
    "$DECOY_DB" > "$HOME/.vfpool/vfpool.conf.d/decoy.conf"

SECONDS=0
echo "==> tools/quickstart.sh (first run, fresh HOME $HOME)"
"$TOP/tools/quickstart.sh" > "$WORK/first.out" 2>&1 || {
    cat "$WORK/first.out"; fail "the first run exited $?"; }
cat "$WORK/first.out"
check_run "$WORK/first.out"
[[ ! -e $DECOY_DB ]] || fail "the quickstart used the decoy configuration"
first=$SECONDS

echo "==> tools/quickstart.sh (second run)"
started=$(pids)
"$TOP/tools/quickstart.sh" > "$WORK/second.out" 2>&1 || {
    cat "$WORK/second.out"; fail "the second run exited $?"; }
cat "$WORK/second.out"
check_run "$WORK/second.out"
expect "$WORK/second.out" "^installed already from $TOP \(editable\), same requirements$" \
    "the second run does not reinstall"
expect "$WORK/second.out" "^stopped vfpool-server \(pid [0-9]+\)$" \
    "the second run restarts the server"
expect "$WORK/second.out" "^release: freed the 1 VF\(s\) " \
    "the second round frees the first one's VF"
for pid in $started; do
    ! kill -0 "$pid" 2>/dev/null || fail "pid $pid of the first run runs on"
done
second=$((SECONDS - first))

echo "==> vfpool-status upgrade check, as README says"
# README: it exits 2 here, for the SQLite check alone (two hosts report).
rc=0
(cd "$HOME/.vfpool/quickstart" &&
    "$HOME/.vfpool/venv/bin/vfpool-status" --config-file vfpool.conf \
        --config-dir vfpool.conf.d upgrade check --json) \
    > "$WORK/status.json" || rc=$?
cat "$WORK/status.json"
[[ $rc == 2 ]] || fail "vfpool-status upgrade check exited $rc, not 2"
"$HOME/.vfpool/venv/bin/python" - "$WORK/status.json" <<'PY' ||
import json, sys
checks = json.load(open(sys.argv[1]))['checks']
bad = {c['check']: c['result'] for c in checks if c['result']}
sys.exit(bad != {'SQLite and several hosts': 2})
PY
    fail "upgrade check: other results than README explains"

echo "==> tools/quickstart.sh stop"
started=$(pids)
"$TOP/tools/quickstart.sh" stop | tee "$WORK/stop.out"
for name in server agent-quickstart-1 agent-quickstart-2; do
    expect "$WORK/stop.out" "^stopped vfpool-$name \(pid [0-9]+\)$" \
        "stop stops vfpool-$name"
done
for pid in $started; do
    ! kill -0 "$pid" 2>/dev/null || fail "pid $pid runs on after stop"
done
ls "$HOME"/.vfpool/quickstart/*.pid > /dev/null 2>&1 && \
    fail "pid files left after stop"
stopped=$((SECONDS - first - second))

echo "==> tools/quickstart.sh with a broker that is not there"
# Port 1 of 127.0.0.1: closed, so refused at once.
rc=0
VFPOOL_QUICKSTART_TRANSPORT_URL=rabbit://guest:guest@127.0.0.1:1/ \
    "$TOP/tools/quickstart.sh" > "$WORK/nobroker.out" 2>&1 || rc=$?
cat "$WORK/nobroker.out"
[[ $rc == 1 ]] || fail "with no broker the quickstart exited $rc, not 1"
expect "$WORK/nobroker.out" "^quickstart: no RabbitMQ accepts a connection at 127\.0\.0\.1:1 within 5 s " \
    "the one line that says the broker is not there"
[[ $(wc -l < "$WORK/nobroker.out") == 1 ]] ||
    fail "more than one line without a broker"
ls "$HOME"/.vfpool/quickstart/*.pid > /dev/null 2>&1 && \
    fail "services started without a broker"

echo "==> tools/quickstart.sh stop, with a service that ignores SIGTERM"
# A stand-in for a stuck vfpool-server: its command line names its pid
# file under the quickstart's directory, as the real one names its config.
# Started as the quickstart starts its services, but not as a child of
# this shell, which would keep it as a zombie.
(setsid bash -c 'echo $$ > "$0"; trap "" TERM; while :; do sleep 1; done' \
    "$HOME/.vfpool/quickstart/server.pid" < /dev/null > /dev/null 2>&1 &)
for _ in $(seq 1 50); do
    [[ -s $HOME/.vfpool/quickstart/server.pid ]] && break
    sleep 0.1
done
stuck=$(cat "$HOME/.vfpool/quickstart/server.pid")
VFPOOL_QUICKSTART_STOP_TIMEOUT=1 "$TOP/tools/quickstart.sh" stop \
    | tee "$WORK/stuck.out"
expect "$WORK/stuck.out" "^killed vfpool-server \(pid $stuck\): it did not stop within 1 s of SIGTERM; " \
    "stop says it killed what ignored SIGTERM"
for _ in $(seq 1 50); do
    kill -0 "$stuck" 2>/dev/null || break
    sleep 0.1
done
! kill -0 "$stuck" 2>/dev/null || fail "pid $stuck runs on after stop"

echo "quickstart test passed: first run ${first} s, second run ${second} s," \
    "stop ${stopped} s"
