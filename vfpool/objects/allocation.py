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

"""VFs owned by instances: allocate, release, re-home, record attach state.

Each write names the owner it expects (and, where a row was read first,
the generation it was read at) and checks its row count: a VF that
changed hands meanwhile is never written to on the old owner's behalf.
"""

import hashlib

from oslo_db import exception as db_exc
from oslo_serialization import jsonutils
from oslo_utils import timeutils
import sqlalchemy as sa

from vfpool.conf import pool as pool_conf
from vfpool.db import api as db_api
from vfpool.db import models
from vfpool import exception
from vfpool.objects import host as host_obj
from vfpool.objects import leases
from vfpool.objects import macs
from vfpool.objects import migration as migration_obj
from vfpool.objects import vf as vf_obj
from vfpool import states

VF = models.VirtualFunction
Request = models.AllocationRequest
Host = models.Host


def _digest(*parts) -> str:
    return hashlib.sha256(
        jsonutils.dumps(parts, sort_keys=True).encode()).hexdigest()


def _owner_values(instance_uuid: str, request: dict, mac: str,
                  request_id: str | None) -> dict:
    return vf_obj.owner(instance_uuid, request_id, mac, request.get('vlan'),
                        request.get('port_id'))


def _replay(session, instance_uuid: str, request_id: str) -> list[dict]:
    rows = vf_obj.with_pf(session, vf_obj.owned_by(instance_uuid),
                          VF.request_id == request_id)
    return [vf_obj.allocation(vf) for vf in rows]


def _macs(session, host: str, requests: list[dict],
          mac_prefix: str) -> list[str]:
    """The MAC of each request: its own, or one the server assigns."""
    given = [r['mac'] for r in requests if r.get('mac')]
    assigned = iter(macs.assign(session, host, mac_prefix,
                                len(requests) - len(given), set(given)))
    return [r.get('mac') or next(assigned) for r in requests]


#: The host and the request id as recorded, if it was: one round trip.
#: The join does not depend on the host, so a request seen before is
#: found whatever host it named.
_HOST_AND_REQUEST = (
    sa.select(Host.id, Host.disabled, Request.id.label('seen_id'),
              Request.instance_uuid, Request.digest, Request.released_at)
    .select_from(Host)
    .outerjoin(Request, Request.request_id == sa.bindparam('request_id'))
    .where(Host.name == sa.bindparam('host')))

_REQUEST = sa.select(Request.instance_uuid, Request.digest,
                     Request.released_at).where(
    Request.request_id == sa.bindparam('request_id'))

_RECORD = sa.insert(Request)


def _host_and_request(conn, host: str, request_id: str) -> tuple:
    """(the host's row or None, the request's row or None)."""
    params = dict(host=host, request_id=request_id)
    row = conn.execute(_HOST_AND_REQUEST, params).first()
    if row is None:
        # A host vfpool does not know: the request may still be a replay.
        return None, conn.execute(_REQUEST, params).first()
    return row, (row if row.seen_id is not None else None)


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def allocate(context, instance_uuid: str, host: str, requests: list[dict],
             request_id: str, numa_policy: str = pool_conf.DEFAULT_NUMA_POLICY,
             mac_prefix: str = pool_conf.DEFAULT_MAC_PREFIX) -> list[dict]:
    """Claim one VF per request for an instance, all or nothing.

    The request id is recorded first, under a unique key: a retry (or a
    concurrent duplicate) of the same request finds it and gets the same
    allocations back instead of claiming new ones.  A request id that was
    released stays taken (its tombstone, until the reaper deletes it): a
    late duplicate then raises ``RequestReleased`` and claims nothing.  A
    request without a MAC gets one under ``mac_prefix``
    (:mod:`vfpool.objects.macs`).
    """
    session = context.session
    conn = session.connection()
    digest = _digest(instance_uuid, host, requests)
    host_row, seen = _host_and_request(conn, host, request_id)
    if seen is not None:
        if seen.released_at is not None:
            raise exception.RequestReleased(request_id=request_id,
                                            instance_uuid=seen.instance_uuid)
        if seen.digest != digest:
            raise exception.RequestConflict(request_id=request_id)
        return _replay(session, instance_uuid, request_id)
    if host_row is None:
        raise exception.HostNotFound(host=host)
    if host_row.disabled:
        raise exception.HostDisabled(host=host)
    conn.execute(_RECORD, dict(
        request_id=request_id, instance_uuid=instance_uuid,
        host_id=host_row.id, digest=digest, created_at=timeutils.utcnow()))
    claimed, unservable = vf_obj.claim_all(
        session, requests, states.ALLOCATED,
        [_owner_values(instance_uuid, request, mac, request_id)
         for request, mac in zip(requests, _macs(session, host, requests,
                                                 mac_prefix))],
        host_id=host_row.id, numa_policy=numa_policy)
    if unservable is not None:
        raise vf_obj.no_vf(host, requests[unservable])
    return [alloc for _vf_id, alloc in claimed]


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def release(context, instance_uuid: str, host: str | None = None,
            request_ids: list[str] | None = None) -> int:
    """Free every VF the instance holds (on ``host``, if given).

    Its migration in flight (from or to ``host``) is aborted first,
    through the same transition as ``abort_migration``: the instance is
    gone.  Its request ids become tombstones (``released_at``, by the
    database's clock), never deleted here (see :func:`allocate`): on
    ``host``, those recorded there and those its allocations there carry
    (a VF that migrated here keeps the id it was allocated under);
    without ``host``, all of them.  ``request_ids`` (with ``host``)
    are tombstoned as well, recorded or not: an ``allocate`` of one of
    them that is still queued, or not committed yet, then claims
    nothing (:func:`_tombstone`).  Returns the VFs freed, destination
    claims included.
    """
    session = context.session
    conn = session.connection()
    criteria = [VF.instance_uuid == instance_uuid]
    request_criteria = [Request.instance_uuid == instance_uuid]
    host_id = None
    if host is not None:
        host_id = host_obj.get_by_name(session, host).id
        criteria.append(VF.host_id == host_id)
        # Allocations only: a destination claim carries the id of the
        # source's VFs, which the instance may still hold there.
        carried = sa.select(VF.request_id).where(
            vf_obj.owned_by(instance_uuid), VF.host_id == host_id,
            VF.request_id.is_not(None)).scalar_subquery()
        request_criteria.append(sa.or_(
            Request.host_id == host_id, Request.request_id.in_(carried),
            Request.request_id.in_(request_ids or [])))
    elif request_ids:
        raise exception.InvalidInput(
            reason='release: request_ids needs the host they were '
                   'allocated on')
    for request_id in request_ids or ():
        _tombstone(conn, instance_uuid, host_id, request_id)
    conn.execute(sa.update(Request).where(
        Request.released_at.is_(None), *request_criteria).values(
            released_at=leases.now()))
    freed = migration_obj.abort_in_flight(session, instance_uuid, host_id)
    freed += vf_obj.free(session, sa.and_(*criteria))
    return freed


def _tombstone(conn, instance_uuid: str, host_id: int | None,
               request_id: str) -> None:
    """Make ``request_id`` a tombstone of the instance, recorded or not.

    A request id of another instance is refused (``RequestConflict``),
    and the whole release changes nothing.  The insert takes the unique
    ``request_id``: an ``allocate`` of it that is not committed yet
    either makes this insert wait and fail (the release then starts
    over and frees what it claimed) or, if this commits first, fails
    its own insert and answers ``RequestReleased``.
    """
    row = conn.execute(_REQUEST, dict(request_id=request_id)).first()
    if row is not None:
        if row.instance_uuid != instance_uuid:
            raise exception.RequestConflict(request_id=request_id)
        return  # the UPDATE of release() marks it, if still live
    conn.execute(_TOMBSTONE, dict(
        request_id=request_id, instance_uuid=instance_uuid,
        host_id=host_id, digest='', created_at=timeutils.utcnow()))


#: A request id tombstoned before any allocate recorded it.  A duplicate
#: key is retried whole (``retry_on_deadlock``): the retry finds the row.
_TOMBSTONE = sa.insert(Request).values(released_at=leases.now())


def _past_retention(retention_seconds: int):
    return Request.released_at < leases.expiry(-retention_seconds)


@db_api.context_manager.reader
def _any_past_retention(context, retention_seconds: int) -> bool:
    return context.session.execute(sa.select(Request.id).where(
        _past_retention(retention_seconds)).limit(1)).first() is not None


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def _delete_past_retention(context, retention_seconds: int) -> int:
    return context.session.execute(sa.delete(Request).where(
        _past_retention(retention_seconds))).rowcount


def reap_released(context, retention_seconds: int) -> int:
    """Delete the tombstones released more than ``retention_seconds`` ago.

    Compared with the database's clock, as they were written.  After
    that a duplicate ``allocate`` of such a request id would claim again:
    the retention must outlast any retry a caller may still send.  A read
    first, as the lease reaper does, so that a pass with nothing to reap
    takes no write lock (SQLite has one for the whole database); the
    DELETE's own WHERE is the guard.
    """
    if not _any_past_retention(context, retention_seconds):
        return 0
    return _delete_past_retention(context, retention_seconds)


def _held(instance_uuid: str, host_id: int, address: str):
    return sa.and_(VF.host_id == host_id, VF.address == address,
                   vf_obj.owned_by(instance_uuid))


def _not_found(instance_uuid: str, host: str, address: str):
    return exception.AllocationNotFound(
        instance_uuid=instance_uuid, host=host, address=address)


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def set_attach_state(context, instance_uuid: str, host: str, address: str,
                     attach_state: str) -> dict:
    """Record whether an allocated VF is really plugged into its guest.

    The write itself names the owner, so it cannot land on a VF that
    another instance won meanwhile.
    """
    session = context.session
    held = _held(instance_uuid, host_obj.get_by_name(session, host).id,
                 address)
    if not vf_obj.set_attach_state(session, held, attach_state):
        raise _not_found(instance_uuid, host, address)
    return dict(vf_obj.allocation(vf_obj.with_pf(session, held)[0]),
                attach_state=attach_state)


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def replace(context, instance_uuid: str, host: str, address: str,
            numa_policy: str = pool_conf.DEFAULT_NUMA_POLICY,
            match_device_type: bool = True) -> dict:
    """Swap an allocated VF for another equivalent one on the same host.

    One transaction: the new VF is won (same physical network, MAC, VLAN
    and port) before the old one is freed, so a failure changes nothing;
    the old one is freed only as it was read (owner and generation), else
    the whole swap starts over on fresh rows.
    """
    session = context.session
    host_row = host_obj.get_by_name(session, host)
    held = _held(instance_uuid, host_row.id, address)
    rows = vf_obj.with_pf(session, held)
    if not rows:
        raise _not_found(instance_uuid, host, address)
    old = rows[0]
    if old.migration_uuid is not None:
        raise exception.MigrationInProgress(
            instance_uuid=instance_uuid, migration_uuid=old.migration_uuid)
    request = vf_obj.equivalent_request(old, match_device_type)
    values = vf_obj.owner(instance_uuid, old.request_id, old.mac, old.vlan,
                          old.port_id)
    claimed = vf_obj.claim(session, request, states.ALLOCATED, values,
                           numa_policy=numa_policy, exclude={old.id},
                           host_id=host_row.id)
    if claimed is None:
        raise vf_obj.no_vf(host, request)
    if not vf_obj.free(session, sa.and_(held, VF.id == old.id,
                                        VF.generation == old.generation,
                                        VF.migration_uuid.is_(None))):
        raise db_exc.RetryRequest(exception.Conflict())
    return claimed[2]
