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

"""SQLAlchemy models of the inventory; alembic migrations own the schema."""

import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy import orm

from vfpool import states

# MySQL's DATETIME keeps whole seconds unless told otherwise; leases and
# reports want sub-second precision on every backend.
DateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql')

# State names live in vfpool.states (no SQLAlchemy needed to read them);
# these aliases keep ``models.AVAILABLE`` and the like working.
AVAILABLE = states.AVAILABLE
CLAIMED = states.CLAIMED
ALLOCATED = states.ALLOCATED
RESERVED = states.RESERVED
MISSING = states.MISSING
VF_STATES = states.VF_STATES
IN_PROGRESS = states.IN_PROGRESS
MOVING = states.MOVING
COMPLETED = states.COMPLETED
ABORTED = states.ABORTED
EXPIRED = states.EXPIRED
MIGRATION_STATES = states.MIGRATION_STATES
IN_FLIGHT = states.IN_FLIGHT
ATTACHED = states.ATTACHED
DETACHED = states.DETACHED
ATTACH_FAILED = states.ATTACH_FAILED
ATTACH_STATES = states.ATTACH_STATES


class Base(orm.DeclarativeBase):
    pass


class TimestampMixin:
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(
        DateTime, nullable=False)
    updated_at: orm.Mapped[datetime.datetime | None] = orm.mapped_column(
        DateTime, nullable=True)


class Host(TimestampMixin, Base):
    __tablename__ = 'hosts'
    __table_args__ = (
        sa.UniqueConstraint('name', name='uniq_hosts0name'),
        {'mysql_engine': 'InnoDB', 'mysql_charset': 'utf8mb4'},
    )

    id: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, primary_key=True, autoincrement=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(255), nullable=False)
    disabled: orm.Mapped[bool] = orm.mapped_column(
        sa.Boolean, nullable=False, default=False)
    disabled_reason: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(255), nullable=True)
    last_report_at: orm.Mapped[datetime.datetime | None] = orm.mapped_column(
        DateTime, nullable=True)
    #: utils.snapshot_digest of the last report applied in full; NULL
    #: when unknown, which makes the next report a full one.
    report_digest: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(64), nullable=True)
    #: Swapped by every full report, from the value it read, with its
    #: rows and digest: overlapping reports cannot mix (issue 18 item 9).
    report_generation: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, nullable=False, default=0, server_default='0')


class PhysicalFunction(TimestampMixin, Base):
    __tablename__ = 'pfs'
    __table_args__ = (
        sa.UniqueConstraint('host_id', 'address',
                            name='uniq_pfs0host_id0address'),
        {'mysql_engine': 'InnoDB', 'mysql_charset': 'utf8mb4'},
    )

    id: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, primary_key=True, autoincrement=True)
    host_id: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, sa.ForeignKey('hosts.id'), nullable=False)
    address: orm.Mapped[str] = orm.mapped_column(sa.String(12), nullable=False)
    netdev: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(255), nullable=True)
    vendor_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(4), nullable=False)
    product_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(4), nullable=False)
    numa_node: orm.Mapped[int | None] = orm.mapped_column(
        sa.Integer, nullable=True)
    physical_network: orm.Mapped[str] = orm.mapped_column(
        sa.String(255), nullable=False)


class VirtualFunction(TimestampMixin, Base):
    """One VF and, denormalised, everything a claim filters on.

    ``instance_uuid`` is the owner in every owned state; ``migration_uuid``
    marks a destination claim (state ``claimed``) or a source allocation
    that a migration in flight is moving.  ``prior_state`` remembers the
    state of a VF that went ``missing``, so it comes back as it left.
    ``generation`` grows with every change, for compare-and-swap.
    """

    __tablename__ = 'vfs'
    __table_args__ = (
        sa.UniqueConstraint('host_id', 'address',
                            name='uniq_vfs0host_id0address'),
        sa.Index('vfs_host_id_physical_network_state_idx',
                 'host_id', 'physical_network', 'state'),
        sa.Index('vfs_instance_uuid_idx', 'instance_uuid'),
        sa.Index('vfs_migration_uuid_idx', 'migration_uuid'),
        sa.Index('vfs_request_id_idx', 'request_id'),
        sa.Index('vfs_pf_id_idx', 'pf_id'),
        sa.Index('vfs_mac_idx', 'mac'),
        {'mysql_engine': 'InnoDB', 'mysql_charset': 'utf8mb4'},
    )

    id: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, primary_key=True, autoincrement=True)
    host_id: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, sa.ForeignKey('hosts.id'), nullable=False)
    pf_id: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, sa.ForeignKey('pfs.id'), nullable=False)
    address: orm.Mapped[str] = orm.mapped_column(sa.String(12), nullable=False)
    vf_index: orm.Mapped[int] = orm.mapped_column(sa.Integer, nullable=False)
    vendor_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(4), nullable=False)
    product_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(4), nullable=False)
    numa_node: orm.Mapped[int | None] = orm.mapped_column(
        sa.Integer, nullable=True)
    netdev: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(255), nullable=True)
    physical_network: orm.Mapped[str] = orm.mapped_column(
        sa.String(255), nullable=False)
    state: orm.Mapped[str] = orm.mapped_column(
        sa.String(16), nullable=False, default=AVAILABLE)
    prior_state: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(16), nullable=True)
    generation: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, nullable=False, default=0)
    instance_uuid: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(36), nullable=True)
    request_id: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(255), nullable=True)
    migration_uuid: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(36), nullable=True)
    mac: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(17), nullable=True)
    vlan: orm.Mapped[int | None] = orm.mapped_column(sa.Integer, nullable=True)
    port_id: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(255), nullable=True)
    attach_state: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(16), nullable=True)
    reserved_reason: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(255), nullable=True)


class AllocationRequest(Base):
    """Remembers an ``allocate`` request id, to answer retries the same.

    ``released_at`` is set by ``release`` instead of deleting the row: the
    request id then stays taken (a tombstone), so a late duplicate of the
    ``allocate`` claims nothing for an instance that is gone.  The reaper
    deletes tombstones after ``[pool] released_request_retention``.
    """

    __tablename__ = 'allocation_requests'
    __table_args__ = (
        sa.UniqueConstraint('request_id',
                            name='uniq_allocation_requests0request_id'),
        sa.Index('allocation_requests_instance_uuid_idx', 'instance_uuid'),
        sa.Index('allocation_requests_released_at_idx', 'released_at'),
        {'mysql_engine': 'InnoDB', 'mysql_charset': 'utf8mb4'},
    )

    id: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, primary_key=True, autoincrement=True)
    request_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(255), nullable=False)
    instance_uuid: orm.Mapped[str] = orm.mapped_column(
        sa.String(36), nullable=False)
    host_id: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, sa.ForeignKey('hosts.id'), nullable=False)
    digest: orm.Mapped[str] = orm.mapped_column(sa.String(64), nullable=False)
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(
        DateTime, nullable=False)
    released_at: orm.Mapped[datetime.datetime | None] = orm.mapped_column(
        DateTime, nullable=True)


class Migration(TimestampMixin, Base):
    """A live migration of one instance's VFs between two hosts.

    ``in_flight_instance_uuid`` is the instance's uuid while the state is
    in :data:`IN_FLIGHT` and NULL otherwise; its unique index is what
    keeps an instance to one migration in flight, on every backend (NULLs
    are distinct), whatever a concurrent transaction's snapshot shows.
    """

    __tablename__ = 'migrations'
    __table_args__ = (
        sa.UniqueConstraint('uuid', name='uniq_migrations0uuid'),
        sa.Index('migrations_instance_uuid_idx', 'instance_uuid'),
        sa.Index('migrations_state_lease_idx', 'state', 'lease_expires_at'),
        sa.Index('uniq_migrations0in_flight_instance_uuid',
                 'in_flight_instance_uuid', unique=True),
        {'mysql_engine': 'InnoDB', 'mysql_charset': 'utf8mb4'},
    )

    id: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, primary_key=True, autoincrement=True)
    uuid: orm.Mapped[str] = orm.mapped_column(sa.String(36), nullable=False)
    instance_uuid: orm.Mapped[str] = orm.mapped_column(
        sa.String(36), nullable=False)
    source_host_id: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, sa.ForeignKey('hosts.id'), nullable=False)
    dest_host_id: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, sa.ForeignKey('hosts.id'), nullable=False)
    state: orm.Mapped[str] = orm.mapped_column(
        sa.String(16), nullable=False, default=IN_PROGRESS)
    lease_expires_at: orm.Mapped[datetime.datetime] = orm.mapped_column(
        DateTime, nullable=False)
    in_flight_instance_uuid: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(36), nullable=True)


class MigrationFence(Base):
    """A destination that migration ``migration_uuid`` left for good.

    Written when a retarget moves the migration away from ``host`` and
    when ``host`` abandons its attempt (``abort_migration`` with
    ``dest_host``).  Keyed by the migration's uuid, not its row, so that
    an abandon may come before the prepare it fences, and outlive a row
    that is dropped.  A prepare of the uuid for ``host`` is refused
    (``MigrationFenced``): a migration never returns to a destination
    it left, so (uuid, destination) names one attempt for good.  The
    reaper deletes fences after ``[pool] released_request_retention``.
    """

    __tablename__ = 'migration_fences'
    __table_args__ = (
        sa.UniqueConstraint('migration_uuid', 'host',
                            name='uniq_migration_fences0uuid0host'),
        sa.Index('migration_fences_created_at_idx', 'created_at'),
        {'mysql_engine': 'InnoDB', 'mysql_charset': 'utf8mb4'},
    )

    id: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, primary_key=True, autoincrement=True)
    migration_uuid: orm.Mapped[str] = orm.mapped_column(
        sa.String(36), nullable=False)
    host: orm.Mapped[str] = orm.mapped_column(sa.String(255), nullable=False)
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(
        DateTime, nullable=False)


class MigrationVF(Base):
    """One source allocation of a migration and the VF claimed for it.

    The source allocation's MAC, VLAN and port are copied here so the
    answer to ``prepare_migration`` can be given again after the move.
    """

    __tablename__ = 'migration_vfs'
    __table_args__ = (
        sa.Index('migration_vfs_migration_id_idx', 'migration_id'),
        {'mysql_engine': 'InnoDB', 'mysql_charset': 'utf8mb4'},
    )

    id: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, primary_key=True, autoincrement=True)
    migration_id: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, sa.ForeignKey('migrations.id'), nullable=False)
    source_vf_id: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, sa.ForeignKey('vfs.id'), nullable=False)
    dest_vf_id: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, sa.ForeignKey('vfs.id'), nullable=False)
    mac: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(17), nullable=True)
    vlan: orm.Mapped[int | None] = orm.mapped_column(sa.Integer, nullable=True)
    port_id: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(255), nullable=True)
    request_id: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(255), nullable=True)
