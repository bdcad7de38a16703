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

"""PCI addresses: the one home of their format, limits and XML form.

vfpool names a PCI function by its canonical address ``dddd:bb:ss.f``
(lower-case hex; 16-bit domain, 8-bit bus, 5-bit slot, 3-bit function):
in the RPC API, the database, the agent's reports and every log line.
libvirt writes the same address as an ``<address domain= bus= slot=
function=>`` element (0x hex; a missing domain means 0) and, in a node
device's ``pci`` capability, as ``<domain>``, ``<bus>``... elements in
decimal.  Everything that reads or writes either form goes through here.
No imports beyond the standard library: the agent, the server, the
compute side and ``vfpool-manage`` all use it.
"""

import re
import string
import typing
from xml.etree import ElementTree as ET


class InvalidAddress(ValueError):
    """Not a PCI address; the message says which part and why."""


#: The fields of an address, in order, and the highest value of each.
LIMITS: dict[str, int] = {'domain': 0xffff, 'bus': 0xff, 'slot': 0x1f,
                          'function': 0x7}
FIELDS = tuple(LIMITS)
#: The canonical form; a slot is 5 bits (00-1f), a function 3 (0-7).
CANONICAL_RE = re.compile(r'^[0-9a-f]{4}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]$')


class Address(typing.NamedTuple):
    """The fields of a PCI address, each within :data:`LIMITS`."""

    domain: int
    bus: int
    slot: int
    function: int

    def __str__(self) -> str:
        return '%04x:%02x:%02x.%x' % self

    def xml_attributes(self) -> dict[str, str]:
        """The attributes of libvirt's ``<address>`` for this address."""
        return {'domain': '0x%04x' % self.domain, 'bus': '0x%02x' % self.bus,
                'slot': '0x%02x' % self.slot,
                'function': '0x%x' % self.function}


def from_fields(domain: int, bus: int, slot: int, function: int) -> Address:
    """An :class:`Address`, or ``InvalidAddress`` for a field out of range."""
    address = Address(domain, bus, slot, function)
    for key, value in address._asdict().items():
        if not 0 <= value <= LIMITS[key]:
            raise InvalidAddress('PCI %s %#x out of range (max %#x)'
                                 % (key, value, LIMITS[key]))
    return address


def format_address(domain: int, bus: int, slot: int, function: int) -> str:
    """The canonical ``dddd:bb:ss.f`` of four fields; checks their range."""
    return str(from_fields(domain, bus, slot, function))


def is_canonical(text: str) -> bool:
    """Whether ``text`` is a canonical address (lower case, padded)."""
    return CANONICAL_RE.match(text) is not None


def parse(text: str) -> Address:
    """The fields of a canonical address, or ``InvalidAddress``."""
    if not isinstance(text, str) or not is_canonical(text):
        raise InvalidAddress('%r is not a PCI address like 0000:05:10.1'
                             % (text,))
    dbs, _dot, function = text.partition('.')
    domain, bus, slot = (int(part, 16) for part in dbs.split(':'))
    return Address(domain, bus, slot, int(function, 16))


def number(text: str | None, what: str, hex_only: bool = False) -> int:
    """An integer as libvirt writes one: decimal, or ``0x`` hex.

    Padding and either case are fine; signs, underscores and the other
    forms ``int()`` would accept are refused: libvirt never writes them.
    ``hex_only`` reads unprefixed digits as hex (device IDs).
    """
    value = (text or '').strip()
    digits, allowed, base = value, string.digits, 10
    if hex_only or value[:2].lower() == '0x':
        allowed, base = string.hexdigits, 16
        if value[:2].lower() == '0x':
            digits = value[2:]
    if not digits or any(c not in allowed for c in digits):
        raise InvalidAddress('invalid %s %r' % (what, text))
    return int(digits, base)


def parse_element(elem: ET.Element) -> str:
    """The canonical address of a libvirt ``<address>`` element.

    A missing domain means 0, as in libvirt; the other attributes are
    required.  ``InvalidAddress`` for anything else.
    """
    fields = {}
    for key in FIELDS:
        raw = elem.get(key)
        if raw is None:
            if key != 'domain':
                raise InvalidAddress(
                    'PCI address element without %s attribute' % key)
            raw = '0'
        fields[key] = number(raw, 'PCI %s' % key)
    return format_address(**fields)


def source_address(elem: ET.Element) -> str | None:
    """The host PCI address of a device's ``<source><address>``, if any.

    For an ``<interface type='hostdev'>`` or a ``<hostdev>``: None when it
    has no source address, one of another type (``usb``...) or one that
    is not a PCI address.
    """
    address = elem.find('source/address')
    if address is None or address.get('type', 'pci') != 'pci':
        return None
    try:
        return parse_element(address)
    except InvalidAddress:
        return None
