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

"""The migration state machine (doc/source/contributor/state-machine.rst).

:data:`TRANSITIONS` is the machine; each transition is one function here,
which moves the migration row by one compare-and-swap (:func:`_move`) and
the VFs in the same transaction, each under a guard of its own.  The
state is read first only to choose the path and the answer: the swap on
the row re-checks it against the latest committed version, so a
transaction that lost the row to another server starts over.
"""

import types

from oslo_db import exception as db_exc
from oslo_log import log as logging
from oslo_utils import timeutils
import sqlalchemy as sa

from vfpool.conf import pool as pool_conf
from vfpool.db import api as db_api
from vfpool.db import models
from vfpool import exception
from vfpool.objects import host as host_obj
from vfpool.objects import leases
from vfpool.objects import macs
from vfpool.objects import migration_view as view
from vfpool.objects import vf as vf_obj
from vfpool import states
from vfpool import utils

LOG = logging.getLogger(__name__)

VF = models.VirtualFunction
PF = models.PhysicalFunction
Host = models.Host
Migration = models.Migration
MigrationVF = models.MigrationVF
Fence = models.MigrationFence

IN_PROGRESS = states.IN_PROGRESS
MOVING = states.MOVING
COMPLETED = states.COMPLETED
ABORTED = states.ABORTED
EXPIRED = states.EXPIRED

#: transition -> {state it may leave: state it enters}; ``None`` is "no
#: migration yet" and ``DROPPED`` "no migration any more".
DROPPED = 'dropped'
TRANSITIONS: dict[str, dict[str | None, str]] = {
    'prepare': {None: IN_PROGRESS},
    'retarget': {IN_PROGRESS: IN_PROGRESS},
    'drop': {IN_PROGRESS: DROPPED},
    'begin': {IN_PROGRESS: MOVING, MOVING: MOVING},
    'renew': {IN_PROGRESS: IN_PROGRESS, MOVING: MOVING},
    'complete': {IN_PROGRESS: COMPLETED, MOVING: COMPLETED,
                 EXPIRED: COMPLETED},
    'abort': {IN_PROGRESS: ABORTED, MOVING: ABORTED},
    'expire': {IN_PROGRESS: EXPIRED},
}


def _lost_race() -> db_exc.RetryRequest:
    # Another transaction changed the migration between our read and our
    # write; start over and decide on fresh data.
    return db_exc.RetryRequest(exception.Conflict())


def _state_values(instance_uuid: str, to_state: str) -> dict:
    return dict(state=to_state, updated_at=timeutils.utcnow(),
                in_flight_instance_uuid=(instance_uuid
                                         if to_state in states.IN_FLIGHT
                                         else None))


def _move(session, row, transition: str, *guards, **values) -> bool:
    """Swap the row along ``transition`` from the state it was read in.

    The one writer of ``migrations.state``, so ``in_flight_instance_uuid``
    (one migration in flight per instance) follows the state everywhere.
    The guard names the state and the destination as read: the attempt
    (a migration never returns to a destination it left, see "The fence"
    in the state-machine doc), so a swap that lost to a retarget fails
    even when the state is the same again.
    """
    to_state = TRANSITIONS[transition][row.state]
    if not guards and not values:
        # The common case, with a statement built once.
        return bool(session.connection().execute(_MOVE, dict(
            _state_values(row.instance_uuid, to_state), move_id=row.id,
            move_from=row.state, move_dest=row.dest_host_id)).rowcount)
    values.update(_state_values(row.instance_uuid, to_state))
    return bool(session.connection().execute(
        sa.update(Migration)
        .where(Migration.id == row.id, Migration.state == row.state,
               Migration.dest_host_id == row.dest_host_id, *guards)
        .values(**values)).rowcount)


_MOVE = (sa.update(Migration)
         .where(Migration.id == sa.bindparam('move_id'),
                Migration.state == sa.bindparam('move_from'),
                Migration.dest_host_id == sa.bindparam('move_dest'))
         .values({key: sa.bindparam(key) for key in _state_values('', '')}))


def _conflict(row, action: str) -> exception.VfpoolException:
    if row.state == EXPIRED:
        return exception.LeaseExpired(migration_uuid=row.uuid)
    return exception.MigrationStateConflict(
        migration_uuid=row.uuid, state=row.state, action=action)


# The fence (doc/source/contributor/state-machine.rst, "The fence").

def _fenced_error(migration_uuid: str, reason: str
                  ) -> exception.MigrationFenced:
    return exception.MigrationFenced(migration_uuid=migration_uuid,
                                     reason=reason)


def _left(migration_uuid: str, host: str) -> exception.MigrationFenced:
    return _fenced_error(migration_uuid, 'it left destination %s, or that '
                         'host gave it up, for good' % host)


def check_belief(row, source_host: str | None,
                 dest_host: str | None) -> None:
    """Refuse a call whose caller believes in other hosts (1.6).

    ``row`` carries ``source_name`` and ``dest_name``
    (:func:`view.get_named`); the swap that follows guards on the
    destination read with them.
    """
    if ((source_host is not None and source_host != row.source_name)
            or (dest_host is not None and dest_host != row.dest_name)):
        raise _fenced_error(row.uuid, 'it goes from %s to %s, not from %s '
                            'to %s' % (row.source_name, row.dest_name,
                                       source_host or row.source_name,
                                       dest_host or row.dest_name))


def _fence(session, migration_uuid: str, host: str) -> None:
    """Record that the migration left ``host`` for good; idempotent.

    A concurrent fence of the same pair fails on the unique key and the
    transaction is retried.
    """
    session.connection().execute(
        sa.insert(Fence).from_select(
            ['migration_uuid', 'host', 'created_at'],
            sa.select(sa.literal(migration_uuid, sa.String),
                      sa.literal(host, sa.String), leases.now())
            .where(~view.fenced(migration_uuid, host))))


def _refuse_fenced_now(session, migration_uuid: str, host: str) -> None:
    """Refuse ``host`` if fenced, as the latest committed rows say.

    A locking read, after the swap on the migration row: a fence
    committed by a give-up since this transaction's first read is seen.
    """
    if session.connection().execute(
            sa.select(Fence.id).where(Fence.migration_uuid == migration_uuid,
                                      Fence.host == host)
            .with_for_update()).first() is not None:
        raise _left(migration_uuid, host)


def _lease(session, migration_id: int) -> str:
    return utils.isotime(session.connection().execute(
        sa.select(Migration.lease_expires_at)
        .where(Migration.id == migration_id)).scalar_one())


# VF moves shared by several transitions.

def _is_claim():
    return sa.or_(VF.state == states.CLAIMED,
                  VF.prior_state == states.CLAIMED)


def _end_claims(session, migration_uuid: str) -> int:
    """Free the migration's destination claims, unmark its sources."""
    freed = vf_obj.free(session, sa.and_(VF.migration_uuid == migration_uuid,
                                         _is_claim()))
    vf_obj.unmark(session, VF.migration_uuid == migration_uuid)
    return freed


#: The two hosts of a prepare, each with the instance's allocations on
#: it if it is the source: one round trip.  A host vfpool does not know
#: has no row.
_HOSTS_AND_SOURCES = (
    sa.select(Host.id.label('host_ref_id'), Host.name.label('host_ref_name'),
              Host.disabled.label('host_ref_disabled'),
              view.fenced(sa.bindparam('uuid'), sa.bindparam('dest'))
              .label('host_ref_fenced'), *vf_obj.COLUMNS)
    .select_from(Host)
    .outerjoin(VF, sa.and_(VF.host_id == Host.id,
                           Host.name == sa.bindparam('source'),
                           vf_obj.owned_by(sa.bindparam('instance_uuid'))))
    .outerjoin(PF, PF.id == VF.pf_id)
    .where(Host.name.in_([sa.bindparam('source'), sa.bindparam('dest')]))
    .order_by(VF.id))


def _hosts_and_sources(session, migration_uuid: str, instance_uuid: str,
                       source_host: str, dest_host: str
                       ) -> tuple[dict, list, bool]:
    """The known hosts by name, the instance's VFs on the source.

    And whether the migration left ``dest_host`` (a fence).
    """
    hosts = {}
    sources = []
    fenced = False
    for row in session.connection().execute(_HOSTS_AND_SOURCES, dict(
            source=source_host, dest=dest_host,
            instance_uuid=instance_uuid, uuid=migration_uuid)):
        hosts[row.host_ref_name] = host_obj.HostRef(
            row.host_ref_id, row.host_ref_name, bool(row.host_ref_disabled))
        fenced = bool(row.host_ref_fenced)
        if row.id is not None:
            sources.append(row)
    return hosts, sources, fenced


def _claim_for(session, migration_id: int, migration_uuid: str,
               instance_uuid: str, sources,
               dest: host_obj.HostRef | models.Host,
               match_device_type: bool, numa_policy: str) -> list[dict]:
    """One destination claim per source VF, or NoAvailableVF."""
    taken: set = set()
    claims = []
    for vf in sources:
        request = vf_obj.equivalent_request(vf, match_device_type)
        claimed = vf_obj.claim(
            session, request, states.CLAIMED,
            vf_obj.owner(instance_uuid, vf.request_id, vf.mac, vf.vlan,
                         vf.port_id, migration_uuid=migration_uuid),
            numa_policy=numa_policy, exclude=taken, host_id=dest.id)
        if claimed is None:
            raise vf_obj.no_vf(dest.name, request)
        dest_vf_id, _host_id, dest_alloc = claimed
        taken.add(dest_vf_id)
        claims.append((vf, dest_vf_id, dest_alloc))
    if claims:
        session.connection().execute(sa.insert(MigrationVF), [
            dict(migration_id=migration_id, source_vf_id=vf.id,
                 dest_vf_id=dest_vf_id, request_id=vf.request_id,
                 mac=vf.mac, vlan=vf.vlan, port_id=vf.port_id)
            for vf, dest_vf_id, _alloc in claims])
    return [{'source': vf_obj.allocation(vf), 'dest': dest_alloc}
            for vf, _id, dest_alloc in claims]


# prepare, retarget, drop

def _host(session, name: str) -> models.Host | None:
    try:
        return host_obj.get_by_name(session, name)
    except exception.HostNotFound:
        return None


def _refuse_second(instance_uuid: str, in_flight: str | None) -> None:
    """Another migration of the instance is in flight: refuse.

    ``in_flight`` is read with the migration itself
    (:func:`view.find_with_in_flight`).
    """
    if in_flight is not None:
        raise exception.MigrationInProgress(instance_uuid=instance_uuid,
                                            migration_uuid=in_flight)


_INSERT = sa.insert(Migration).values(lease_expires_at=leases.expiry(
    sa.bindparam('lease_seconds', type_=sa.Integer)))


def _insert(session, migration_uuid: str, instance_uuid: str,
            source_id: int, dest_id: int, lease_seconds: int) -> int:
    """The ``prepare`` transition: the new row is in flight.

    Its two unique keys are the guard: a concurrent prepare of the same
    uuid, or of another uuid for the same instance, waits on this row and
    then fails on the key; it is retried whole and answered from what
    this one committed (the same answer, or MigrationInProgress).
    """
    values = _state_values(instance_uuid, TRANSITIONS['prepare'][None])
    values['created_at'] = values.pop('updated_at')
    return session.connection().execute(_INSERT, dict(
        values, uuid=migration_uuid, instance_uuid=instance_uuid,
        source_host_id=source_id, dest_host_id=dest_id,
        lease_seconds=int(lease_seconds))
    ).inserted_primary_key[0]


_MARK = (sa.update(VF)
         .where(VF.id.in_(sa.bindparam('mark_ids', expanding=True)),
                vf_obj.owned_by(sa.bindparam('mark_instance_uuid')),
                VF.migration_uuid.is_(None))
         .values(migration_uuid=sa.bindparam('mark_migration_uuid'),
                 generation=VF.generation + 1,
                 updated_at=sa.bindparam('mark_updated_at')))


def _mark(session, migration_uuid: str, instance_uuid: str,
          sources) -> None:
    """Mark the source allocations as moving with this migration."""
    marked = session.connection().execute(_MARK, dict(
        mark_ids=[vf.id for vf in sources],
        mark_instance_uuid=instance_uuid,
        mark_migration_uuid=migration_uuid,
        mark_updated_at=timeutils.utcnow())).rowcount
    if marked != len(sources):
        # Released, or marked by a migration that is over (an audit
        # finds it): the retry reads which and says so.
        raise _lost_race()


def _with_macs(session, migration_uuid: str, host: str, sources,
               mac_prefix: str | None) -> list:
    """Give a MAC to each source allocated without one (before 1.2).

    A VF is only plugged again with its MAC, so such an allocation could
    never move nor come back.  Written on the marked source VFs (this
    transaction holds them), a statement only where one is missing.
    """
    bare = [vf for vf in sources if vf.mac is None]
    if not bare or mac_prefix is None:
        return list(sources)
    fresh = iter(macs.assign(session, host, mac_prefix, len(bare),
                             {vf.mac for vf in sources if vf.mac}))
    given = {}
    for vf in bare:
        mac = next(fresh)
        if not session.connection().execute(
                sa.update(VF).where(VF.id == vf.id, VF.mac.is_(None),
                                    VF.migration_uuid == migration_uuid)
                .values(mac=mac, generation=VF.generation + 1,
                        updated_at=timeutils.utcnow())).rowcount:
            raise _lost_race()
        LOG.info('VF %s of instance %s on %s had no MAC (allocated before '
                 'RPC 1.2): it gets %s', vf.address, vf.instance_uuid,
                 host, mac)
        given[vf.id] = mac
    return [types.SimpleNamespace(**dict(vf._asdict(), mac=given[vf.id]))
            if vf.id in given else vf for vf in sources]


def _prepare_new(session, migration_uuid: str, instance_uuid: str,
                 source_host: str, dest_host: str, lease_seconds: int,
                 match_device_type: bool, numa_policy: str,
                 in_flight: str | None,
                 mac_prefix: str | None = None) -> list[dict]:
    hosts, sources, fenced = _hosts_and_sources(
        session, migration_uuid, instance_uuid, source_host, dest_host)
    source = hosts.get(source_host)
    busy = [vf.migration_uuid for vf in sources if vf.migration_uuid]
    if migration_uuid in busy:
        # The same prepare committed after our first read (READ
        # COMMITTED): start over, and replay what it recorded.
        raise _lost_race()
    if busy:
        raise exception.MigrationInProgress(instance_uuid=instance_uuid,
                                            migration_uuid=busy[0])
    dest = hosts.get(dest_host)
    if not sources and (source is None or dest is None):
        # Nothing to move, and a host vfpool does not know: nothing to
        # record either (Nova prepares every live migration).
        return []
    if fenced:
        raise _left(migration_uuid, dest_host)
    if dest is None:
        raise exception.HostNotFound(host=dest_host)
    if sources and dest.disabled:
        raise exception.HostDisabled(host=dest_host)
    _refuse_second(instance_uuid, in_flight)
    assert source is not None   # sources come from it
    migration_id = _insert(session, migration_uuid, instance_uuid,
                           source.id, dest.id, lease_seconds)
    if not sources:
        return []
    _mark(session, migration_uuid, instance_uuid, sources)
    sources = _with_macs(session, migration_uuid, source_host, sources,
                         mac_prefix)
    return _claim_for(session, migration_id, migration_uuid, instance_uuid,
                      sources, dest, match_device_type, numa_policy)


def _retarget(session, row, dest_host: str, lease_seconds: int,
              match_device_type: bool, numa_policy: str) -> list[dict]:
    """Move the claims of a migration in progress to another host.

    One transaction: the old destination's claims are freed and new ones
    won on ``dest_host``, or nothing changes.  A migration with nothing
    to claim that is sent to a host vfpool does not know is dropped, as
    if it had never been prepared.
    """
    sources = vf_obj.with_pf(session, VF.id.in_(
        [link.source_vf_id for link in view.links(session, row.id)]))
    dest = _host(session, dest_host)
    if dest is None and not sources:
        return _drop(session, row)
    if dest is None:
        raise exception.HostNotFound(host=dest_host)
    if sources and dest.disabled:
        raise exception.HostDisabled(host=dest_host)
    if not _move(session, row, 'retarget', dest_host_id=dest.id,
                 lease_expires_at=leases.expiry(lease_seconds)):
        raise _lost_race()
    # Never back to a destination it left: the old one is fenced, the new
    # one checked again now that the row is ours.
    _refuse_fenced_now(session, row.uuid, dest_host)
    _fence(session, row.uuid, row.dest_name)
    vf_obj.free(session, sa.and_(VF.migration_uuid == row.uuid, _is_claim()))
    session.connection().execute(
        sa.delete(MigrationVF).where(MigrationVF.migration_id == row.id))
    LOG.info('Migration %s of instance %s retargeted to %s',
             row.uuid, row.instance_uuid, dest_host)
    return _claim_for(session, row.id, row.uuid, row.instance_uuid, sources,
                      dest, match_device_type, numa_policy)


def _drop(session, row) -> list[dict]:
    """The ``drop`` transition: forget a migration with nothing in it.

    Deleted, not moved: a prepare that vfpool would not have recorded
    (an unknown host) leaves no row, whatever came before it.
    """
    dropped = session.connection().execute(
        sa.delete(Migration).where(
            Migration.id == row.id, Migration.state == row.state,
            Migration.state.in_(list(TRANSITIONS['drop'])),
            ~sa.exists().where(MigrationVF.migration_id == row.id))
    ).rowcount
    if not dropped:
        raise _lost_race()
    return []


def _again(session, row, instance_uuid: str, source_host: str,
           dest_host: str, lease_seconds: int, match_device_type: bool,
           numa_policy: str) -> list[dict]:
    """A prepare of a uuid seen before: replay, or retarget.

    ``row`` says whether the migration left ``dest_host``
    (:func:`view.find_with_in_flight`): then it is refused, a replay
    included.
    """
    if (row.instance_uuid != instance_uuid
            or row.source_name != source_host):
        raise exception.InvalidInput(
            reason='migration %s was prepared for another instance or '
                   'another source host' % row.uuid)
    if row.fenced:
        raise _left(row.uuid, dest_host)
    if row.dest_name == dest_host:
        if row.state in (IN_PROGRESS, MOVING, COMPLETED):
            return view.pairs(session, row.id)
        raise _conflict(row, 'prepared again')
    if row.state != IN_PROGRESS:
        raise _conflict(row, 'retargeted to %s' % dest_host)
    return _retarget(session, row, dest_host, lease_seconds,
                     match_device_type, numa_policy)


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def prepare(context, migration_uuid: str, instance_uuid: str,
            source_host: str, dest_host: str, lease_seconds: int,
            match_device_type: bool = True,
            numa_policy: str = pool_conf.DEFAULT_NUMA_POLICY,
            expected_sources: list[str] | None = None,
            mac_prefix: str | None = None) -> list[dict]:
    """Claim an equivalent destination VF for each source allocation.

    All or nothing, and idempotent on ``migration_uuid``; the same uuid
    with another destination retargets a migration still in progress,
    never to a destination it left (``MigrationFenced``).  An instance
    with no VF on ``source_host`` gets ``[]``, recorded as a migration
    only when vfpool knows both hosts.  ``expected_sources`` (1.6): the
    addresses the caller believes the instance holds on the source; if
    the answer moves others, ``SourcesChanged`` and nothing changes.
    With ``mac_prefix`` a source allocated without a MAC gets one.
    """
    session = context.session
    row, in_flight = view.find_with_in_flight(session, migration_uuid,
                                              instance_uuid, dest_host)
    if row is not None:
        pairs = _again(session, row, instance_uuid, source_host, dest_host,
                       lease_seconds, match_device_type, numa_policy)
    else:
        pairs = _prepare_new(session, migration_uuid, instance_uuid,
                             source_host, dest_host, lease_seconds,
                             match_device_type, numa_policy, in_flight,
                             mac_prefix)
    if expected_sources is not None:
        held = sorted(pair['source']['address'] for pair in pairs)
        if held != sorted(expected_sources):
            # Raised inside the transaction: whatever it wrote is undone.
            raise exception.SourcesChanged(
                instance_uuid=instance_uuid, host=source_host,
                held=', '.join(held) or 'no VF',
                expected=', '.join(sorted(expected_sources)) or 'no VF')
    return pairs


# begin, renew

def _extend(context, transition: str, action: str, migration_uuid: str,
            lease_seconds: int, source_host: str | None,
            dest_host: str | None) -> str:
    session = context.session
    row = view.get_named(session, migration_uuid)
    check_belief(row, source_host, dest_host)
    if row.state not in TRANSITIONS[transition]:
        raise _conflict(row, action)
    if not _move(session, row, transition,
                 lease_expires_at=leases.expiry(lease_seconds)):
        raise _lost_race()
    return _lease(session, row.id)


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def begin(context, migration_uuid: str, lease_seconds: int,
          source_host: str | None = None,
          dest_host: str | None = None) -> str:
    """The source is about to detach: from now on no lease frees a VF.

    Returns the new lease expiry; LeaseExpired once the reaper took the
    claims (the compute must not detach then).  ``dest_host`` (1.6) is
    Nova's destination: the source never detaches for another.
    """
    return _extend(context, 'begin', 'begun', migration_uuid,
                   lease_seconds, source_host, dest_host)


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def renew(context, migration_uuid: str, lease_seconds: int,
          source_host: str | None = None,
          dest_host: str | None = None) -> str:
    return _extend(context, 'renew', 'renewed', migration_uuid,
                   lease_seconds, source_host, dest_host)


# complete

def _explain_sources(session, row, source_ids: list) -> Exception:
    """Why the sources of an expired migration are no longer its own."""
    marks = session.connection().execute(
        sa.select(VF.migration_uuid).where(
            VF.id.in_(source_ids), VF.instance_uuid == row.instance_uuid,
            VF.migration_uuid.is_not(None)).with_for_update()).scalars()
    other = next(iter(marks), None)
    if other is not None:
        return exception.MigrationInProgress(
            instance_uuid=row.instance_uuid, migration_uuid=other)
    return exception.LeaseExpired(migration_uuid=row.uuid)


def _win_back(session, row, link) -> bool:
    return bool(vf_obj.win_back(
        session, sa.and_(VF.id == link.dest_vf_id,
                         VF.state == states.AVAILABLE),
        **vf_obj.owner(row.instance_uuid, link.request_id, link.mac,
                       link.vlan, link.port_id)))


def _reacquire(session, row, found: list, reclaim: bool,
               match_device_type: bool, numa_policy: str) -> None:
    """Settle an expired migration whose guest did move.

    The sources are freed first, guarded by a write: they must still be
    the instance's and carry no other migration, as the latest committed
    rows say (a snapshot read would miss a release that committed since,
    and give the destination VFs to a deleted instance).  Then the same
    destination VFs are won back if free; with ``reclaim``, an equivalent
    free VF stands in for each one taken since, and a pair for which none
    is free is left out.
    """
    if not found:
        return
    source_ids = [link.source_vf_id for link in found]
    freed = vf_obj.free(session, sa.and_(VF.id.in_(source_ids),
                                         vf_obj.owned_by(row.instance_uuid),
                                         VF.migration_uuid.is_(None)))
    if freed != len(source_ids):
        raise _explain_sources(session, row, source_ids)
    lost = [link for link in found if not _win_back(session, row, link)]
    if lost and not reclaim:
        raise exception.LeaseExpired(migration_uuid=row.uuid)
    sources = {vf.id: vf for vf in vf_obj.with_pf(
        session, VF.id.in_([link.source_vf_id for link in lost]))}
    taken: set = {link.dest_vf_id for link in found}
    for link in lost:
        request = vf_obj.equivalent_request(sources[link.source_vf_id],
                                            match_device_type)
        claimed = vf_obj.claim(
            session, request, states.ALLOCATED,
            vf_obj.owner(row.instance_uuid,
                         utils.reclaim_request_id(row.uuid), link.mac,
                         link.vlan, link.port_id),
            numa_policy=numa_policy, exclude=taken,
            host_id=row.dest_host_id)
        if claimed is None:
            LOG.warning('No VF like %s is free on the destination of '
                        'migration %s any more; instance %s goes without '
                        'it', request, row.uuid, row.instance_uuid)
            continue
        taken.add(claimed[0])


#: complete's two VF moves in one round trip: the claims become
#: allocations, the marked sources are freed, each under its own guard.
_SETTLE = vf_obj.transitions([
    ('settle_dest_ids', VF.migration_uuid == sa.bindparam('settle_uuid'),
     states.ALLOCATED, dict(migration_uuid=None)),
    ('settle_source_ids', sa.and_(
        VF.instance_uuid == sa.bindparam('settle_instance_uuid'),
        VF.migration_uuid == sa.bindparam('settle_uuid')),
     states.AVAILABLE, vf_obj.FREE_VALUES),
])


def _settle(session, row, found: list) -> None:
    """Claims become allocations, the marked sources are freed."""
    dest_ids = [link.dest_vf_id for link in found]
    if not dest_ids:
        return
    session.connection().execute(_SETTLE, dict(
        settle_dest_ids=dest_ids,
        settle_source_ids=[link.source_vf_id for link in found],
        settle_uuid=row.uuid, settle_instance_uuid=row.instance_uuid,
        updated_at=timeutils.utcnow()))


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def complete(context, migration_uuid: str, reclaim: bool = False,
             match_device_type: bool = True,
             numa_policy: str = pool_conf.DEFAULT_NUMA_POLICY,
             source_host: str | None = None,
             dest_host: str | None = None) -> list[dict]:
    """Make the destination claims the instance's allocations.

    One transaction: claims become allocations and the source VFs are
    freed.  After the lease expired, see :func:`_reacquire`.  Returns the
    instance's allocations on the destination.  The swap names the
    destination as read with the links, so a retarget committed since
    makes it start over on the new links.
    """
    session = context.session
    row, found = view.get_row_and_links(session, migration_uuid)
    check_belief(row, source_host, dest_host)
    if row.state == COMPLETED:
        return vf_obj.allocations(session, row.instance_uuid,
                                  row.dest_host_id)
    if row.state not in TRANSITIONS['complete']:
        raise _conflict(row, 'completed')
    if not _move(session, row, 'complete'):
        raise _lost_race()
    if row.state == EXPIRED:
        _reacquire(session, row, found, reclaim, match_device_type,
                   numa_policy)
    else:
        _settle(session, row, found)
    return vf_obj.allocations(session, row.instance_uuid, row.dest_host_id)


# abort, expire

def _end(session, row, transition: str, *guards) -> int | None:
    """``abort`` or ``expire`` a migration in flight: its claims go.

    None when the row was no longer as read.
    """
    if not _move(session, row, transition, *guards):
        return None
    return _end_claims(session, row.uuid)


def _give_up(session, migration_uuid: str, row, dest_host: str) -> int:
    """``abort_migration`` with ``dest_host``: that host gives up.

    Fenced for good whatever the migration's state, so its late prepare
    is refused.  If it is the destination of a migration in flight, the
    migration is aborted; else nothing else changes, but the row is
    swapped all the same (as it is), so that a concurrent retarget to
    ``dest_host`` and this fence are ordered (the retarget checks the
    fence after its own swap).
    """
    if row is not None and row.dest_name == dest_host:
        if row.state == COMPLETED:
            raise _conflict(row, 'aborted')
        _fence(session, migration_uuid, dest_host)
        return _abort_row(session, row)
    _fence(session, migration_uuid, dest_host)
    if row is not None and not session.connection().execute(
            sa.update(Migration).where(
                Migration.id == row.id, Migration.state == row.state,
                Migration.dest_host_id == row.dest_host_id)
            .values(updated_at=timeutils.utcnow())).rowcount:
        raise _lost_race()
    return 0


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def abort(context, migration_uuid: str, source_host: str | None = None,
          dest_host: str | None = None) -> int:
    """Free the destination claims; the source allocations stay.

    With ``dest_host`` (1.6) only that host's attempt ends (see
    :func:`_give_up`); with ``source_host``, refused if the migration
    leaves another host.
    """
    session = context.session
    if dest_host is not None:
        row = view.find_named(session, migration_uuid)
        if row is not None:
            check_belief(row, source_host, None)
        return _give_up(session, migration_uuid, row, dest_host)
    row = view.get_named(session, migration_uuid)
    check_belief(row, source_host, None)
    if row.state == COMPLETED:
        raise _conflict(row, 'aborted')
    return _abort_row(session, row)


def _abort_row(session, row) -> int:
    """The ``abort`` transition of ``row`` read in ``session``; VFs freed.

    Nothing to do (0) from a state it does not leave (aborted, expired).
    """
    if row.state not in TRANSITIONS['abort']:
        return 0
    freed = _end(session, row, 'abort')
    if freed is None:
        raise _lost_race()
    return freed


def abort_in_flight(session, instance_uuid: str,
                    host_id: int | None = None) -> int:
    """Abort the instance's migration in flight (from or to ``host_id``).

    For ``release``: the instance is gone.  Returns the claims freed.
    """
    query = sa.select(Migration).where(
        Migration.in_flight_instance_uuid == instance_uuid)
    if host_id is not None:
        query = query.where(sa.or_(Migration.source_host_id == host_id,
                                   Migration.dest_host_id == host_id))
    freed = 0
    for row in session.execute(query).scalars().all():
        ended = _end(session, row, 'abort')
        if ended is None:
            raise _lost_race()
        freed += ended
    return freed


@db_api.context_manager.reader
def _expired_candidates(context, limit: int) -> list[str]:
    return [u for (u,) in context.session.execute(
        sa.select(Migration.uuid).where(
            Migration.state.in_(list(TRANSITIONS['expire'])),
            Migration.lease_expires_at < leases.now())
        .order_by(Migration.lease_expires_at).limit(limit)).all()]


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def _expire_one(context, migration_uuid: str) -> int | None:
    session = context.session
    row = view.find(session, migration_uuid)
    if row is None or row.state not in TRANSITIONS['expire']:
        return None
    # Renewed, begun, finished or reaped by another server: None.
    return _end(session, row, 'expire',
                Migration.lease_expires_at < leases.now())


def reap_expired(context, limit: int = 1000) -> list[tuple[str, int]]:
    """Expire lapsed migrations in progress, one transaction each.

    A ``moving`` migration is never reaped: its guest may already run on
    the destination.  Safe with several servers reaping at once: each
    migration changes state by compare-and-swap, so exactly one reaper
    frees its claims.
    """
    reaped = []
    for migration_uuid in _expired_candidates(context, limit):
        freed = _expire_one(context, migration_uuid)
        if freed is not None:
            LOG.info('Lease of migration %s expired; %d claim(s) freed',
                     migration_uuid, freed)
            reaped.append((migration_uuid, freed))
    return reaped


def _stale_fences(retention_seconds: int):
    """Fences past the retention whose migration is not in flight."""
    return sa.and_(
        Fence.created_at < leases.expiry(-retention_seconds),
        ~sa.exists().where(Migration.uuid == Fence.migration_uuid,
                           Migration.in_flight_instance_uuid.is_not(None)))


@db_api.context_manager.reader
def _any_stale_fence(context, retention_seconds: int) -> bool:
    return context.session.execute(sa.select(Fence.id).where(
        _stale_fences(retention_seconds)).limit(1)).first() is not None


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def _delete_stale_fences(context, retention_seconds: int) -> int:
    return context.session.execute(sa.delete(Fence).where(
        _stale_fences(retention_seconds))).rowcount


def reap_fences(context, retention_seconds: int) -> int:
    """Forget the fences of migrations over for ``retention_seconds``.

    After that a prepare of such a uuid for such a host would be taken
    again: the retention must outlast any message still on its way, as
    for released request ids.  A read first, so that an idle pass takes
    no write lock.
    """
    if not _any_stale_fence(context, retention_seconds):
        return 0
    return _delete_stale_fences(context, retention_seconds)
