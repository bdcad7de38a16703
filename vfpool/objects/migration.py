"""Migrations: destination claims under a lease, then commit or abort."""

import datetime

from oslo_db import exception as db_exc
from oslo_log import log as logging
from oslo_utils import timeutils
import sqlalchemy as sa

from vfpool.db import api as db_api
from vfpool.db import models
from vfpool import exception
from vfpool.objects import allocation as allocation_obj
from vfpool.objects import host as host_obj
from vfpool.objects import vf as vf_obj
from vfpool import utils

LOG = logging.getLogger(__name__)

VF = models.VirtualFunction
PF = models.PhysicalFunction
Migration = models.Migration
MigrationVF = models.MigrationVF


def _get(session, migration_uuid: str) -> models.Migration:
    row = session.execute(sa.select(Migration).where(
        Migration.uuid == migration_uuid)).scalar_one_or_none()
    if row is None:
        raise exception.MigrationNotFound(migration_uuid=migration_uuid)
    return row


def _pairs(session, migration_id: int) -> list[dict]:
    """The answer of prepare_migration, rebuilt from what was recorded."""
    conn = session.connection()
    links = conn.execute(
        sa.select(MigrationVF).where(MigrationVF.migration_id == migration_id)
        .order_by(MigrationVF.id)).all()
    vf_ids = {link.source_vf_id for link in links} | {
        link.dest_vf_id for link in links}
    rows = {vf.id: vf for vf in
            vf_obj.with_pf(session, VF.id.in_(vf_ids))} if vf_ids else {}
    result = []
    for link in links:
        owner = dict(mac=link.mac, vlan=link.vlan, port_id=link.port_id)
        result.append({
            'source': vf_obj.allocation(rows[link.source_vf_id], **owner),
            'dest': vf_obj.allocation(rows[link.dest_vf_id], **owner),
        })
    return result


def _describe(session, migration: models.Migration) -> dict:
    names = host_obj.names_by_id(
        session, {migration.source_host_id, migration.dest_host_id})
    return {
        'uuid': migration.uuid,
        'instance_uuid': migration.instance_uuid,
        'source_host': names[migration.source_host_id],
        'dest_host': names[migration.dest_host_id],
        'state': migration.state,
        'lease_expires_at': utils.isotime(migration.lease_expires_at),
        'vfs': _pairs(session, migration.id),
    }


def current(session, instance_uuid: str) -> dict | None:
    """The instance's migration in flight, else its latest one."""
    row = session.execute(
        sa.select(Migration).where(Migration.instance_uuid == instance_uuid)
        .order_by((Migration.state == models.IN_PROGRESS).desc(),
                  Migration.created_at.desc(), Migration.id.desc())
        .limit(1)).scalar_one_or_none()
    return None if row is None else _describe(session, row)


def _replay(session, existing, migration_uuid: str, instance_uuid: str,
            source_host: str, dest_host: str) -> list[dict]:
    """The same answer again for a migration prepared before."""
    names = host_obj.names_by_id(
        session, {existing.source_host_id, existing.dest_host_id})
    if (existing.instance_uuid != instance_uuid
            or names.get(existing.source_host_id) != source_host
            or names.get(existing.dest_host_id) != dest_host):
        raise exception.InvalidInput(
            reason='migration %s was prepared for another instance or '
                   'other hosts' % migration_uuid)
    if existing.state in (models.IN_PROGRESS, models.COMPLETED):
        return _pairs(session, existing.id)
    if existing.state == models.EXPIRED:
        raise exception.LeaseExpired(migration_uuid=migration_uuid)
    raise exception.MigrationStateConflict(
        migration_uuid=migration_uuid, state=existing.state,
        action='prepared again')


def _why_no_dest(session, dest_host: str, request: dict) -> Exception:
    dest = host_obj.get_by_name(session, dest_host)
    if dest.disabled:
        return exception.HostDisabled(host=dest_host)
    return vf_obj.no_vf(dest_host, request)


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def prepare(context, migration_uuid: str, instance_uuid: str,
            source_host: str, dest_host: str, lease_seconds: int,
            match_device_type: bool = True,
            numa_policy: str = 'preferred') -> list[dict]:
    """Claim an equivalent destination VF for each source allocation.

    All or nothing.  The source VFs are marked with the migration's uuid
    by compare-and-swap, so a second migration of the same instance that
    races with this one finds them taken and gets MigrationInProgress.
    This runs before every live migration: it is written in SQL
    expressions with as few round trips as the checks allow (one per
    query below, plus two per VF claimed).
    """
    session = context.session
    conn = session.connection()
    existing = conn.execute(sa.select(Migration).where(
        Migration.uuid == migration_uuid)).first()
    if existing is not None:
        return _replay(session, existing, migration_uuid, instance_uuid,
                       source_host, dest_host)

    sources = conn.execute(
        sa.select(*vf_obj.COLUMNS)
        .join(PF, PF.id == VF.pf_id)
        .join(models.Host, models.Host.id == VF.host_id)
        .where(models.Host.name == source_host,
               vf_obj.owned_by(instance_uuid))
        .order_by(VF.id)).all()
    busy = [vf.migration_uuid for vf in sources if vf.migration_uuid]
    if busy:
        raise exception.MigrationInProgress(instance_uuid=instance_uuid,
                                            migration_uuid=busy[0])
    if sources:
        source_id = sources[0].host_id
    else:
        source_id = host_obj.get_by_name(session, source_host).id
        in_flight = conn.execute(
            sa.select(Migration.uuid).where(
                Migration.instance_uuid == instance_uuid,
                Migration.state == models.IN_PROGRESS).limit(1)).scalar()
        if in_flight is not None:
            raise exception.MigrationInProgress(
                instance_uuid=instance_uuid, migration_uuid=in_flight)

    now = timeutils.utcnow()
    dest_id = None
    taken: set = set()
    claims = []
    for vf in sources:
        request = allocation_obj.equivalent_request(vf, match_device_type)
        owner = dict(mac=vf.mac, vlan=vf.vlan, port_id=vf.port_id)
        claimed = vf_obj.claim(
            session, request, models.CLAIMED,
            dict(owner, instance_uuid=instance_uuid,
                 migration_uuid=migration_uuid, request_id=vf.request_id,
                 attach_state=None),
            numa_policy=numa_policy, exclude=taken, host_id=dest_id,
            host_name=dest_host)
        if claimed is None:
            raise _why_no_dest(session, dest_host, request)
        dest_vf_id, dest_id, dest_alloc = claimed
        taken.add(dest_vf_id)
        claims.append((vf, dest_vf_id, dest_alloc))
    if dest_id is None:
        dest = host_obj.get_by_name(session, dest_host)
        if dest.disabled:
            raise exception.HostDisabled(host=dest_host)
        dest_id = dest.id
    if sources:
        marked = conn.execute(
            sa.update(VF).where(VF.id.in_([vf.id for vf in sources]),
                                VF.migration_uuid.is_(None),
                                VF.instance_uuid == instance_uuid)
            .values(migration_uuid=migration_uuid,
                    generation=VF.generation + 1, updated_at=now)).rowcount
        if marked != len(sources):
            raise exception.MigrationInProgress(
                instance_uuid=instance_uuid, migration_uuid='unknown')
    # A concurrent prepare of the same uuid loses here on the unique key
    # and is retried whole, then answered by _replay.
    migration_id = conn.execute(sa.insert(Migration).values(
        uuid=migration_uuid, instance_uuid=instance_uuid,
        source_host_id=source_id, dest_host_id=dest_id,
        state=models.IN_PROGRESS, created_at=now,
        lease_expires_at=now + datetime.timedelta(seconds=lease_seconds))
    ).inserted_primary_key[0]
    if claims:
        conn.execute(sa.insert(MigrationVF), [
            dict(migration_id=migration_id, source_vf_id=vf.id,
                 dest_vf_id=dest_vf_id, request_id=vf.request_id,
                 mac=vf.mac, vlan=vf.vlan, port_id=vf.port_id)
            for vf, dest_vf_id, _alloc in claims])
    return [{'source': vf_obj.allocation(vf), 'dest': dest_alloc}
            for vf, _id, dest_alloc in claims]


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def renew(context, migration_uuid: str, lease_seconds: int) -> str:
    session = context.session
    row = _get(session, migration_uuid)
    if row.state == models.EXPIRED:
        raise exception.LeaseExpired(migration_uuid=migration_uuid)
    if row.state != models.IN_PROGRESS:
        raise exception.MigrationStateConflict(
            migration_uuid=migration_uuid, state=row.state,
            action='renewed')
    expiry = timeutils.utcnow() + datetime.timedelta(seconds=lease_seconds)
    # Guarded by state, so a reaper that expired it meanwhile wins.
    done = session.execute(
        sa.update(Migration).where(Migration.id == row.id,
                                   Migration.state == models.IN_PROGRESS)
        .values(lease_expires_at=expiry, updated_at=timeutils.utcnow())
        .execution_options(synchronize_session=False)).rowcount
    if not done:
        raise exception.LeaseExpired(migration_uuid=migration_uuid)
    return utils.isotime(expiry)


def _lost_race() -> db_exc.RetryRequest:
    # Another server changed the migration between our read and our
    # write; start the transaction over and decide on fresh data.
    return db_exc.RetryRequest(exception.Conflict())


def _set_state(session, migration, from_state: str, to_state: str) -> bool:
    return bool(session.execute(
        sa.update(Migration).where(Migration.id == migration.id,
                                   Migration.state == from_state)
        .values(state=to_state, updated_at=timeutils.utcnow())
        .execution_options(synchronize_session=False)).rowcount)


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def complete(context, migration_uuid: str) -> list[dict]:
    """Make the destination claims the instance's allocations.

    One transaction: claims become allocations and the source VFs are
    freed.  After the lease expired, the same destination VFs are won
    back if they are still free; otherwise LeaseExpired and no change.
    """
    session = context.session
    # The migration and its links in one Core query.
    rows = session.connection().execute(
        sa.select(Migration.id, Migration.uuid, Migration.instance_uuid,
                  Migration.state, Migration.dest_host_id,
                  MigrationVF.source_vf_id, MigrationVF.dest_vf_id,
                  MigrationVF.request_id, MigrationVF.mac,
                  MigrationVF.vlan, MigrationVF.port_id)
        .outerjoin(MigrationVF, MigrationVF.migration_id == Migration.id)
        .where(Migration.uuid == migration_uuid)
        .order_by(MigrationVF.id)).all()
    if not rows:
        raise exception.MigrationNotFound(migration_uuid=migration_uuid)
    row = rows[0]
    if row.state == models.COMPLETED:
        return allocation_obj.allocations(session, row.instance_uuid,
                                          row.dest_host_id)
    if row.state == models.ABORTED:
        raise exception.MigrationStateConflict(
            migration_uuid=migration_uuid, state=row.state,
            action='completed')
    links = [r for r in rows if r.dest_vf_id is not None]
    dest_ids = [link.dest_vf_id for link in links]
    source_ids = [link.source_vf_id for link in links]
    if row.state == models.EXPIRED:
        _reacquire(session, row, links)
    if not _set_state(session, row, row.state, models.COMPLETED):
        raise _lost_race()
    if dest_ids:
        vf_obj.transition(
            session, sa.and_(VF.id.in_(dest_ids),
                             VF.migration_uuid == migration_uuid),
            models.ALLOCATED, migration_uuid=None)
        vf_obj.free(session, sa.and_(VF.id.in_(source_ids),
                                     VF.instance_uuid == row.instance_uuid))
    return allocation_obj.allocations(session, row.instance_uuid,
                                      row.dest_host_id)


def _reacquire(session, row, links) -> None:
    now = timeutils.utcnow()
    for link in links:
        won = session.execute(
            sa.update(VF).where(VF.id == link.dest_vf_id,
                                VF.state == models.AVAILABLE)
            .values(state=models.CLAIMED, instance_uuid=row.instance_uuid,
                    migration_uuid=row.uuid, request_id=link.request_id,
                    mac=link.mac, vlan=link.vlan, port_id=link.port_id,
                    attach_state=None, generation=VF.generation + 1,
                    updated_at=now)
            .execution_options(synchronize_session=False)).rowcount
        if not won:
            raise exception.LeaseExpired(migration_uuid=row.uuid)
        still_owned = session.execute(
            sa.select(sa.func.count()).select_from(VF).where(
                VF.id == link.source_vf_id,
                vf_obj.owned_by(row.instance_uuid))).scalar_one()
        if not still_owned:
            raise exception.LeaseExpired(migration_uuid=row.uuid)


def _release_claims(session, row) -> int:
    freed = vf_obj.free(session, sa.and_(
        VF.migration_uuid == row.uuid,
        sa.or_(VF.state == models.CLAIMED,
               VF.prior_state == models.CLAIMED)))
    vf_obj.transition(session, VF.migration_uuid == row.uuid,
                      models.ALLOCATED, migration_uuid=None)
    return freed


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def abort(context, migration_uuid: str) -> int:
    """Free the destination claims; the source allocations stay."""
    session = context.session
    row = _get(session, migration_uuid)
    if row.state == models.COMPLETED:
        raise exception.MigrationStateConflict(
            migration_uuid=migration_uuid, state=row.state,
            action='aborted')
    if row.state != models.IN_PROGRESS:
        return 0
    if not _set_state(session, row, models.IN_PROGRESS, models.ABORTED):
        raise _lost_race()
    return _release_claims(session, row)


@db_api.context_manager.reader
def _expired_candidates(context, now, limit: int) -> list[str]:
    return [u for (u,) in context.session.execute(
        sa.select(Migration.uuid).where(
            Migration.state == models.IN_PROGRESS,
            Migration.lease_expires_at < now)
        .order_by(Migration.lease_expires_at).limit(limit)).all()]


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def _expire_one(context, migration_uuid: str, now) -> int | None:
    session = context.session
    row = _get(session, migration_uuid)
    expired = session.execute(
        sa.update(Migration).where(Migration.id == row.id,
                                   Migration.state == models.IN_PROGRESS,
                                   Migration.lease_expires_at < now)
        .values(state=models.EXPIRED, updated_at=now)
        .execution_options(synchronize_session=False)).rowcount
    if not expired:
        return None     # renewed, finished or reaped by another server
    return _release_claims(session, row)


def reap_expired(context, limit: int = 1000) -> list[tuple[str, int]]:
    """Expire lapsed migrations, one transaction each.

    Safe with several servers reaping at once: each migration changes
    state by compare-and-swap, so exactly one reaper frees its claims.
    """
    now = timeutils.utcnow()
    reaped = []
    for migration_uuid in _expired_candidates(context, now, limit):
        freed = _expire_one(context, migration_uuid, now)
        if freed is not None:
            LOG.info('Lease of migration %s expired; %d claim(s) freed',
                     migration_uuid, freed)
            reaped.append((migration_uuid, freed))
    return reaped


@db_api.context_manager.reader
def list_migrations(context, state: str | None = None,
                    host: str | None = None) -> list[dict]:
    session = context.session
    query = sa.select(Migration).order_by(Migration.created_at,
                                          Migration.id)
    if state is not None:
        query = query.where(Migration.state == state)
    if host is not None:
        host_id = host_obj.get_by_name(session, host).id
        query = query.where(sa.or_(Migration.source_host_id == host_id,
                                   Migration.dest_host_id == host_id))
    return [_describe(session, row)
            for row in session.execute(query).scalars()]


@db_api.context_manager.reader
def get(context, migration_uuid: str) -> dict:
    session = context.session
    return _describe(session, _get(session, migration_uuid))
