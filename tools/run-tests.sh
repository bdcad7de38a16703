#!/bin/bash
# The whole test suite, from a fresh clone on a fresh machine.
#
# Installs the system packages bindep.txt names, makes sure RabbitMQ,
# MariaDB and PostgreSQL run, creates the openstack_citest databases,
# prepares libvirt/QEMU and the tiny test guest, then runs tox:
# pep8, unit, functional, nova-functional (the vfpool Nova driver in
# Nova's own functional framework), the config generator, the docs and
# the release notes, and last the devstack plugin smoke test, the operator
# walk-through and the quickstart (on a fresh HOME, installing from a
# wheelhouse filled beforehand).  Exits non-zero if anything fails.
#
# Extra arguments go to tox's functional run (e.g. a test filter).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
PYTHON=${PYTHON:-python3}

step() { printf '\n=== %s (%(%H:%M:%S)T)\n' "$*" -1; }

step "System packages (bindep.txt)"
$PYTHON -m pip install -q --disable-pip-version-check bindep tox
if command -v apt-get >/dev/null; then
    missing=$($PYTHON -m bindep -b test || true)
    if [ -n "$missing" ]; then
        $SUDO apt-get update -qq
        # shellcheck disable=SC2086
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends $missing
    fi
fi

step "Wheelhouse for the quickstart test"
PYTHON=$PYTHON tools/test-quickstart.sh prepare

step "Services"
$SUDO tools/start-services.sh
$SUDO tools/test-setup.sh >/dev/null

step "libvirt, QEMU and the tiny guest"
$SUDO tools/setup-libvirt-qemu.sh
if [ ! -f .tiny-guest/format ]; then
    # apt-cache needs package lists to resolve the kernel package.
    $SUDO apt-get update -qq
fi
tools/build-tiny-guest.sh .tiny-guest

step "tox"
# In parallel: much of each env's time is its pip install.
$PYTHON -m tox -p 2 --parallel-no-spinner -e pep8,py3,mypy,genconfig,docs,releasenotes
# The functional tests include the short set of cluster fault tests
# (vfpool/tests/functional/cluster); tox -e functional-ha runs them at
# full size.  Their figures are printed whether or not they pass.
$PYTHON tools/fault-table.py --clear
rc=0
$PYTHON -m tox -e functional -- "$@" || rc=$?
step "Fault tests: figures"
$PYTHON tools/fault-table.py || true
[ "$rc" = 0 ] || exit "$rc"
# Nova's functional tests run beside the end-to-end scripts (which mostly
# wait on installs and services); each uses its own RPC topics.  Their
# output is printed, and their result checked, once the scripts are done.
step "Nova functional tests (in the background)"
nova_log=$(mktemp)
$PYTHON -m tox -e nova-functional >"$nova_log" 2>&1 &
nova_pid=$!

step "devstack plugin smoke test"
PATH="$PWD/.tox/py3/bin:$PATH" tools/devstack-smoke.sh

step "Operator walk-through"
PATH="$PWD/.tox/py3/bin:$PATH" tools/operator-walkthrough.sh

step "Quickstart, as README says, on a fresh HOME"
tools/test-quickstart.sh

step "Nova functional tests: result"
nova_rc=0
wait "$nova_pid" || nova_rc=$?
cat "$nova_log"
rm -f "$nova_log"
[ "$nova_rc" = 0 ] || exit "$nova_rc"

step "All tests passed"
