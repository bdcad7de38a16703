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

"""The reaper every server runs: expired claims go back to the pool.

It also deletes the tombstones of released allocation requests, and the
fences of migrations over, once ``[pool] released_request_retention`` has
passed.
"""

from oslo_log import log as logging

from vfpool import context as vfpool_context
from vfpool import notifications
from vfpool.objects import allocation as allocation_obj
from vfpool.objects import migration as migration_obj

LOG = logging.getLogger(__name__)


class LeaseReaper:
    def __init__(self, notifier: notifications.Notifier,
                 retention_seconds: int | None = None):
        self.notifier = notifier
        self.retention_seconds = retention_seconds

    def __call__(self) -> int:
        """One pass; never raises, so the periodic timer keeps running."""
        context = vfpool_context.get_admin_context()
        try:
            reaped = migration_obj.reap_expired(context)
        except Exception:
            LOG.exception('Lease reaper pass failed; next pass retries')
            return 0
        for migration_uuid, freed in reaped:
            self.notifier.emit(context, notifications.MIGRATION_EXPIRE,
                               migration_uuid=migration_uuid, freed=freed)
        if self.retention_seconds is not None:
            try:
                allocation_obj.reap_released(context,
                                             self.retention_seconds)
                migration_obj.reap_fences(context, self.retention_seconds)
            except Exception:
                LOG.exception('Reaping released requests failed; next '
                              'pass retries')
        return len(reaped)
