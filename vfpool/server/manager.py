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

"""The RPC endpoint of vfpool-server.

Each method checks its arguments, runs one transaction in
``vfpool.objects`` and answers with JSON-able primitives.  Errors leave
as typed ``vfpool.exception`` classes; anything unexpected is logged
here and leaves as ``ServiceError``, never as a bare ``RemoteError``.
"""

import functools
import inspect
import os

from oslo_config import cfg
from oslo_log import log as logging
import oslo_messaging as messaging

from vfpool import context as vfpool_context
from vfpool import exception
from vfpool import notifications
from vfpool.objects import allocation as allocation_obj
from vfpool.objects import capacity as capacity_obj
from vfpool.objects import host as host_obj
from vfpool.objects import instance as instance_obj
from vfpool.objects import migration as migration_obj
from vfpool import rpc_types
from vfpool import states
from vfpool import utils
from vfpool import validation as v

LOG = logging.getLogger(__name__)

RPC_API_VERSION = '1.6'


def endpoint(func):
    """Bind the call's arguments strictly and keep errors typed."""
    signature = inspect.signature(func)

    @functools.wraps(func)
    @messaging.expected_exceptions(exception.VfpoolException)
    def wrapper(self, ctxt, **kwargs):
        try:
            signature.bind(self, ctxt, **kwargs)
        except TypeError as e:
            raise exception.InvalidInput(
                reason='%s: %s' % (func.__name__, e))
        if not isinstance(ctxt, vfpool_context.RequestContext):
            ctxt = vfpool_context.RequestContext.from_dict(ctxt or {})
        try:
            return func(self, ctxt, **kwargs)
        except exception.VfpoolException:
            raise
        except Exception as e:
            LOG.exception('Unexpected error in %s', func.__name__)
            raise exception.ServiceError(method=func.__name__,
                                         reason=type(e).__name__)
    return wrapper


class Manager:
    """RPC API; see ``vfpool.rpcapi`` for the version history."""

    target = messaging.Target(version=RPC_API_VERSION)

    def __init__(self, conf: cfg.ConfigOpts,
                 notifier: notifications.Notifier | None = None):
        self.conf = conf
        self.notifier = notifier or notifications.Notifier(conf)

    @staticmethod
    def _beliefs(source_host, dest_host) -> dict:
        """(1.6) The hosts a caller believes a migration has, checked."""
        check = v.optional(v.name)
        return dict(source_host=check('source_host', source_host),
                    dest_host=check('dest_host', dest_host))

    def _lease(self, lease_seconds) -> int:
        if lease_seconds is None:
            return self.conf.pool.lease_seconds
        return v.lease_seconds('lease_seconds', lease_seconds)

    # 1.0

    @endpoint
    def report_inventory(self, context, host, pfs, digest=None,
                         ) -> rpc_types.InventoryCounts:
        """``digest`` (1.4): the agent's ``utils.snapshot_digest(pfs)``.

        When it is right and equals the digest of the last snapshot
        applied for the host, the report costs one UPDATE: that very
        snapshot was validated and applied before.  Otherwise (a wrong or
        stale digest, one the server forgot) the report is checked and
        applied in full, and the snapshot's own digest stored with it;
        without a digest (a 1.3 agent) nothing is stored.
        """
        host = v.name('host', host)
        if digest is not None:
            sent = v.sha256('digest', digest)
            digest = utils.snapshot_digest(pfs)
            if sent != digest:
                LOG.debug('Digest of %s does not match its snapshot', host)
            elif host_obj.report_unchanged(context, host, digest):
                LOG.debug('Inventory of %s unchanged', host)
                return rpc_types.unchanged_counts(pfs)
        pfs = v.inventory('pfs', pfs)
        counts = host_obj.report_inventory(context, host, pfs, digest)
        LOG.info('Inventory of %s: %s', host, counts)
        return counts

    @endpoint
    def report_unchanged(self, context, host, digest) -> bool:
        """(1.5) The agent's snapshot is the one last applied: ``digest``.

        No snapshot travels: True records that the host reported (one
        UPDATE, as an unchanged ``report_inventory``), False (another or
        no digest stored, an unknown host) asks for the full report.
        """
        host = v.name('host', host)
        digest = v.sha256('digest', digest)
        return host_obj.report_unchanged(context, host, digest)

    @endpoint
    def allocate(self, context, instance_uuid, host, requests, request_id,
                 ) -> list[rpc_types.Allocation]:
        instance_uuid = v.uuid('instance_uuid', instance_uuid)
        host = v.name('host', host)
        requests = v.requests('requests', requests)
        request_id = v.name('request_id', request_id)
        result = allocation_obj.allocate(
            context, instance_uuid, host, requests, request_id,
            numa_policy=self.conf.pool.numa_policy,
            mac_prefix=self.conf.pool.mac_prefix.lower())
        self.notifier.emit(context, notifications.ALLOCATION_CREATE,
                           instance_uuid=instance_uuid, host=host,
                           request_id=request_id, allocations=result)
        return result

    @endpoint
    def release(self, context, instance_uuid, host=None, request_ids=None,
                ) -> int:
        """``request_ids`` (1.6, with ``host``): ids to tombstone.

        Recorded or not, so that their ``allocate``, late or not yet
        committed, claims nothing.
        """
        instance_uuid = v.uuid('instance_uuid', instance_uuid)
        host = v.optional(v.name)('host', host)
        request_ids = v.optional(v.request_ids)('request_ids', request_ids)
        freed = allocation_obj.release(context, instance_uuid, host,
                                       request_ids)
        if freed:
            self.notifier.emit(context, notifications.ALLOCATION_RELEASE,
                               instance_uuid=instance_uuid, host=host,
                               freed=freed)
        return freed

    @endpoint
    def prepare_migration(self, context, migration_uuid, instance_uuid,
                          source_host, dest_host, lease_seconds=None,
                          expected_sources=None,
                          ) -> list[rpc_types.MigrationPair]:
        """``expected_sources`` (1.6): the instance's source VFs.

        The addresses the caller believes the instance holds on the
        source; ``SourcesChanged`` if not, and nothing changes.
        """
        migration_uuid = v.uuid('migration_uuid', migration_uuid)
        if expected_sources is not None:
            expected_sources = v.items('expected_sources', expected_sources,
                                       v.pci_address)
        instance_uuid = v.uuid('instance_uuid', instance_uuid)
        source_host = v.name('source_host', source_host)
        dest_host = v.name('dest_host', dest_host)
        if source_host == dest_host:
            raise exception.InvalidInput(
                reason='source_host and dest_host are both %s'
                % source_host)
        lease = self._lease(lease_seconds)
        pairs = migration_obj.prepare(
            context, migration_uuid, instance_uuid, source_host, dest_host,
            lease, match_device_type=self.conf.pool.match_device_type,
            numa_policy=self.conf.pool.numa_policy,
            expected_sources=expected_sources,
            mac_prefix=self.conf.pool.mac_prefix.lower())
        self.notifier.emit(context, notifications.MIGRATION_CLAIM,
                           migration_uuid=migration_uuid,
                           instance_uuid=instance_uuid,
                           source_host=source_host, dest_host=dest_host,
                           vfs=pairs)
        return pairs

    @endpoint
    def renew_migration(self, context, migration_uuid, lease_seconds=None,
                        source_host=None, dest_host=None) -> str:
        """``source_host``, ``dest_host`` (1.6): the caller's belief."""
        migration_uuid = v.uuid('migration_uuid', migration_uuid)
        return migration_obj.renew(context, migration_uuid,
                                   self._lease(lease_seconds),
                                   **self._beliefs(source_host, dest_host))

    @endpoint
    def complete_migration(self, context, migration_uuid, reclaim=False,
                           source_host=None, dest_host=None,
                           ) -> list[rpc_types.Allocation]:
        """``source_host``, ``dest_host`` (1.6): the caller's belief."""
        migration_uuid = v.uuid('migration_uuid', migration_uuid)
        reclaim = v.boolean('reclaim', reclaim)
        result = migration_obj.complete(
            context, migration_uuid, reclaim=reclaim,
            match_device_type=self.conf.pool.match_device_type,
            numa_policy=self.conf.pool.numa_policy,
            **self._beliefs(source_host, dest_host))
        self.notifier.emit(context, notifications.MIGRATION_COMPLETE,
                           migration_uuid=migration_uuid, allocations=result)
        return result

    @endpoint
    def abort_migration(self, context, migration_uuid, source_host=None,
                        dest_host=None) -> int:
        """``dest_host`` (1.6): that destination gives its attempt up.

        It is fenced for good; ``source_host``: the caller's belief.
        """
        migration_uuid = v.uuid('migration_uuid', migration_uuid)
        freed = migration_obj.abort(context, migration_uuid,
                                    **self._beliefs(source_host, dest_host))
        self.notifier.emit(context, notifications.MIGRATION_ABORT,
                           migration_uuid=migration_uuid, freed=freed)
        return freed

    @endpoint
    def get_instance(self, context, instance_uuid) -> rpc_types.Instance:
        instance_uuid = v.uuid('instance_uuid', instance_uuid)
        return instance_obj.get_instance(context, instance_uuid)

    @endpoint
    def get_host(self, context, host) -> dict:
        return host_obj.get_host(context, v.name('host', host))

    # 1.1

    @endpoint
    def ping(self, context) -> rpc_types.Ping:
        # ``pid`` says which worker process answered (added in 1.4).
        return {'host': self.conf.host, 'version': RPC_API_VERSION,
                'pid': os.getpid()}

    @endpoint
    def replace_allocation(self, context, instance_uuid, host, address,
                           ) -> rpc_types.Allocation:
        instance_uuid = v.uuid('instance_uuid', instance_uuid)
        host = v.name('host', host)
        address = v.pci_address('address', address)
        return allocation_obj.replace(
            context, instance_uuid, host, address,
            numa_policy=self.conf.pool.numa_policy,
            match_device_type=self.conf.pool.match_device_type)

    @endpoint
    def set_attach_state(self, context, instance_uuid, host, address,
                         attach_state) -> rpc_types.AttachStateAllocation:
        instance_uuid = v.uuid('instance_uuid', instance_uuid)
        host = v.name('host', host)
        address = v.pci_address('address', address)
        attach_state = v.choice(*states.ATTACH_STATES)(
            'attach_state', attach_state)
        result = allocation_obj.set_attach_state(
            context, instance_uuid, host, address, attach_state)
        if attach_state != states.ATTACHED:
            self.notifier.emit(
                context, notifications.ALLOCATION_REATTACH_FAILED,
                **dict(result, instance_uuid=instance_uuid, host=host))
        return result

    # 1.2

    @endpoint
    def begin_migration(self, context, migration_uuid, lease_seconds=None,
                        source_host=None, dest_host=None) -> str:
        """``dest_host`` (1.6): Nova's destination, refused if stale.

        So the source never detaches for a destination vfpool left.
        """
        migration_uuid = v.uuid('migration_uuid', migration_uuid)
        expiry = migration_obj.begin(context, migration_uuid,
                                     self._lease(lease_seconds),
                                     **self._beliefs(source_host, dest_host))
        self.notifier.emit(context, notifications.MIGRATION_BEGIN,
                           migration_uuid=migration_uuid,
                           lease_expires_at=expiry)
        return expiry

    # 1.3

    @endpoint
    def get_capacity(self, context, hosts, requests) -> rpc_types.Capacity:
        hosts = v.capacity_hosts('hosts', hosts)
        requests = v.capacity_requests('requests', requests)
        return {'hosts': capacity_obj.get_capacity(
            context, hosts, requests,
            numa_policy=self.conf.pool.numa_policy)}
