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

"""What this compute process knows of the migrations it takes part in.

A :class:`MigrationRecord` per migration, kept from the first hook that
sees it to the one that ends it here, and the background threads that
serve it (a lease renewer, a settler).  Memory is only a shortcut: after
a restart a record is loaded again from vfpool-server, and what the
source detached is read from the guest's live XML instead.
"""

import dataclasses
import threading
import typing

from oslo_config import cfg
from oslo_log import log as logging

from vfpool.compute import background
from vfpool import exception

LOG = logging.getLogger(__name__)
# A background worker of one kind, returned as the kind it was started as.
_W = typing.TypeVar('_W', bound=background.Worker)
#: An idempotent RPC: ``call(method, context, *args, **kwargs)``.
Call = typing.Callable[..., typing.Any]


@dataclasses.dataclass
class DetachedVF:
    """A source VF this process unplugged, to plug back on rollback."""

    alloc: dict
    alias: str


@dataclasses.dataclass
class MigrationRecord:
    """What the plugin knows about one migration in this process."""

    migration_uuid: str
    instance_uuid: str
    source_host: str
    #: None when only the source's side was handed over (pairs given).
    dest_host: str | None
    pairs: list[dict]
    #: source VF address -> what was detached; None until
    #: detach_source_vfs ran here (then rollback trusts only the XML).
    detached: dict[str, DetachedVF] | None = None


def belief(record: MigrationRecord, host: str | None) -> dict[str, str]:
    """(RPC 1.6) Which side of ``record`` ``host`` is, for the server to check.

    The server refuses (``MigrationFenced``) a call whose side it no longer
    has, so a late or stale call cannot act on a newer attempt.
    """
    if host is None:
        return {}
    if record.dest_host == host:
        return {'dest_host': host}
    if record.source_host == host:
        return {'source_host': host}
    return {}


def check_host(expected: str, host: str, hook: str) -> None:
    """Warn when a hook runs on another host than the migration says."""
    if expected != host:
        LOG.warning('%s runs on %s but the migration says %s; acting '
                    'on %s', hook, host, expected, expected)


class MigrationRecords:
    """The migrations in flight here and their background threads.

    :param call: the plugin's idempotent RPC (``get_instance`` loads a
        record this process does not have).
    :param renew: ``renew(context, migration_uuid, lease_seconds)``, the
        lease renewal a renewer thread repeats.
    :param owner: ``owner(migration_uuid)``: whether whoever drives the
        migration (Nova) still wants it; False ends its lease renewal,
        None (cannot tell) renews on, within ``[migration]
        claim_max_seconds``.
    """

    def __init__(self, conf: cfg.ConfigOpts, call: Call,
                 renew: typing.Callable[..., str],
                 owner: typing.Callable[[str], bool | None] | None = None,
                 host: str | None = None) -> None:
        self.conf = conf
        self.host = host
        self._call = call
        self._renew = renew
        self.owner = owner
        #: Guards the records, their ``detached`` maps and the workers.
        self.lock = threading.Lock()
        self._migrations: dict[str, MigrationRecord] = {}
        #: (kind, migration uuid) -> its renewer or settler thread
        self._workers: dict[tuple[str, str], background.Worker] = {}

    def close(self, timeout: float = 5) -> None:
        """Stop every worker, waiting up to ``timeout`` seconds for each."""
        with self.lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.stop(timeout=timeout)

    def start(self, kind: str, migration_uuid: str, worker: _W) -> _W:
        """Run ``worker`` unless one of its kind runs for the migration."""
        with self.lock:
            running = self._workers.get((kind, migration_uuid))
            if running is not None and running.is_alive():
                return typing.cast(_W, running)
            self._workers[(kind, migration_uuid)] = worker
        worker.start()
        return worker

    def remember(self, record: MigrationRecord) -> MigrationRecord:
        """Keep ``record`` unless one is kept already; the one kept."""
        with self.lock:
            return self._migrations.setdefault(record.migration_uuid,
                                               record)

    def remembered(self) -> list[MigrationRecord]:
        """The migrations this process claimed or detached and not settled.

        For a driver's reconciliation with its own migration records.
        """
        with self.lock:
            return list(self._migrations.values())

    def forget(self, migration_uuid: str) -> None:
        """The migration is over here: drop it, end its threads."""
        with self.lock:
            self._migrations.pop(migration_uuid, None)
            workers = [self._workers.pop(key) for key in list(self._workers)
                       if key[1] == migration_uuid]
        for worker in workers:
            # Not joined: a hook does not wait for an RPC under way.
            worker.stop()

    def keep_lease(self, context, record: MigrationRecord,
                   lease_seconds: int | None = None,
                   expiry: str | None = None) -> None:
        """Renew the migration's lease in the background, within an end.

        Paced by a third of what the server's answer (``expiry``, else
        the lease as ``get_instance`` reads it) leaves of the lease; ends
        when forgotten, when :attr:`owner` gives the migration up, and
        after ``[migration] claim_max_seconds``
        (:class:`vfpool.compute.background.LeaseRenewer`).
        """
        if not record.pairs:
            return
        lease = lease_seconds or self.conf.pool.lease_seconds
        owner = self.owner

        def renew() -> str:
            return self._renew(context, record.migration_uuid,
                               lease_seconds, **belief(record, self.host))

        def wanted() -> bool | None:
            return None if owner is None else owner(record.migration_uuid)

        def read_expiry() -> str | None:
            # prepare_migration answers no expiry: read the lease it set.
            migration = self._call('get_instance', context,
                                   record.instance_uuid).get('migration')
            if migration and migration['uuid'] == record.migration_uuid:
                return migration['lease_expires_at']
            return None
        self.start('renew', record.migration_uuid, background.LeaseRenewer(
            record.migration_uuid, renew, lease, expiry=expiry,
            max_seconds=self.conf.migration.claim_max_seconds,
            wanted=wanted, read_expiry=read_expiry))

    def get(self, context, instance_uuid: str,
            migration_uuid: str) -> MigrationRecord:
        """The migration from memory, else as the server recorded it.

        ``MigrationNotFound`` when the server has no such migration of
        the instance in flight or last.
        """
        with self.lock:
            record = self._migrations.get(migration_uuid)
        if record is not None:
            return record
        return self.remember(self.load(context, instance_uuid,
                                       migration_uuid))

    def find(self, context, instance_uuid: str, migration_uuid: str,
             nothing_to: str, level: int = logging.INFO
             ) -> MigrationRecord | None:
        """:meth:`get`, or None (logged) when the server has no record.

        A migration vfpool never recorded (an instance without VFs, a
        claim that failed) leaves a hook ``nothing_to`` do.
        """
        try:
            return self.get(context, instance_uuid, migration_uuid)
        except exception.MigrationNotFound:
            LOG.log(level, 'Migration %s of instance %s is unknown to '
                    'vfpool: nothing to %s', migration_uuid, instance_uuid,
                    nothing_to)
            return None

    def load(self, context, instance_uuid: str,
             migration_uuid: str) -> MigrationRecord:
        """The migration as vfpool-server recorded it (one RPC)."""
        info = self._call('get_instance', context, instance_uuid)
        migration = info.get('migration')
        if not migration or migration['uuid'] != migration_uuid:
            raise exception.MigrationNotFound(migration_uuid=migration_uuid)
        LOG.info('Loaded migration %s of instance %s (%s -> %s, %s) from '
                 'vfpool-server', migration_uuid, instance_uuid,
                 migration['source_host'], migration['dest_host'],
                 migration['state'])
        return MigrationRecord(
            migration_uuid, instance_uuid, migration['source_host'],
            migration['dest_host'], migration['vfs'])

    def fill_dest_host(self, context, record: MigrationRecord) -> None:
        """Learn the destination of a record handed over without it."""
        if record.dest_host is None:
            record.dest_host = self.load(context, record.instance_uuid,
                                         record.migration_uuid).dest_host
