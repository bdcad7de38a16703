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

"""Builders of inventory snapshots as an agent would report them."""

import uuid

from vfpool import pci

#: VFs at slots 0x10-0x1f, functions 0-7.
MAX_VFS_PER_PF = 16 * 8


def pf(bus: int, vfs: int, physical_network: str = 'physnet1',
       numa_node: int | None = 0, vendor_id: str = '8086',
       pf_product: str = '10c9', vf_product: str = '10ca',
       domain: int = 0) -> dict:
    """One PF at ``dddd:bus:00.0`` with ``vfs`` VFs at ``bus:10.x``…"""
    if not 0 <= vfs <= MAX_VFS_PER_PF:
        # Slots 0x10-0x1f, eight functions each: a slot past 0x1f is no
        # PCI address (validation refuses it).
        raise ValueError('%d VFs do not fit slots 10-1f' % vfs)
    return {
        'address': pci.format_address(domain, bus, 0, 0),
        'netdev': 'ens%d' % bus,
        'vendor_id': vendor_id,
        'product_id': pf_product,
        'numa_node': numa_node,
        'physical_network': physical_network,
        'vfs': [{
            'address': pci.format_address(domain, bus, 0x10 + i // 8,
                                          i % 8),
            'vf_index': i,
            'vendor_id': vendor_id,
            'product_id': vf_product,
            'numa_node': None,
            'netdev': None,
        } for i in range(vfs)],
    }


def new_uuid() -> str:
    return str(uuid.uuid4())


def request(physical_network: str = 'physnet1', **kwargs) -> dict:
    return dict(physical_network=physical_network, **kwargs)


def mac(n: int) -> str:
    return 'fa:16:3e:%02x:%02x:%02x' % ((n >> 16) & 0xff, (n >> 8) & 0xff,
                                        n & 0xff)
