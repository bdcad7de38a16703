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
lease every third of what the server's last answer left of it, while the
driver's ``owner`` still wants the migration and for ``[migration]
claim_max_seconds`` at most (:mod:`vfpool.compute.background`).  When
vfpool-server does not answer the post-migration hooks within
``[migration] complete_timeout``, the destination plugs the VFs it
claimed all the same and a background settler retries the completion
within a bound; :meth:`VFMigrationPlugin.close` stops those threads.

Every hook is safe to call again (Nova retries, a compute service
restarts): RPCs are keyed by the migration's or the request's id, and
libvirt work starts from the live domain XML
(:func:`vfpool.compute.guest.find_vf_interface` says whether a VF is
"attached").  The plugin remembers in memory what it
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

This class is the compute side's public API and only wires its parts
together: the hooks live in :mod:`vfpool.compute.source` and
:mod:`vfpool.compute.destination`, the guest work in
:mod:`vfpool.compute.guest`, the per-migration memory and threads in
:mod:`vfpool.compute.records`, the completion in
:mod:`vfpool.compute.settlement` (see :mod:`vfpool.compute`).
"""

import typing

from oslo_config import cfg
from oslo_log import log as logging

from vfpool.compute import destination
from vfpool.compute import events
from vfpool.compute import guest
from vfpool.compute import records
from vfpool.compute import recovery
from vfpool.compute import settlement
from vfpool.compute import source
from vfpool.compute import vf_xml
from vfpool.libvirt_import import libvirt
from vfpool import rpcapi

LOG = logging.getLogger(__name__)

ConnectionArg = guest.ConnectionArg
# Kept importable from here: drivers and tests use them by these names.
vf_alias = guest.vf_alias
find_vf_interface = guest.find_vf_interface
DetachedVF = records.DetachedVF
MigrationRecord = records.MigrationRecord


class VFMigrationPlugin:
    """Moves a guest's VFs along with a live migration; see the module.

    :param conf: vfpool's ConfigOpts (``[libvirt]``, ``[migration]``, RPC).
    :param host: this compute host's name, as the agent reports it.
    :param client: a :class:`vfpool.rpcapi.VfpoolAPI`; built from ``conf``
        when omitted (then :meth:`close` closes its transport too).
    :param xml_builder: builds the ``<interface>`` of a VF;
        ``vf_xml.emulated_interface_xml`` on machines without VFIO.
    :param connection: a libvirt connection, a callable returning one, or
        None to open ``[libvirt] connection_uri`` on first need; only used
        to find a domain when a hook is not handed one.
    :param registry: where device events are awaited; the process-wide
        one by default.
    :param rpc_attempts: how often an idempotent RPC is sent again after a
        ``MessagingTimeout``.
    :param owner: ``owner(migration_uuid)``: whether whoever drives the
        migration (Nova) still wants it; False ends its lease renewal,
        None (cannot tell) renews on, within ``[migration]
        claim_max_seconds``.
    :param rpc_retry: for a client built here, oslo.messaging's ``retry``
        (reconnections to a lost broker per call); None retries forever,
        a number also bounds the wait for an unreachable broker (see
        :class:`vfpool.rpcapi.VfpoolAPI`).
    """

    def __init__(self, conf: cfg.ConfigOpts, host: str,
                 client: rpcapi.VfpoolAPI | None = None,
                 xml_builder: vf_xml.VFXMLBuilder = (
                     vf_xml.hostdev_interface_xml),
                 connection: ConnectionArg = None,
                 registry: events.DeviceEventRegistry | None = None,
                 rpc_attempts: int = 3,
                 owner: typing.Callable[[str], bool | None] | None = None,
                 rpc_retry: int | None = None) -> None:
        self.conf = conf
        self.host = host
        self.client = client or rpcapi.VfpoolAPI(conf, retry=rpc_retry)
        self._owns_client = client is None
        self.rpc_attempts = rpc_attempts
        self.policy = recovery.ReattachPolicy(conf, self.client,
                                              rpc_attempts=rpc_attempts)
        self.guests = guest.Guests(
            conf, xml_builder, guest.Connection(conf, connection),
            registry or events.default_registry())
        self.records = records.MigrationRecords(
            conf, self.call, self.client.renew_migration, owner=owner,
            host=host)
        self.settlement = settlement.Settlement(conf, self.client, self.call,
                                                self.records)
        self.source = source.SourceHooks(host, self.client, self.records,
                                         self.settlement, self.guests,
                                         self.policy)
        self.destination = destination.DestinationHooks(
            conf, host, self.records, self.settlement, self.guests,
            self.policy)

    @property
    def xml_builder(self) -> vf_xml.VFXMLBuilder:
        return self.guests.xml_builder

    @xml_builder.setter
    def xml_builder(self, builder: vf_xml.VFXMLBuilder) -> None:
        self.guests.xml_builder = builder

    @property
    def registry(self) -> events.DeviceEventRegistry:
        return self.guests.registry

    @property
    def version_cap(self) -> str:
        """The newest RPC version this plugin sends (``[upgrade_levels]``)."""
        return self.client.version_cap

    def remembered(self) -> list[records.MigrationRecord]:
        """The migrations this process claimed or detached and not settled.

        For a driver's reconciliation with its own migration records.
        """
        return self.records.remembered()

    def close(self, timeout: float = 5) -> None:
        """Stop every renewer and settler; for a compute service's stop.

        Waits up to ``timeout`` seconds for each.  A migration whose
        settler is stopped stays ``moving`` for ``vfpool-manage``.  A
        client the plugin built has its transport closed; idempotent.
        """
        try:
            self.records.close(timeout)
        finally:
            if self._owns_client:
                self._owns_client = False
                self.client.transport.cleanup()

    def call(self, method: str, context, *args: typing.Any,
             attempts: int | None = None, **kwargs: typing.Any
             ) -> typing.Any:
        """An RPC that is safe to repeat, sent again after a timeout.

        ``attempts`` defaults to the plugin's ``rpc_attempts``; see
        :func:`vfpool.compute.recovery.call_idempotent` for which methods
        qualify.
        """
        return recovery.call_idempotent(
            self.client, method, context, *args,
            attempts=attempts or self.rpc_attempts, **kwargs)

    def detach_vf(self, dom: libvirt.virDomain,
                  info: vf_xml.InterfaceInfo, address: str) -> None:
        """Unplug one VF interface for good, waiting for libvirt's event."""
        self.guests.detach_vf(dom, info, address)

    # -- hooks ----------------------------------------------------------------

    def pre_live_migration(self, context, instance_uuid: str,
                           migration_uuid: str, source_host: str,
                           dest_host: str,
                           lease_seconds: int | None = None) -> list[dict]:
        """Destination: claim equivalent VFs; see :mod:`.destination`."""
        return self.destination.pre_live_migration(
            context, instance_uuid, migration_uuid, source_host, dest_host,
            lease_seconds)

    def detach_source_vfs(self, context, instance_uuid: str,
                          migration_uuid: str,
                          domain: libvirt.virDomain | None = None,
                          pairs: list[dict] | None = None,
                          dest_host: str | None = None) -> list[dict]:
        """Source, before migrating: unplug the VFs; see :mod:`.source`."""
        return self.source.detach_source_vfs(
            context, instance_uuid, migration_uuid, domain, pairs,
            dest_host)

    prepare_source_for_migration = detach_source_vfs

    def post_live_migration(self, context, instance_uuid: str,
                            migration_uuid: str) -> list[dict]:
        """Source, after success: free the source VFs; see :mod:`.source`."""
        return self.source.post_live_migration(context, instance_uuid,
                                               migration_uuid)

    def post_live_migration_at_destination(
            self, context, instance_uuid: str, migration_uuid: str,
            domain: libvirt.virDomain | None = None) -> list[dict]:
        """Destination, after success: complete, plug the VFs.

        See :mod:`.destination`.
        """
        return self.destination.post_live_migration_at_destination(
            context, instance_uuid, migration_uuid, domain)

    def rollback_live_migration_at_source(
            self, context, instance_uuid: str, migration_uuid: str,
            domain: libvirt.virDomain | None = None) -> list[dict]:
        """Source, after failure: plug the VFs back, free the claims.

        See :mod:`.source`.
        """
        return self.source.rollback_live_migration_at_source(
            context, instance_uuid, migration_uuid, domain)

    def rollback_live_migration_at_destination(
            self, context, instance_uuid: str, migration_uuid: str,
            domain: libvirt.virDomain | None = None) -> int:
        """Destination, after failure: unplug, free the claims.

        See :mod:`.destination`.
        """
        return self.destination.rollback_live_migration_at_destination(
            context, instance_uuid, migration_uuid, domain)

    # -- operators ------------------------------------------------------------

    def reattach_degraded_vfs(self, context, instance_uuid: str,
                              domain: libvirt.virDomain | None = None
                              ) -> list[dict]:
        """Try again to plug the VFs recorded ``detached`` or ``failed``.

        For an operator (or a periodic task) after the policy left a guest
        on its standby.  One attempt per VF; a success is recorded as
        ``attached``.  Returns the allocations attached now.
        """
        info = self.call('get_instance', context, instance_uuid)
        todo = [a for a in info['allocations'] if a.get('host') == self.host
                and a.get('attach_state') in (recovery.DETACHED,
                                              recovery.FAILED)]
        if not todo:
            return []
        dom = self.guests.domain(instance_uuid, domain)
        attach = self.guests.attach_fn(dom)
        done = []
        for alloc in todo:
            outcome = self.policy.attempt(alloc, attach, budget=1)
            if outcome.state == recovery.ATTACHED:
                self.policy.record_state(context, instance_uuid, self.host,
                                         alloc, recovery.ATTACHED)
                done.append(alloc)
        return done
