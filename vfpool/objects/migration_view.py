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

"""Migrations as the API and the operator tools show them (read only)."""

import sqlalchemy as sa

from vfpool.db import api as db_api
from vfpool.db import models
from vfpool import exception
from vfpool.objects import host as host_obj
from vfpool.objects import leases
from vfpool.objects import vf as vf_obj
from vfpool import states
from vfpool import utils

VF = models.VirtualFunction
Migration = models.Migration
MigrationVF = models.MigrationVF


def find(session, migration_uuid: str) -> models.Migration | None:
    return session.execute(sa.select(Migration).where(
        Migration.uuid == migration_uuid)).scalar_one_or_none()


def get_row(session, migration_uuid: str) -> models.Migration:
    row = find(session, migration_uuid)
    if row is None:
        raise exception.MigrationNotFound(migration_uuid=migration_uuid)
    return row


Fence = models.MigrationFence
_SOURCE = models.Host.__table__.alias('source_host')
_DEST = models.Host.__table__.alias('dest_host')
#: Migrations with their hosts (each has both), for the names.
_NAMED_FROM = (Migration.__table__
               .join(_SOURCE, _SOURCE.c.id == Migration.source_host_id)
               .join(_DEST, _DEST.c.id == Migration.dest_host_id))
_NAMES = (_SOURCE.c.name.label('source_name'),
          _DEST.c.name.label('dest_name'))


def fenced(migration_uuid, host):
    """Whether ``host`` is a destination ``migration_uuid`` left."""
    return sa.exists().where(Fence.migration_uuid == migration_uuid,
                             Fence.host == host)


_WITH_IN_FLIGHT = (
    sa.select(Migration.__table__, *_NAMES,
              fenced(sa.bindparam('uuid'), sa.bindparam('dest'))
              .label('fenced'))
    .select_from(_NAMED_FROM)
    .where(sa.or_(
        Migration.uuid == sa.bindparam('uuid'),
        Migration.in_flight_instance_uuid == sa.bindparam('instance_uuid'))))


def find_with_in_flight(session, migration_uuid: str, instance_uuid: str,
                        dest_host: str = ''
                        ) -> tuple[sa.Row | None, str | None]:
    """The migration, and another of the instance's in flight, if any.

    One round trip for prepare: the migration ``migration_uuid`` (or
    None), with its hosts' names and whether ``dest_host`` is fenced for
    it, and the uuid of another migration of ``instance_uuid`` in flight
    (or None).
    """
    rows = session.connection().execute(_WITH_IN_FLIGHT, dict(
        uuid=migration_uuid, instance_uuid=instance_uuid,
        dest=dest_host)).all()
    row = next((r for r in rows if r.uuid == migration_uuid), None)
    other = next((r.uuid for r in rows if r.uuid != migration_uuid
                  and r.in_flight_instance_uuid == instance_uuid), None)
    return row, other


_NAMED = (sa.select(Migration.__table__, *_NAMES).select_from(_NAMED_FROM)
          .where(Migration.uuid == sa.bindparam('uuid')))


def get_named(session, migration_uuid: str) -> sa.Row:
    """:func:`get_row` with ``source_name`` and ``dest_name``."""
    row = session.connection().execute(
        _NAMED, dict(uuid=migration_uuid)).first()
    if row is None:
        raise exception.MigrationNotFound(migration_uuid=migration_uuid)
    return row


def find_named(session, migration_uuid: str) -> sa.Row | None:
    return session.connection().execute(
        _NAMED, dict(uuid=migration_uuid)).first()


#: A migration with each of its links; a row is both the migration and
#: a link (``link_id`` None when it has none).
_WITH_LINKS = (
    sa.select(Migration.__table__, *_NAMES, MigrationVF.id.label('link_id'),
              MigrationVF.source_vf_id, MigrationVF.dest_vf_id,
              MigrationVF.request_id, MigrationVF.mac, MigrationVF.vlan,
              MigrationVF.port_id)
    .select_from(_NAMED_FROM.outerjoin(
        MigrationVF, MigrationVF.migration_id == Migration.id))
    .where(Migration.uuid == sa.bindparam('uuid'))
    .order_by(MigrationVF.id))


def get_row_and_links(session, migration_uuid: str) -> tuple:
    """:func:`get_row` and :func:`links` in one round trip."""
    rows = session.connection().execute(
        _WITH_LINKS, dict(uuid=migration_uuid)).all()
    if not rows:
        raise exception.MigrationNotFound(migration_uuid=migration_uuid)
    return rows[0], [row for row in rows if row.link_id is not None]


def links(session, migration_id: int) -> list:
    """The migration's (source VF, destination VF) pairs, in claim order."""
    return session.connection().execute(
        sa.select(MigrationVF).where(MigrationVF.migration_id == migration_id)
        .order_by(MigrationVF.id)).all()


def pairs(session, migration_id: int) -> list[dict]:
    """The answer of prepare_migration, rebuilt from what was recorded."""
    found = links(session, migration_id)
    vf_ids = {link.source_vf_id for link in found} | {
        link.dest_vf_id for link in found}
    rows = {vf.id: vf for vf in
            vf_obj.with_pf(session, VF.id.in_(vf_ids))} if vf_ids else {}
    result = []
    for link in found:
        owner = dict(mac=link.mac, vlan=link.vlan, port_id=link.port_id)
        result.append({
            'source': vf_obj.allocation(rows[link.source_vf_id], **owner),
            'dest': vf_obj.allocation(rows[link.dest_vf_id], **owner),
        })
    return result


def _describe(session, migration: models.Migration, **extra) -> dict:
    names = host_obj.names_by_id(
        session, {migration.source_host_id, migration.dest_host_id})
    return dict({
        'uuid': migration.uuid,
        'instance_uuid': migration.instance_uuid,
        'source_host': names[migration.source_host_id],
        'dest_host': names[migration.dest_host_id],
        'state': migration.state,
        'lease_expires_at': utils.isotime(migration.lease_expires_at),
        'vfs': pairs(session, migration.id),
    }, **extra)


def current(session, instance_uuid: str) -> dict | None:
    """The instance's migration in flight, else its latest one."""
    row = session.execute(
        sa.select(Migration).where(Migration.instance_uuid == instance_uuid)
        .order_by(Migration.in_flight_instance_uuid.is_(None),
                  Migration.created_at.desc(), Migration.id.desc())
        .limit(1)).scalar_one_or_none()
    return None if row is None else _describe(session, row)


def stalled():
    """Criteria of a ``moving`` migration whose lease lapsed.

    Nothing reaps it: the guest may run on either host, so only an
    operator who knows where it runs may finish it (``vfpool-manage
    migration complete`` or ``abort``).
    """
    return sa.and_(Migration.state == states.MOVING,
                   Migration.lease_expires_at < leases.now())


@db_api.context_manager.reader
def list_migrations(context, state: str | None = None,
                    host: str | None = None,
                    only_stalled: bool = False) -> list[dict]:
    """Migrations oldest first, each with a ``stalled`` flag."""
    session = context.session
    is_stalled = stalled().label('stalled')
    query = sa.select(Migration, is_stalled).order_by(Migration.created_at,
                                                      Migration.id)
    if state is not None:
        query = query.where(Migration.state == state)
    if only_stalled:
        query = query.where(stalled())
    if host is not None:
        host_id = host_obj.get_by_name(session, host).id
        query = query.where(sa.or_(Migration.source_host_id == host_id,
                                   Migration.dest_host_id == host_id))
    return [_describe(session, row, stalled=bool(flag))
            for row, flag in session.execute(query).all()]


@db_api.context_manager.reader
def get(context, migration_uuid: str) -> dict:
    session = context.session
    row = get_row(session, migration_uuid)
    flag = session.execute(sa.select(stalled()).select_from(Migration)
                           .where(Migration.id == row.id)).scalar()
    return _describe(session, row, stalled=bool(flag))
