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

"""Typed records parsed from libvirt node-device XML.

Parsing is kept apart from libvirt calls so that real ``virsh
nodedev-dumpxml`` captures can be tested without a host.  Anything the
agent cannot trust raises :class:`NodeDeviceParseError`, which lets the
caller skip one device instead of failing the whole inventory.
"""

import dataclasses
from xml.etree import ElementTree

from vfpool import pci


class NodeDeviceParseError(ValueError):
    """The XML does not describe a PCI or net node device we can use."""


@dataclasses.dataclass(frozen=True)
class PciDevice:
    """One PCI function: a PF, a VF or any other PCI device.

    ``vf_addresses`` keeps the order of libvirt's ``virt_functions`` list,
    which libvirt builds from sysfs ``virtfn0``, ``virtfn1``...; the
    position in it is therefore the kernel's VF number.
    """

    name: str
    parent: str | None
    address: str
    vendor_id: str
    product_id: str
    vendor_name: str | None = None
    product_name: str | None = None
    numa_node: int | None = None
    driver: str | None = None
    # True when a virt_functions capability is present (SR-IOV capable).
    sriov_capable: bool = False
    max_vfs: int | None = None
    vf_addresses: tuple[str, ...] = ()
    pf_address: str | None = None

    @property
    def is_vf(self) -> bool:
        return self.pf_address is not None

    @property
    def is_pf(self) -> bool:
        # Some VFs carry an empty virt_functions element next to
        # phys_function (seen in the I350 dumps): they are still VFs.
        return self.sriov_capable and not self.is_vf


@dataclasses.dataclass(frozen=True)
class NetDevice:
    """A network interface; ``parent`` names the PCI node device."""

    name: str
    parent: str | None
    interface: str
    mac: str | None = None


format_address = pci.format_address


def _to_int(text: str | None, what: str, hex_only: bool = False) -> int:
    """:func:`vfpool.pci.number`, failing as a parse error of the device."""
    try:
        return pci.number(text, what, hex_only)
    except pci.InvalidAddress as exc:
        raise NodeDeviceParseError(str(exc)) from None


def parse_address_element(elem: ElementTree.Element) -> str:
    """:func:`vfpool.pci.parse_element`, failing as a parse error."""
    try:
        return pci.parse_element(elem)
    except pci.InvalidAddress as exc:
        raise NodeDeviceParseError(str(exc)) from None


def _text(elem: ElementTree.Element, path: str) -> str | None:
    """Whitespace-collapsed text, None when absent or empty.

    Product names in real dumps may span a newline and indentation.
    """
    child = elem.find(path)
    if child is None or child.text is None:
        return None
    value = ' '.join(child.text.split())
    return value or None


def _pci_id(cap: ElementTree.Element, tag: str) -> tuple[str, str | None]:
    elem = cap.find(tag)
    if elem is None or elem.get('id') is None:
        raise NodeDeviceParseError('no %s id' % tag)
    value = _to_int(elem.get('id'), '%s id' % tag, hex_only=True)
    if not 0 <= value <= 0xffff:
        raise NodeDeviceParseError(
            '%s id %r out of range' % (tag, elem.get('id')))
    return '%04x' % value, _text(cap, tag)


def _numa_node(cap: ElementTree.Element) -> int | None:
    elem = cap.find('numa')
    raw = elem.get('node') if elem is not None else None
    if raw is None:
        return None
    raw = raw.strip()
    if raw == '-1':
        # What sysfs reports on hosts without NUMA information.
        return None
    return _to_int(raw, 'NUMA node')


def _sub_capabilities(cap: ElementTree.Element, kind: str) -> list:
    return [c for c in cap.findall('capability') if c.get('type') == kind]


def _parse_pci(root: ElementTree.Element, name: str, parent: str | None,
               cap: ElementTree.Element) -> PciDevice:
    fields = {}
    for key in pci.FIELDS:
        elem = cap.find(key)
        if elem is None:
            raise NodeDeviceParseError('no <%s> in the pci capability' % key)
        fields[key] = _to_int(elem.text, 'PCI %s' % key)
    try:
        address = pci.format_address(**fields)
    except pci.InvalidAddress as exc:
        raise NodeDeviceParseError(str(exc)) from None
    vendor_id, vendor_name = _pci_id(cap, 'vendor')
    product_id, product_name = _pci_id(cap, 'product')

    vf_caps = _sub_capabilities(cap, 'virt_functions')
    vf_addresses: list[str] = []
    max_vfs = None
    for vf_cap in vf_caps:
        if vf_cap.get('maxCount') is not None:
            max_vfs = _to_int(vf_cap.get('maxCount'), 'maxCount')
        vf_addresses.extend(parse_address_element(a)
                            for a in vf_cap.findall('address'))
    if len(set(vf_addresses)) != len(vf_addresses):
        raise NodeDeviceParseError('virt_functions lists a VF twice')

    pf_address = None
    pf_caps = _sub_capabilities(cap, 'phys_function')
    if len(pf_caps) > 1:
        raise NodeDeviceParseError('more than one phys_function capability')
    if pf_caps:
        addresses = pf_caps[0].findall('address')
        if len(addresses) != 1:
            raise NodeDeviceParseError(
                'phys_function holds %d addresses, not 1' % len(addresses))
        pf_address = parse_address_element(addresses[0])
        if vf_addresses:
            raise NodeDeviceParseError(
                'device is both a VF (phys_function) and a PF with VFs')

    return PciDevice(
        name=name, parent=parent, address=address,
        vendor_id=vendor_id, product_id=product_id,
        vendor_name=vendor_name, product_name=product_name,
        numa_node=_numa_node(cap), driver=_text(root, 'driver/name'),
        sriov_capable=bool(vf_caps), max_vfs=max_vfs,
        vf_addresses=tuple(vf_addresses), pf_address=pf_address)


def _parse_net(name: str, parent: str | None,
               cap: ElementTree.Element) -> NetDevice:
    interface = _text(cap, 'interface')
    if interface is None:
        raise NodeDeviceParseError('net capability without <interface>')
    mac = _text(cap, 'address')
    return NetDevice(name=name, parent=parent, interface=interface,
                     mac=mac.lower() if mac else None)


def parse_node_device(xml: str) -> PciDevice | NetDevice:
    """Parse a node device's XMLDesc into a PCI or net record.

    Devices of other kinds (vdpa, usb, scsi...) raise
    NodeDeviceParseError too: the agent only ever asks for PCI and net.
    """
    try:
        root = ElementTree.fromstring(xml)
    except (ElementTree.ParseError, TypeError, ValueError) as exc:
        raise NodeDeviceParseError('not well-formed XML: %s' % exc) from None
    if root.tag != 'device':
        raise NodeDeviceParseError(
            'root element is <%s>, not <device>' % root.tag)
    name = _text(root, 'name')
    if name is None:
        raise NodeDeviceParseError('device without <name>')
    parent = _text(root, 'parent')
    caps = root.findall('capability')
    kinds = [c.get('type') for c in caps]
    if kinds == ['pci']:
        return _parse_pci(root, name, parent, caps[0])
    if kinds == ['net']:
        return _parse_net(name, parent, caps[0])
    raise NodeDeviceParseError(
        'device %s has capabilities %s, expected one pci or net'
        % (name, kinds))
