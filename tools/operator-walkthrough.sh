#!/bin/bash
# Follows doc/source/install/index.rst ("Install vfpool on a single
# machine") as a new operator would, and nothing else: a config file with
# SQLite under a fresh state_path and the local RabbitMQ, "vfpool-manage db
# sync", vfpool-server and vfpool-agent in the background, then the checks
# of the guide.  The agent reads a libvirt test-driver host from
# vfpool/tests/data/hosts instead of real hardware.
#
# Exits non-zero on any failure, after stopping both services.
# Environment: VFPOOL_WALKTHROUGH_TRANSPORT_URL (default: the local
# RabbitMQ's guest account), VFPOOL_WALKTHROUGH_TIMEOUT (seconds, 90).

set -o errexit -o nounset -o pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TRANSPORT_URL=${VFPOOL_WALKTHROUGH_TRANSPORT_URL:-rabbit://guest:guest@127.0.0.1:5672/}
TIMEOUT=${VFPOOL_WALKTHROUGH_TIMEOUT:-90}
HOST_XML=$TOP/vfpool/tests/data/hosts/compute_2numa.xml
# compute_2numa.xml: 12 Intel E810 VFs (8086) and 10 ConnectX-6 Dx VFs
# (15b3) behind 4 PFs, plus devices that are not VFs.
EXPECTED_NETWORKS='{"physnet1": 12, "physnet2": 10}'
EXPECTED_PFS=4
HOST=walkthrough-$$

WORK=$(mktemp -d /tmp/vfpool-walkthrough.XXXXXX)
CONF=$WORK/vfpool.conf
PIDS=()

fail() {
    echo "operator walkthrough FAILED: $*" >&2
    exit 1
}

finish() {
    local rc=$?
    set +o errexit
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM -- -$pid 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 30); do
            kill -0 -- -$pid 2>/dev/null || break
            sleep 1
        done
        kill -KILL -- -$pid 2>/dev/null
    done
    if [[ $rc -ne 0 ]]; then
        for log in $WORK/*.log; do
            echo "--- $log" >&2
            tail -n 30 $log >&2
        done
    fi
    rm -rf $WORK
    exit $rc
}
trap finish EXIT

step() {
    echo "==> $*"
}

# "The configuration file": the guide's minimal file, on SQLite (no
# [database] section) and with a private exchange so that nothing else on
# this broker sees our messages.
step "Writing $CONF"
cat > $CONF <<CONF
[DEFAULT]
host = $HOST
state_path = $WORK/state
transport_url = $TRANSPORT_URL
control_exchange = vfpool-walkthrough-$$

[agent]
libvirt_uri = test://$HOST_XML
report_interval = 5
device_spec = {"vendor_id": "8086", "physical_network": "physnet1"}
device_spec = {"vendor_id": "15b3", "physical_network": "physnet2"}
CONF

step "Creating the schema"
vfpool-manage --config-file $CONF db sync

# "Start the services": each in its own session, so that it and its
# workers are stopped together.
step "Starting vfpool-server and vfpool-agent"
setsid vfpool-server --config-file $CONF > $WORK/server.log 2>&1 < /dev/null &
PIDS+=($!)
setsid vfpool-agent --config-file $CONF > $WORK/agent.log 2>&1 < /dev/null &
PIDS+=($!)

# "Check": wait until vfpool-manage vf list shows the VFs.
step "Waiting for the agent's report"
count_networks='
import collections, json, sys
counts = collections.Counter(vf["physical_network"] for vf in json.load(sys.stdin))
print(json.dumps(dict(sorted(counts.items()))))
'
networks=
for _ in $(seq 1 $TIMEOUT); do
    for pid in "${PIDS[@]}"; do
        kill -0 $pid 2>/dev/null || fail "a service exited early (pid $pid)"
    done
    networks=$(vfpool-manage --config-file $CONF vf list --format json | \
        python3 -c "$count_networks")
    [[ "$networks" == "$EXPECTED_NETWORKS" ]] && break
    sleep 1
done
[[ "$networks" == "$EXPECTED_NETWORKS" ]] || \
    fail "vf list shows $networks, expected $EXPECTED_NETWORKS"
echo "vf list: $networks"

step "Checking the host"
vfpool-manage --config-file $CONF host list
vfpool-manage --config-file $CONF host show $HOST --format json | python3 -c "
import json, sys
host = json.load(sys.stdin)
available = sum(c['available'] for c in host['physical_networks'].values())
assert host['pf_count'] == $EXPECTED_PFS, host
assert available == host['vf_count'] == 22, host
assert not host['disabled'] and host['last_report_at'], host
" || fail "host show does not match the inventory"

step "Running the upgrade checks"
vfpool-status --config-file $CONF upgrade check || \
    fail "vfpool-status upgrade check exited $?"

step "Stopping the services"
for pid in "${PIDS[@]}"; do
    kill -TERM -- -$pid
done
for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 30); do
        kill -0 -- -$pid 2>/dev/null || continue 2
        sleep 1
    done
    fail "pid $pid did not stop within 30 s of SIGTERM"
done
PIDS=()
echo "operator walkthrough passed"
