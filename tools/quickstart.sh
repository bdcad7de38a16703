#!/bin/bash
# Installs vfpool and starts vfpool-server on its embedded defaults:
# SQLite under ~/.vfpool and the RabbitMQ on localhost (guest/guest).
# Then asks the server, over RPC, who it is.  Stop it with
#   kill "$(cat ~/.vfpool/vfpool-server.pid)"
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
STATE=$HOME/.vfpool   # vfpool's default [DEFAULT] state_path

$PYTHON -m pip install -q --disable-pip-version-check -e .
mkdir -p "$STATE"
tools/start-services.sh >/dev/null 2>&1 || true

vfpool-manage db sync
if [ -f "$STATE/vfpool-server.pid" ] && kill -0 "$(cat "$STATE/vfpool-server.pid")" 2>/dev/null; then
    echo "vfpool-server already running (pid $(cat "$STATE/vfpool-server.pid"))"
else
    nohup vfpool-server --log-file "$STATE/vfpool-server.log" >/dev/null 2>&1 &
    echo $! > "$STATE/vfpool-server.pid"
    echo "vfpool-server started (pid $!), log in $STATE/vfpool-server.log"
fi

$PYTHON - <<'PY'
import sys
import time

from vfpool.cmd import __init__  # noqa: F401  (threading backend first)
import oslo_messaging as messaging

from vfpool import config
from vfpool import rpcapi

conf = config.parse_args([], setup_logging=False)
client = rpcapi.VfpoolAPI(conf, timeout=2)
deadline = time.time() + 60
while True:
    try:
        answer = client.ping(None)
        break
    except messaging.MessagingTimeout:
        if time.time() > deadline:
            sys.exit('vfpool-server did not answer; see its log')
print('vfpool-server on %(host)s answers, RPC API %(version)s' % answer)
PY
