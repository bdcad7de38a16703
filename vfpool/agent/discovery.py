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

"""Discovery of SR-IOV PFs and VFs through libvirt's node-device API.

:func:`discover` turns one ``listAllDevices`` snapshot into the ``pfs``
argument of the ``report_inventory`` RPC.  Decisions worth knowing:

* ``vf_index`` is the VF's position in its PF's ``virt_functions`` list
  as libvirt gives it.  libvirt fills that list by reading sysfs
  ``virtfn0``, ``virtfn1``... in turn, so the index is the kernel's VF
  number (the ``N`` of ``ip link set <pf> vf N``), not a rank by address.
  A listed VF that is skipped keeps the others' indexes unchanged.
* The PF's ``virt_functions`` list decides which VFs belong to it; the
  VF's own ``phys_function`` must agree, otherwise the VF is skipped.
* ``physical_network`` is per PF in the RPC contract, while specs match
  VFs.  All VFs of a PF share its uplink, so specs giving them different
  networks are a configuration error.  The PF then takes the network of
  the earliest spec (in ``[agent] device_spec`` order) that wins one of
  its VFs, and VFs whose winning spec names another network are left out
  with a warning: a VF is never reported on a network that its own spec
  did not give it.  Reordering the specs settles the conflict.
* When several net devices have the same PCI parent (switchdev
  representors next to the uplink), the alphabetically first interface
  is reported, and all of them are tried against a spec's ``devname``.
"""

import collections
import logging as py_logging
import typing

from oslo_log import log as logging

from vfpool.agent import device_spec
from vfpool.agent import nodedev
from vfpool.libvirt_import import libvirt

LOG = logging.getLogger(__name__)

LIST_FLAGS = (libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV |
              libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_NET)

Logger = py_logging.Logger | py_logging.LoggerAdapter


def _read_devices(conn, log: Logger) -> tuple[list, list]:
    """Parse every PCI and net node device, skipping unusable ones."""
    pcis, nets = [], []
    devices = sorted(conn.listAllDevices(LIST_FLAGS), key=lambda d: d.name())
    for dev in devices:
        name = dev.name()
        try:
            record = nodedev.parse_node_device(dev.XMLDesc(0))
        except libvirt.libvirtError as exc:
            # The device may have gone between listing and describing.
            log.warning('Skipping node device %s: libvirt cannot describe '
                        'it: %s', name, exc)
            continue
        except nodedev.NodeDeviceParseError as exc:
            log.warning('Skipping node device %s: %s', name, exc)
            continue
        if isinstance(record, nodedev.PciDevice):
            pcis.append(record)
        else:
            nets.append(record)
    return pcis, nets


def _index_by_address(pcis: list, log: Logger) -> dict:
    by_address: dict[str, typing.Any] = {}
    for pci in pcis:
        other = by_address.setdefault(pci.address, pci)
        if other is not pci:
            log.warning('Skipping node device %s: node device %s already '
                        'has PCI address %s', pci.name, other.name,
                        pci.address)
    return by_address


def _netdevs_by_parent(nets: list) -> dict:
    netdevs = collections.defaultdict(list)
    for net in nets:
        if net.parent:
            netdevs[net.parent].append(net.interface)
    return {parent: tuple(sorted(names))
            for parent, names in netdevs.items()}


def _function(pci: nodedev.PciDevice,
              netdevs: dict) -> device_spec.PciFunction:
    return device_spec.PciFunction(
        address=pci.address, vendor_id=pci.vendor_id,
        product_id=pci.product_id, netdevs=netdevs.get(pci.name, ()))


class _Selected(typing.NamedTuple):
    vf_index: int
    vf: nodedev.PciDevice
    netdevs: tuple[str, ...]
    spec_index: int
    spec: device_spec.DeviceSpec


def _report_pf(pf: nodedev.PciDevice, by_address: dict, netdevs: dict,
               specs: list, log: Logger) -> dict | None:
    """The RPC entry of one PF, None when no spec selects any of its VFs."""
    pf_function = _function(pf, netdevs)
    missing = []
    selected = []
    for vf_index, vf_address in enumerate(pf.vf_addresses):
        vf = by_address.get(vf_address)
        if vf is None:
            missing.append(vf_address)
            continue
        if vf.pf_address != pf.address:
            log.warning('Skipping VF %s (%s): PF %s lists it but its '
                        'phys_function is %s', vf.address, vf.name,
                        pf.address, vf.pf_address)
            continue
        vf_function = _function(vf, netdevs)
        found = device_spec.first_match(specs, vf_function, pf_function)
        if found is not None:
            selected.append(_Selected(vf_index, vf, vf_function.netdevs,
                                      *found))
    if missing:
        log.warning('Skipping VFs %s of PF %s (%s): no usable node '
                    'device at these addresses', ', '.join(missing),
                    pf.address, pf.name)
    if not selected:
        return None

    first = min(selected, key=lambda s: s.spec_index)
    physnet = first.spec.physical_network
    conflicting = [s.vf.address for s in selected
                   if s.spec.physical_network != physnet]
    if conflicting:
        log.warning('Device specs put VFs of PF %s on several physical '
                    'networks; reporting the PF on %r from spec #%d %s and '
                    'leaving out VFs %s', pf.address, physnet,
                    first.spec_index, first.spec.source,
                    ', '.join(conflicting))

    vfs = [{'address': s.vf.address,
            'vf_index': s.vf_index,
            'vendor_id': s.vf.vendor_id,
            'product_id': s.vf.product_id,
            'numa_node': (pf.numa_node if s.vf.numa_node is None
                          else s.vf.numa_node),
            'netdev': s.netdevs[0] if s.netdevs else None}
           for s in selected if s.spec.physical_network == physnet]
    return {'address': pf.address,
            'netdev': pf_function.netdevs[0] if pf_function.netdevs else None,
            'vendor_id': pf.vendor_id,
            'product_id': pf.product_id,
            'numa_node': pf.numa_node,
            'physical_network': physnet,
            'vfs': vfs}


def _log_orphans(vfs: list, by_address: dict, log: Logger) -> None:
    """One warning per absent or silent PF, not one per VF."""
    orphans = collections.defaultdict(list)
    for vf in vfs:
        orphans[vf.pf_address].append(vf.address)
    for pf_address, addresses in sorted(orphans.items()):
        pf = by_address.get(pf_address)
        why = ('libvirt lists no usable PF there' if pf is None else
               'PF %s does not list them in virt_functions' % pf.name)
        log.warning('Skipping VFs %s: their PF is %s but %s',
                    ', '.join(sorted(addresses)), pf_address, why)


def discover(conn: libvirt.virConnect,
             specs: list[device_spec.DeviceSpec],
             log: Logger = LOG) -> list[dict]:
    """List the host's PFs with the VFs that the device specs select.

    The result is the ``pfs`` argument of ``report_inventory``: PFs with
    at least one selected VF, sorted by address, their VFs by vf_index.
    Errors of ``listAllDevices`` itself propagate (libvirt unreachable);
    one unusable device only costs a warning.
    """
    pcis, nets = _read_devices(conn, log)
    by_address = _index_by_address(pcis, log)
    netdevs = _netdevs_by_parent(nets)
    # Only the devices that won their address take part from here on.
    pcis = sorted(by_address.values(), key=lambda p: p.address)

    claimed = set()
    pfs = []
    for pf in pcis:
        if not pf.is_pf:
            continue
        claimed.update(pf.vf_addresses)
        entry = _report_pf(pf, by_address, netdevs, specs, log)
        if entry is not None:
            pfs.append(entry)

    _log_orphans([p for p in pcis if p.is_vf and p.address not in claimed],
                 by_address, log)
    return pfs
