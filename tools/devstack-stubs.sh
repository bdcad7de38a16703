#!/bin/bash
# Minimal stand-ins for the devstack helpers that devstack/lib/vfpool
# uses, so tools/devstack-smoke.sh can run the plugin's phases on a
# machine without devstack.  They keep devstack's names and arguments but
# not its machinery: processes run in the background with pid files
# instead of systemd units, and every database gets a per-run name
# (VFPOOL_SMOKE_DB_PREFIX) on the local MariaDB so a real "vfpool"
# database is never touched.  Source this file; it defines functions only.

DEST=${DEST:?DEST must be set before sourcing devstack-stubs.sh}
DATA_DIR=${DATA_DIR:-$DEST/data}
STACK_USER=${STACK_USER:-$(id -un)}
SERVICE_HOST=${SERVICE_HOST:-127.0.0.1}
DATABASE_HOST=${DATABASE_HOST:-127.0.0.1}
DATABASE_USER=${DATABASE_USER:-root}
DATABASE_PASSWORD=${DATABASE_PASSWORD:-}
RABBIT_HOST=${RABBIT_HOST:-127.0.0.1}
RABBIT_USERID=${RABBIT_USERID:-guest}
RABBIT_PASSWORD=${RABBIT_PASSWORD:-guest}
LOGDIR=${LOGDIR:-$DEST/logs}
SERVICE_DIR=${SERVICE_DIR:-$DEST/status}
ENABLED_SERVICES=${ENABLED_SERVICES:-}
VFPOOL_SMOKE_DB_PREFIX=${VFPOOL_SMOKE_DB_PREFIX:-smoke_$$_}

# Root without sudo installed (containers): run the command as is.
if ! command -v sudo >/dev/null; then
    function sudo {
        "$@"
    }
fi

function echo_summary {
    echo "==> $*"
}

function die {
    local line=$1
    shift
    echo "ERROR (line $line): $*" >&2
    exit 1
}

function enable_service {
    local service
    for service in "$@"; do
        [[ ",$ENABLED_SERVICES," == *",$service,"* ]] && continue
        ENABLED_SERVICES=${ENABLED_SERVICES:+$ENABLED_SERVICES,}$service
    done
}

function disable_service {
    local service
    for service in "$@"; do
        ENABLED_SERVICES=$(echo ",$ENABLED_SERVICES," | \
            sed -e "s/,$service,/,/g" -e 's/^,//' -e 's/,$//')
    done
}

# True if any of the named services is enabled, as devstack's.
function is_service_enabled {
    local service
    for service in "$@"; do
        [[ ",$ENABLED_SERVICES," == *",$service,"* ]] && return 0
    done
    return 1
}

# trueorfalse default varname: the variable as True or False, as devstack's.
function trueorfalse {
    local default=$1 value=${!2:-}
    case "${value,,}" in
        1|yes|true|on) echo True ;;
        0|no|false|off) echo False ;;
        "") echo $default ;;
        *) die $LINENO "$2=$value is not a boolean" ;;
    esac
}

function get_python_exec_prefix {
    python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'
}

# devstack pip-installs the tree in develop mode; skip it when that very
# tree is already installed so (editable), as on development machines and
# in tox's environments (whose editable wheel records no project location
# for pip show: the package then imports from the tree).
function setup_develop {
    local dir=$1 extras=${2:-}
    local name shown imported
    name=$(cd $dir && python3 setup.py --name 2>/dev/null | tail -n 1)
    shown=$(python3 -m pip show "$name" 2>/dev/null || true)
    imported=$(cd / && python3 -c "import os, $name
print(os.path.dirname(os.path.dirname(os.path.realpath($name.__file__))))" \
        2>/dev/null || true)
    if grep -qx "Editable project location: $dir" <<< "$shown" ||
            [[ $imported == "$(realpath "$dir")" ]]; then
        echo "$name is already installed in develop mode from $dir"
        return 0
    fi
    python3 -m pip install -e "$dir${extras:+[$extras]}"
}

# iniset_multiline file section option value...: every value on its own
# line (a multi-valued option), replacing the option's previous values.
function iniset_multiline {
    local file=$1 section=$2 option=$3
    shift 3
    python3 - "$file" "$section" "$option" "$@" <<'PYEOF'
import os
import sys

path, section, option, values = sys.argv[1], sys.argv[2], sys.argv[3], \
    sys.argv[4:]
lines = open(path).read().splitlines() if os.path.exists(path) else []
out, current, done = [], None, False


def emit():
    out.extend('%s = %s' % (option, value) for value in values)


for line in lines:
    stripped = line.strip()
    if stripped.startswith('[') and stripped.endswith(']'):
        if current == section and not done:
            emit()
            done = True
        current = stripped[1:-1]
    elif (current == section and '=' in stripped
          and stripped.split('=', 1)[0].strip() == option):
        if not done:
            emit()
            done = True
        continue
    out.append(line)
if not done:
    # Leaving the section would have written the option: it is new.
    if current != section:
        out.append('[%s]' % section)
    emit()
with open(path, 'w') as f:
    f.write('\n'.join(out) + '\n')
PYEOF
}

# iniset file section option value
function iniset {
    iniset_multiline "$1" "$2" "$3" "$4"
}

function get_transport_url {
    echo "rabbit://$RABBIT_USERID:$RABBIT_PASSWORD@$RABBIT_HOST:5672/"
}

# iniset_rpc_backend project file [section]
function iniset_rpc_backend {
    iniset $2 ${3:-DEFAULT} transport_url $(get_transport_url)
}

function _mysql {
    mysql -h $DATABASE_HOST -u $DATABASE_USER \
        ${DATABASE_PASSWORD:+-p$DATABASE_PASSWORD} "$@"
}

function database_connection_url {
    echo "mysql+pymysql://$DATABASE_USER${DATABASE_PASSWORD:+:$DATABASE_PASSWORD}@$DATABASE_HOST/$VFPOOL_SMOKE_DB_PREFIX$1?charset=utf8mb4"
}

function recreate_database {
    local db=$VFPOOL_SMOKE_DB_PREFIX$1
    _mysql -e "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db CHARACTER SET utf8mb4;"
}

# Not a devstack helper: what the smoke test uses to clean up after itself.
function drop_database {
    _mysql -e "DROP DATABASE IF EXISTS $VFPOOL_SMOKE_DB_PREFIX$1;"
}

# run_process service command [group]: in the background, in its own
# session, with a pid file and a log that starts with the command, instead
# of a systemd unit (the group is ignored).
function run_process {
    local service=$1 command=$2
    mkdir -p $LOGDIR $SERVICE_DIR
    echo "+ $command" > $LOGDIR/$service.log
    setsid bash -c "exec $command" >> $LOGDIR/$service.log 2>&1 < /dev/null &
    echo $! > $SERVICE_DIR/$service.pid
    echo "$service started (pid $!), log $LOGDIR/$service.log"
}

function stop_process {
    local service=$1
    local pidfile=$SERVICE_DIR/$service.pid
    [[ -f $pidfile ]] || return 0
    local pid
    pid=$(cat $pidfile)
    # The whole session: the service's parent process and its workers.
    kill -TERM -- -$pid 2>/dev/null || true
    local i
    for i in $(seq 1 30); do
        kill -0 -- -$pid 2>/dev/null || break
        sleep 1
    done
    kill -KILL -- -$pid 2>/dev/null || true
    rm -f $pidfile
    echo "$service stopped"
}
