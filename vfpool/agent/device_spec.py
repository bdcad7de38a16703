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

"""Operator device specs: which VFs to inventory, on which network.

Each ``[agent] device_spec`` value is one JSON object, in the spirit of
Nova's ``[pci] device_spec``::

    {"vendor_id": "8086", "product_id": "10ca",
     "address": "0000:05:*.*", "devname": "ens1f0",
     "physical_network": "physnet1"}

Only ``physical_network`` is required; an absent criterion (or ``"*"``)
matches anything.  Every given criterion must hold, and each one may be
met by the VF itself or by its PF:

* ``address`` and ``devname`` naming a PF select all of its VFs (as in
  Nova); naming a VF they select that VF only;
* ``vendor_id``/``product_id`` may be the VF's or its PF's IDs, so either
  line of ``lspci -nn`` works.

All errors are found when the agent starts, not at the first report.
"""

import dataclasses
import json
import string

from vfpool import pci


class DeviceSpecError(ValueError):
    """A ``device_spec`` value is not valid; the message quotes it."""


@dataclasses.dataclass(frozen=True)
class PciFunction:
    """What a spec looks at in a VF or a PF."""

    address: str
    vendor_id: str
    product_id: str
    netdevs: tuple[str, ...] = ()


_KEYS = frozenset(('vendor_id', 'product_id', 'address', 'devname',
                   'physical_network'))
ANY = '*'


def _hex_field(value, what: str, limit: int) -> int | None:
    """A hex string (optionally ``0x``-prefixed) or ``*`` (None = any).

    Integers are refused: ``10`` from JSON could mean 0x10 or ten.
    """
    if not isinstance(value, str):
        raise ValueError('%s must be a hex string or "*", not %r'
                         % (what, value))
    text = value.strip().lower()
    if text == ANY:
        return None
    if text.startswith('0x'):
        text = text[2:]
    if not text or any(c not in string.hexdigits for c in text):
        raise ValueError('%s %r is not hex or "*"' % (what, value))
    number = int(text, 16)
    if number > limit:
        raise ValueError('%s %r is larger than 0x%x' % (what, value, limit))
    return number


@dataclasses.dataclass(frozen=True)
class AddressPattern:
    """A PCI address whose fields may each be a wildcard (None)."""

    domain: int | None
    bus: int | None
    slot: int | None
    function: int | None

    @classmethod
    def from_string(cls, text: str) -> 'AddressPattern':
        """``[domain:]bus:slot.function``, any field may be ``*``.

        A missing domain means any domain.
        """
        dbs, dot, function = text.strip().partition('.')
        parts = dbs.split(':')
        if not dot or len(parts) not in (2, 3):
            raise ValueError('address %r is not [domain:]bus:slot.function'
                             % text)
        if len(parts) == 2:
            parts.insert(0, ANY)
        values = parts + [function]
        return cls(*(_hex_field(v, 'address %s' % name, pci.LIMITS[name])
                     for v, name in zip(values, pci.FIELDS)))

    @classmethod
    def from_dict(cls, fields: dict) -> 'AddressPattern':
        """``{"domain": .., "bus": .., "slot": .., "function": ..}``.

        Missing keys mean any value.
        """
        unknown = set(fields) - set(pci.FIELDS)
        if unknown:
            raise ValueError('unknown address keys %s' % sorted(unknown))
        return cls(*(_hex_field(fields.get(name, ANY),
                                'address %s' % name, limit)
                     for name, limit in pci.LIMITS.items()))

    def match(self, address: str) -> bool:
        """Compare with a canonical ``dddd:bb:ss.f`` address."""
        actual = pci.parse(address)
        wanted = (self.domain, self.bus, self.slot, self.function)
        return all(w is None or w == a for w, a in zip(wanted, actual))


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
    physical_network: str
    vendor_id: str | None = None
    product_id: str | None = None
    address: AddressPattern | None = None
    devname: str | None = None
    # The option value the spec came from, for log lines.
    source: str = ''

    def _criteria(self, function: PciFunction) -> list[bool]:
        return [
            self.vendor_id is None or self.vendor_id == function.vendor_id,
            self.product_id is None or self.product_id == function.product_id,
            self.address is None or self.address.match(function.address),
            self.devname is None or self.devname in function.netdevs,
        ]

    def match(self, vf: PciFunction, pf: PciFunction) -> bool:
        """True when each criterion holds for the VF or for its PF."""
        return all(on_vf or on_pf for on_vf, on_pf in
                   zip(self._criteria(vf), self._criteria(pf)))


def _device_id(value, key: str) -> str | None:
    number = _hex_field(value, key, 0xffff)
    return None if number is None else '%04x' % number


def _name(value, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError('%s must be a non-empty string, not %r'
                         % (key, value))
    if value != value.strip():
        raise ValueError('%s %r has leading or trailing spaces'
                         % (key, value))
    return value


def _no_duplicate_keys(pairs: list) -> dict:
    keys = [key for key, _value in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError('duplicate keys %s' % duplicates)
    return dict(pairs)


def parse_spec(value: str) -> DeviceSpec:
    """Parse one option value; DeviceSpecError quotes it on failure."""
    try:
        data = json.loads(value, object_pairs_hook=_no_duplicate_keys)
    except (TypeError, ValueError) as exc:
        raise DeviceSpecError('device_spec %r is not valid JSON: %s'
                              % (value, exc)) from None
    try:
        if not isinstance(data, dict):
            raise ValueError('it must be a JSON object')
        unknown = set(data) - _KEYS
        if unknown:
            raise ValueError('unknown keys %s (known: %s)'
                             % (sorted(unknown), sorted(_KEYS)))
        if 'physical_network' not in data:
            raise ValueError('physical_network is required')
        address = data.get('address')
        if isinstance(address, str):
            address = AddressPattern.from_string(address)
        elif isinstance(address, dict):
            address = AddressPattern.from_dict(address)
        elif address is not None:
            raise ValueError('address must be a string or an object')
        devname = data.get('devname')
        return DeviceSpec(
            physical_network=_name(data['physical_network'],
                                   'physical_network'),
            vendor_id=_device_id(data.get('vendor_id', ANY), 'vendor_id'),
            product_id=_device_id(data.get('product_id', ANY), 'product_id'),
            address=address,
            devname=None if devname is None else _name(devname, 'devname'),
            source=value)
    except ValueError as exc:
        raise DeviceSpecError('device_spec %r: %s' % (value, exc)) from None


def parse_specs(values: list[str]) -> list[DeviceSpec]:
    """Parse all ``[agent] device_spec`` values, keeping their order.

    The order matters: the first spec matching a VF wins.
    """
    return [parse_spec(value) for value in values]


def first_match(specs: list[DeviceSpec], vf: PciFunction,
                pf: PciFunction) -> tuple[int, DeviceSpec] | None:
    """The winning spec and its position, None when no spec selects it."""
    for index, spec in enumerate(specs):
        if spec.match(vf, pf):
            return index, spec
    return None
