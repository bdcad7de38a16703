#!/bin/bash
# Runs the devstack plugin's phases for real, in stack.sh's order, on this
# machine's MariaDB and RabbitMQ, with devstack's helpers replaced by the
# stand-ins of tools/devstack-stubs.sh:
#
#   stack install, stack post-config, stack extra   (stack.sh)
#   -> vfpool-server must answer RPC pings, the agent must report, and
#   with VFPOOL_NOVA_DRIVER=True nova-compute (a stand-in started as
#   devstack would) must be configured for vfpool's driver and started
#   again as vfpool-nova-compute
#   unstack                                          (unstack.sh)
#   clean                                            (clean.sh)
#
# The agent reads libvirt's test driver (no SR-IOV hardware needed).
# Exits non-zero on the first failure, after stopping what it started.
# Environment: DATABASE_PASSWORD (MariaDB root), RABBIT_HOST/USERID/
# PASSWORD; defaults suit tools/test-setup.sh machines.

set -o errexit -o pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d /tmp/vfpool-devstack-smoke.XXXXXX)
export DEST=$WORK/opt
mkdir -p $DEST

source $TOP/tools/devstack-stubs.sh

# What local.conf would say.
VFPOOL_DIR=$TOP
VFPOOL_CONF_DIR=$WORK/etc/vfpool
VFPOOL_STATE_PATH=$WORK/data/vfpool
VFPOOL_CONTROL_EXCHANGE=vfpool-smoke-$$
VFPOOL_LIBVIRT_URI=test://$TOP/vfpool/tests/data/hosts/fixtures_intel.xml
VFPOOL_REPORT_INTERVAL=2
VFPOOL_DEVICE_SPEC='{"vendor_id": "8086", "product_id": "10ca", "physical_network": "physnet1"}; {"vendor_id": "8086", "physical_network": "physnet2"}'
# fixtures_intel.xml: 7 82576 VFs (10ca) and 8 other Intel VFs.
EXPECTED='{"physnet1": 7, "physnet2": 8}'
# nova-compute with vfpool's driver; what devstack's lib/nova provides.
VFPOOL_NOVA_DRIVER=True
enable_service n-cpu
NOVA_CPU_CONF=$WORK/etc/nova/nova-cpu.conf
LIBVIRT_GROUP=libvirt

source $TOP/devstack/settings

phase() {
    echo_summary "plugin.sh $*"
    source $TOP/devstack/plugin.sh "$@"
}

finish() {
    local rc=$?
    set +o errexit
    if [[ $rc -ne 0 ]]; then
        echo "devstack smoke test FAILED (rc $rc); logs:" >&2
        tail -n 40 $LOGDIR/*.log >&2 2>/dev/null
        stop_process vfpool-agent
        stop_process vfpool-server
        stop_process n-cpu
    fi
    drop_database vfpool
    rm -rf $WORK
    exit $rc
}
trap finish EXIT

phase stack install
phase stack post-config
[[ -f $VFPOOL_CONF ]] || die $LINENO "no $VFPOOL_CONF after post-config"
grep -q "^device_spec = .*physnet2" $VFPOOL_CONF || \
    die $LINENO "device specs not written"
# devstack's start_nova_compute has written nova-cpu.conf and started
# n-cpu (stock nova-compute) before the plugins' extra phase.
mkdir -p $(dirname $NOVA_CPU_CONF)
printf '[DEFAULT]\ncompute_driver = libvirt.LibvirtDriver\n' > $NOVA_CPU_CONF
run_process n-cpu "sleep 600"
STOCK_NOVA_COMPUTE=$(cat $SERVICE_DIR/n-cpu.pid)
phase stack extra

echo_summary "Checking that nova-compute runs vfpool's driver"
grep -qx "compute_driver = vfpool.VfpoolLibvirtDriver" $NOVA_CPU_CONF || \
    die $LINENO "compute_driver not set in $NOVA_CPU_CONF"
python3 - "$NOVA_CPU_CONF" "$VFPOOL_CONF" <<'PYEOF' || \
    die $LINENO "[vfpool] config_file not set in $NOVA_CPU_CONF"
import configparser
import sys
parser = configparser.ConfigParser()
parser.read(sys.argv[1])
sys.exit(parser.get('vfpool', 'config_file') != sys.argv[2])
PYEOF
! kill -0 $STOCK_NOVA_COMPUTE 2>/dev/null || \
    die $LINENO "the stock nova-compute was not stopped"
expected="+ $(get_python_exec_prefix)/vfpool-nova-compute --config-file $NOVA_CPU_CONF"
[[ "$(head -n 1 $LOGDIR/n-cpu.log)" == "$expected" ]] || \
    die $LINENO "n-cpu runs '$(head -n 1 $LOGDIR/n-cpu.log)', expected '$expected'"
echo "n-cpu restarted as vfpool-nova-compute"

echo_summary "Checking that vfpool-server answers over RPC"
python3 - "$VFPOOL_CONF" <<'PYEOF'
import sys
import time

import vfpool.cmd  # noqa: F401  (selects oslo.service's threading backend)

import oslo_messaging as messaging

from vfpool import config
from vfpool import rpcapi

conf = config.parse_args(['--config-file', sys.argv[1]],
                         setup_logging=False)
api = rpcapi.VfpoolAPI(conf, timeout=5)
deadline = time.time() + 90
while True:
    try:
        answer = api.ping(None)
        break
    except messaging.MessagingTimeout:
        if time.time() > deadline:
            sys.exit('vfpool-server did not answer ping within 90 s')
print('ping: %s' % answer)
api.transport.cleanup()
if answer.get('version') != rpcapi.RPC_API_VERSION:
    sys.exit('unexpected ping answer %r' % answer)
PYEOF

echo_summary "Checking that vfpool-agent reported its VFs"
HOST=$(python3 -c 'import socket; print(socket.gethostname())')
for i in $(seq 1 60); do
    if counts=$(vfpool-manage --config-file $VFPOOL_CONF host show $HOST \
            --format json 2>/dev/null | python3 -c '
import json, sys
networks = json.load(sys.stdin)["physical_networks"]
print(json.dumps({n: sum(c.values()) for n, c in sorted(networks.items())}))
' 2>/dev/null); then
        [[ "$counts" == "$EXPECTED" ]] && break
    fi
    sleep 1
done
[[ "$counts" == "$EXPECTED" ]] || \
    die $LINENO "agent reported ${counts:-nothing}, expected $EXPECTED"
echo "agent reported $counts"

phase unstack
# n-cpu is Nova's service: devstack's own unstack stops it.
stop_process n-cpu
for service in vfpool-server vfpool-agent; do
    [[ ! -f $SERVICE_DIR/$service.pid ]] || die $LINENO "$service not stopped"
done
phase clean
[[ ! -e $VFPOOL_CONF_DIR ]] || die $LINENO "clean left $VFPOOL_CONF_DIR"
echo "devstack smoke test passed"
