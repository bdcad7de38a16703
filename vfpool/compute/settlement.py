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

"""Ending a migration at vfpool-server: complete or abort, now or later.

Both hosts settle (the source after success, the destination after
success or failure), so this is neither side's: ``complete_migration``
and ``abort_migration`` are idempotent and whichever host comes second
gets the same answer.  When vfpool-server does not answer a completion
within ``[migration] complete_timeout``, a background settler keeps
trying within a bound.
"""

import typing

from oslo_config import cfg
from oslo_log import log as logging

from vfpool.compute import background
from vfpool.compute import records as vf_records
from vfpool import exception
from vfpool import rpcapi

LOG = logging.getLogger(__name__)
MigrationRecord = vf_records.MigrationRecord


class Settlement:
    """Completes and aborts the migrations of ``records``."""

    def __init__(self, conf: cfg.ConfigOpts, client: rpcapi.VfpoolAPI,
                 call: vf_records.Call,
                 records: vf_records.MigrationRecords) -> None:
        self.conf = conf
        self.client = client
        self.call = call
        self.records = records

    def settle(self, method: str, context, record: MigrationRecord,
               **kwargs: typing.Any) -> typing.Any:
        """``complete_migration`` or ``abort_migration`` of ``record``.

        An instance without VFs gets an empty prepare, which the server
        does not record when it knows neither host: settling that is
        nothing to do, not an error.
        """
        try:
            return self.call(method, context, record.migration_uuid,
                             **dict(vf_records.belief(record,
                                                      self.records.host),
                                    **kwargs))
        except exception.MigrationNotFound:
            if record.pairs:
                raise
            LOG.debug('Migration %s of instance %s moved no VF and is '
                      'unknown to vfpool: nothing to settle',
                      record.migration_uuid, record.instance_uuid)
            return [] if method == 'complete_migration' else 0

    def abort(self, context, record: MigrationRecord) -> int:
        """Abort: the destination claims are freed; returns how many."""
        return self.settle('abort_migration', context, record)

    def complete_now(self, context, record: MigrationRecord) -> list[dict]:
        """One attempt, waiting ``[migration] complete_timeout`` at most."""
        return self.complete(context, record, attempts=1,
                             timeout=self.conf.migration.complete_timeout)

    def settle_later(self, context, record: MigrationRecord,
                     error: Exception,
                     then: typing.Callable[[list[dict]], None] | None = None
                     ) -> background.Settler:
        """Hand the completion to a background settler.

        It retries ``complete_migration`` with ``[migration]
        settle_initial_delay`` doubling up to ``settle_max_delay``, for
        ``settle_max_time`` seconds; then runs ``then`` with the answer.
        The lease renewer keeps running meanwhile.  When the bound is
        exhausted (or the server refuses), the migration is forgotten
        here: it stays ``moving`` and, once its lease lapses, stalled, for
        ``vfpool-manage migration complete``.
        """
        LOG.warning('vfpool-server did not complete migration %s of '
                    'instance %s (%s: %s); retrying in the background',
                    record.migration_uuid, record.instance_uuid,
                    type(error).__name__, error)
        opts = self.conf.migration

        def done(allocs: list[dict]) -> None:
            try:
                if then is not None:
                    then(allocs)
            finally:
                self.records.forget(record.migration_uuid)
            LOG.info('Migration %s of instance %s completed in the '
                     'background', record.migration_uuid,
                     record.instance_uuid)

        def give_up(exc: Exception) -> None:
            self.records.forget(record.migration_uuid)
            LOG.error('Gave up completing migration %s of instance %s '
                      '(%s: %s); it stays in flight: once its lease lapses '
                      '"vfpool-manage migration list --stalled" shows it '
                      'and "vfpool-manage migration complete %s" finishes '
                      'it', record.migration_uuid, record.instance_uuid,
                      type(exc).__name__, exc, record.migration_uuid)

        return self.records.start(
            'settle', record.migration_uuid, background.Settler(
                record.migration_uuid,
                lambda: self.complete(context, record, attempts=1), done,
                give_up, initial_delay=opts.settle_initial_delay,
                max_delay=opts.settle_max_delay,
                max_time=opts.settle_max_time))

    def complete(self, context, record: MigrationRecord,
                 **call: typing.Any) -> list[dict]:
        """``complete_migration``, and after a lapsed lease a reclaim.

        At RPC 1.2 one call settles everything in one server transaction:
        ``reclaim=True`` answers as a plain complete while the lease holds,
        and after it lapsed claims equivalent VFs for those taken since
        and frees the sources together.  ``call`` (``attempts``,
        ``timeout``) applies to ``complete_migration``.

        Capped below 1.2 the server wins the claimed VFs back if they are
        still free; if they were taken, ``LeaseExpired`` is raised and
        nothing changes: which VF is "equivalent" is the server's rule
        (``[pool] match_device_type``, its NUMA policy), which the plugin
        does not guess.  The source VFs stay the instance's until an
        operator finishes the migration with ``vfpool-manage migration
        complete --reclaim`` (see the upgrade guide).
        """
        LOG.info('Completing migration %s of instance %s: the VFs on %s '
                 'become its allocations, those on %s are freed',
                 record.migration_uuid, record.instance_uuid,
                 record.dest_host or 'the destination', record.source_host)
        if self.client.can_send_version('1.2'):
            return self.settle('complete_migration', context, record,
                               reclaim=True, **call)
        try:
            return self.settle('complete_migration', context, record,
                               **call)
        except exception.LeaseExpired:
            self.records.forget(record.migration_uuid)
            LOG.error('The lease of migration %s of instance %s lapsed and '
                      'its VFs on %s were taken since; the client is '
                      'capped at %s ([upgrade_levels] vfpool), below the '
                      'RPC 1.2 that has vfpool-server claim equivalents. '
                      'Nothing was changed: the instance keeps its VFs on '
                      '%s. Finish it with "vfpool-manage migration complete '
                      '--reclaim %s"', record.migration_uuid,
                      record.instance_uuid,
                      record.dest_host or 'the destination',
                      self.client.version_cap, record.source_host,
                      record.migration_uuid)
            raise
