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

"""RPC 1.2: one migration in flight per instance; VFs looked up by MAC.

``migrations.in_flight_instance_uuid`` holds the instance's uuid while a
migration is in flight (``in_progress`` or ``moving``) and NULL otherwise;
its unique index keeps an instance to one migration in flight.  Existing
``in_progress`` migrations get it, the newest one per instance if there
were several (the race of issue 9 item 12 could make them).

``vfs.mac`` gets an index: the server checks a MAC it assigns against the
VFs it holds.

Revision ID: c2b1d0e70002
Revises: b1a0c0de0001
Create Date: 2026-12-02
"""

from alembic import op
import sqlalchemy as sa

revision = 'c2b1d0e70002'
down_revision = 'b1a0c0de0001'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('migrations', sa.Column('in_flight_instance_uuid',
                                          sa.String(36), nullable=True))
    migrations = sa.table('migrations', sa.column('id', sa.Integer),
                          sa.column('instance_uuid', sa.String),
                          sa.column('state', sa.String),
                          sa.column('in_flight_instance_uuid', sa.String))
    conn = op.get_bind()
    newest = {}
    for row in conn.execute(
            sa.select(migrations.c.id, migrations.c.instance_uuid)
            .where(migrations.c.state == 'in_progress')
            .order_by(migrations.c.id)):
        newest[row.instance_uuid] = row.id
    for instance_uuid, migration_id in newest.items():
        conn.execute(sa.update(migrations)
                     .where(migrations.c.id == migration_id)
                     .values(in_flight_instance_uuid=instance_uuid))
    op.create_index('uniq_migrations0in_flight_instance_uuid', 'migrations',
                    ['in_flight_instance_uuid'], unique=True)
    op.create_index('vfs_mac_idx', 'vfs', ['mac'])
