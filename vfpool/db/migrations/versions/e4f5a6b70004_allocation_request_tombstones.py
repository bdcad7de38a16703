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

"""Released allocation requests stay as tombstones.

``allocation_requests.released_at``: ``release`` marks the instance's
request ids instead of deleting them, so that a late duplicate
``allocate`` of a released request id is refused (``RequestReleased``)
rather than claiming VFs for an instance that is gone.  The reaper
deletes tombstones older than ``[pool] released_request_retention``.

Revision ID: e4f5a6b70004
Revises: d3c2e1f00003
Create Date: 2026-12-01
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

revision = 'e4f5a6b70004'
down_revision = 'd3c2e1f00003'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('allocation_requests', sa.Column(
        'released_at',
        sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql'),
        nullable=True))
    op.create_index('allocation_requests_released_at_idx',
                    'allocation_requests', ['released_at'])
