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

"""The compute plugin: live migration of guests that use SR-IOV VFs.

A compute driver calls :class:`VFMigrationPlugin` from its live-migration
hooks; the methods are named after Nova's virt-driver hooks so that the
wiring is mechanical.  Where each runs, in order::

    dest    pre_live_migration                 claim destination VFs (RPC)
    source  detach_source_vfs                  just before migrateToURI3:
            (= prepare_source_for_migration)   unplug every VF and wait for
                                               the guest to let go
    source  <the driver migrates the guest>
    source  post_live_migration                free the source VFs (RPC)
    dest    post_live_migration_at_destination free the source VFs, plug
                                               the claimed ones, apply
                                               [migration] reattach_failure_
                                               policy to those that fail
  on failure instead:
    source  rollback_live_migration_at_source      plug the VFs back, free
                                                   the destination claims
    dest    rollback_live_migration_at_destination unplug what was plugged
                                                   there, free the claims

From the claim (destination) and the detach (source) until the
migration is completed or aborted, a thread per migration renews its
lease every third of it (:mod:`vfpool.compute.background`).  When
vfpool-server does not answer the post-migration hooks within
``[migration] complete_timeout``, the destination plugs the VFs it
claimed all the same and a background settler retries the completion
within a bound; :meth:`VFMigrationPlugin.close` stops those threads.

Every hook is safe to call again (Nova retries, a compute service
restarts): RPCs are keyed by the migration's or the request's id, and
libvirt work starts from the live domain XML (:func:`find_vf_interface`
says whether a VF is "attached").  The plugin remembers in memory what it
detached for a migration, to re-attach exactly that on rollback; after a
restart it falls back to the live XML.

Driver authors: libvirt only delivers the device events the detach waits
for (DEVICE_REMOVED) on connections opened *after* an event loop
implementation was registered and while something runs it.  Call
``vfpool.compute.events.start_event_loop()`` before opening the
connection whose domains you hand to the plugin, unless your driver
already registers and runs libvirt's default event loop (Nova's libvirt
driver does); without it every detach waits its full timeout and falls
back to reading the XML.  ``conf`` is vfpool's own ``ConfigOpts``
(``vfpool.conf.new_conf()`` with ``vfpool.rpc.register_opts``), not the
driver's: Nova has a ``[libvirt]`` group with options of the same names.
"""

import dataclasses
import re
import threading
import typing

from oslo_config import cfg
from oslo_log import log as logging
import oslo_messaging as messaging

from vfpool.compute import background
from vfpool.compute import events
from vfpool.compute import libvirt_ops
from vfpool.compute import recovery
from vfpool.compute import vf_xml
from vfpool import exception
from vfpool.libvirt_import import libvirt
from vfpool import rpcapi
from vfpool import utils

LOG = logging.getLogger(__name__)
# A background worker of one kind, returned as the kind it was started as.
_W = typing.TypeVar('_W', bound=background.Worker)

ConnectionArg = typing.Union[libvirt.virConnect,
                             typing.Callable[[], libvirt.virConnect], None]
_ALIAS_UNSAFE = re.compile(r'[^A-Za-z0-9_-]')
_USER_ALIAS = re.compile(r'^ua-[A-Za-z0-9_-]+$')


def _label(dom: libvirt.virDomain) -> str:
    try:
        return '%s (%s)' % (dom.name(), dom.UUIDString())
    except libvirt.libvirtError:
        return '<unknown domain>'


def vf_alias(alloc: dict) -> str:
    """The user alias a VF gets in the guest: ``ua-vf-<mac>``.

    Derived from the MAC, which the VF keeps on every host, so the same
    port has the same alias wherever the guest runs; the PCI address
    stands in for an allocation without a MAC.
    """
    key = alloc.get('mac') or alloc['address']
    return 'ua-vf-' + _ALIAS_UNSAFE.sub('', key.lower())


def find_vf_interface(domain_xml: str, alloc: dict
                      ) -> vf_xml.InterfaceInfo | None:
    """The guest interface of an allocation, or None: is the VF in there?

    The one answer to that question for every hook.  A ``hostdev``
    interface is the VF when both its PCI source and its MAC are the
    allocation's (a swapped-out VF carries the same MAC); an allocation
    without a MAC goes by the PCI source alone.  Another interface type (an
    emulated stand-in) has no PCI source and goes by the MAC.  A
    ``<teaming type='persistent'/>`` standby sharing the MAC is never the
    VF (QEMU failover pairs give both halves one MAC).
    """
    mac = alloc.get('mac')
    mac = mac.lower() if mac else None
    address = (alloc.get('address') or '').lower()
    for info in vf_xml.parse_interfaces(domain_xml):
        if info.teaming_type == 'persistent':
            continue
        if info.type == 'hostdev':
            if info.pci_address == address and (mac is None
                                                or info.mac == mac):
                return info
        elif mac is not None and info.mac == mac:
            return info
    return None


def _unreachable(instance_uuid: str, error: Exception) -> recovery.AttachFn:
    def fail(alloc: dict) -> typing.NoReturn:
        raise exception.DeviceAttachFailed(
            address=alloc['address'], domain=instance_uuid,
            reason='domain not found: %s' % error)
    return recovery.AttachFn(plug=fail, plugged=fail)


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


class VFMigrationPlugin:
    """Moves a guest's VFs along with a live migration; see the module.

    :param conf: vfpool's ConfigOpts (``[libvirt]``, ``[migration]``, RPC).
    :param host: this compute host's name, as the agent reports it.
    :param client: a :class:`vfpool.rpcapi.VfpoolAPI`; built from ``conf``
        when omitted.
    :param xml_builder: builds the ``<interface>`` of a VF;
        ``vf_xml.emulated_interface_xml`` on machines without VFIO.
    :param connection: a libvirt connection, a callable returning one, or
        None to open ``[libvirt] connection_uri`` on first need; only used
        to find a domain when a hook is not handed one.
    :param registry: where device events are awaited; the process-wide
        one by default.
    :param rpc_attempts: how often an idempotent RPC is sent again after a
        ``MessagingTimeout``.
    """

    def __init__(self, conf: cfg.ConfigOpts, host: str,
                 client: rpcapi.VfpoolAPI | None = None,
                 xml_builder: vf_xml.VFXMLBuilder = (
                     vf_xml.hostdev_interface_xml),
                 connection: ConnectionArg = None,
                 registry: events.DeviceEventRegistry | None = None,
                 rpc_attempts: int = 3) -> None:
        self.conf = conf
        self.host = host
        self.client = client or rpcapi.VfpoolAPI(conf)
        self.xml_builder = xml_builder
        self.registry = registry or events.default_registry()
        self.rpc_attempts = rpc_attempts
        self.policy = recovery.ReattachPolicy(conf, self.client,
                                              rpc_attempts=rpc_attempts)
        self._connection_arg = connection
        self._connection: libvirt.virConnect | None = None
        self._lock = threading.Lock()
        self._migrations: dict[str, MigrationRecord] = {}
        #: (kind, migration uuid) -> its renewer or settler thread
        self._workers: dict[tuple[str, str], background.Worker] = {}

    def close(self, timeout: float = 5) -> None:
        """Stop every renewer and settler; for a compute service's stop.

        Waits up to ``timeout`` seconds for each.  A migration whose
        settler is stopped stays ``moving`` for ``vfpool-manage``.
        """
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.stop(timeout=timeout)

    def _start(self, kind: str, migration_uuid: str,
               worker: _W) -> _W:
        """Run ``worker`` unless one of its kind runs for the migration."""
        with self._lock:
            running = self._workers.get((kind, migration_uuid))
            if running is not None and running.is_alive():
                return typing.cast(_W, running)
            self._workers[(kind, migration_uuid)] = worker
        worker.start()
        return worker

    # -- helpers -----------------------------------------------------------

    def _rpc(self, method: str, context, *args: typing.Any,
             attempts: int | None = None, **kwargs: typing.Any) -> typing.Any:
        return recovery.call_idempotent(
            self.client, method, context, *args,
            attempts=attempts or self.rpc_attempts, **kwargs)

    def _connect(self) -> libvirt.virConnect:
        with self._lock:
            if self._connection is None:
                arg = self._connection_arg
                if arg is None:
                    # Before the connection exists, or no events reach it.
                    events.start_event_loop()
                    uri = self.conf.libvirt.connection_uri
                    LOG.info('Opening libvirt connection %s', uri)
                    self._connection = libvirt.open(uri)
                elif callable(arg):
                    self._connection = arg()
                else:
                    self._connection = arg
            return self._connection

    def _domain(self, instance_uuid: str, domain: typing.Any
                ) -> libvirt.virDomain:
        # Nova names libvirt domains by the instance's UUID.
        if domain is not None:
            return domain
        return self._connect().lookupByUUIDString(instance_uuid)

    def _remember(self, record: MigrationRecord) -> MigrationRecord:
        with self._lock:
            return self._migrations.setdefault(record.migration_uuid,
                                               record)

    def _forget(self, migration_uuid: str) -> None:
        """The migration is over here: drop it, end its threads."""
        with self._lock:
            self._migrations.pop(migration_uuid, None)
            workers = [self._workers.pop(key) for key in list(self._workers)
                       if key[1] == migration_uuid]
        for worker in workers:
            # Not joined: a hook does not wait for an RPC under way.
            worker.stop()

    def _keep_lease(self, context, record: MigrationRecord,
                    lease_seconds: int | None = None) -> None:
        """Renew the migration's lease in the background until forgotten.

        The interval is a third of the lease (``lease_seconds``, else
        ``[pool] lease_seconds``), then of what the server's answer leaves.
        """
        if not record.pairs:
            return
        lease = lease_seconds or self.conf.pool.lease_seconds

        def renew() -> str:
            return self.client.renew_migration(
                context, record.migration_uuid, lease_seconds,
                **self._belief(record))
        self._start('renew', record.migration_uuid, background.LeaseRenewer(
            record.migration_uuid, renew, lease))

    def _record(self, context, instance_uuid: str,
                migration_uuid: str) -> MigrationRecord:
        """The migration from memory, else as the server recorded it."""
        with self._lock:
            record = self._migrations.get(migration_uuid)
        if record is not None:
            return record
        return self._remember(self._load(context, instance_uuid,
                                         migration_uuid))

    def _load(self, context, instance_uuid: str,
              migration_uuid: str) -> MigrationRecord:
        info = self._rpc('get_instance', context, instance_uuid)
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

    def _fill_dest_host(self, context, record: MigrationRecord) -> None:
        if record.dest_host is None:
            record.dest_host = self._load(context, record.instance_uuid,
                                          record.migration_uuid).dest_host

    def _belief(self, record: MigrationRecord) -> dict[str, str]:
        """(RPC 1.6) The host this side is, for the server to check."""
        if record.dest_host == self.host:
            return {'dest_host': self.host}
        if record.source_host == self.host:
            return {'source_host': self.host}
        return {}

    def _check_host(self, expected: str, hook: str) -> None:
        if expected != self.host:
            LOG.warning('%s runs on %s but the migration says %s; acting '
                        'on %s', hook, self.host, expected, expected)

    def _settle(self, method: str, context, record: MigrationRecord,
                **kwargs: typing.Any) -> typing.Any:
        """``complete_migration`` or ``abort_migration`` of ``record``.

        An instance without VFs gets an empty prepare, which the server
        does not record when it knows neither host: settling that is
        nothing to do, not an error.
        """
        try:
            return self._rpc(method, context, record.migration_uuid,
                             **dict(self._belief(record), **kwargs))
        except exception.MigrationNotFound:
            if record.pairs:
                raise
            LOG.debug('Migration %s of instance %s moved no VF and is '
                      'unknown to vfpool: nothing to settle',
                      record.migration_uuid, record.instance_uuid)
            return [] if method == 'complete_migration' else 0

    def _attach_fn(self, dom: libvirt.virDomain,
                   aliases: dict[str, str] | None = None
                   ) -> recovery.AttachFn:
        """An idempotent attach of one allocation's VF to ``dom``."""
        try:
            teaming = vf_xml.find_persistent_teaming_interface(
                dom.XMLDesc(0))
        except libvirt.libvirtError:
            teaming = None
        teaming_alias = teaming.alias if teaming is not None else None
        label = _label(dom)

        def plugged(alloc: dict) -> bool:
            try:
                return find_vf_interface(dom.XMLDesc(0), alloc) is not None
            except (libvirt.libvirtError, exception.InvalidInput) as exc:
                raise exception.DeviceAttachFailed(
                    address=alloc['address'], domain=label,
                    reason='cannot read the live XML: %s' % exc)

        def attach(alloc: dict) -> None:
            alias = (aliases or {}).get(alloc['address']) or vf_alias(alloc)
            try:
                present = find_vf_interface(dom.XMLDesc(0), alloc)
                if present is not None:
                    LOG.info('VF %s (MAC %s) is already attached to domain '
                             '%s as %s', alloc['address'], alloc.get('mac'),
                             label, present.alias)
                    return
                if not alloc.get('mac'):
                    # Made by a server older than RPC 1.2, which did not
                    # assign MACs; libvirt needs one to program the VF.
                    raise exception.InvalidInput(
                        reason='the allocation has no MAC to plug it with')
                device_xml = self.xml_builder(
                    address=alloc['address'], mac=alloc['mac'],
                    vlan=alloc.get('vlan'), alias=alias,
                    teaming_persistent_alias=teaming_alias)
            except (libvirt.libvirtError, exception.InvalidInput) as exc:
                raise exception.DeviceAttachFailed(
                    address=alloc['address'], domain=label, reason=str(exc))
            libvirt_ops.attach_device(dom, device_xml, alias,
                                      address=alloc['address'])
        return recovery.AttachFn(plug=attach, plugged=plugged)

    def detach_vf(self, dom: libvirt.virDomain,
                  info: vf_xml.InterfaceInfo, address: str) -> None:
        """Unplug one VF interface for good, waiting for libvirt's event."""
        if not info.alias:
            raise exception.DeviceDetachFailed(
                alias='<none>', domain=_label(dom),
                reason='the interface of VF %s has no alias to wait for '
                       '(is the domain running?)' % address)
        libvirt_ops.detach_device(
            dom, info.xml, info.alias,
            timeout=self.conf.libvirt.device_detach_timeout,
            attempts=self.conf.libvirt.device_detach_attempts,
            registry=self.registry)

    # -- hooks ----------------------------------------------------------------

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
            pairs = self._rpc('prepare_migration', context, migration_uuid,
                              instance_uuid, source_host, dest_host,
                              lease_seconds)
        except Exception:
            self._give_up(context, migration_uuid, dest_host)
            raise
        record = self._remember(MigrationRecord(
            migration_uuid, instance_uuid, source_host, dest_host, pairs))
        record.pairs = pairs
        self._keep_lease(context, record, lease_seconds)
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
        if dest_host != self.host or not self.client.can_send_version('1.6'):
            return
        try:
            self._rpc('abort_migration', context, migration_uuid,
                      dest_host=dest_host)
        except Exception as exc:
            LOG.warning('Could not give up migration %s on %s: %s',
                        migration_uuid, dest_host, exc)

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
        the RPC that would fetch it.  ``dest_host`` is Nova's destination:
        ``begin_migration`` names it (RPC 1.6), so nothing is detached
        for a destination vfpool no longer has (``MigrationFenced``).
        """
        if pairs is not None:
            self._remember(MigrationRecord(migration_uuid, instance_uuid,
                                           self.host, None, pairs))
        record = self._record(context, instance_uuid, migration_uuid)
        nova_dest = dest_host
        self._check_host(record.source_host, 'detach_source_vfs')
        try:
            dom = self._domain(instance_uuid, domain)
        except libvirt.libvirtError as exc:
            error = exception.DeviceDetachFailed(
                alias='*', domain=instance_uuid, reason=str(exc))
            self._undo_detach(context, record, None, [], error)
            raise error
        if record.pairs:
            try:
                self._begin(context, record, nova_dest)
            except Exception as exc:
                self._undo_detach(context, record, dom, [], exc)
                raise
            self._keep_lease(context, record)
        with self._lock:
            if record.detached is None:
                record.detached = {}
        done: list[DetachedVF] = []
        for pair in record.pairs:
            alloc = pair['source']
            try:
                info = find_vf_interface(dom.XMLDesc(0), alloc)
            except libvirt.libvirtError as exc:
                error = exception.DeviceDetachFailed(
                    alias=vf_alias(alloc),
                    domain=_label(dom), reason=str(exc))
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
                self.detach_vf(dom, info, alloc['address'])
            except exception.DeviceDetachFailed as exc:
                self._undo_detach(context, record, dom, done, exc)
                raise
            # A libvirt-made alias (net1, hostdev0) cannot be asked for.
            alias = (info.alias
                     if info.alias and _USER_ALIAS.match(info.alias)
                     else vf_alias(alloc))
            detached = DetachedVF(alloc, alias)
            done.append(detached)
            with self._lock:
                record.detached[alloc['address']] = detached
        LOG.info('Detached %d VF(s) of instance %s for migration %s',
                 len(done), instance_uuid, migration_uuid)
        return [d.alloc for d in done]

    prepare_source_for_migration = detach_source_vfs

    def _begin(self, context, record: MigrationRecord,
               dest_host: str | None = None) -> None:
        if not self.client.can_send_version('1.2'):
            LOG.warning('Client capped at %s ([upgrade_levels] vfpool): '
                        'migration %s is not marked as moving, so its lease '
                        'may lapse while the VFs are detached',
                        self.client.version_cap, record.migration_uuid)
            return
        expiry = self._rpc('begin_migration', context,
                           record.migration_uuid, source_host=self.host,
                           dest_host=dest_host)
        LOG.info('Migration %s of instance %s is moving (lease until %s)',
                 record.migration_uuid, record.instance_uuid, expiry)

    def _undo_detach(self, context, record: MigrationRecord,
                     dom: libvirt.virDomain | None,
                     done: list[DetachedVF], error: Exception) -> None:
        """Put the source back as it was; the caller raises ``error``."""
        LOG.warning('Aborting migration %s of instance %s: %s',
                    record.migration_uuid, record.instance_uuid, error)
        try:
            failed = self._restore_source(context, record, dom, done)
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

    def _restore_source(self, context, record: MigrationRecord,
                        dom: libvirt.virDomain | None,
                        detached: list[DetachedVF]
                        ) -> list[recovery.Outcome]:
        """Plug ``detached`` back, abort, then recover what failed.

        The abort sits between the two because the policy's answers
        (swap, records) need the source VFs to be plain allocations
        again; the source VFs stay the guest's throughout.
        """
        attach: recovery.AttachFn | None = None
        outcomes = []
        if detached:
            attach = self._attach_fn(
                dom, {d.alloc['address']: d.alias for d in detached})
            for item in detached:
                LOG.info('Re-attaching VF %s (MAC %s) to instance %s on %s',
                         item.alloc['address'], item.alloc.get('mac'),
                         record.instance_uuid, record.source_host)
                outcomes.append(self.policy.attempt(item.alloc, attach))
        freed = self._settle('abort_migration', context, record)
        LOG.info('Aborted migration %s of instance %s: %d destination '
                 'claim(s) freed', record.migration_uuid,
                 record.instance_uuid, freed)
        self._forget(record.migration_uuid)
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
        :meth:`_settle_later`) and ``[]`` is returned: the guest has left,
        the hook must not fail Nova's migration for vfpool's bookkeeping.
        """
        try:
            record = self._record(context, instance_uuid, migration_uuid)
        except exception.MigrationNotFound:
            LOG.debug('Migration %s of instance %s is unknown to vfpool: '
                      'nothing to complete', migration_uuid, instance_uuid)
            return []
        try:
            allocs = self._complete_now(context, record)
        except messaging.MessagingException as exc:
            self._settle_later(context, record, exc)
            return []
        self._forget(migration_uuid)
        return allocs

    def _complete_now(self, context, record: MigrationRecord) -> list[dict]:
        """One attempt, waiting ``[migration] complete_timeout`` at most."""
        return self._complete(context, record, attempts=1,
                              timeout=self.conf.migration.complete_timeout)

    def _settle_later(self, context, record: MigrationRecord,
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
                self._forget(record.migration_uuid)
            LOG.info('Migration %s of instance %s completed in the '
                     'background', record.migration_uuid,
                     record.instance_uuid)

        def give_up(exc: Exception) -> None:
            self._forget(record.migration_uuid)
            LOG.error('Gave up completing migration %s of instance %s '
                      '(%s: %s); it stays in flight: once its lease lapses '
                      '"vfpool-manage migration list --stalled" shows it '
                      'and "vfpool-manage migration complete %s" finishes '
                      'it', record.migration_uuid, record.instance_uuid,
                      type(exc).__name__, exc, record.migration_uuid)

        return self._start('settle', record.migration_uuid, background.Settler(
            record.migration_uuid,
            lambda: self._complete(context, record, attempts=1), done,
            give_up, initial_delay=opts.settle_initial_delay,
            max_delay=opts.settle_max_delay, max_time=opts.settle_max_time))

    def _complete(self, context, record: MigrationRecord,
                  **call: typing.Any) -> list[dict]:
        """``complete_migration``, and after a lapsed lease a reclaim.

        At RPC 1.2 one call settles everything in one server transaction:
        ``reclaim=True`` answers as a plain complete while the lease holds,
        and after it lapsed claims equivalent VFs for those taken since
        and frees the sources together.  Capped at 1.1 the plugin does the
        reclaim itself (:meth:`_reclaim_1_1`).  ``call`` (``attempts``,
        ``timeout``) applies to ``complete_migration``.
        """
        LOG.info('Completing migration %s of instance %s: the VFs on %s '
                 'become its allocations, those on %s are freed',
                 record.migration_uuid, record.instance_uuid,
                 record.dest_host or 'the destination', record.source_host)
        if self.client.can_send_version('1.2'):
            return self._settle('complete_migration', context, record,
                                reclaim=True, **call)
        try:
            return self._settle('complete_migration', context, record,
                                **call)
        except exception.LeaseExpired as exc:
            LOG.warning('%s; claiming VFs on %s anew', exc, record.dest_host)
            return self._reclaim_1_1(context, record)

    def _reclaim_1_1(self, context, record: MigrationRecord) -> list[dict]:
        """Settle an expired migration with a server older than RPC 1.2.

        The guest runs on the destination whatever the lease says, so the
        source VFs are freed in any case, whatever the allocation of new
        VFs on the destination answered: that allocation runs under a
        request id derived from the migration (both hosts may get here;
        the second gets the same answer).  Two RPCs, so a failure between
        them can hold both sides until an operator releases one; a 1.2
        server does both in one transaction.
        """
        self._fill_dest_host(context, record)
        requests = []
        for pair in record.pairs:
            src = pair['source']
            requests.append({key: src[key] for key in (
                'physical_network', 'vendor_id', 'product_id', 'numa_node',
                'mac', 'vlan', 'port_id') if src.get(key) is not None})
        allocs: list[dict] = []
        try:
            if requests:
                allocs = self._rpc('allocate', context,
                                   record.instance_uuid, record.dest_host,
                                   requests,
                                   utils.reclaim_request_id(
                                       record.migration_uuid))
        except exception.VfpoolException as exc:
            # Typed: the server changed nothing (no VF, host disabled or
            # unknown, a request it refuses); the guest goes without.
            LOG.error('Could not claim VFs on %s for instance %s after the '
                      'lease of migration %s expired: %s', record.dest_host,
                      record.instance_uuid, record.migration_uuid, exc)
        finally:
            freed = self._rpc('release', context, record.instance_uuid,
                              record.source_host)
            LOG.info('Freed %d VF(s) of instance %s on %s after the expired '
                     'lease of migration %s', freed, record.instance_uuid,
                     record.source_host, record.migration_uuid)
        return allocs

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
        nothing to do.
        """
        try:
            record = self._record(context, instance_uuid, migration_uuid)
        except exception.MigrationNotFound:
            LOG.debug('Migration %s of instance %s is unknown to vfpool: '
                      'nothing to attach', migration_uuid, instance_uuid)
            return []
        if not record.pairs:
            try:
                self._settle('complete_migration', context, record,
                             attempts=1,
                             timeout=self.conf.migration.complete_timeout)
            except messaging.MessagingException as exc:
                self._settle_later(context, record, exc)
                return []
            self._forget(migration_uuid)
            return []
        if record.dest_host is None:
            try:
                self._fill_dest_host(context, record)
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
            dom = self._domain(instance_uuid, domain)
        except libvirt.libvirtError as exc:
            # Completion stands (the guest left the source); the policy
            # decides what a guest we cannot reach gets.
            dom, attach = None, _unreachable(instance_uuid, exc)
        else:
            attach = self._attach_fn(dom)
        try:
            allocs = self._complete_now(context, record)
        except messaging.MessagingException as exc:
            return self._attach_unsettled(context, record, dom, attach, exc)
        outcomes = self._plug(context, record, allocs, attach)
        self._forget(migration_uuid)
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
        (a 1.1 source whose lease lapsed may get other VFs), and plugs
        and recovers what it gave.  ``ReattachFailed`` is raised now when
        a VF failed and the policy can only end in ``failed``.
        """
        # Below RPC 1.2 the migration was never begun: its lapsed lease may
        # give the claims away, so they wait for the completion.
        claimed = ([pair['dest'] for pair in record.pairs]
                   if self.client.can_send_version('1.2') else [])
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

        self._settle_later(context, record, error, then)
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
        try:
            record = self._record(context, instance_uuid, migration_uuid)
        except exception.MigrationNotFound:
            LOG.info('Migration %s of instance %s is unknown to vfpool: '
                     'nothing to roll back', migration_uuid, instance_uuid)
            return []
        self._check_host(record.source_host,
                         'rollback_live_migration_at_source')
        with self._lock:
            known = (None if record.detached is None
                     else dict(record.detached))
        try:
            dom = self._domain(instance_uuid, domain)
            live = dom.XMLDesc(0)
        except libvirt.libvirtError as exc:
            self._abort_unreachable(context, record, known, exc)
        if known is None:
            candidates = [DetachedVF(p['source'], vf_alias(p['source']))
                          for p in record.pairs]
        else:
            candidates = list(known.values())
        missing = [c for c in candidates
                   if find_vf_interface(live, c.alloc) is None]
        LOG.info('Rolling back migration %s of instance %s on %s: %d VF(s) '
                 'to re-attach', migration_uuid, instance_uuid,
                 record.source_host, len(missing))
        failed = self._restore_source(context, record, dom, missing)
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
        freed = self._rpc('abort_migration', context, record.migration_uuid)
        LOG.info('Aborted migration %s of instance %s: %d destination '
                 'claim(s) freed', record.migration_uuid,
                 record.instance_uuid, freed)
        self._forget(record.migration_uuid)
        for item in (known or {}).values():
            self.policy.record_state(context, record.instance_uuid,
                                     record.source_host, item.alloc,
                                     recovery.FAILED)
        raise exception.ReattachFailed(
            instance_uuid=record.instance_uuid, host=record.source_host,
            reason='the domain cannot be read, so no VF was re-attached: '
                   '%s' % error)

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
        try:
            record = self._record(context, instance_uuid, migration_uuid)
        except exception.MigrationNotFound:
            LOG.info('Migration %s of instance %s is unknown to vfpool: '
                     'nothing to roll back', migration_uuid, instance_uuid)
            return 0
        if domain is not None:
            self._detach_dest(record, domain)
        freed = self._settle('abort_migration', context, record)
        LOG.info('Rolled back migration %s of instance %s on %s: %d '
                 'claim(s) freed', migration_uuid, instance_uuid,
                 record.dest_host, freed)
        self._forget(migration_uuid)
        return freed

    def _detach_dest(self, record: MigrationRecord,
                     dom: libvirt.virDomain,
                     allocs: list[dict] | None = None) -> None:
        """Unplug ``allocs`` (default: every claim) if the guest has them."""
        if allocs is None:
            allocs = [pair['dest'] for pair in record.pairs]
        if not allocs:
            return
        try:
            if not dom.isActive():
                return
            live = dom.XMLDesc(0)
        except libvirt.libvirtError as exc:
            LOG.info('Destination domain of instance %s is gone (%s): '
                     'nothing to detach', record.instance_uuid, exc)
            return
        for alloc in allocs:
            info = find_vf_interface(live, alloc)
            if info is None:
                continue
            LOG.info('Detaching VF %s (MAC %s) from instance %s on %s: it '
                     'is not the instance\'s', alloc['address'],
                     alloc.get('mac'), record.instance_uuid,
                     record.dest_host)
            try:
                self.detach_vf(dom, info, alloc['address'])
            except exception.DeviceDetachFailed as exc:
                # On a rollback the claim is freed anyway: the driver
                # destroys this domain next, which releases the device.
                LOG.error('Could not detach VF %s from instance %s on %s: '
                          '%s', alloc['address'], record.instance_uuid,
                          record.dest_host, exc)

    # -- operators ------------------------------------------------------------

    def reattach_degraded_vfs(self, context, instance_uuid: str,
                              domain: libvirt.virDomain | None = None
                              ) -> list[dict]:
        """Try again to plug the VFs recorded ``detached`` or ``failed``.

        For an operator (or a periodic task) after the policy left a guest
        on its standby.  One attempt per VF; a success is recorded as
        ``attached``.  Returns the allocations attached now.
        """
        info = self._rpc('get_instance', context, instance_uuid)
        todo = [a for a in info['allocations'] if a.get('host') == self.host
                and a.get('attach_state') in (recovery.DETACHED,
                                              recovery.FAILED)]
        if not todo:
            return []
        dom = self._domain(instance_uuid, domain)
        attach = self._attach_fn(dom)
        done = []
        for alloc in todo:
            outcome = self.policy.attempt(alloc, attach, budget=1)
            if outcome.state == recovery.ATTACHED:
                self.policy.record_state(context, instance_uuid, self.host,
                                         alloc, recovery.ATTACHED)
                done.append(alloc)
        return done
