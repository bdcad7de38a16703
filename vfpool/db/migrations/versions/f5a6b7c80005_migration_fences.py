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

"""RPC 1.6: the destinations each migration left for good.

``migration_fences`` (migration uuid, host): a prepare of that uuid for
that host is refused, so a late prepare never takes a migration back to
a destination it left or whose compute gave up
(doc/source/contributor/state-machine.rst, "The fence").

Revision ID: f5a6b7c80005
Revises: e4f5a6b70004
Create Date: 2026-12-05
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

revision = 'f5a6b7c80005'
down_revision = 'e4f5a6b70004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'migration_fences',
        sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
        sa.Column('migration_uuid', sa.String(36), nullable=False),
        sa.Column('host', sa.String(255), nullable=False),
        sa.Column('created_at', sa.DateTime().with_variant(
            mysql.DATETIME(fsp=6), 'mysql'), nullable=False),
        sa.UniqueConstraint('migration_uuid', 'host',
                            name='uniq_migration_fences0uuid0host'),
        mysql_engine='InnoDB', mysql_charset='utf8mb4')
    op.create_index('migration_fences_created_at_idx', 'migration_fences',
                    ['created_at'])
