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

"""RPC 1.4: the digest of each host's last report applied in full.

``hosts.report_digest`` lets the server recognise an unchanged report
with one UPDATE; NULL (every existing host) means the next report is a
full one.

Revision ID: d3c2e1f00003
Revises: c2b1d0e70002
Create Date: 2026-12-01
"""

from alembic import op
import sqlalchemy as sa

revision = 'd3c2e1f00003'
down_revision = 'c2b1d0e70002'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('hosts', sa.Column('report_digest', sa.String(64),
                                     nullable=True))
