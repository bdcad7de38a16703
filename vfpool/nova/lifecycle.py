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

"""An instance's vfpool VFs from boot to delete, in Nova's libvirt driver.

:class:`VfpoolLifecycle` is mixed into
:class:`vfpool.nova.driver.VfpoolLibvirtDriver` (live migration stays
there).  The rule it keeps: **every guest XML Nova builds on a host
carries the VFs the instance holds there** (:meth:`_get_guest_xml`), so
that whatever rebuilds the domain (spawn, hard reboot, rescue, rebuild,
unshelve, a resize's finish or revert) has them from the start, with
the MACs vfpool recorded.  What changes what the instance holds::

    spawn                  allocate the flavor's vfpool:vfs here (after a
                           shelve offload with the MACs it had), unless
                           the instance holds VFs here already (rebuild)
                           or on another host (evacuation: those are
                           moved here, as a migration, and freed there);
                           a failed spawn frees what it allocated
    destroy                free what the instance holds on this host
                           when it leaves it (delete, shelve offload, a
                           failed build, an evacuated instance cleaned
                           up); a resize revert aborts the migration
    migrate_disk_and_      claim equivalents on the destination of a
    power_off (source)     resize or cold migration (same MACs); a
                           refusal leaves the instance ACTIVE here; a
                           failure of the disk copy after the claim
                           aborts it
    suspend, cold snapshot unplug the VFs before the managed save (they
                           stay the instance's), plug them back after
    confirm_migration      complete: the claims become the allocations
    finish_revert_         abort: the claims are freed, the source VFs
    migration (source)     are still the instance's

Every step is idempotent: requests are keyed by an id derived from the
instance, its host and the instance's vfpool generation (bumped in its
system metadata whenever VFs are freed while it lives on), and the
migrations by Nova's migration uuid.
"""

import typing
import uuid
from xml.etree import ElementTree as ET

from nova.compute import task_states
from nova import exception as nova_exception
from nova import objects
from oslo_log import log as logging
import oslo_messaging as messaging
from oslo_serialization import jsonutils
from oslo_utils import excutils

from vfpool.compute import guest as vf_guest
from vfpool.compute import libvirt_ops
from vfpool.compute import vf_xml
from vfpool import exception
from vfpool.nova import flavor
from vfpool import states

LOG = logging.getLogger(__name__)

#: Instance system metadata: how often its VFs were freed while it lived
#: on (a failed build, a shelve offload), so a new claim gets a new id.
GENERATION_KEY = 'vfpool_generation'
#: Instance system metadata: the MACs of its VFs while shelved offloaded,
#: by physical network, so that it gets them again on unshelve.
MACS_KEY = 'vfpool_macs'
#: Instance system metadata: whether it holds vfpool VFs, '1' or '0', so
#: that an instance holding none never waits for vfpool.  No key (an
#: instance older than it) is unknown: one lookup, then remembered.
HOLDS_KEY = 'vfpool_holds'
#: The migration types of a resize or cold migration in Nova, and the
#: statuses of one in progress (until confirmed or reverted).
_COLD = ('resize', 'migration')
_COLD_STATUSES = ('pre-migrating', 'migrating', 'post-migrating',
                  'finished', 'confirming', 'reverting')
_EVACUATION_STATUSES = ('accepted', 'pre-migrating', 'migrating')
#: Task states in which a destroyed domain leaves this host for good:
#: shelve offload, and a build that failed (before Nova reschedules it).
_LEAVING = (task_states.SHELVING_OFFLOADING, task_states.SCHEDULING,
            task_states.BLOCK_DEVICE_MAPPING, task_states.NETWORKING,
            task_states.SPAWNING)
_NAMESPACE = uuid.UUID('5f0f3b36-8a63-4c5e-9d43-0b6f0c0a7a10')


def vfpool_context(ctxt) -> dict:
    """The request ids of a Nova context, and nothing else.

    Nova's context carries the user's token and service catalog; vfpool
    needs neither, so they never go on vfpool's message bus.
    """
    if ctxt is None:
        return {}
    return {key: getattr(ctxt, key, None)
            for key in ('request_id', 'global_request_id')}


def kept_macs(instance, requests: list[dict]) -> list[dict]:
    """``requests`` with the MACs the instance had before it was offloaded.

    Matched by physical network, in order; a request left without one
    gets a new MAC from vfpool-server.
    """
    kept = jsonutils.loads(instance.system_metadata.get(MACS_KEY) or '{}')
    result = []
    for request in requests:
        macs = kept.get(request['physical_network']) or []
        result.append(dict(request, mac=macs.pop(0)) if macs else request)
    return result


def remember_macs(instance, allocations: list[dict]) -> None:
    """Keep the MACs of VFs freed while the instance lives on (offload)."""
    kept: dict[str, list[str]] = {}
    for alloc in allocations:
        kept.setdefault(alloc['physical_network'], []).append(alloc['mac'])
    instance.system_metadata[MACS_KEY] = jsonutils.dumps(kept)


def request_id(instance, host: str) -> str:
    """The ``allocate`` request id of the instance's VFs on ``host``."""
    generation = int(instance.system_metadata.get(GENERATION_KEY, 0))
    return 'nova-%s-%s-%d' % (instance.uuid, host, generation)


def vf_requests(instance) -> list[flavor.VFRequest]:
    """The flavor's requests; a spec vfpool cannot read aborts the build."""
    try:
        return flavor.requests(instance.flavor.extra_specs)
    except flavor.InvalidSpec as exc:
        raise nova_exception.InvalidInput(reason=str(exc))


def interface_xml(alloc: dict, builder: vf_xml.VFXMLBuilder = (
        vf_xml.hostdev_interface_xml)) -> str:
    """The ``<interface>`` of an allocation, as plugged.

    ``<interface type='hostdev'>`` by default; ``builder`` (the compute
    plugin's, so a stand-in where there is no VFIO) with the MAC and VLAN
    vfpool recorded and the alias the compute plugin gives a VF, in a new
    domain's XML and in a hot-plug alike.
    """
    return builder(alloc['address'], alloc['mac'], vlan=alloc.get('vlan'),
                   alias=vf_guest.vf_alias(alloc))


def with_vfs(domain_xml: str, allocations: list[dict],
             builder: vf_xml.VFXMLBuilder = vf_xml.hostdev_interface_xml
             ) -> str:
    """``domain_xml`` with the interface of each allocation not in it."""
    missing = [a for a in allocations
               if vf_guest.find_vf_interface(domain_xml, a) is None]
    if not missing:
        return domain_xml
    root = ET.fromstring(domain_xml)
    devices = root.find('devices')
    if devices is None:
        raise exception.InvalidInput(
            reason='the guest XML has no <devices> for its VFs')
    for alloc in missing:
        devices.append(ET.fromstring(interface_xml(alloc, builder)))
    return ET.tostring(root, encoding='unicode')


def guest_vfs(info: dict, host: str) -> list[dict]:
    """The VFs a guest XML built on ``host`` must carry.

    The instance's allocations there; on the destination of a migration
    in flight, its claims there (with the source's MAC and VLAN), which
    a resize's finish_migration runs on.
    """
    migration = info.get('migration')
    if (migration and migration['state'] in states.IN_FLIGHT
            and migration['dest_host'] == host):
        return [pair['dest'] for pair in migration['vfs']]
    return [a for a in info['allocations'] if a.get('host') == host]


def _nova_migration(context, instance, types: tuple, statuses: tuple):
    """The newest of the instance's Nova migrations of ``types`` in progress.

    Nova's own "in progress" query knows only live migrations' statuses.
    """
    found = [m for m in objects.MigrationList.get_by_filters(context, {
        'instance_uuid': instance.uuid, 'status': list(statuses)})
        if m.migration_type in types]
    return max(found, key=lambda m: m.id) if found else None


if typing.TYPE_CHECKING:
    # Mixed into a LibvirtDriver: its attributes and super() are Nova's.
    from nova.virt.libvirt.driver import LibvirtDriver as _Driver
else:
    _Driver = object


class VfpoolLifecycle(_Driver):
    """Mixed into the driver before ``LibvirtDriver``; see the module."""

    # -- helpers --------------------------------------------------------------

    def _vfpool_rpc(self, method: str, context, *args, **kwargs):
        return self.vfpool.call(method, vfpool_context(context), *args,
                                **kwargs)

    def _vfpool_instance(self, context, instance) -> dict:
        """What vfpool holds for the instance; {} when it may be nothing.

        No RPC for an instance known to hold none (:data:`HOLDS_KEY`); an
        unknown one is looked up once and remembered.  An instance whose
        flavor asks for no VF goes on without vfpool when vfpool-server
        cannot be reached (it holds nothing, unless an operator allocated
        by hand); one whose flavor asks for VFs fails.
        """
        if self._vfpool_known_none(instance) or self._vfpool_saved_none(
                context, instance):
            return {'allocations': [], 'migration': None}
        try:
            info = self._vfpool_rpc('get_instance', context, instance.uuid)
        except messaging.MessagingException as exc:
            if vf_requests(instance):
                raise
            LOG.warning('vfpool: cannot reach vfpool-server (%s); the '
                        'flavor asks for no VF, going on without',
                        exc, instance=instance)
            return {'allocations': [], 'migration': None}
        if instance.system_metadata.get(HOLDS_KEY) is None:
            self._vfpool_remember(instance, bool(
                info.get('allocations') or info.get('migration')))
        return info

    # -- whether the instance holds VFs (issue 20 item 2) ---------------------

    @staticmethod
    def _vfpool_known_none(instance) -> bool:
        """Known to hold no vfpool VF: nothing to ask vfpool (no RPC)."""
        return instance.system_metadata.get(HOLDS_KEY) == '0'

    @staticmethod
    def _vfpool_saved_none(context, instance) -> bool:
        """An unknown key may have been saved since this copy was loaded.

        Another host of the same operation (a live migration's
        destination) may have looked it up already: one lookup in all.
        """
        if context is None or instance.system_metadata.get(HOLDS_KEY):
            return False
        try:
            saved = objects.Instance.get_by_uuid(
                context, instance.uuid, expected_attrs=['system_metadata'])
        except nova_exception.InstanceNotFound:
            return False
        value = saved.system_metadata.get(HOLDS_KEY)
        if value is not None:
            instance.system_metadata[HOLDS_KEY] = value
        return value == '0'

    @staticmethod
    def _vfpool_remember(instance, holds: bool) -> None:
        value = '1' if holds else '0'
        if instance.system_metadata.get(HOLDS_KEY) == value:
            return
        instance.system_metadata[HOLDS_KEY] = value
        try:
            instance.save()
        except nova_exception.InstanceNotFound:
            pass

    # -- end of issue 20 item 2 -----------------------------------------------

    def _vfpool_bump_generation(self, instance) -> None:
        """A later claim of this instance gets a new request id."""
        meta = instance.system_metadata
        meta[GENERATION_KEY] = str(int(meta.get(GENERATION_KEY, 0)) + 1)
        instance.save()

    def _vfpool_release_here(self, context, instance,
                             living_on: bool) -> int:
        if self._vfpool_known_none(instance):
            return 0
        host = self.vfpool.host
        if instance.task_state == task_states.SHELVING_OFFLOADING:
            remember_macs(instance, self._vfpool_here(context, instance))
        try:
            # Naming the id our allocate here used makes it claim nothing
            # should it still be queued (issue 18 item 4).
            freed = self._vfpool_rpc(
                'release', context, instance.uuid, host,
                request_ids=[request_id(instance, host)])
        except exception.HostNotFound:
            # No agent reported this host: vfpool holds nothing here.
            freed = 0
        if freed:
            LOG.info('vfpool: freed %d VF(s) of the instance on %s', freed,
                     host, instance=instance)
        if living_on:
            # It holds none now (offloaded, or a build that failed here).
            instance.system_metadata[HOLDS_KEY] = '0'
            self._vfpool_bump_generation(instance)
        return freed

    # -- the guest XML --------------------------------------------------------

    def _get_guest_xml(self, context, instance, *args, **kwargs):
        xml = super()._get_guest_xml(context, instance, *args, **kwargs)
        info = self._vfpool_instance(context, instance)
        vfs = guest_vfs(info, self.vfpool.host) if info else []
        if vfs:
            LOG.info('vfpool: guest XML with VF(s) %s',
                     ', '.join('%s (MAC %s)' % (a['address'], a['mac'])
                               for a in vfs), instance=instance)
        return with_vfs(xml, vfs, self.vfpool.xml_builder)

    # -- suspend, resume, snapshot -------------------------------------------

    def _vfpool_here(self, context, instance) -> list[dict]:
        info = self._vfpool_instance(context, instance)
        host = self.vfpool.host
        return [a for a in info.get('allocations', [])
                if a.get('host') == host]

    def _vfpool_domain(self, instance):
        return self._host.get_guest(instance)._domain

    def _vfpool_detach_all(self, context, instance) -> None:
        """Unplug the instance's VFs from its live guest (they stay its).

        QEMU cannot save the state of a passed-through device, so they go
        before a managed save (suspend, a cold snapshot).  If one will not
        go, those already unplugged are plugged back and the error raised:
        the guest is left as it was.
        """
        dom = self._vfpool_domain(instance)
        done: list[dict] = []
        for alloc in self._vfpool_here(context, instance):
            info = vf_guest.find_vf_interface(dom.XMLDesc(0), alloc)
            if info is None:
                continue
            try:
                self.vfpool.detach_vf(dom, info, alloc['address'])
            except exception.DeviceDetachFailed:
                with excutils.save_and_reraise_exception():
                    self._vfpool_plug(dom, done)
            done.append(alloc)
        if done:
            LOG.info('vfpool: detached VF(s) %s for the managed save',
                     ', '.join(a['address'] for a in done),
                     instance=instance)

    def _vfpool_plug(self, dom, allocations: list[dict]) -> None:
        for alloc in allocations:
            if vf_guest.find_vf_interface(dom.XMLDesc(0), alloc) is None:
                libvirt_ops.attach_device(
                    dom, interface_xml(alloc, self.vfpool.xml_builder),
                    vf_guest.vf_alias(alloc),
                    address=alloc['address'])

    def _vfpool_attach_all(self, context, instance) -> None:
        """Plug the instance's VFs back, with their MACs, after a restore."""
        allocs = self._vfpool_here(context, instance)
        self._vfpool_plug(self._vfpool_domain(instance), allocs)
        if allocs:
            LOG.info('vfpool: re-attached VF(s) %s',
                     ', '.join(a['address'] for a in allocs),
                     instance=instance)

    def suspend(self, context, instance):
        self._vfpool_detach_all(context, instance)
        super().suspend(context, instance)

    def resume(self, context, instance, network_info,
               block_device_info=None, share_info=None):
        super().resume(context, instance, network_info,
                       block_device_info=block_device_info,
                       share_info=share_info)
        self._vfpool_attach_all(context, instance)

    def _resume_guest_after_snapshot(self, context, live_snapshot,
                                     original_power_state, instance, guest):
        # A cold snapshot suspends through suspend() but restores here.
        super()._resume_guest_after_snapshot(
            context, live_snapshot, original_power_state, instance, guest)
        if self._needs_suspend_resume_for_snapshot(live_snapshot,
                                                   original_power_state):
            self._vfpool_attach_all(context, instance)

    # -- boot -----------------------------------------------------------------

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        fresh = self._vfpool_claim(context, instance)
        try:
            super().spawn(context, instance, image_meta, injected_files,
                          admin_password, allocations,
                          network_info=network_info,
                          block_device_info=block_device_info,
                          power_on=power_on, accel_info=accel_info)
        except Exception:
            with excutils.save_and_reraise_exception():
                if fresh:
                    self._vfpool_free_failed_spawn(context, instance)

    def _vfpool_free_failed_spawn(self, context, instance) -> None:
        try:
            self._vfpool_release_here(context, instance, living_on=True)
        except Exception:
            LOG.exception('vfpool: could not free the VFs of a failed '
                          'spawn; destroy frees them', instance=instance)

    def _vfpool_claim(self, context, instance) -> bool:
        """Give the instance its VFs here; True if this call claimed them.

        A build that cannot have them is aborted, not rescheduled, with a
        fault that says why (``BuildAbortException``: no free VF, vfpool
        unreachable; ``InvalidInput``: a flavor vfpool cannot read).  The
        scheduler filter chose this host because vfpool had the VFs: a
        reschedule would only hide the reason behind Nova's "Exceeded
        maximum number of retries".
        """
        requests = vf_requests(instance)
        host = self.vfpool.host
        if not requests and (
                self._vfpool_known_none(instance) or
                (instance.system_metadata.get(HOLDS_KEY) is None and
                 instance.task_state == task_states.SPAWNING)):
            # A build (or unshelve) of a flavor without VFs, or an instance
            # known to hold none: vfpool need not even be up.
            self._vfpool_remember(instance, False)
            return False
        try:
            info = self._vfpool_instance(context, instance)
            held = {a.get('host') for a in info.get('allocations', [])}
            if host in held:
                LOG.info('vfpool: the instance keeps its VF(s) here',
                         instance=instance)
                return False
            if held:
                self._vfpool_evacuate(context, instance, sorted(held),
                                      info.get('allocations', []))
                self._vfpool_remember(instance, True)
                return True
            if not requests:
                return False
            allocs = self._vfpool_rpc(
                'allocate', context, instance.uuid, host,
                kept_macs(instance, flavor.allocate_requests(requests)),
                request_id(instance, host))
        except (exception.VfpoolException,
                messaging.MessagingException) as exc:
            raise nova_exception.BuildAbortException(
                instance_uuid=instance.uuid,
                reason='vfpool cannot give the instance its VFs on %s: %s'
                       % (host, exc))
        LOG.info('vfpool: allocated VF(s) %s', ', '.join(
            '%s (MAC %s)' % (a['address'], a['mac']) for a in allocs),
            instance=instance)
        self._vfpool_remember(instance, bool(allocs))
        return True

    # -- evacuate -------------------------------------------------------------

    def _vfpool_evacuate(self, context, instance, sources: list[str],
                         allocations: list | None = None):
        """Move the VFs the instance holds on its dead host(s) here.

        As a migration (prepare, then complete at once: the source is
        down), keyed by Nova's evacuation so that a retry replays it: the
        same MACs, equivalent VFs here, the source VFs freed.
        """
        host = self.vfpool.host
        evacuation = _nova_migration(context, instance, ('evacuation',),
                                     _EVACUATION_STATUSES)
        for source in sources:
            key = evacuation.uuid if evacuation else instance.uuid
            migration_uuid = str(uuid.uuid5(_NAMESPACE, '%s:%s:%s' % (
                key, source, host)))
            # RPC 1.6: the VFs read above, else SourcesChanged, not [].
            expected = None if allocations is None else [
                a['address'] for a in allocations if a.get('host') == source]
            pairs = self._vfpool_rpc('prepare_migration', context,
                                     migration_uuid, instance.uuid, source,
                                     host, expected_sources=expected)
            self._vfpool_rpc('complete_migration', context, migration_uuid)
            LOG.info('vfpool: evacuated %d VF(s) from %s (migration %s)',
                     len(pairs), source, migration_uuid, instance=instance)

    # -- delete ---------------------------------------------------------------

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        super().destroy(context, instance, network_info,
                        block_device_info=block_device_info,
                        destroy_disks=destroy_disks,
                        destroy_secrets=destroy_secrets)
        self._vfpool_after_destroy(context, instance)

    def _vfpool_after_destroy(self, context, instance) -> None:
        """The domain is gone from this host: do its VFs go too?

        Only when the instance leaves this host (deleted, shelved
        offloaded, a failed build, an evacuated instance cleaned up after
        its host came back): Nova also destroys a domain it re-creates
        here at once (hard reboot, rebuild), and freeing a VF its guest
        still has is worse than holding one too long.  A resize revert
        aborts the migration instead; a live migration settles its own.
        """
        state = instance.task_state
        if state == task_states.RESIZE_REVERTING:
            self._vfpool_abort_cold(context, instance)
            return
        deleting = state == task_states.DELETING or instance.deleted
        gone_elsewhere = (instance.host != self.vfpool.host and
                          state != task_states.MIGRATING)
        if not (deleting or gone_elsewhere or state in _LEAVING):
            return
        try:
            self._vfpool_release_here(
                context, instance,
                living_on=not deleting and not gone_elsewhere)
        except Exception:
            LOG.exception('vfpool: could not free the VFs of the instance '
                          'on %s: free them with vfpool-manage instance '
                          'release', self.vfpool.host, instance=instance)

    # -- resize and cold migration --------------------------------------------

    def _vfpool_cold_migration(self, context, instance):
        return _nova_migration(context, instance, _COLD, _COLD_STATUSES)

    def migrate_disk_and_power_off(self, context, instance, dest, *args,
                                   **kwargs):
        claimed = self._vfpool_claim_cold(context, instance)
        try:
            return super().migrate_disk_and_power_off(
                context, instance, dest, *args, **kwargs)
        except Exception:
            # The disk cannot shrink, ssh or LVM failed: Nova rolls the
            # resize back (or errors the instance) and calls no other
            # hook here; the guest has not left, its VFs stay its own.
            with excutils.save_and_reraise_exception():
                if claimed is not None:
                    self._vfpool_abort_failed_cold(context, instance,
                                                   claimed)

    def _vfpool_abort_failed_cold(self, context, instance,
                                  migration_uuid: str) -> None:
        try:
            self._vfpool_settle(context, instance, migration_uuid,
                                'abort_migration')
        except Exception:
            LOG.exception('vfpool: could not abort migration %s after the '
                          'resize failed; finish it with vfpool-manage '
                          'migration abort', migration_uuid,
                          instance=instance)

    def _vfpool_claim_cold(self, context, instance) -> str | None:
        """Claim equivalents of the instance's VFs on the destination.

        The first driver hook of a resize (the destination has none before
        the guest moves).  Moving at once: the guest may wait for the
        confirm for as long as its owner likes, and no lease may free its
        VFs meanwhile.  A refusal rolls the resize back, the instance
        stays ACTIVE here.  Returns the uuid of the migration claimed for,
        if any.
        """
        if self._vfpool_known_none(instance):
            return None
        migration = self._vfpool_cold_migration(context, instance)
        if migration is None:
            LOG.warning('vfpool: no resize or cold migration in progress: '
                        'claiming nothing', instance=instance)
            return None
        # Nova's dest_host is an address; vfpool knows computes by name.
        source, dest = migration.source_compute, migration.dest_compute
        if dest == source:
            # A resize on this host keeps the VFs it has.
            return None
        try:
            pairs = self._vfpool_rpc('prepare_migration', context,
                                     migration.uuid, instance.uuid, source,
                                     dest)
            if pairs:
                self._vfpool_rpc('begin_migration', context, migration.uuid)
        except (exception.VfpoolException,
                messaging.MessagingException) as exc:
            raise nova_exception.InstanceFaultRollback(
                nova_exception.ResizeError(
                    reason='vfpool cannot claim VFs on %s: %s'
                           % (dest, exc)))
        LOG.info('vfpool: claimed %d VF(s) on %s for migration %s',
                 len(pairs), dest, migration.uuid, instance=instance)
        return migration.uuid

    def confirm_migration(self, context, migration, instance, network_info):
        super().confirm_migration(context, migration, instance, network_info)
        self._vfpool_settle(context, instance, migration.uuid,
                            'complete_migration')

    def finish_revert_migration(self, context, instance, network_info,
                                migration, *args, **kwargs):
        self._vfpool_settle(context, instance, migration.uuid,
                            'abort_migration')
        super().finish_revert_migration(context, instance, network_info,
                                        migration, *args, **kwargs)

    def _vfpool_abort_cold(self, context, instance) -> None:
        migration = self._vfpool_cold_migration(context, instance)
        if migration is not None:
            self._vfpool_settle(context, instance, migration.uuid,
                                'abort_migration')

    def _vfpool_settle(self, context, instance, migration_uuid: str,
                       method: str) -> None:
        """Complete or abort; a migration vfpool never saw is nothing."""
        if self._vfpool_known_none(instance):
            return
        try:
            self._vfpool_rpc(method, context, migration_uuid)
        except exception.MigrationNotFound:
            return
        LOG.info('vfpool: %s %s', method, migration_uuid, instance=instance)
