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

"""vfpool's configuration options.

Nothing here touches a global ``cfg.CONF``: callers build a ``ConfigOpts``
and pass it to :func:`register_opts` so tests and several services in one
process each keep their own configuration.
"""

from oslo_config import cfg

from vfpool.conf import agent
from vfpool.conf import database
from vfpool.conf import default
from vfpool.conf import libvirt
from vfpool.conf import migration
from vfpool.conf import notifications
from vfpool.conf import pool
from vfpool.conf import upgrade_levels

_MODULES = (default, database, pool, agent, libvirt, migration,
            notifications, upgrade_levels)


def register_opts(conf: cfg.ConfigOpts) -> cfg.ConfigOpts:
    for module in _MODULES:
        module.register_opts(conf)
    return conf


def new_conf() -> cfg.ConfigOpts:
    """A fresh ``ConfigOpts`` with every vfpool option registered."""
    return register_opts(cfg.ConfigOpts())
