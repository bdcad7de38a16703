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
