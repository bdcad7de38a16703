#!/bin/bash -xe
# Creates the databases and users the functional tests use, following
# OpenStack's openstack_citest convention.  Run as root; idempotent.
#
# Reaches MariaDB/MySQL's root either as Debian installs it (unix_socket
# authentication: "mysql" as root through the socket) or over TCP without
# a password, or with MYSQL_ROOT_PW; and PostgreSQL's "postgres" either as
# Debian installs it (peer authentication: psql as the postgres user
# through the socket) or over TCP with trust (OpenStack CI, the vfpool
# development machines).  The tests then log in over TCP on 127.0.0.1 with
# the password.

DB_ROOT_PW=${MYSQL_ROOT_PW:-}
DB_USER=openstack_citest
DB_PW=openstack_citest

answers() {
    "$@" </dev/null >/dev/null 2>&1
}

if [ -n "$DB_ROOT_PW" ]; then
    MYSQL=(mysql -uroot "-p$DB_ROOT_PW" -h 127.0.0.1)
elif answers mysql -uroot -e 'SELECT 1'; then
    MYSQL=(mysql -uroot)
elif answers mysql -uroot -h 127.0.0.1 -e 'SELECT 1'; then
    MYSQL=(mysql -uroot -h 127.0.0.1)
else
    echo "$0: cannot log in to MariaDB as root (through the socket as" \
        "root, or over TCP without a password); set MYSQL_ROOT_PW" >&2
    exit 1
fi

# The citest user may create and drop the per-test scratch databases.
"${MYSQL[@]}" <<SQL
CREATE USER IF NOT EXISTS '$DB_USER'@'%' IDENTIFIED BY '$DB_PW';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PW';
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'%' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'localhost' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS openstack_citest;
FLUSH PRIVILEGES;
SQL

# -w: never ask for a password; cd /: the postgres user may not read the
# current directory.
if answers psql -w -h 127.0.0.1 -U postgres -c 'SELECT 1'; then
    PSQL=(psql -w -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1)
elif (cd / && answers runuser -u postgres -- psql -w -c 'SELECT 1'); then
    PSQL=(runuser -u postgres -- psql -w -v ON_ERROR_STOP=1)
else
    echo "$0: cannot log in to PostgreSQL as postgres (over TCP with" \
        "trust, or as the postgres user through the socket)" >&2
    exit 1
fi
cd /

if ! "${PSQL[@]}" -tAc "SELECT 1 FROM pg_roles WHERE rolname='$DB_USER'" | grep -q 1; then
    "${PSQL[@]}" -c "CREATE ROLE $DB_USER WITH SUPERUSER LOGIN PASSWORD '$DB_PW'"
fi
if ! "${PSQL[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname='openstack_citest'" | grep -q 1; then
    "${PSQL[@]}" -c "CREATE DATABASE openstack_citest OWNER $DB_USER"
fi
