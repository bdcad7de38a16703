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

"""Full reports of a host are fenced by a generation.

``hosts.report_generation`` grows with every full report (and every
forgotten digest).  A report swaps it from the value it read, in the
transaction that writes its rows and its digest: of two overlapping
reports the second starts over, so a digest is only ever stored with the
rows it describes (MariaDB's REPEATABLE READ without snapshot isolation
let the second store its digest over rows it never saw).

Revision ID: a6b7c8d90006
Revises: f5a6b7c80005
Create Date: 2026-12-05
"""

from alembic import op
import sqlalchemy as sa

revision = 'a6b7c8d90006'
down_revision = 'f5a6b7c80005'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('hosts', sa.Column('report_generation', sa.Integer(),
                                     nullable=False, server_default='0'))
