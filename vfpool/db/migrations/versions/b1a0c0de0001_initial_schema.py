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

"""Initial schema: hosts, PFs, VFs, allocation requests, migrations.

Revision ID: b1a0c0de0001
Revises:
Create Date: 2026-11-25
"""

import typing

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

revision = 'b1a0c0de0001'
down_revision = None
branch_labels = None
depends_on = None

DateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql')
_TABLE_ARGS: dict[str, typing.Any] = {'mysql_engine': 'InnoDB',
                                      'mysql_charset': 'utf8mb4'}


def upgrade():
    op.create_table(
        'hosts',
        sa.Column('created_at', DateTime, nullable=False),
        sa.Column('updated_at', DateTime, nullable=True),
        sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
        sa.Column('name', sa.String(255), nullable=False),
        sa.Column('disabled', sa.Boolean, nullable=False),
        sa.Column('disabled_reason', sa.String(255), nullable=True),
        sa.Column('last_report_at', DateTime, nullable=True),
        sa.UniqueConstraint('name', name='uniq_hosts0name'),
        **_TABLE_ARGS)
    op.create_table(
        'pfs',
        sa.Column('created_at', DateTime, nullable=False),
        sa.Column('updated_at', DateTime, nullable=True),
        sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
        sa.Column('host_id', sa.Integer, sa.ForeignKey('hosts.id'),
                  nullable=False),
        sa.Column('address', sa.String(12), nullable=False),
        sa.Column('netdev', sa.String(255), nullable=True),
        sa.Column('vendor_id', sa.String(4), nullable=False),
        sa.Column('product_id', sa.String(4), nullable=False),
        sa.Column('numa_node', sa.Integer, nullable=True),
        sa.Column('physical_network', sa.String(255), nullable=False),
        sa.UniqueConstraint('host_id', 'address',
                            name='uniq_pfs0host_id0address'),
        **_TABLE_ARGS)
    op.create_table(
        'vfs',
        sa.Column('created_at', DateTime, nullable=False),
        sa.Column('updated_at', DateTime, nullable=True),
        sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
        sa.Column('host_id', sa.Integer, sa.ForeignKey('hosts.id'),
                  nullable=False),
        sa.Column('pf_id', sa.Integer, sa.ForeignKey('pfs.id'),
                  nullable=False),
        sa.Column('address', sa.String(12), nullable=False),
        sa.Column('vf_index', sa.Integer, nullable=False),
        sa.Column('vendor_id', sa.String(4), nullable=False),
        sa.Column('product_id', sa.String(4), nullable=False),
        sa.Column('numa_node', sa.Integer, nullable=True),
        sa.Column('netdev', sa.String(255), nullable=True),
        sa.Column('physical_network', sa.String(255), nullable=False),
        sa.Column('state', sa.String(16), nullable=False),
        sa.Column('prior_state', sa.String(16), nullable=True),
        sa.Column('generation', sa.Integer, nullable=False),
        sa.Column('instance_uuid', sa.String(36), nullable=True),
        sa.Column('request_id', sa.String(255), nullable=True),
        sa.Column('migration_uuid', sa.String(36), nullable=True),
        sa.Column('mac', sa.String(17), nullable=True),
        sa.Column('vlan', sa.Integer, nullable=True),
        sa.Column('port_id', sa.String(255), nullable=True),
        sa.Column('attach_state', sa.String(16), nullable=True),
        sa.Column('reserved_reason', sa.String(255), nullable=True),
        sa.UniqueConstraint('host_id', 'address',
                            name='uniq_vfs0host_id0address'),
        **_TABLE_ARGS)
    op.create_index('vfs_host_id_physical_network_state_idx', 'vfs',
                    ['host_id', 'physical_network', 'state'])
    op.create_index('vfs_instance_uuid_idx', 'vfs', ['instance_uuid'])
    op.create_index('vfs_migration_uuid_idx', 'vfs', ['migration_uuid'])
    op.create_index('vfs_request_id_idx', 'vfs', ['request_id'])
    op.create_index('vfs_pf_id_idx', 'vfs', ['pf_id'])
    op.create_table(
        'allocation_requests',
        sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
        sa.Column('request_id', sa.String(255), nullable=False),
        sa.Column('instance_uuid', sa.String(36), nullable=False),
        sa.Column('host_id', sa.Integer, sa.ForeignKey('hosts.id'),
                  nullable=False),
        sa.Column('digest', sa.String(64), nullable=False),
        sa.Column('created_at', DateTime, nullable=False),
        sa.UniqueConstraint('request_id',
                            name='uniq_allocation_requests0request_id'),
        **_TABLE_ARGS)
    op.create_index('allocation_requests_instance_uuid_idx',
                    'allocation_requests', ['instance_uuid'])
    op.create_table(
        'migrations',
        sa.Column('created_at', DateTime, nullable=False),
        sa.Column('updated_at', DateTime, nullable=True),
        sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
        sa.Column('uuid', sa.String(36), nullable=False),
        sa.Column('instance_uuid', sa.String(36), nullable=False),
        sa.Column('source_host_id', sa.Integer, sa.ForeignKey('hosts.id'),
                  nullable=False),
        sa.Column('dest_host_id', sa.Integer, sa.ForeignKey('hosts.id'),
                  nullable=False),
        sa.Column('state', sa.String(16), nullable=False),
        sa.Column('lease_expires_at', DateTime, nullable=False),
        sa.UniqueConstraint('uuid', name='uniq_migrations0uuid'),
        **_TABLE_ARGS)
    op.create_index('migrations_instance_uuid_idx', 'migrations',
                    ['instance_uuid'])
    op.create_index('migrations_state_lease_idx', 'migrations',
                    ['state', 'lease_expires_at'])
    op.create_table(
        'migration_vfs',
        sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
        sa.Column('migration_id', sa.Integer,
                  sa.ForeignKey('migrations.id'), nullable=False),
        sa.Column('source_vf_id', sa.Integer, sa.ForeignKey('vfs.id'),
                  nullable=False),
        sa.Column('dest_vf_id', sa.Integer, sa.ForeignKey('vfs.id'),
                  nullable=False),
        sa.Column('mac', sa.String(17), nullable=True),
        sa.Column('vlan', sa.Integer, nullable=True),
        sa.Column('port_id', sa.String(255), nullable=True),
        sa.Column('request_id', sa.String(255), nullable=True),
        **_TABLE_ARGS)
    op.create_index('migration_vfs_migration_id_idx', 'migration_vfs',
                    ['migration_id'])
