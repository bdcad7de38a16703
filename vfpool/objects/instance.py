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

"""What vfpool holds for one instance (read only)."""

from vfpool.db import api as db_api
from vfpool.objects import migration_view
from vfpool.objects import vf as vf_obj


@db_api.context_manager.reader
def get_instance(context, instance_uuid: str) -> dict:
    session = context.session
    return {
        'allocations': vf_obj.allocations(session, instance_uuid,
                                          extra=True),
        'migration': migration_view.current(session, instance_uuid),
    }
