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

"""Entry points for oslo-config-generator."""

import collections

from vfpool.conf import agent
from vfpool.conf import default
from vfpool.conf import libvirt
from vfpool.conf import migration
from vfpool.conf import notifications
from vfpool.conf import pool
from vfpool.conf import upgrade_levels

_MODULES = (default, pool, agent, libvirt, migration, notifications,
            upgrade_levels)


def list_opts():
    grouped: collections.OrderedDict = collections.OrderedDict()
    for module in _MODULES:
        for group, opts in module.list_opts().items():
            grouped.setdefault(group, []).extend(opts)
    return list(grouped.items())
