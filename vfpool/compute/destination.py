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

"""The live-migration hooks that run on the destination host.

Before the migration the destination claims an equivalent VF for each
of the guest's; after success it completes the migration and plugs the
VFs into the guest that now runs here, applying ``[migration]
reattach_failure_policy`` to those that will not go in; after failure
it unplugs what reached the guest and frees the claims.
"""

from oslo_config import cfg
from oslo_log import log as logging
import oslo_messaging as messaging

from vfpool.compute import guest as vf_guest
from vfpool.compute import records as vf_records
from vfpool.compute import recovery
from vfpool.compute import settlement as vf_settlement
from vfpool import exception
from vfpool.libvirt_import import libvirt

LOG = logging.getLogger(__name__)
MigrationRecord = vf_records.MigrationRecord


class DestinationHooks:
    """pre, post and rollback at the destination; see the module."""

    def __init__(self, conf: cfg.ConfigOpts, host: str,
                 records: vf_records.MigrationRecords,
                 settlement: vf_settlement.Settlement,
                 guests: vf_guest.Guests,
                 policy: recovery.ReattachPolicy) -> None:
        self.conf = conf
        self.host = host
        self.records = records
        self.settlement = settlement
        self.guests = guests
        self.policy = policy

    def pre_live_migration(self, context, instance_uuid: str,
                           migration_uuid: str, source_host: str,
                           dest_host: str,
                           lease_seconds: int | None = None) -> list[dict]:
        """Claim an equivalent destination VF for each source VF.

        Runs on the destination before anything moves, so a host without
        a free VF refuses the migration while it is still free to refuse.
        Idempotent on ``migration_uuid``; all or nothing; typed errors
        (``NoAvailableVF``, ``MigrationInProgress``, ...) pass through.
        Returns the ``{source, dest}`` allocation pairs.
        """
        LOG.info('Claiming destination VFs on %s for instance %s '
                 '(migration %s from %s)', dest_host, instance_uuid,
                 migration_uuid, source_host)
        try:
            pairs = self.settlement.call('prepare_migration', context,
                                         migration_uuid, instance_uuid,
                                         source_host, dest_host,
                                         lease_seconds)
        except Exception:
            self._give_up(context, migration_uuid, dest_host)
            raise
        record = self.records.remember(MigrationRecord(
            migration_uuid, instance_uuid, source_host, dest_host, pairs))
        record.pairs = pairs
        self.records.keep_lease(context, record, lease_seconds)
        for pair in pairs:
            LOG.info('Migration %s: VF %s on %s will be replaced by VF %s '
                     'on %s (MAC %s)', migration_uuid,
                     pair['source']['address'], source_host,
                     pair['dest']['address'], dest_host,
                     pair['source'].get('mac'))
        return pairs

    def _give_up(self, context, migration_uuid: str, dest_host: str) -> None:
        """The prepare failed here: fence this destination for good.

        A prepare that timed out may still be queued; once this host has
        given up (RPC 1.6) the server refuses it, so it cannot take the
        migration back from the next destination Nova tries.  Best effort.
        """
        if (dest_host != self.host
                or not self.settlement.client.can_send_version('1.6')):
            return
        try:
            self.settlement.call('abort_migration', context, migration_uuid,
                                 dest_host=dest_host)
        except Exception as exc:
            LOG.warning('Could not give up migration %s on %s: %s',
                        migration_uuid, dest_host, exc)

    def post_live_migration_at_destination(
            self, context, instance_uuid: str, migration_uuid: str,
            domain: libvirt.virDomain | None = None) -> list[dict]:
        """Plug the claimed VFs into the guest that now runs here.

        Order: ``complete_migration`` first, then the attaches.  The guest
        has left the source whatever happens next, so its VFs there must
        be freed in every case; and the recovery answers (``swap``'s
        ``replace_allocation``, ``set_attach_state``) act on allocations,
        not on claims.  A crash between the two is repaired by calling
        this hook again: completion is idempotent and a VF already in the
        live XML is left alone.

        Each VF keeps the source's MAC and VLAN and joins the domain's
        ``<teaming type='persistent'/>`` standby when there is one.  A
        failed attach is handled by ``[migration] reattach_failure_policy``
        (see :mod:`vfpool.compute.recovery`); ``ReattachFailed`` is raised
        after every VF was tried when any ended ``failed``.  Returns the
        instance's allocations here, each with its ``attach_state``.  A
        migration the server never recorded (an instance without VFs) is
        nothing to do.  ``LeaseExpired`` (a client capped below RPC 1.2
        whose claims were taken after the lease lapsed) changes nothing
        and is raised; see :meth:`.Settlement.complete`.
        """
        record = self.records.find(context, instance_uuid, migration_uuid,
                                   'attach', logging.DEBUG)
        if record is None:
            return []
        if not record.pairs:
            try:
                self.settlement.settle(
                    'complete_migration', context, record, attempts=1,
                    timeout=self.conf.migration.complete_timeout)
            except messaging.MessagingException as exc:
                self.settlement.settle_later(context, record, exc)
                return []
            self.records.forget(migration_uuid)
            return []
        if record.dest_host is None:
            try:
                self.records.fill_dest_host(context, record)
            except messaging.MessagingException:
                record.dest_host = self.host
        if record.dest_host != self.host:
            # Retargeted away (or never here): those addresses are
            # another host's; plug nothing (RPC 1.6 refuses the complete).
            raise exception.MigrationFenced(
                migration_uuid=migration_uuid,
                reason='its destination is %s, not %s; nothing plugged'
                % (record.dest_host, self.host))
        try:
            dom = self.guests.domain(instance_uuid, domain)
        except libvirt.libvirtError as exc:
            # Completion stands (the guest left the source); the policy
            # decides what a guest we cannot reach gets.
            dom, attach = None, vf_guest.unreachable(instance_uuid, exc)
        else:
            attach = self.guests.attach_fn(dom)
        try:
            allocs = self.settlement.complete_now(context, record)
        except messaging.MessagingException as exc:
            return self._attach_unsettled(context, record, dom, attach, exc)
        outcomes = self._plug(context, record, allocs, attach)
        self.records.forget(migration_uuid)
        return self._settled(record, allocs, outcomes)

    def _plug(self, context, record: MigrationRecord, allocs: list[dict],
              attach: recovery.AttachFn) -> list[recovery.Outcome]:
        """Attach the instance's allocations here, the policy for failures.

        ``allocs`` must be allocations (the migration completed).
        """
        outcomes = []
        for alloc in allocs:
            LOG.info('Attaching VF %s (MAC %s, VLAN %s) to instance %s on '
                     '%s', alloc['address'], alloc.get('mac'),
                     alloc.get('vlan'), record.instance_uuid,
                     record.dest_host)
            outcome = self.policy.attempt(alloc, attach)
            outcomes.append(self.policy.recover(
                context, record.instance_uuid, record.dest_host or self.host,
                outcome, attach))
        return outcomes

    def _failures(self, record: MigrationRecord, allocs: list[dict],
                  outcomes: list[recovery.Outcome]) -> list[str]:
        """What the guest lacks that the policy does not accept."""
        missing = len(allocs) < len(record.pairs)
        reasons = ['VF %s: %s' % (o.alloc['address'], o.error)
                   for o in outcomes if o.state == recovery.FAILED]
        if missing and (reasons or self.policy.policy != recovery.DEGRADE):
            reasons.append('%d VF(s) could not be claimed on %s'
                           % (len(record.pairs) - len(allocs),
                              record.dest_host))
        return reasons

    def _settled(self, record: MigrationRecord, allocs: list[dict],
                 outcomes: list[recovery.Outcome]) -> list[dict]:
        """The destination hook's answer, or ReattachFailed."""
        reasons = self._failures(record, allocs, outcomes)
        if reasons:
            raise exception.ReattachFailed(
                instance_uuid=record.instance_uuid, host=record.dest_host,
                reason='; '.join(reasons))
        LOG.info('Migration %s of instance %s settled on %s: %s',
                 record.migration_uuid, record.instance_uuid,
                 record.dest_host,
                 ', '.join('%s %s' % (o.alloc['address'], o.state)
                           for o in outcomes) or 'no VFs')
        return [o.as_dict() for o in outcomes]

    def _attach_unsettled(self, context, record: MigrationRecord,
                          dom: libvirt.virDomain | None,
                          attach: recovery.AttachFn,
                          error: Exception) -> list[dict]:
        """vfpool-server is unreachable: plug the claimed VFs all the same.

        The guest runs here now, and its claims are its VFs (a ``moving``
        migration's claims outlive any lease).  Each claimed VF gets the
        attach attempts of the policy; the policy's answer to a failure
        needs the server, so it waits for the settler, which completes the
        migration, unplugs any VF the completion did not give the instance
        (after a lapsed lease the reclaim may give other VFs), and plugs
        and recovers what it gave.  ``ReattachFailed`` is raised now when
        a VF failed and the policy can only end in ``failed``.
        """
        # Below RPC 1.2 the migration was never begun: its lapsed lease may
        # give the claims away, so they wait for the completion.
        claimed = ([pair['dest'] for pair in record.pairs]
                   if self.settlement.client.can_send_version('1.2') else [])
        outcomes = []
        for alloc in claimed:
            LOG.info('Attaching claimed VF %s (MAC %s, VLAN %s) to instance '
                     '%s on %s before the migration is completed',
                     alloc['address'], alloc.get('mac'), alloc.get('vlan'),
                     record.instance_uuid, record.dest_host)
            outcomes.append(self.policy.attempt(alloc, attach))

        def then(allocs: list[dict]) -> None:
            if dom is not None:
                given = {a['address'] for a in allocs}
                self._detach_dest(record, dom, [
                    a for a in claimed if a['address'] not in given])
            outcomes = self._plug(context, record, allocs, attach)
            reasons = self._failures(record, allocs, outcomes)
            if reasons:
                LOG.error('Instance %s runs on %s without some of its VFs '
                          'after migration %s: %s', record.instance_uuid,
                          record.dest_host, record.migration_uuid,
                          '; '.join(reasons))

        self.settlement.settle_later(context, record, error, then)
        failed = [o for o in outcomes if o.state == recovery.FAILED]
        if failed and self.policy.policy not in (recovery.SWAP,
                                                 recovery.DEGRADE):
            raise exception.ReattachFailed(
                instance_uuid=record.instance_uuid, host=record.dest_host,
                reason='; '.join('VF %s: %s' % (o.alloc['address'], o.error)
                                 for o in failed) +
                '; vfpool-server unreachable, completion continues in the '
                'background')
        return [o.as_dict() for o in outcomes]

    def rollback_live_migration_at_destination(
            self, context, instance_uuid: str, migration_uuid: str,
            domain: libvirt.virDomain | None = None) -> int:
        """The migration failed: free the destination claims.

        First unplugs whatever VF already reached the guest here.
        ``domain`` is the guest on this host if it still exists; without
        it no libvirt call is made (Nova destroys the destination domain
        right after this hook anyway).  Idempotent; a migration the server
        never recorded (the claim itself failed) is nothing to undo.
        Returns the number of claims freed.
        """
        record = self.records.find(context, instance_uuid, migration_uuid,
                                   'roll back')
        if record is None:
            return 0
        if domain is not None:
            self._detach_dest(record, domain)
        freed = self.settlement.abort(context, record)
        LOG.info('Rolled back migration %s of instance %s on %s: %d '
                 'claim(s) freed', migration_uuid, instance_uuid,
                 record.dest_host, freed)
        self.records.forget(migration_uuid)
        return freed

    def _detach_dest(self, record: MigrationRecord,
                     dom: libvirt.virDomain,
                     allocs: list[dict] | None = None) -> None:
        """Unplug ``allocs`` (default: every claim) if the guest has them."""
        if allocs is None:
            allocs = [pair['dest'] for pair in record.pairs]
        self.guests.detach_present(dom, allocs, record.instance_uuid,
                                   record.dest_host)
