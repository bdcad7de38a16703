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

"""Nova's libvirt driver, carrying vfpool VFs through live migration.

:class:`VfpoolLibvirtDriver` is Nova's ``LibvirtDriver`` with
:class:`vfpool.compute.plugin.VFMigrationPlugin` called at the hooks where
Nova 34 gives it what it needs.  Where each step runs::

    dest    check_source_migrate_data_at_dest   claim (prepare_migration);
                                                a refusal raises
                                                MigrationPreCheckError and
                                                the conductor tries the
                                                next host
    dest    pre_live_migration                  on failure: free the claim
                                                (with a shared instance
                                                path Nova calls no rollback
                                                hook on the destination)
    source  live_migration                      detach the VFs, then Nova's
                                                migration; a failed detach
                                                rolls back through
                                                recover_method
    source  post_live_migration                 complete (idempotent)
    dest    post_live_migration_at_destination  Nova's own direct ports
                                                first, then attach the
                                                claimed VFs
  on failure instead:
    source  rollback_live_migration_at_source   Nova's ports, then the VFs
                                                back, claims freed
    dest    rollback_live_migration_at_dest...  Nova destroys the domain,
                                                then the claims are freed

Nova gives some live migrations up without any of these hooks (a queued
one aborted, the conductor failing after the claim, the source restarting
after the detach): the lease renewers ask Nova's Migration record whether
to go on, and :class:`vfpool.nova.reconcile.Reconciler` rolls back what
Nova gave up, at start and every ``[migration] reconcile_interval``.

vfpool's VFs are not Nova's PCI devices: Nova's PCI tracker never sees
them, so they must be disjoint from ``[pci] device_spec`` (checked at
start).  Device events come from Nova's own libvirt connection and event
thread (``nova.virt.libvirt.host.Host``) through :meth:`emit_event`; vfpool
runs no event loop of its own here.

Nova loads ``compute_driver`` only from under ``nova.virt``: run
``vfpool-nova-compute`` (see :mod:`vfpool.nova.cmd`) with
``compute_driver = vfpool.VfpoolLibvirtDriver``.
"""

import threading

import nova.conf
from nova import context as nova_context
from nova import exception as nova_exception
from nova import objects
from nova.pci import whitelist
from nova import utils as nova_utils
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import event as libvirt_event
from nova.virt.libvirt import utils as libvirt_utils
from oslo_log import log as logging
import oslo_messaging as messaging
from oslo_serialization import jsonutils
from oslo_utils import excutils

from vfpool.compute import events
from vfpool.compute import plugin as vf_plugin
from vfpool import exception
from vfpool.nova import config as vf_config
from vfpool.nova import devices
from vfpool.nova import lifecycle
from vfpool.nova import reconcile

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF
vf_config.register_nova_opts(CONF)

_EVENT_KINDS = {
    libvirt_event.DeviceRemovedEvent: events.DEVICE_REMOVED,
    libvirt_event.DeviceRemovalFailedEvent: events.DEVICE_REMOVAL_FAILED,
}


vfpool_context = lifecycle.vfpool_context


#: Reconnections to a lost broker per vfpool call (oslo.messaging's
#: ``retry``): with the broker check of a bounded client
#: (:class:`vfpool.rpcapi.VfpoolAPI`), no call waits without bound.
RPC_RETRY = 1


class NoClaim(Exception):
    """The instance holds vfpool VFs here but the destination claimed none."""


class VfpoolLibvirtDriver(lifecycle.VfpoolLifecycle,
                          libvirt_driver.LibvirtDriver):
    """``LibvirtDriver`` plus vfpool's VFs, live migration included.

    The rest of an instance's life (boot, delete, rebuild, resize,
    evacuate) is :class:`vfpool.nova.lifecycle.VfpoolLifecycle`'s.
    """

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi, read_only)
        self._vfpool_events = events.DeviceEventRegistry(host_fed=True)
        self._vfpool: vf_plugin.VFMigrationPlugin | None = None
        self._vfpool_reconciler: reconcile.Reconciler | None = None
        self._vfpool_lock = threading.Lock()
        # instance uuid -> uuid of the migration whose VFs we claimed here
        self._vfpool_claims: dict[str, str] = {}
        # migrations leaving this host that vfpool has no record of
        self._vfpool_unknown: set[str] = set()

    # -- start and stop -----------------------------------------------------

    @property
    def vfpool(self) -> vf_plugin.VFMigrationPlugin:
        if self._vfpool is None:
            raise nova_exception.InternalError(
                'the vfpool driver is used before init_host')
        return self._vfpool

    def init_host(self, host):
        if not nova_utils.concurrency_mode_threading():
            raise nova_exception.InvalidConfiguration(
                'the vfpool compute driver runs only in nova-compute\'s '
                'threading mode, not under eventlet ([DEFAULT] '
                'concurrency_backend)')
        super().init_host(host)
        try:
            conf = vf_config.load(CONF.vfpool.config_file)
            vf_config.check_host(conf, host)
        except vf_config.ConfigError as exc:
            raise nova_exception.InvalidConfiguration(str(exc))
        self._check_devices_disjoint(conf)
        # Nova's Host runs libvirt's event loop; never start a second one.
        events.use_host_event_loop()
        self._vfpool = vf_plugin.VFMigrationPlugin(
            conf, host, connection=lambda: self._host.get_connection(),
            registry=self._vfpool_events, owner=self._vfpool_wanted,
            rpc_retry=RPC_RETRY)
        try:
            self._check_host_known(conf, host)
        except nova_exception.InvalidConfiguration:
            with excutils.save_and_reraise_exception():
                self.cleanup_vfpool()
        self._vfpool_reconciler = reconcile.Reconciler(
            self._vfpool, self._vfpool_domain_by_uuid,
            interval=conf.migration.reconcile_interval,
            window=conf.migration.claim_max_seconds)
        self._vfpool_reconciler.start()
        LOG.info('vfpool: this host is %s; vfpool-server topic %s, RPC '
                 'version cap %s, reattach_failure_policy %s', host,
                 conf.rpc_topic, self._vfpool.version_cap,
                 conf.migration.reattach_failure_policy)

    def cleanup_host(self, host):
        try:
            super().cleanup_host(host)
        finally:
            self.cleanup_vfpool()

    def cleanup_vfpool(self) -> None:
        """Stop vfpool's threads, close its broker connection; idempotent."""
        reconciler, self._vfpool_reconciler = self._vfpool_reconciler, None
        if reconciler is not None:
            reconciler.stop(timeout=5)
        plugin, self._vfpool = self._vfpool, None
        if plugin is not None:
            plugin.close()

    # -- Nova's records, the owners of vfpool's live migrations ---------------

    @staticmethod
    def _vfpool_wanted(migration_uuid: str) -> bool:
        """The lease renewer's question: does Nova still drive it?"""
        return reconcile.wanted(nova_context.get_admin_context(),
                                migration_uuid)

    def _vfpool_domain_by_uuid(self, instance_uuid: str):
        try:
            return self._host.get_connection().lookupByUUIDString(
                instance_uuid)
        except libvirt_driver.libvirt.libvirtError:
            return None

    def _check_host_known(self, conf, host: str) -> None:
        """Refuse to start when vfpool knows this host by another name.

        The agent reports under vfpool's ``[DEFAULT] host``, by default
        ``gethostname()``; the driver speaks for Nova's ``host``.  When
        the file sets none and the two differ, vfpool-server tells which
        it knows: only vfpool's name means every VF build would fail with
        HostNotFound.  Neither known (no report yet) or vfpool-server
        unreachable: a warning, not a refusal.
        """
        agent_name = conf.host
        if agent_name == host:
            return
        client = self.vfpool.client
        known: dict[str, bool] = {}
        try:
            for name in (host, agent_name):
                try:
                    client.get_host(None, name)
                    known[name] = True
                except exception.HostNotFound:
                    known[name] = False
                if known[host]:
                    return
        except (exception.VfpoolException,
                messaging.MessagingException) as exc:
            LOG.warning('vfpool: Nova calls this host %s, vfpool-agent '
                        'reports it as %s (vfpool\'s [DEFAULT] host); '
                        'vfpool-server cannot say which it knows (%s)',
                        host, agent_name, exc)
            return
        if known[agent_name]:
            raise nova_exception.InvalidConfiguration(
                'vfpool-server knows this host as %s (vfpool\'s [DEFAULT] '
                'host, from gethostname()) but not as %s (nova.conf\'s '
                '[DEFAULT] host): every VF build would fail with '
                'HostNotFound. Set host = %s in %s.'
                % (agent_name, host, host, CONF.vfpool.config_file))
        LOG.warning('vfpool: Nova calls this host %s but vfpool-agent would '
                    'report it as %s (vfpool\'s [DEFAULT] host, from '
                    'gethostname()); vfpool-server knows neither yet. Set '
                    'host = %s in %s unless the agent already does.',
                    host, agent_name, host, CONF.vfpool.config_file)

    def _check_devices_disjoint(self, conf) -> None:
        """Refuse to start if Nova's PCI tracker would hand out vfpool's VFs.

        vfpool's side is ``[agent] device_spec`` of its configuration file
        evaluated on this host's node devices, as the agent does; Nova's
        side is ``[pci] device_spec`` evaluated as its PCI tracker does.
        """
        vfpool_vfs = devices.managed_vfs(self._host.get_connection(), conf)
        if not vfpool_vfs:
            return
        spec = whitelist.Whitelist(CONF.pci.device_spec)
        nova_addresses = set()
        for dev in jsonutils.loads(self._get_pci_passthrough_devices()):
            try:
                if spec.device_assignable(dev) is not None:
                    nova_addresses.add(dev['address'])
            except nova_exception.PciConfigInvalidSpec:
                # Nova's tracker skips such a device too.
                continue
        problems = devices.conflicts(vfpool_vfs, nova_addresses)
        if problems:
            raise nova_exception.InvalidConfiguration(
                'vfpool and Nova must manage disjoint PCI devices: %s. '
                'Narrow [pci] device_spec in nova.conf or [agent] '
                'device_spec in %s.' % ('; '.join(problems),
                                        CONF.vfpool.config_file))

    # -- device events --------------------------------------------------------

    def emit_event(self, event):
        """Device events for vfpool's detaches go to vfpool, others on."""
        kind = _EVENT_KINDS.get(type(event))
        if kind is not None and self._vfpool_events.dispatch(
                kind, event.uuid, event.dev):
            return
        super().emit_event(event)

    # -- which migration ------------------------------------------------------

    def _remember_claim(self, instance_uuid: str, migration_uuid: str):
        with self._vfpool_lock:
            self._vfpool_claims[instance_uuid] = migration_uuid

    def _forget_claim(self, instance_uuid: str) -> None:
        with self._vfpool_lock:
            self._vfpool_claims.pop(instance_uuid, None)

    def _migration_uuid(self, context, instance,
                        migrate_data=None) -> str | None:
        """The live migration of ``instance`` these hooks are about.

        Some hooks get no migrate_data (post_live_migration_at_destination)
        or one without the Migration (pre_live_migration): then the claim
        made here, or after a restart Nova's in-progress live migration.
        """
        if (migrate_data is not None and
                migrate_data.obj_attr_is_set('migration')):
            return migrate_data.migration.uuid
        with self._vfpool_lock:
            claimed = self._vfpool_claims.get(instance.uuid)
        if claimed:
            return claimed
        migrations = objects.MigrationList.get_in_progress_by_instance(
            context, instance.uuid, migration_type='live-migration')
        return migrations[0].uuid if migrations else None

    def _domain(self, instance):
        try:
            return self._host.get_guest(instance)._domain
        except nova_exception.InstanceNotFound:
            return None

    # -- destination: claim ---------------------------------------------------

    def check_source_migrate_data_at_dest(self, ctxt, instance,
                                          migrate_data, migration, limits,
                                          allocs):
        """Claim equivalent VFs here; refusing lets Nova try another host.

        The last check Nova runs on a candidate destination, and the only
        destination hook that sees the Migration.  The conductor retries
        another host with the same Migration after a refusal, which vfpool
        answers by moving the claim there.
        """
        migrate_data = super().check_source_migrate_data_at_dest(
            ctxt, instance, migrate_data, migration, limits, allocs)
        if migration is None:
            raise nova_exception.MigrationPreCheckError(
                reason='vfpool needs the Migration of the live migration')
        host = self.vfpool.host
        try:
            if self._vfpool_known_none(instance) or (
                    instance.system_metadata.get(lifecycle.HOLDS_KEY) is None
                    and not self._vfpool_instance(ctxt, instance).get(
                        'allocations')):
                # Holds no VF (known, or one lookup): nothing to claim.
                return migrate_data
        except messaging.MessagingException as exc:
            raise nova_exception.MigrationPreCheckError(
                reason='vfpool-server could not say whether the instance '
                       'holds VFs: %s' % exc)
        try:
            pairs = self.vfpool.pre_live_migration(
                vfpool_context(ctxt), instance.uuid, migration.uuid,
                source_host=instance.host, dest_host=host)
        except exception.VfpoolException as exc:
            raise nova_exception.MigrationPreCheckError(
                reason='vfpool cannot claim VFs on %s: %s' % (host, exc))
        except messaging.MessagingException as exc:
            # Unreachable (MessagingTimeout), or too old for this client
            # (UnsupportedVersion: see [upgrade_levels] vfpool).
            raise nova_exception.MigrationPreCheckError(
                reason='vfpool-server could not claim VFs on %s: %s'
                       % (host, exc))
        self._remember_claim(instance.uuid, migration.uuid)
        LOG.info('vfpool: claimed %d VF(s) on %s for migration %s',
                 len(pairs), host, migration.uuid, instance=instance)
        return migrate_data

    def pre_live_migration(self, context, instance, block_device_info,
                           network_info, disk_info, migrate_data):
        try:
            return super().pre_live_migration(
                context, instance, block_device_info, network_info,
                disk_info, migrate_data)
        except Exception:
            # With a shared instance path Nova calls no rollback hook here.
            with excutils.save_and_reraise_exception():
                self._free_claims(context, instance, migrate_data)

    def _free_claims(self, context, instance, migrate_data=None) -> None:
        if self._vfpool_known_none(instance):
            self._forget_claim(instance.uuid)
            return
        migration_uuid = self._migration_uuid(context, instance,
                                              migrate_data)
        self._forget_claim(instance.uuid)
        if migration_uuid is None:
            return
        try:
            self.vfpool.rollback_live_migration_at_destination(
                vfpool_context(context), instance.uuid, migration_uuid)
        except Exception:
            LOG.exception('vfpool: could not free the claims of migration '
                          '%s; they stay until their lease expires',
                          migration_uuid, instance=instance)

    # -- source: detach, migrate ----------------------------------------------

    def live_migration(self, context, instance, dest, post_method,
                       recover_method, block_migration=False,
                       migrate_data=None):
        """Detach vfpool's VFs, then Nova's migration.

        They must be gone before Nova builds the destination XML, which
        expects every remaining interface to be a Neutron port.  A failed
        detach leaves the guest as it was (the plugin re-attaches what it
        took) and rolls back through ``recover_method``: raising here
        would put the instance in ERROR.
        """
        if not libvirt_utils.is_valid_hostname(dest):
            raise nova_exception.InvalidHostname(hostname=dest)
        migration_uuid = migrate_data.migration.uuid
        try:
            self._detach_source_vfs(context, instance, migration_uuid, dest)
        except Exception as exc:
            LOG.error('vfpool: not migrating: %s', exc, instance=instance)
            recover_method(context, instance, dest, migrate_data)
            return
        try:
            super().live_migration(context, instance, dest, post_method,
                                   recover_method, block_migration,
                                   migrate_data)
        except Exception:
            with excutils.save_and_reraise_exception():
                LOG.error('vfpool: migration %s failed where Nova cannot '
                          'tell on which host the guest runs; its VFs stay '
                          'held on both hosts: finish it with vfpool-manage '
                          'migration complete or abort',
                          migration_uuid, instance=instance)

    def _detach_source_vfs(self, context, instance, migration_uuid: str,
                           dest: str | None = None) -> None:
        """Hand the plugin the claimed pairs, or note there are none.

        One ``get_instance``: the migration the destination claimed, with
        its pairs (possibly none), or no migration at all, which vfpool
        answers for an instance without VFs on hosts it does not know.
        """
        vctx = vfpool_context(context)
        info = self._vfpool_instance(context, instance)
        migration = info.get('migration')
        if migration and migration['uuid'] == migration_uuid:
            self.vfpool.detach_source_vfs(
                vctx, instance.uuid, migration_uuid,
                domain=self._domain(instance), pairs=migration['vfs'],
                dest_host=dest)
            return
        held = [a['address'] for a in info['allocations']
                if a.get('host') == self.vfpool.host]
        if held:
            raise NoClaim(
                'vfpool knows no migration %s, so no VF was claimed on '
                'the destination for VF(s) %s here: does the destination '
                'run the vfpool driver?' % (migration_uuid, ', '.join(held)))
        with self._vfpool_lock:
            self._vfpool_unknown.add(migration_uuid)

    def _unknown_to_vfpool(self, migration_uuid: str) -> bool:
        """Whether live_migration found nothing of vfpool to move; forgets."""
        with self._vfpool_lock:
            if migration_uuid in self._vfpool_unknown:
                self._vfpool_unknown.discard(migration_uuid)
                return True
        return False

    def rollback_live_migration_at_source(self, context, instance,
                                          migrate_data):
        # Nova's own direct ports first: Nova counts the guest's interfaces
        # to find the ones it detached.
        super().rollback_live_migration_at_source(context, instance,
                                                  migrate_data)
        migration_uuid = self._migration_uuid(context, instance,
                                              migrate_data)
        if migration_uuid is None or self._unknown_to_vfpool(migration_uuid):
            return
        try:
            self.vfpool.rollback_live_migration_at_source(
                vfpool_context(context), instance.uuid, migration_uuid,
                domain=self._domain(instance))
        except exception.ReattachFailed:
            raise
        except (exception.VfpoolException, messaging.MessagingException):
            LOG.exception('vfpool: the rollback of migration %s did not '
                          'finish; its destination claims stay held: '
                          'finish it with vfpool-manage migration abort',
                          migration_uuid, instance=instance)

    def post_live_migration(self, context, instance, block_device_info,
                            migrate_data=None):
        super().post_live_migration(context, instance, block_device_info,
                                    migrate_data)
        migration_uuid = self._migration_uuid(context, instance,
                                              migrate_data)
        if migration_uuid is None or self._unknown_to_vfpool(migration_uuid):
            return
        try:
            self.vfpool.post_live_migration(vfpool_context(context),
                                            instance.uuid, migration_uuid)
        except Exception:
            # The guest runs on the destination; its hook completes too.
            LOG.exception('vfpool: could not complete migration %s from '
                          'the source; the destination completes it',
                          migration_uuid, instance=instance)

    # -- destination: attach or roll back -------------------------------------

    def post_live_migration_at_destination(self, context, instance,
                                           network_info,
                                           block_migration=False,
                                           block_device_info=None):
        """Nova's direct ports first, then vfpool's VFs.

        Nova finds the ports to re-attach by counting the guest's
        interfaces, so vfpool's must not be there yet.  A VF that cannot
        be attached is handled by ``[migration] reattach_failure_policy``;
        ``ReattachFailed`` leaves the instance in ERROR on this host.
        """
        super().post_live_migration_at_destination(
            context, instance, network_info, block_migration,
            block_device_info)
        if self._vfpool_known_none(instance):
            self._forget_claim(instance.uuid)
            return
        migration_uuid = self._migration_uuid(context, instance)
        self._forget_claim(instance.uuid)
        if migration_uuid is None:
            LOG.warning('vfpool: no live migration in progress for this '
                        'instance: nothing to attach', instance=instance)
            return
        self.vfpool.post_live_migration_at_destination(
            vfpool_context(context), instance.uuid, migration_uuid,
            domain=self._domain(instance))

    def rollback_live_migration_at_destination(self, context, instance,
                                               network_info,
                                               block_device_info,
                                               destroy_disks=True,
                                               migrate_data=None):
        # The guest here never had vfpool's VFs (they are attached only
        # after success); Nova destroys it, then the claims go.
        try:
            super().rollback_live_migration_at_destination(
                context, instance, network_info, block_device_info,
                destroy_disks, migrate_data)
        finally:
            self._free_claims(context, instance, migrate_data)
