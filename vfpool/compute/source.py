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

"""The live-migration hooks that run on the source host.

Before the migration the source unplugs every VF of the guest (QEMU
cannot migrate a passed-through device); after success it frees them;
after failure it plugs them back, as they were, and frees the
destination's claims.
"""

import typing

from oslo_log import log as logging
import oslo_messaging as messaging

from vfpool.compute import guest as vf_guest
from vfpool.compute import records as vf_records
from vfpool.compute import recovery
from vfpool.compute import settlement as vf_settlement
from vfpool import exception
from vfpool.libvirt_import import libvirt
from vfpool import rpcapi

LOG = logging.getLogger(__name__)
DetachedVF = vf_records.DetachedVF
MigrationRecord = vf_records.MigrationRecord


class SourceHooks:
    """detach, post and rollback at the source; see the module."""

    def __init__(self, host: str, client: rpcapi.VfpoolAPI,
                 records: vf_records.MigrationRecords,
                 settlement: vf_settlement.Settlement,
                 guests: vf_guest.Guests,
                 policy: recovery.ReattachPolicy) -> None:
        self.host = host
        self.client = client
        self.records = records
        self.settlement = settlement
        self.guests = guests
        self.policy = policy

    def detach_source_vfs(self, context, instance_uuid: str,
                          migration_uuid: str,
                          domain: libvirt.virDomain | None = None,
                          pairs: list[dict] | None = None,
                          dest_host: str | None = None) -> list[dict]:
        """Unplug every VF of the guest on the source, before migrating.

        Call it in the driver's live_migration right before
        ``migrateToURI3``: QEMU cannot migrate a passed-through device.
        Each detach waits for the guest to let go (DEVICE_REMOVED), with
        ``[libvirt] device_detach_timeout`` and ``device_detach_attempts``.
        If one never goes away, the VFs detached in this call are plugged
        back, the migration is aborted (destination claims freed, source
        VFs still the guest's) and ``DeviceDetachFailed`` is raised: the
        driver must then abort the migration.  Returns the source
        allocations that were detached.

        Before the first detach, ``begin_migration`` (RPC 1.2) marks the
        migration as moving: from then on no lapsed lease frees a VF, the
        guest may end on either host.  ``LeaseExpired`` there means the
        claims are gone: nothing is detached, the migration is aborted and
        the error raised.  A client capped below 1.2 skips it.

        ``pairs`` is what pre_live_migration returned on the destination,
        if the driver carries it over (Nova's migrate_data can): it saves
        the RPC that would fetch it.
        """
        records = self.records
        if pairs is not None:
            records.remember(MigrationRecord(migration_uuid, instance_uuid,
                                             self.host, None, pairs))
        record = records.get(context, instance_uuid, migration_uuid)
        vf_records.check_host(record.source_host, self.host,
                              'detach_source_vfs')
        try:
            dom = self.guests.domain(instance_uuid, domain)
        except libvirt.libvirtError as exc:
            error = exception.DeviceDetachFailed(
                alias='*', domain=instance_uuid, reason=str(exc))
            self._undo_detach(context, record, None, [], error)
            raise error
        if record.pairs:
            try:
                expiry = self._begin(context, record, dest_host)
            except Exception as exc:
                self._undo_detach(context, record, dom, [], exc)
                raise
            records.keep_lease(context, record, expiry=expiry)
        with records.lock:
            if record.detached is None:
                record.detached = {}
        done: list[DetachedVF] = []
        for pair in record.pairs:
            alloc = pair['source']
            try:
                info = vf_guest.find_vf_interface(dom.XMLDesc(0), alloc)
            except libvirt.libvirtError as exc:
                error = exception.DeviceDetachFailed(
                    alias=vf_guest.vf_alias(alloc),
                    domain=vf_guest.label(dom), reason=str(exc))
                self._undo_detach(context, record, dom, done, error)
                raise error
            if info is None:
                LOG.info('VF %s (MAC %s) of instance %s is not attached: '
                         'nothing to detach', alloc['address'],
                         alloc.get('mac'), instance_uuid)
                continue
            LOG.info('Detaching VF %s (MAC %s, alias %s) of instance %s '
                     'for migration %s', alloc['address'], alloc.get('mac'),
                     info.alias, instance_uuid, migration_uuid)
            try:
                self.guests.detach_vf(dom, info, alloc['address'])
            except exception.DeviceDetachFailed as exc:
                self._undo_detach(context, record, dom, done, exc)
                raise
            detached = DetachedVF(alloc, vf_guest.kept_alias(info, alloc))
            done.append(detached)
            with records.lock:
                record.detached[alloc['address']] = detached
        LOG.info('Detached %d VF(s) of instance %s for migration %s',
                 len(done), instance_uuid, migration_uuid)
        return [d.alloc for d in done]

    def _begin(self, context, record: MigrationRecord,
               dest_host: str | None = None) -> str | None:
        """``begin_migration``; the lease's expiry it answered, if any.

        It names Nova's destination (RPC 1.6), so nothing is detached for
        a destination vfpool no longer has (``MigrationFenced``).
        """
        if not self.client.can_send_version('1.2'):
            LOG.warning('Client capped at %s ([upgrade_levels] vfpool): '
                        'migration %s is not marked as moving, so its lease '
                        'may lapse while the VFs are detached',
                        self.client.version_cap, record.migration_uuid)
            return None
        expiry = self.settlement.call('begin_migration', context,
                                      record.migration_uuid,
                                      source_host=self.host,
                                      dest_host=dest_host)
        LOG.info('Migration %s of instance %s is moving (lease until %s)',
                 record.migration_uuid, record.instance_uuid, expiry)
        return expiry

    def _undo_detach(self, context, record: MigrationRecord,
                     dom: libvirt.virDomain | None,
                     done: list[DetachedVF], error: Exception) -> None:
        """Put the source back as it was; the caller raises ``error``."""
        LOG.warning('Aborting migration %s of instance %s: %s',
                    record.migration_uuid, record.instance_uuid, error)
        try:
            failed = self._restore(context, record, dom, done)
        except Exception:
            # The driver must still hear of the detach failure; claims
            # left behind are freed when their lease expires.
            LOG.exception('Could not abort migration %s of instance %s; '
                          'its destination claims stay until their lease '
                          'expires', record.migration_uuid,
                          record.instance_uuid)
            return
        if failed:
            LOG.error('Instance %s stays on %s without VF(s) %s after the '
                      'failed detach', record.instance_uuid,
                      record.source_host,
                      ', '.join(o.alloc['address'] for o in failed))

    def _restore(self, context, record: MigrationRecord,
                 dom: libvirt.virDomain | None,
                 detached: list[DetachedVF]) -> list[recovery.Outcome]:
        """Plug ``detached`` back, abort, then recover what failed.

        The abort sits between the two because the policy's answers
        (swap, records) need the source VFs to be plain allocations
        again; the source VFs stay the guest's throughout.
        """
        attach: recovery.AttachFn | None = None
        outcomes = []
        if detached:
            attach = self.guests.attach_fn(
                dom, {d.alloc['address']: d.alias for d in detached})
            for item in detached:
                LOG.info('Re-attaching VF %s (MAC %s) to instance %s on %s',
                         item.alloc['address'], item.alloc.get('mac'),
                         record.instance_uuid, record.source_host)
                outcomes.append(self.policy.attempt(item.alloc, attach))
        freed = self.settlement.abort(context, record)
        LOG.info('Aborted migration %s of instance %s: %d destination '
                 'claim(s) freed', record.migration_uuid,
                 record.instance_uuid, freed)
        self.records.forget(record.migration_uuid)
        if attach is not None:
            outcomes = [self.policy.recover(context, record.instance_uuid,
                                            record.source_host, o, attach)
                        for o in outcomes]
        return [o for o in outcomes if o.state != recovery.ATTACHED]

    def post_live_migration(self, context, instance_uuid: str,
                            migration_uuid: str) -> list[dict]:
        """On the source after success: the source VFs go back to the pool.

        ``complete_migration`` is idempotent, so it does not matter
        whether this or the destination's hook runs first.  A migration
        the server never recorded (an instance without VFs) is nothing to
        complete.

        When vfpool-server does not answer within ``[migration]
        complete_timeout``, a background settler keeps trying (see
        :meth:`.Settlement.settle_later`) and ``[]`` is returned: the guest
        has left, the hook must not fail Nova's migration for vfpool's
        bookkeeping.
        """
        record = self.records.find(context, instance_uuid, migration_uuid,
                                   'complete', logging.DEBUG)
        if record is None:
            return []
        try:
            allocs = self.settlement.complete_now(context, record)
        except messaging.MessagingException as exc:
            self.settlement.settle_later(context, record, exc)
            return []
        self.records.forget(migration_uuid)
        return allocs

    def rollback_live_migration_at_source(
            self, context, instance_uuid: str, migration_uuid: str,
            domain: libvirt.virDomain | None = None) -> list[dict]:
        """The migration failed: give the guest its source VFs back.

        Re-attaches, with their MAC, VLAN and former alias, the VFs that
        :meth:`detach_source_vfs` unplugged in this process (after a
        restart: every source VF missing from the live XML),
        then aborts the migration, freeing the destination claims.  A VF
        that will not go back in is handled by the re-attach policy, on
        the source host; ``ReattachFailed`` is raised if any ended
        ``failed``.  Returns the source allocations re-attached.  A
        migration the server never recorded is nothing to roll back.  A
        domain that cannot be looked up or read gets nothing re-attached:
        the migration is aborted all the same and ``ReattachFailed``
        raised.
        """
        record = self.records.find(context, instance_uuid, migration_uuid,
                                   'roll back')
        if record is None:
            return []
        vf_records.check_host(record.source_host, self.host,
                              'rollback_live_migration_at_source')
        with self.records.lock:
            known = (None if record.detached is None
                     else dict(record.detached))
        try:
            dom = self.guests.domain(instance_uuid, domain)
            live = dom.XMLDesc(0)
        except libvirt.libvirtError as exc:
            self._abort_unreachable(context, record, known, exc)
        if known is None:
            candidates = [DetachedVF(p['source'],
                                     vf_guest.vf_alias(p['source']))
                          for p in record.pairs]
        else:
            candidates = list(known.values())
        missing = [c for c in candidates
                   if vf_guest.find_vf_interface(live, c.alloc) is None]
        LOG.info('Rolling back migration %s of instance %s on %s: %d VF(s) '
                 'to re-attach', migration_uuid, instance_uuid,
                 record.source_host, len(missing))
        failed = self._restore(context, record, dom, missing)
        if any(o.state == recovery.FAILED for o in failed):
            raise exception.ReattachFailed(
                instance_uuid=instance_uuid, host=record.source_host,
                reason='; '.join('VF %s: %s' % (o.alloc['address'], o.error)
                                 for o in failed
                                 if o.state == recovery.FAILED))
        not_back = {o.alloc['address'] for o in failed}
        return [c.alloc for c in missing
                if c.alloc['address'] not in not_back]

    def _abort_unreachable(self, context, record: MigrationRecord,
                           known: dict[str, DetachedVF] | None,
                           error: libvirt.libvirtError) -> typing.NoReturn:
        """Roll back without the guest: free the claims, raise typed.

        Which VFs are missing cannot be read, so none is re-attached; those
        this process detached are recorded ``failed`` for operators
        (``reattach_degraded_vfs`` plugs them once the guest is back).
        """
        LOG.error('Cannot reach the domain of instance %s on %s to roll '
                  'back migration %s: %s; aborting it all the same',
                  record.instance_uuid, record.source_host,
                  record.migration_uuid, error)
        freed = self.settlement.call('abort_migration', context,
                                     record.migration_uuid)
        LOG.info('Aborted migration %s of instance %s: %d destination '
                 'claim(s) freed', record.migration_uuid,
                 record.instance_uuid, freed)
        self.records.forget(record.migration_uuid)
        for item in (known or {}).values():
            self.policy.record_state(context, record.instance_uuid,
                                     record.source_host, item.alloc,
                                     recovery.FAILED)
        raise exception.ReattachFailed(
            instance_uuid=record.instance_uuid, host=record.source_host,
            reason='the domain cannot be read, so no VF was re-attached: '
                   '%s' % error)
