#!/bin/bash
# Makes sure the services the functional tests need are up: RabbitMQ,
# MariaDB and PostgreSQL on 127.0.0.1.  Starts whichever is down, the way
# a machine without systemd needs it (Debian's packages, as bindep.txt
# installs them), and waits until each answers.  Run as root.
set -u

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_port() {
    local name=$1 port=$2
    for _ in $(seq 1 90); do
        port_open "$port" && return 0
        sleep 1
    done
    echo "$name did not come up on port $port" >&2
    return 1
}

rc=0
if ! port_open 5432; then
    echo "Starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
fi
wait_port PostgreSQL 5432 || rc=1

if ! port_open 3306; then
    echo "Starting MariaDB"
    # /run is empty after a boot; systemd or the init script would make
    # the socket's directory.  mariadbd runs as mysql, not root.  Found by
    # Debian's pid file, not by --exec, which any other mariadbd on the
    # machine (the cluster tests', a container's) would match.
    install -d -o mysql -g mysql -m 755 /run/mysqld
    start-stop-daemon --start --oknodo --background --chuid mysql:mysql \
        --pidfile /run/mysqld/mysqld.pid --startas /usr/sbin/mariadbd
fi
wait_port MariaDB 3306 || rc=1

if ! port_open 5672; then
    echo "Starting RabbitMQ"
    rabbitmq-server -detached
fi
wait_port RabbitMQ 5672 || rc=1
exit $rc
