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

"""Checks of RPC arguments, before anything touches the database.

Every check raises :class:`vfpool.exception.InvalidInput` naming the
offending field, and returns the value in canonical form (lower-case hex
for PCI addresses, MACs and IDs) so the database only holds one spelling.
"""

import re
from typing import Any, Callable

from vfpool import exception
from vfpool import pci

_MAC_RE = re.compile(r'^[0-9a-f]{2}(:[0-9a-f]{2}){5}$')
_UUID_RE = re.compile(
    r'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$')
_HEX4_RE = re.compile(r'^[0-9a-f]{4}$')
_SHA256_RE = re.compile(r'^[0-9a-f]{64}$')

MAX_LEASE_SECONDS = 7 * 24 * 3600


def _invalid(field: str, why: str) -> exception.InvalidInput:
    return exception.InvalidInput(reason='%s %s' % (field, why),
                                  field=field)


def _string(field: str, value: Any, max_len: int = 255) -> str:
    if not isinstance(value, str):
        raise _invalid(field, 'must be a string, not %s'
                       % type(value).__name__)
    if not value.strip():
        raise _invalid(field, 'must not be empty')
    if len(value) > max_len:
        raise _invalid(field, 'is longer than %d characters' % max_len)
    return value


def _pattern(regex: re.Pattern, what: str) -> Callable[[str, Any], str]:
    def check(field: str, value: Any) -> str:
        value = _string(field, value).lower()
        if not regex.match(value):
            raise _invalid(field, 'is not %s: %r' % (what, value))
        return value
    return check


# The compute side (compute/vf_xml.py) checks with these same functions.
pci_address = _pattern(pci.CANONICAL_RE, 'a PCI address like 0000:05:10.1')
mac_address = _pattern(_MAC_RE, 'a MAC address like fa:16:3e:00:00:01')
uuid = _pattern(_UUID_RE, 'a UUID')
hex_id = _pattern(_HEX4_RE, 'a 4-digit hexadecimal ID like 8086')
sha256 = _pattern(_SHA256_RE, 'a SHA-256 digest in hex')


def name(field: str, value: Any) -> str:
    return _string(field, value)


def _integer(field: str, value: Any, low: int, high: int) -> int:
    # bool is an int in Python, but never a valid VLAN or NUMA node.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(field, 'must be an integer, not %s'
                       % type(value).__name__)
    if not low <= value <= high:
        raise _invalid(field, 'must be between %d and %d, not %d'
                       % (low, high, value))
    return value


#: A VLAN ID is 12 bits (802.1Q); 0 means priority tagging only.
MAX_VLAN = 4095


def vlan(field: str, value: Any) -> int:
    return _integer(field, value, 0, MAX_VLAN)


def numa_node(field: str, value: Any) -> int:
    return _integer(field, value, 0, 1023)


def vf_index(field: str, value: Any) -> int:
    return _integer(field, value, 0, 65535)


def lease_seconds(field: str, value: Any) -> int:
    return _integer(field, value, 1, MAX_LEASE_SECONDS)


def optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    def check_optional(field: str, value: Any) -> Any:
        return None if value is None else check(field, value)
    return check_optional


def record(field: str, value: Any, required: dict, opt: dict) -> dict:
    """Check a dict against its schema: no missing, no unknown keys."""
    if not isinstance(value, dict):
        raise _invalid(field, 'must be an object, not %s'
                       % type(value).__name__)
    unknown = sorted(set(value) - set(required) - set(opt))
    if unknown:
        raise _invalid(field, 'has unknown fields: %s' % ', '.join(
            map(str, unknown)))
    missing = sorted(set(required) - set(value))
    if missing:
        raise _invalid(field, 'lacks required fields: %s'
                       % ', '.join(missing))
    result = {}
    for key, check in list(required.items()) + list(opt.items()):
        sub = '%s.%s' % (field, key)
        result[key] = check(sub, value.get(key))
    return result


def items(field: str, value: Any, check: Callable[[str, Any], Any],
          allow_empty: bool = True, max_items: int = 4096) -> list:
    if not isinstance(value, list):
        raise _invalid(field, 'must be a list, not %s'
                       % type(value).__name__)
    if not value and not allow_empty:
        raise _invalid(field, 'must not be empty')
    if len(value) > max_items:
        raise _invalid(field, 'has more than %d items' % max_items)
    return [check('%s[%d]' % (field, i), v) for i, v in enumerate(value)]


_VF_REQUIRED = {'address': pci_address, 'vf_index': vf_index,
                'vendor_id': hex_id, 'product_id': hex_id}
_VF_OPTIONAL = {'numa_node': optional(numa_node), 'netdev': optional(name)}
_PF_REQUIRED = {'address': pci_address, 'vendor_id': hex_id,
                'product_id': hex_id, 'physical_network': name}
_PF_OPTIONAL = {'netdev': optional(name), 'numa_node': optional(numa_node)}


def _vf(field: str, value: Any) -> dict:
    return record(field, value, _VF_REQUIRED, _VF_OPTIONAL)


def _pf(field: str, value: Any) -> dict:
    pf = record(field, value, dict(_PF_REQUIRED, vfs=lambda f, v: v),
                _PF_OPTIONAL)
    pf['vfs'] = items(field + '.vfs', pf['vfs'], _vf, max_items=65536)
    return pf


def inventory(field: str, value: Any) -> list[dict]:
    """A full snapshot of a host's PFs and VFs, addresses unique."""
    pfs = items(field, value, _pf)
    seen = set()
    for pf in pfs:
        for address in [pf['address']] + [v['address'] for v in pf['vfs']]:
            if address in seen:
                raise _invalid(field, 'reports PCI address %s twice'
                               % address)
            seen.add(address)
        indexes = [v['vf_index'] for v in pf['vfs']]
        if len(set(indexes)) != len(indexes):
            raise _invalid(field, 'reports a vf_index twice under PF %s'
                           % pf['address'])
    return pfs


_REQUEST_REQUIRED = {'physical_network': name}
_REQUEST_OPTIONAL = {'vendor_id': optional(hex_id),
                     'product_id': optional(hex_id),
                     'numa_node': optional(numa_node),
                     'mac': optional(mac_address),
                     'vlan': optional(vlan),
                     'port_id': optional(name)}


def _request(field: str, value: Any) -> dict:
    return record(field, value, _REQUEST_REQUIRED, _REQUEST_OPTIONAL)


def requests(field: str, value: Any) -> list[dict]:
    reqs = items(field, value, _request, allow_empty=False, max_items=64)
    macs = [r['mac'] for r in reqs if r['mac']]
    if len(set(macs)) != len(macs):
        raise _invalid(field, 'asks for the same MAC twice')
    return reqs


def boolean(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _invalid(field, 'must be true or false, not %r' % (value,))
    return value


def choice(*choices: str) -> Callable[[str, Any], str]:
    def check(field: str, value: Any) -> str:
        if value not in choices:
            raise _invalid(field, 'must be one of %s, not %r'
                           % (', '.join(choices), value))
        return value
    return check


# get_capacity (1.3)

#: Most candidate hosts one get_capacity call may name.
MAX_CAPACITY_HOSTS = 20000
#: Most requests, and most VFs one request may count.
MAX_CAPACITY_REQUESTS = 64

_CAPACITY_REQUEST_OPTIONAL = {
    'count': optional(lambda f, value: _integer(f, value, 1,
                                                MAX_CAPACITY_REQUESTS)),
    'vendor_id': optional(hex_id),
    'product_id': optional(hex_id),
    'numa_node': optional(numa_node),
}


def _capacity_request(field: str, value: Any) -> dict:
    request = record(field, value, _REQUEST_REQUIRED,
                     _CAPACITY_REQUEST_OPTIONAL)
    if request['count'] is None:
        request['count'] = 1
    return request


def capacity_requests(field: str, value: Any) -> list[dict]:
    """What get_capacity asks of each host: allocate's keys plus count."""
    return items(field, value, _capacity_request,
                 max_items=MAX_CAPACITY_REQUESTS)


def capacity_hosts(field: str, value: Any) -> list[str]:
    return items(field, value, name, allow_empty=False,
                 max_items=MAX_CAPACITY_HOSTS)


#: How many request ids one ``release`` may name.
MAX_RELEASE_REQUEST_IDS = 64


def request_ids(field: str, value: Any) -> list[str]:
    """Distinct allocate request ids, in the order given."""
    ids = items(field, value, name, max_items=MAX_RELEASE_REQUEST_IDS)
    if len(set(ids)) != len(ids):
        raise _invalid(field, 'names a request id twice')
    return ids
