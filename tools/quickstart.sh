#!/bin/bash
# vfpool on one machine, doing its real job, in one command:
#
#   tools/quickstart.sh          install, start, show (again: restarts)
#   tools/quickstart.sh stop     stop what it started
#
# 1. Starts RabbitMQ if it is installed but down (and says what to do if
#    it is not installed).
# 2. Installs the system packages of bindep.txt's "quickstart" profile
#    (with apt-get or dnf; sudo when not root) and vfpool with its
#    libvirt extra into a virtualenv: the active one, else ~/.vfpool/venv.
# 3. Creates the SQLite database under ~/.vfpool (vfpool's default),
#    starts vfpool-server and two vfpool-agents, quickstart-1 and
#    quickstart-2, each reading the same compute host through libvirt's
#    test driver (tools/quickstart/host.xml, from real node-device dumps).
# 4. Shows "vfpool-manage vf list" and makes one allocate ->
#    prepare_migration -> complete_migration round over RPC
#    (tools/quickstart/demo.py), moving an instance's VF from quickstart-1
#    to quickstart-2.
#
# Logs, configuration and pid files are in ~/.vfpool/quickstart.  Every
# vfpool command it runs reads its own configuration only (--config-file
# and an empty --config-dir of its own), never an /etc/vfpool/vfpool.conf
# or a vfpool.conf.d of another deployment.  It runs on RabbitMQ's default
# virtual host with its own topic and exchange, "vfpool-quickstart", so
# that it never takes the calls of another vfpool on the same broker.
# Bounds: a broker that does not accept a TCP connection within 5 s
# stops it before it starts anything (one line says which); a server or
# agent that does not answer within 60 s (65 s when the broker takes the
# connection but no call; the claim round 180 s: tools/quickstart/demo.py)
# stops it and what it started; "stop" sends SIGTERM and, 30 s later,
# SIGKILL, and says so.
# Environment:
#   VFPOOL_QUICKSTART_TRANSPORT_URL  broker (rabbit://guest:guest@127.0.0.1:5672/)
#   VFPOOL_QUICKSTART_TOPIC          RPC topic and exchange (vfpool-quickstart)
#   VFPOOL_QUICKSTART_STOP_TIMEOUT   s from SIGTERM to SIGKILL (30)
#   PYTHON                           Python that makes the virtualenv (python3)
set -o errexit -o nounset -o pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=$HOME/.vfpool                 # vfpool's default [DEFAULT] state_path
QS=$STATE/quickstart
VENV=${VIRTUAL_ENV:-$STATE/venv}
PYTHON=${PYTHON:-python3}
DEFAULT_URL=rabbit://guest:guest@127.0.0.1:5672/
TRANSPORT_URL=${VFPOOL_QUICKSTART_TRANSPORT_URL:-$DEFAULT_URL}
TOPIC=${VFPOOL_QUICKSTART_TOPIC:-vfpool-quickstart}
STOP_TIMEOUT=${VFPOOL_QUICKSTART_STOP_TIMEOUT:-30}
HOSTS=(quickstart-1 quickstart-2)
# The instance of the claim round; the same on every run.
INSTANCE=00000000-0000-4000-8000-0000000000a1
SERVICES=(server "${HOSTS[@]/#/agent-}")

SUDO=""
[[ $(id -u) == 0 ]] || SUDO=sudo

step() { echo "==> $*"; }
die() { echo "quickstart: $*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/5672") 2>/dev/null; }
# Every vfpool command reads these and nothing else: --config-file alone
# would still let oslo.config read the vfpool.conf.d directories of
# ~/.vfpool, ~, /etc/vfpool and /etc.
CONF=(--config-file "$QS/vfpool.conf" --config-dir "$QS/vfpool.conf.d")
BROKER_TIMEOUT=5

# The HOST:PORT of each broker of the transport URL
# (rabbit://USER:PASS@HOST:PORT,USER:PASS@HOST:PORT/VHOST).
brokers() {
    local hosts=${TRANSPORT_URL#*://} part
    hosts=${hosts%%/*}
    IFS=, read -ra parts <<< "$hosts"
    for part in "${parts[@]}"; do
        part=${part##*@}
        [[ $part =~ :[0-9]+$ ]] || part=$part:5672
        echo "$part"
    done
}

# Whether one of the brokers accepts a TCP connection within the bound.
broker_reachable() {
    local broker
    for broker in $(brokers); do
        timeout "$BROKER_TIMEOUT" bash -c \
            'exec 3<>"/dev/tcp/$0/$1"' "${broker%:*}" "${broker##*:}" \
            2>/dev/null && return 0
    done
    return 1
}

# The pid of a running service this quickstart started, or nothing.
running_pid() {
    local pid
    pid=$(cat "$QS/$1.pid" 2>/dev/null) || return 0
    if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$QS/"; then
        echo "$pid"
    fi
}

# Stops the services in parallel: SIGTERM to each service's main process
# (oslo.service passes it on to its worker), then, STOP_TIMEOUT s later,
# SIGKILL to whatever is left of its session.
stop_services() {
    local name pid
    local -A pids=()
    for name in "${SERVICES[@]}"; do
        pid=$(running_pid "$name")
        if [[ -n $pid ]]; then
            kill -TERM "$pid" 2>/dev/null || true
            pids[$name]=$pid
        fi
    done
    for name in "${SERVICES[@]}"; do
        pid=${pids[$name]:-}
        if [[ -n $pid ]]; then
            for _ in $(seq 1 $((STOP_TIMEOUT * 10))); do
                kill -0 -- "-$pid" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 -- "-$pid" 2>/dev/null; then
                kill -KILL -- "-$pid" 2>/dev/null || true
                echo "killed vfpool-$name (pid $pid): it did not stop" \
                    "within $STOP_TIMEOUT s of SIGTERM; see $QS/$name.log"
            else
                echo "stopped vfpool-$name (pid $pid)"
            fi
        fi
        rm -f "$QS/$name.pid"
    done
}

start_rabbitmq() {
    if [[ -d /run/systemd/system ]]; then
        $SUDO systemctl start rabbitmq-server
    else
        $SUDO rabbitmq-server -detached
    fi
}

stop_rabbitmq() {
    if [[ -d /run/systemd/system ]]; then
        $SUDO systemctl stop rabbitmq-server
    else
        $SUDO rabbitmqctl stop >/dev/null
    fi
}

if [[ ${1:-start} == stop ]]; then
    stop_services
    if [[ -f $QS/started-rabbitmq ]]; then
        PATH=$PATH:/usr/sbin stop_rabbitmq ||
            die "could not stop RabbitMQ, which the quickstart started"
        rm -f "$QS/started-rabbitmq"
        echo "stopped RabbitMQ (the quickstart started it)"
    fi
    exit 0
elif [[ ${1:-start} != start ]]; then
    echo "usage: $0 [start|stop]" >&2
    exit 2
fi

mkdir -p "$QS"
stop_services   # a second run starts afresh, on the current code

# The local RabbitMQ is ours to start when the broker is on 127.0.0.1.
if [[ $TRANSPORT_URL =~ ^rabbit://[^@/]*@(127\.0\.0\.1|localhost)(:5672)?/ ]] &&
        ! port_open; then
    step "RabbitMQ"
    if [[ ! -x /usr/sbin/rabbitmq-server ]] &&
            ! command -v rabbitmq-server >/dev/null; then
        if command -v apt-get >/dev/null; then
            install="${SUDO:+sudo }apt-get install rabbitmq-server"
        else
            install="${SUDO:+sudo }dnf install rabbitmq-server"
        fi
        die "RabbitMQ is not installed. Install it ($install), or give" \
            "another broker (VFPOOL_QUICKSTART_TRANSPORT_URL=rabbit://USER:PASSWORD@HOST:5672/VHOST)," \
            "then run $0 again."
    fi
    PATH=$PATH:/usr/sbin start_rabbitmq
    touch "$QS/started-rabbitmq"
    for _ in $(seq 1 60); do
        port_open && break
        sleep 1
    done
    port_open || die "RabbitMQ did not open port 5672 within 60 s"
    echo "started RabbitMQ; '$0 stop' stops it again"
fi
broker_reachable || die "no RabbitMQ accepts a connection at" \
    "$(brokers | paste -sd' ') within $BROKER_TIMEOUT s" \
    "(VFPOOL_QUICKSTART_TRANSPORT_URL=$TRANSPORT_URL): start it or point" \
    "VFPOOL_QUICKSTART_TRANSPORT_URL at one, then run $0 again."

step "Python virtualenv $VENV"
if [[ ! -x $VENV/bin/pip ]]; then
    if ! $PYTHON -m venv "$VENV" >/dev/null 2>&1; then
        # Debian keeps venv apart; bindep (below) needs a virtualenv.
        [[ -z ${VIRTUAL_ENV:-} ]] && rm -rf "$VENV"
        command -v apt-get >/dev/null || \
            die "$PYTHON cannot make a virtualenv (python3 -m venv)"
        echo "installing: python3-venv"
        $SUDO apt-get update -qq
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            python3-venv >/dev/null
        $PYTHON -m venv "$VENV"
    fi
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

step "System packages (bindep.txt, profile quickstart)"
[[ -x $VENV/bin/bindep ]] || "${PIP[@]}" install -q bindep
missing=$(cd "$TOP" && "$VENV/bin/bindep" -b quickstart || true)
if [[ -n $missing ]]; then
    echo "installing:" $missing
    # shellcheck disable=SC2086
    if command -v apt-get >/dev/null; then
        $SUDO apt-get update -qq
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends $missing >/dev/null
    elif command -v dnf >/dev/null; then
        $SUDO dnf install -y -q $missing
    else
        die "install these packages, then run $0 again: $missing"
    fi
fi

step "vfpool and its libvirt extra"
# Editable, so code changes need no reinstall; requirement changes do.
stamp=$(cat "$TOP/setup.cfg" "$TOP/requirements.txt" "$TOP/pyproject.toml" |
        sha256sum | cut -d' ' -f1)
stamp="$stamp $TOP"
if [[ -x $VENV/bin/vfpool-server &&
      $(cat "$VENV/vfpool-quickstart.stamp" 2>/dev/null) == "$stamp" ]]; then
    echo "installed already from $TOP (editable), same requirements"
else
    "${PIP[@]}" install -q -e "$TOP[libvirt]"
    echo "$stamp" > "$VENV/vfpool-quickstart.stamp"
fi

step "Configuration in $QS"
cat > "$QS/vfpool.conf" <<EOF
# Written by tools/quickstart.sh; the database is vfpool's default, SQLite
# under state_path, named here so that this file means the same whoever
# reads it.
[DEFAULT]
state_path = $STATE
transport_url = $TRANSPORT_URL
rpc_topic = $TOPIC
control_exchange = $TOPIC

[agent]
libvirt_uri = test://$TOP/tools/quickstart/host.xml
device_spec = {"vendor_id": "8086", "physical_network": "physnet1"}
EOF
for host in "${HOSTS[@]}"; do
    printf '[DEFAULT]\nhost = %s\n' "$host" > "$QS/agent-$host.conf"
done
mkdir -p "$QS/vfpool.conf.d"   # empty: see CONF

step "Database"
"$VENV/bin/vfpool-manage" "${CONF[@]}" db sync

step "Starting vfpool-server and the agents of ${HOSTS[*]}"
start() {
    local name=$1
    shift
    # Its own session, so that stopping it stops all of it.
    setsid bash -c 'echo $$ > "$0"; exec "$@"' "$QS/$name.pid" \
        "$@" > "$QS/$name.log" 2>&1 < /dev/null &
    for _ in $(seq 1 50); do
        [[ -s $QS/$name.pid ]] && break
        sleep 0.1
    done
    echo "vfpool-$name started (pid $(cat "$QS/$name.pid")), log $QS/$name.log"
}
demo() {
    # On failure (its one line says what did not answer), stop it all.
    "$VENV/bin/python" "$TOP/tools/quickstart/demo.py" "${CONF[@]}" "$@" ||
        { stop_services; exit 1; }
}
start server "$VENV/bin/vfpool-server" "${CONF[@]}"
# Agents report at once: start them when the server listens.
demo server
since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for host in "${HOSTS[@]}"; do
    start "agent-$host" "$VENV/bin/vfpool-agent" "${CONF[@]}" \
        --config-file "$QS/agent-$host.conf"
done
demo hosts --since "$since" "${HOSTS[@]}"

step "The VFs the agents reported"
echo "\$ vfpool-manage vf list"
"$VENV/bin/vfpool-manage" "${CONF[@]}" vf list

step "One claim round: allocate on ${HOSTS[0]}, migrate to ${HOSTS[1]}"
demo round "$INSTANCE" "${HOSTS[@]}"
echo "\$ vfpool-manage instance show $INSTANCE"
"$VENV/bin/vfpool-manage" "${CONF[@]}" instance show "$INSTANCE"

cat <<EOF

vfpool runs: vfpool-server and the agents of ${HOSTS[*]}.
Look around with its commands, given its configuration (and only that):
  . $VENV/bin/activate; cd $QS
  vfpool-manage --config-file vfpool.conf --config-dir vfpool.conf.d host list
  (and vf list, migration list, instance show $INSTANCE)
Stop it all with: $0 stop
EOF
