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

"""Keeping vfpool's VFs and Nova's PCI devices apart on one host.

Nova's PCI tracker hands out every device its ``[pci] device_spec``
matches, vfpool every VF its ``[agent] device_spec`` matches.  A VF both
manage could be given to two guests; a PF Nova manages could be passed
through whole, taking the VFs vfpool hands out with it.  The driver
refuses to start on either overlap.

This module does not import Nova: the driver hands it the addresses Nova
would manage.
"""

import typing

from oslo_config import cfg

from vfpool.agent import device_spec
from vfpool.agent import discovery


def managed_vfs(conn, conf: cfg.ConfigOpts) -> dict[str, str]:
    """The VFs vfpool manages on this host: VF address -> PF address.

    Evaluates ``[agent] device_spec`` of ``conf`` on the node devices of
    ``conn``, as vfpool-agent does for its reports.
    """
    specs = device_spec.parse_specs(conf.agent.device_spec)
    if not specs:
        return {}
    return {vf['address']: pf['address']
            for pf in discovery.discover(conn, specs)
            for vf in pf['vfs']}


def conflicts(vfpool_vfs: dict[str, str],
              nova_addresses: typing.Iterable[str]) -> list[str]:
    """One sentence per device that both vfpool and Nova would manage."""
    nova = set(nova_addresses)
    problems = ['VF %s is managed by vfpool ([agent] device_spec) and by '
                'Nova ([pci] device_spec)' % vf
                for vf in sorted(vfpool_vfs) if vf in nova]
    shared_pfs: dict[str, list[str]] = {}
    for vf, pf in sorted(vfpool_vfs.items()):
        if pf in nova:
            shared_pfs.setdefault(pf, []).append(vf)
    problems += ['PF %s is in Nova\'s [pci] device_spec but vfpool manages '
                 'its VF(s) %s: passing the PF through would take them'
                 % (pf, ', '.join(vfs)) for pf, vfs in sorted(
                     shared_pfs.items())]
    return problems
