#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.

"""vfpool-status: ``upgrade check`` on oslo.upgradecheck.

Run it with the new code before restarting services.  Exit codes are
oslo.upgradecheck's: 0 success, 1 warning, 2 failure, 255 the checks
could not run (a bad configuration, a missing database driver, a
database that cannot be reached: one line on stderr, see
vfpool/cmd/errors.py).  The checks read the database with plain SQL on the few
columns they need, not through vfpool's objects, so that they also work
against the previous release's schema.
"""

import datetime
import sys
import typing

from oslo_config import cfg
import oslo_messaging as messaging
from oslo_upgradecheck import upgradecheck
from oslo_utils import timeutils
import sqlalchemy as sa

from vfpool.cmd import errors
from vfpool import conf as vfpool_conf
from vfpool.conf import database as db_conf
from vfpool import config
from vfpool.db import api as db_api
from vfpool.db import migration
from vfpool.manage import cli
from vfpool.objects import leases
from vfpool import rpc
from vfpool import states

Code = upgradecheck.Code
Result = upgradecheck.Result

# Typed, so that every backend (SQLite stores text) compares datetimes.
_hosts = sa.table('hosts', sa.column('name', sa.String),
                  sa.column('disabled', sa.Boolean),
                  sa.column('disabled_reason', sa.String),
                  sa.column('last_report_at', sa.DateTime))
_migrations = sa.table('migrations', sa.column('uuid', sa.String),
                       sa.column('state', sa.String),
                       sa.column('lease_expires_at', sa.DateTime))

#: oslo.upgradecheck's status when the checks themselves could not run.
EXIT_CANNOT_RUN = 255

#: How many names a warning lists before it says "and N more".
_SHOWN = 5

#: Fewer Galera nodes than this stop taking writes when one fails.
_GALERA_QUORUM_NODES = 3


def _names(names: list[str]) -> str:
    shown = ', '.join(names[:_SHOWN])
    if len(names) > _SHOWN:
        shown += ' and %d more' % (len(names) - _SHOWN)
    return shown


class Checks(upgradecheck.UpgradeCommands):
    """vfpool's upgrade readiness checks."""

    def __init__(self, conf: cfg.ConfigOpts):
        super().__init__()
        self.conf = conf
        self._engine: sa.engine.Engine | None = None

    def _db(self) -> sa.engine.Engine:
        if self._engine is None:
            db_conf.set_connection_default(self.conf)
            # The schema is a check of its own, not a precondition.
            cli.configure_db(self.conf, schema=False)
            self._engine = db_api.get_engine()
        return self._engine

    # 255 is no Code: it is what oslo.upgradecheck's run() itself returns
    # when the checks cannot run.
    def check(self) -> int:  # type: ignore[override]
        """All checks, or a one-line error if they cannot run (255)."""
        def checks() -> int:
            config.check_values(self.conf)
            return super(Checks, self).check()
        return errors.run('vfpool-status', checks, _cannot_run, self.conf)

    def _no_schema(self) -> Result | None:
        if migration.version(engine=self._db()) is None:
            return Result(Code.WARNING, 'Skipped: the database has no vfpool '
                                        'schema yet (run vfpool-manage db '
                                        'sync).')
        return None

    def _silent_after(self) -> datetime.timedelta:
        return datetime.timedelta(
            seconds=3 * self.conf.agent.report_interval)

    def _check_schema(self) -> Result:
        """Every server of this release needs the schema at head."""
        current = migration.version(engine=self._db())
        head = migration.head()
        if current is None:
            return Result(Code.FAILURE, 'The database has no vfpool schema. '
                                        'Run: vfpool-manage db sync')
        if current != head:
            return Result(Code.FAILURE, 'The database schema is at revision '
                                        '%s; this release needs %s. Run: '
                                        'vfpool-manage db sync'
                                        % (current, head))
        return Result(Code.SUCCESS, 'Schema at revision %s.' % head)

    def _check_lapsed_leases(self) -> Result:
        """Leases lapsed beyond 2 reaper passes: no server is reaping."""
        skipped = self._no_schema()
        if skipped:
            return skipped
        grace = 2 * self.conf.pool.reaper_interval
        # By the database's clock, as the servers set and reap leases.
        before = leases.expiry(-grace)
        with self._db().connect() as conn:
            lapsed = [uuid for (uuid,) in conn.execute(
                sa.select(_migrations.c.uuid).where(
                    _migrations.c.state == states.IN_PROGRESS,
                    _migrations.c.lease_expires_at < before)
                .order_by(_migrations.c.lease_expires_at))]
        if lapsed:
            return Result(Code.WARNING, '%d migration(s) in progress have '
                          'leases that lapsed more than %d s (2 x [pool] '
                          'reaper_interval) ago: %s. No vfpool-server is '
                          'reaping them; their claimed VFs stay out of the '
                          'pool. Start vfpool-server, or run vfpool-manage '
                          'audit --fix.' % (len(lapsed), grace,
                                            _names(lapsed)))
        return Result(Code.SUCCESS, 'No lapsed lease is waiting.')

    def _reporting_hosts(self) -> list[str]:
        since = timeutils.utcnow() - self._silent_after()
        with self._db().connect() as conn:
            return [name for (name,) in conn.execute(
                sa.select(_hosts.c.name).where(
                    _hosts.c.last_report_at >= since)
                .order_by(_hosts.c.name))]

    def _check_sqlite(self) -> Result:
        """SQLite is for one machine.

        Servers leave no trace in the database, so the sign of several
        machines is several hosts whose agents reported within 3 x
        ``[agent] report_interval``.
        """
        if self._db().dialect.name != 'sqlite':
            return Result(Code.SUCCESS, 'Database backend: %s.'
                          % self._db().dialect.name)
        skipped = self._no_schema()
        if skipped:
            return skipped
        reporting = self._reporting_hosts()
        if len(reporting) > 1:
            return Result(Code.FAILURE, 'SQLite is for one machine, but %d '
                          'hosts reported within 3 x [agent] '
                          'report_interval: %s. Move the inventory to '
                          'MariaDB/MySQL or PostgreSQL.'
                          % (len(reporting), _names(reporting)))
        return Result(Code.SUCCESS, 'SQLite with at most one reporting '
                                    'host.')

    def _check_hosts(self) -> Result:
        """Disabled hosts, and hosts whose agent stopped reporting."""
        skipped = self._no_schema()
        if skipped:
            return skipped
        since = timeutils.utcnow() - self._silent_after()
        with self._db().connect() as conn:
            rows = conn.execute(sa.select(
                _hosts.c.name, _hosts.c.disabled, _hosts.c.disabled_reason,
                _hosts.c.last_report_at).order_by(_hosts.c.name)).all()
        disabled = ['%s (%s)' % (name, reason) if reason else name
                    for name, off, reason, _last in rows if off]
        silent = [name for name, _off, _reason, last in rows
                  if last is None or last < since]
        problems = []
        if disabled:
            problems.append('%d host(s) disabled: %s.'
                            % (len(disabled), _names(disabled)))
        if silent:
            problems.append('%d host(s) have not reported for more than %d '
                            's (3 x [agent] report_interval): %s; is their '
                            'vfpool-agent running?' % (
                                len(silent),
                                self._silent_after().total_seconds(),
                                _names(silent)))
        if problems:
            return Result(Code.WARNING, ' '.join(problems))
        if not rows:
            return Result(Code.SUCCESS, 'No host has reported yet.')
        return Result(Code.SUCCESS, '%d host(s), all enabled and reporting.'
                      % len(rows))

    def _galera(self) -> dict | None:
        """wsrep status and vfpool's own session settings, or None."""
        with self._db().connect() as conn:
            on = conn.execute(sa.text(
                "SHOW GLOBAL VARIABLES LIKE 'wsrep_on'")).first()
            if on is None or on[1].upper() != 'ON':
                return None
            status: dict[str, typing.Any] = dict(conn.execute(sa.text(
                "SHOW GLOBAL STATUS WHERE variable_name IN "
                "('wsrep_cluster_size', 'wsrep_cluster_status')")).all())
            # The session's: what oslo.db set on vfpool's connections.
            sync_wait = conn.execute(sa.text(
                'SELECT @@SESSION.wsrep_sync_wait')).scalar()
        return {'size': int(status.get('wsrep_cluster_size', 0)),
                'status': status.get('wsrep_cluster_status'),
                'sync_wait': int(sync_wait or 0)}

    def _check_galera(self) -> Result:
        """On Galera, reads must see what other nodes committed."""
        if self._db().dialect.name != 'mysql':
            return Result(Code.SUCCESS, 'Not a Galera cluster.')
        galera = self._galera()
        if galera is None:
            return Result(Code.SUCCESS, 'Not a Galera cluster (wsrep_on '
                                        'is not ON).')
        problems = []
        if not galera['sync_wait'] & 1:
            problems.append(
                "vfpool's sessions have wsrep_sync_wait = %d: a read "
                'through one node may not see yet what a write through '
                'another node committed just before, so get_instance and '
                'get_host can answer from the past and claims conflict at '
                'COMMIT more often. Set [database] mysql_wsrep_sync_wait '
                '= 1.' % galera['sync_wait'])
        if galera['size'] < _GALERA_QUORUM_NODES:
            problems.append(
                'The Galera cluster has %d node(s); with fewer than %d, '
                'the loss of one node leaves no primary component and '
                'stops every write.' % (galera['size'],
                                        _GALERA_QUORUM_NODES))
        if problems:
            return Result(Code.WARNING, ' '.join(problems))
        return Result(Code.SUCCESS, 'Galera cluster of %d nodes (%s); '
                      'sessions wait for causality (wsrep_sync_wait = %d).'
                      % (galera['size'], galera['status'],
                         galera['sync_wait']))

    def _check_rabbitmq(self) -> Result:
        """A RabbitMQ cluster needs quorum queues; every broker heartbeats.

        Reads only the configuration: the broker is not contacted.
        """
        url = messaging.TransportURL.parse(self.conf,
                                           self.conf.transport_url)
        if url.transport != 'rabbit':
            return Result(Code.SUCCESS, 'Not RabbitMQ (%s).'
                          % url.transport)
        rabbit = self.conf.oslo_messaging_rabbit
        nodes = max(1, len(url.hosts))
        problems = []
        if nodes > 1 and not rabbit.rabbit_quorum_queue:
            problems.append(
                'transport_url names %d RabbitMQ nodes but [oslo_messaging_'
                'rabbit] rabbit_quorum_queue is false: the RPC queues are '
                'classic queues on one node, and the calls queued there '
                'are lost with it. Set rabbit_quorum_queue = true for '
                'every vfpool service (delete the classic queues the '
                'servers declared before, or they fail to declare them '
                'again).' % nodes)
        if rabbit.heartbeat_timeout_threshold <= 0:
            problems.append(
                'AMQP heartbeats are off ([oslo_messaging_rabbit] '
                'heartbeat_timeout_threshold = 0): a broker that vanishes '
                'without closing its connections (power loss, a network '
                'partition) is noticed only when TCP gives up, minutes '
                'later.')
        if problems:
            return Result(Code.WARNING, ' '.join(problems))
        queues = ('quorum queues' if rabbit.rabbit_quorum_queue
                  else 'classic queues')
        return Result(Code.SUCCESS, '%d RabbitMQ node(s), %s, heartbeat '
                      'timeout %d s.' % (nodes, queues,
                                         rabbit.heartbeat_timeout_threshold))

    _upgrade_checks = (
        ('Database schema', _check_schema),
        ('Lapsed leases', _check_lapsed_leases),
        ('SQLite and several hosts', _check_sqlite),
        ('Hosts', _check_hosts),
        ('Galera', _check_galera),
        ('RabbitMQ', _check_rabbitmq),
    )


def _cannot_run(exc: Exception) -> int:
    return EXIT_CANNOT_RUN


def main(argv: list[str] | None = None) -> int:
    conf = vfpool_conf.new_conf()
    # [DEFAULT] transport_url and [oslo_messaging_rabbit], for the
    # RabbitMQ check.
    rpc.register_opts(conf)
    return errors.run('vfpool-status', lambda: upgradecheck.main(
        conf, project='vfpool', upgrade_command=Checks(conf),
        argv=sys.argv[1:] if argv is None else argv), _cannot_run, conf)
