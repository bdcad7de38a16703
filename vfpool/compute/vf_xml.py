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

"""Device XML for a VF, and the few facts we read back from domain XML.

The plugin hot-plugs a VF as ``<interface type='hostdev'>`` so that libvirt
programs the VF's MAC and VLAN on the PF before handing it to the guest.
Machines without VFIO (CI, the functional tests) cannot start such a
device, so :func:`emulated_interface_xml` builds a stand-in emulated NIC
with the same MAC and alias; both share the :class:`VFXMLBuilder` call
signature and the plugin takes either.

Every device we build carries a user alias (``ua-`` prefix): libvirt keeps
user aliases across migration and reports them in device events, which is
how a detach is matched to its DEVICE_REMOVED event.
"""

import dataclasses
import re
import typing
from xml.etree import ElementTree as ET

from vfpool import exception
from vfpool import pci
from vfpool import validation
# libvirt accepts user aliases made of "ua-" and [a-zA-Z0-9_-].
_ALIAS_RE = re.compile(r'^ua-[A-Za-z0-9_-]+$')
_ALIAS_UNSAFE = re.compile(r'[^A-Za-z0-9_-]')
EMULATED_MODELS = ('virtio', 'e1000e')


class VFXMLBuilder(typing.Protocol):
    """Builds the ``<interface>`` XML that hot-plugs one VF."""

    def __call__(self, address: str, mac: str, vlan: int | None = None,
                 alias: str | None = None,
                 teaming_persistent_alias: str | None = None) -> str:
        ...


def canonical_pci_address(address: str) -> str:
    """``dddd:bb:ss.f`` in lower case, or InvalidInput (validation's rule)."""
    return validation.pci_address('address', address)


def canonical_mac(mac: str) -> str:
    """``aa:bb:cc:dd:ee:ff`` in lower case, or InvalidInput."""
    return validation.mac_address('mac', mac)


def is_user_alias(alias: str) -> bool:
    """Whether libvirt takes ``alias`` as a user alias (``ua-...``)."""
    return _ALIAS_RE.match(alias) is not None


def user_alias(name: str) -> str:
    """``ua-<name>`` without the characters libvirt refuses in an alias."""
    return 'ua-' + _ALIAS_UNSAFE.sub('', name)


def _check_alias(alias: str | None, what: str = 'alias') -> None:
    if alias is not None and not is_user_alias(alias):
        raise exception.InvalidInput(
            reason='%s %r must match ua-[A-Za-z0-9_-]+ (a libvirt user '
                   'alias)' % (what, alias))


def _check_vlan(vlan: int | None) -> None:
    if vlan is not None:
        validation.vlan('vlan', vlan)


def _tostring(elem: ET.Element) -> str:
    return ET.tostring(elem, encoding='unicode')


def hostdev_interface_xml(address: str, mac: str, vlan: int | None = None,
                          alias: str | None = None,
                          teaming_persistent_alias: str | None = None) -> str:
    """``<interface type='hostdev' managed='yes'>`` for the VF at ``address``.

    ``teaming_persistent_alias`` names the domain's virtio interface that
    has ``<teaming type='persistent'/>``; the VF then joins it as the
    transient half of a QEMU failover pair, so the guest keeps its network
    over the virtio standby while the VF is away during a migration.
    """
    source_address = pci.parse(canonical_pci_address(address))
    mac = canonical_mac(mac)
    _check_vlan(vlan)
    _check_alias(alias)
    _check_alias(teaming_persistent_alias, 'teaming persistent alias')

    iface = ET.Element('interface', type='hostdev', managed='yes')
    source = ET.SubElement(iface, 'source')
    ET.SubElement(source, 'address',
                  dict(type='pci', **source_address.xml_attributes()))
    ET.SubElement(iface, 'mac', address=mac)
    if vlan is not None:
        ET.SubElement(ET.SubElement(iface, 'vlan'), 'tag', id=str(vlan))
    if teaming_persistent_alias is not None:
        ET.SubElement(iface, 'teaming', type='transient',
                      persistent=teaming_persistent_alias)
    if alias is not None:
        ET.SubElement(iface, 'alias', name=alias)
    return _tostring(iface)


def emulated_interface_xml(address: str, mac: str, vlan: int | None = None,
                           alias: str | None = None,
                           teaming_persistent_alias: str | None = None,
                           *, model: str = 'virtio',
                           bridge: str | None = None) -> str:
    """An emulated ``<interface type='user'>`` standing in for a VF.

    For hosts without VFIO.  It keeps the MAC and the alias, which is all
    the hot-plug flow depends on.  ``address`` is validated but unused (an
    emulated NIC has no host PCI source); ``vlan`` and
    ``teaming_persistent_alias`` are validated and dropped because libvirt
    refuses both on a user-mode interface (a transient teaming member must
    be ``type='hostdev'``).  Use ``functools.partial(emulated_interface_xml,
    model='e1000e')`` for the e1000e model.  With ``bridge`` the stand-in
    is ``<interface type='bridge'>``, a tap on that host bridge, so that
    traffic really flows through it (the guest network tests).
    """
    canonical_pci_address(address)
    mac = canonical_mac(mac)
    _check_vlan(vlan)
    _check_alias(alias)
    _check_alias(teaming_persistent_alias, 'teaming persistent alias')
    if model not in EMULATED_MODELS:
        raise exception.InvalidInput(
            reason='model %r is not one of %s' % (model,
                                                  ', '.join(EMULATED_MODELS)))

    if bridge is None:
        iface = ET.Element('interface', type='user')
    else:
        iface = ET.Element('interface', type='bridge')
        ET.SubElement(iface, 'source', bridge=bridge)
    ET.SubElement(iface, 'mac', address=mac)
    ET.SubElement(iface, 'model', type=model)
    if alias is not None:
        ET.SubElement(iface, 'alias', name=alias)
    return _tostring(iface)


# --- reading domain XML ------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class InterfaceInfo:
    """What the plugin needs to know about one ``<interface>``."""

    type: str
    mac: str | None
    alias: str | None
    model: str | None = None
    pci_address: str | None = None
    """Host PCI source (``dddd:bb:ss.f``) of a ``type='hostdev'`` one."""
    vlan: int | None = None
    teaming_type: str | None = None
    teaming_persistent: str | None = None
    xml: str = dataclasses.field(default='', compare=False, repr=False)
    """The element as found, e.g. to hand back to detachDeviceFlags."""


def _parse(domain_xml: str | ET.Element) -> ET.Element:
    if isinstance(domain_xml, ET.Element):
        return domain_xml
    try:
        return ET.fromstring(domain_xml)
    except ET.ParseError as exc:
        raise exception.InvalidInput(reason='unparsable XML: %s' % exc)


def _interface_info(iface: ET.Element) -> InterfaceInfo:
    mac = iface.find('mac')
    alias = iface.find('alias')
    model = iface.find('model')
    tag = iface.find('vlan/tag')
    teaming = iface.find('teaming')
    vlan = None
    if tag is not None and tag.get('id', '').isdigit():
        vlan = int(tag.get('id', ''))
    return InterfaceInfo(
        type=iface.get('type', ''),
        mac=mac.get('address', '').lower() if mac is not None
        and mac.get('address') else None,
        alias=alias.get('name') if alias is not None else None,
        model=model.get('type') if model is not None else None,
        pci_address=(pci.source_address(iface)
                     if iface.get('type') == 'hostdev' else None),
        vlan=vlan,
        teaming_type=teaming.get('type') if teaming is not None else None,
        teaming_persistent=(teaming.get('persistent') if teaming is not None
                            else None),
        xml=_tostring(iface))


def parse_interfaces(domain_xml: str | ET.Element) -> list[InterfaceInfo]:
    """Every ``<devices><interface>`` of a domain XML, in document order."""
    root = _parse(domain_xml)
    return [_interface_info(i) for i in root.findall('./devices/interface')]


def find_interface_by_mac(domain_xml: str | ET.Element,
                          mac: str) -> InterfaceInfo | None:
    """The interface carrying ``mac``, preferring a non-standby one.

    With QEMU failover the virtio standby and the VF share one MAC, so an
    interface with ``<teaming type='persistent'/>`` is only returned when
    nothing else has that MAC.
    """
    mac = canonical_mac(mac)
    matches = [i for i in parse_interfaces(domain_xml) if i.mac == mac]
    for info in matches:
        if info.teaming_type != 'persistent':
            return info
    return matches[0] if matches else None


def find_persistent_teaming_interface(
        domain_xml: str | ET.Element) -> InterfaceInfo | None:
    """The virtio interface with ``<teaming type='persistent'/>``, if any."""
    for info in parse_interfaces(domain_xml):
        if info.teaming_type == 'persistent':
            return info
    return None


def device_aliases(domain_xml: str | ET.Element) -> set[str]:
    """Aliases of all devices in a domain XML (live XML has them all)."""
    root = _parse(domain_xml)
    devices = root.find('devices')
    if devices is None:
        return set()
    return {a.get('name', '') for a in devices.iter('alias')
            if a.get('name')}


def has_device_alias(domain_xml: str | ET.Element, alias: str) -> bool:
    return alias in device_aliases(domain_xml)
