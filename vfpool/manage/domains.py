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

"""What running guests really have plugged in, read through libvirt.

Only read-only connections are opened: the audit must never change a
hypervisor.  libvirt-python is imported when an audit asks for it, so
vfpool-manage works on machines without it.
"""

from xml.etree import ElementTree as ET

from vfpool import libvirt_import
from vfpool import pci

# PCI passthrough as OpenStack does it (an <interface type='hostdev'>,
# which keeps the MAC and VLAN) and as a plain <hostdev>.
_PASSTHROUGH_PATHS = ("./devices/interface[@type='hostdev']",
                      "./devices/hostdev[@type='pci']")


class LibvirtError(Exception):
    """libvirt is missing or the URI cannot be read."""


def pci_sources(domain_xml: str) -> set[str]:
    """Canonical PCI addresses (``dddd:bb:ss.f``) a domain passes through."""
    found = set()
    root = ET.fromstring(domain_xml)
    for path in _PASSTHROUGH_PATHS:
        for device in root.iterfind(path):
            address = pci.source_address(device)
            if address is not None:
                found.add(address)
    return found


def running_guests(uri: str) -> dict[str, set[str]]:
    """Running domain UUID -> the PCI addresses it passes through."""
    try:
        libvirt = libvirt_import.load()
    except libvirt_import.LibvirtMissing as e:
        raise LibvirtError(str(e))
    # Errors come back as exceptions; do not also print them on stderr.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        conn = libvirt.openReadOnly(uri)
    except libvirt.libvirtError as e:
        raise LibvirtError('cannot connect to %s: %s'
                           % (uri, e.get_error_message()))
    try:
        guests = {}
        for domain in conn.listAllDomains(
                libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            try:
                xml = domain.XMLDesc(0)
            except libvirt.libvirtError:
                continue    # stopped or gone since it was listed
            guests[domain.UUIDString().lower()] = pci_sources(xml)
        return guests
    except libvirt.libvirtError as e:
        raise LibvirtError('cannot list domains of %s: %s'
                           % (uri, e.get_error_message()))
    finally:
        conn.close()
