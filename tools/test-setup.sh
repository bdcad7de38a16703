#!/bin/bash -xe
# Creates the databases and users the functional tests use, following
# OpenStack's openstack_citest convention.  Run as root on a machine whose
# MariaDB/MySQL root has no password and whose PostgreSQL trusts local
# connections (as in OpenStack CI and on the vfpool development machines).

DB_ROOT_PW=${MYSQL_ROOT_PW:-}
DB_USER=openstack_citest
DB_PW=openstack_citest

MYSQL="mysql -uroot"
if [ -n "$DB_ROOT_PW" ]; then
    MYSQL="$MYSQL -p$DB_ROOT_PW"
fi

# The citest user may create and drop the per-test scratch databases.
$MYSQL -h 127.0.0.1 <<SQL
CREATE USER IF NOT EXISTS '$DB_USER'@'%' IDENTIFIED BY '$DB_PW';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PW';
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'%' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'localhost' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS openstack_citest;
FLUSH PRIVILEGES;
SQL

PSQL="psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1"
if ! $PSQL -tAc "SELECT 1 FROM pg_roles WHERE rolname='$DB_USER'" | grep -q 1; then
    $PSQL -c "CREATE ROLE $DB_USER WITH SUPERUSER LOGIN PASSWORD '$DB_PW'"
fi
if ! $PSQL -tAc "SELECT 1 FROM pg_database WHERE datname='openstack_citest'" | grep -q 1; then
    $PSQL -c "CREATE DATABASE openstack_citest OWNER $DB_USER"
fi
