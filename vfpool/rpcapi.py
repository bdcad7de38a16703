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

"""Client side of the vfpool RPC API, for compute drivers and agents.

API version history:

* 1.0 - report_inventory, allocate, release, prepare_migration,
        renew_migration, complete_migration, abort_migration,
        get_instance, get_host
* 1.1 - ping, replace_allocation (the "swap" re-attach policy),
        set_attach_state (the "degrade" and "error" policies)
* 1.2 - begin_migration (the ``moving`` state: no lease frees a VF once
        the source detaches); complete_migration(reclaim=True);
        prepare_migration retargets a migration in progress to another
        destination under the same uuid, and answers ``[]`` for an
        instance without VFs even on hosts vfpool does not know;
        allocate assigns a MAC to a request without one.  The client
        sends prepare_migration and allocate at 1.2 whenever it may, so
        that a server too old for those answers refuses rather than
        answering differently.
* 1.3 - get_capacity (which of many candidate hosts could take a set of
        VF requests, in one call: for a scheduler filter)
* 1.4 - report_inventory(digest=...): an unchanged snapshot costs the
        server one UPDATE; ping also answers the worker's ``pid``
* 1.5 - report_unchanged(host, digest): an unchanged snapshot's report
        without the snapshot
* 1.6 - the fence: begin/renew/complete/abort_migration(source_host=,
        dest_host=) name the hosts the caller believes in (refused with
        MigrationFenced if stale); abort_migration(dest_host=) lets that
        destination give its attempt up for good; prepare_migration
        (expected_sources=) refuses with SourcesChanged, and a prepare
        for a destination the migration left is refused.  Sent only when
        the cap allows, else the call as before 1.6.
        release(request_ids=) tombstones the caller's request ids
        whether or not an allocate recorded them yet.

Every method is a ``call``.  Errors arrive as the very classes of
``vfpool.exception`` that the server raised.  A client caps what it
sends with ``[upgrade_levels] vfpool`` so that, during a rolling
upgrade, it keeps to what the oldest server understands; methods newer
than the cap raise ``VersionTooNew`` locally (check with
``can_send_version`` first).
"""

import socket
import typing

from oslo_config import cfg
import oslo_messaging as messaging

from vfpool import rpc
from vfpool import rpc_types

RPC_API_VERSION = '1.6'


class VersionTooNew(Exception):
    """The method needs an RPC version above ``[upgrade_levels] vfpool``."""


class BrokerUnreachable(messaging.MessageDeliveryFailure):
    """No broker of ``transport_url`` accepts a connection (bounded client).

    A ``MessagingException``, so callers that handle vfpool-server being
    unreachable handle this too.
    """


#: The port of a ``rabbit://`` host that names none.
RABBIT_PORT = 5672


def check_broker(conf: cfg.ConfigOpts, timeout: float) -> None:
    """Raise BrokerUnreachable unless a rabbit host of the URL accepts TCP.

    oslo.messaging's rabbit driver opens a call's reply queue with
    unbounded connection retries, whatever the call's ``retry``: a client
    that must not hang checks the broker first.  Other drivers (fake://,
    kafka) are not checked.
    """
    url = messaging.TransportURL.parse(conf, conf.transport_url)
    if url.transport not in (None, 'rabbit'):
        return
    hosts = [(h.hostname or 'localhost', h.port or RABBIT_PORT)
             for h in url.hosts] or [('localhost', RABBIT_PORT)]
    errors = []
    for host, port in hosts:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            return
        except OSError as exc:
            errors.append('%s:%s: %s' % (host, port, exc))
    raise BrokerUnreachable('cannot reach vfpool\'s message broker '
                            '(transport_url): %s' % '; '.join(errors))


class VfpoolAPI:
    """The server's RPC API as a compute driver or an agent sees it."""

    def __init__(self, conf: cfg.ConfigOpts,
                 transport: messaging.Transport | None = None,
                 timeout: int | None = None, retry: int | None = None):
        """Build a client; ``retry`` bounds resends to a lost broker.

        ``retry=None`` retries forever, as oslo.messaging does by default.
        A bounded client (``retry`` set) also checks that the broker
        accepts connections until its first call is answered
        (:func:`check_broker`), so that no call waits for a broker
        without bound: each call then returns or fails within about
        ``rpc_response_timeout`` per broker host, plus ``retry``
        reconnections (``[oslo_messaging_rabbit] rabbit_retry_interval``
        and ``rabbit_retry_backoff`` apart), plus ``timeout``.
        """
        self.conf = conf
        self._unproven = retry is not None
        self.transport = transport or rpc.get_transport(conf)
        self.version_cap = conf.upgrade_levels.vfpool or RPC_API_VERSION
        target = rpc.get_target(conf, version='1.0')
        self.client = messaging.get_rpc_client(
            self.transport, target, version_cap=self.version_cap,
            timeout=timeout, retry=retry)

    def can_send_version(self, version: str) -> bool:
        return self.client.can_send_version(version)

    def _fenced(self, context, version: str, method: str,
                timeout: float | None = None, **kwargs):
        """Send ``method`` with its 1.6 arguments when the cap allows.

        The 1.6 arguments are those of ``kwargs`` not None; capped below
        1.6 they are left out and the call is the one of ``version``.
        """
        new = {_WIRE_NAMES.get(key, key): kwargs.pop(key)
               for key in _FENCE_ARGS if key in kwargs}
        new = {key: value for key, value in new.items() if value is not None}
        if new and self.can_send_version('1.6'):
            return self._call(context, '1.6', method, timeout=timeout,
                              **kwargs, **new)
        return self._call(context, version, method, timeout=timeout,
                          **kwargs)

    def _newest(self, *versions: str) -> str:
        """The first of ``versions`` (newest first) the cap allows."""
        for version in versions[:-1]:
            if self.can_send_version(version):
                return version
        return versions[-1]

    def _call(self, context, version: str, method: str,
              timeout: float | None = None, **kwargs):
        """Send ``method``; ``timeout`` overrides the client's, once."""
        if not self.can_send_version(version):
            raise VersionTooNew('%s needs RPC version %s; capped at %s'
                                % (method, version, self.version_cap))
        prepared = {} if timeout is None else {'timeout': timeout}
        cctxt = self.client.prepare(version=version, **prepared)
        if self._unproven:
            check_broker(self.conf, self.conf.rpc_response_timeout)
        try:
            result = cctxt.call(_ctxt(context), method, **kwargs)
        except messaging.MessageDeliveryFailure:
            raise
        except Exception:
            # An answer or a timeout: the reply queue is set up.
            self._unproven = False
            raise
        self._unproven = False
        return result

    # 1.0

    def report_inventory(self, context, host: str, pfs: list,
                         digest: str | None = None
                         ) -> rpc_types.InventoryCounts:
        """``digest`` (1.4): ``vfpool.utils.snapshot_digest(pfs)``.

        Sent when the cap allows, else left out: a capped client reports
        in full, as before 1.4.
        """
        if digest is not None and self.can_send_version('1.4'):
            return self._call(context, '1.4', 'report_inventory', host=host,
                              pfs=pfs, digest=digest)
        return self._call(context, '1.0', 'report_inventory', host=host,
                          pfs=pfs)

    def report_unchanged(self, context, host: str, digest: str) -> bool:
        """(1.5) Whether the server took ``digest`` for the host's report.

        False when the server has another snapshot (or none) for the
        host, and also, without a call, when the cap is below 1.5: the
        caller then sends ``report_inventory`` in full.
        """
        if not self.can_send_version('1.5'):
            return False
        return self._call(context, '1.5', 'report_unchanged', host=host,
                          digest=digest)

    def allocate(self, context, instance_uuid: str, host: str,
                 requests: list,
                 request_id: str) -> list[rpc_types.Allocation]:
        return self._call(context, self._newest('1.2', '1.0'), 'allocate',
                          instance_uuid=instance_uuid, host=host,
                          requests=requests, request_id=request_id)

    def release(self, context, instance_uuid: str,
                host: str | None = None,
                request_ids: list[str] | None = None) -> int:
        """``request_ids`` (1.6, with ``host``): ids to tombstone.

        The ids the caller's allocates there used, tombstoned even if
        none arrived yet.  Left out when the cap is below 1.6: the
        release then tombstones only the ids recorded, as before.
        """
        kwargs: dict[str, typing.Any] = {} if host is None else {
            'host': host}
        if request_ids and self.can_send_version('1.6'):
            return self._call(context, '1.6', 'release',
                              instance_uuid=instance_uuid,
                              request_ids=request_ids, **kwargs)
        return self._call(context, '1.0', 'release',
                          instance_uuid=instance_uuid, **kwargs)

    def prepare_migration(self, context, migration_uuid: str,
                          instance_uuid: str, source_host: str,
                          dest_host: str,
                          lease_seconds: int | None = None,
                          expected_sources: list[str] | None = None,
                          ) -> list[rpc_types.MigrationPair]:
        """``expected_sources`` (1.6): see the module's history."""
        kwargs = {} if lease_seconds is None else {
            'lease_seconds': lease_seconds}
        return self._fenced(context, self._newest('1.2', '1.0'),
                            'prepare_migration',
                            migration_uuid=migration_uuid,
                            instance_uuid=instance_uuid,
                            source_host=source_host, dest_host=dest_host,
                            expected_sources=expected_sources, **kwargs)

    def renew_migration(self, context, migration_uuid: str,
                        lease_seconds: int | None = None,
                        source_host: str | None = None,
                        dest_host: str | None = None) -> str:
        kwargs = {} if lease_seconds is None else {
            'lease_seconds': lease_seconds}
        return self._fenced(context, '1.0', 'renew_migration',
                            migration_uuid=migration_uuid,
                            believed_source=source_host,
                            believed_dest=dest_host, **kwargs)

    def complete_migration(self, context, migration_uuid: str,
                           reclaim: bool = False,
                           timeout: float | None = None,
                           source_host: str | None = None,
                           dest_host: str | None = None,
                           ) -> list[rpc_types.Allocation]:
        """``reclaim`` (1.2): after a lapsed lease, settle what can be had.

        Without it a migration whose destination VFs were taken since its
        lease expired raises LeaseExpired and nothing changes.  ``timeout``
        (client side only) bounds the wait for this one answer.
        """
        kwargs: dict[str, typing.Any] = {'reclaim': True} if reclaim else {}
        return self._fenced(context, '1.2' if reclaim else '1.0',
                            'complete_migration', timeout=timeout,
                            migration_uuid=migration_uuid,
                            believed_source=source_host,
                            believed_dest=dest_host, **kwargs)

    def abort_migration(self, context, migration_uuid: str,
                        source_host: str | None = None,
                        dest_host: str | None = None) -> int:
        """``dest_host`` (1.6): only that destination's attempt ends.

        Capped below 1.6 it is left out and the migration is aborted
        whatever its destination: check ``can_send_version('1.6')``
        before giving up a destination that may no longer be current.
        """
        return self._fenced(context, '1.0', 'abort_migration',
                            migration_uuid=migration_uuid,
                            believed_source=source_host,
                            believed_dest=dest_host)

    def get_instance(self, context,
                     instance_uuid: str) -> rpc_types.Instance:
        return self._call(context, '1.0', 'get_instance',
                          instance_uuid=instance_uuid)

    def get_host(self, context, host: str) -> dict:
        return self._call(context, '1.0', 'get_host', host=host)

    # 1.1

    def ping(self, context) -> rpc_types.Ping:
        return self._call(context, '1.1', 'ping')

    def replace_allocation(self, context, instance_uuid: str, host: str,
                           address: str) -> rpc_types.Allocation:
        return self._call(context, '1.1', 'replace_allocation',
                          instance_uuid=instance_uuid, host=host,
                          address=address)

    def set_attach_state(self, context, instance_uuid: str, host: str,
                         address: str, attach_state: str,
                         ) -> rpc_types.AttachStateAllocation:
        return self._call(context, '1.1', 'set_attach_state',
                          instance_uuid=instance_uuid, host=host,
                          address=address, attach_state=attach_state)

    # 1.2

    def begin_migration(self, context, migration_uuid: str,
                        lease_seconds: int | None = None,
                        source_host: str | None = None,
                        dest_host: str | None = None) -> str:
        """Say the source is about to detach; returns the new expiry.

        ``dest_host`` (1.6): Nova's destination, refused if not vfpool's.
        """
        kwargs = {} if lease_seconds is None else {
            'lease_seconds': lease_seconds}
        return self._fenced(context, '1.2', 'begin_migration',
                            migration_uuid=migration_uuid,
                            believed_source=source_host,
                            believed_dest=dest_host, **kwargs)

    # 1.3

    def get_capacity(self, context, hosts: list,
                     requests: list) -> rpc_types.Capacity:
        """``{"hosts": {name: bool}}`` for the hosts vfpool knows.

        ``requests`` are allocate's requests without ``mac``, ``vlan`` and
        ``port_id``, each with an optional ``count`` (default 1).
        """
        return self._call(context, '1.3', 'get_capacity', hosts=hosts,
                          requests=requests)


#: The 1.6 arguments, by the name :meth:`VfpoolAPI._fenced` takes them;
#: the belief in the hosts travels as ``source_host`` and ``dest_host``.
_FENCE_ARGS = ('expected_sources', 'believed_source', 'believed_dest')
_WIRE_NAMES = {'believed_source': 'source_host',
               'believed_dest': 'dest_host'}


def _ctxt(context) -> dict:
    if context is None:
        return {}
    if isinstance(context, dict):
        return context
    return context.to_dict()
