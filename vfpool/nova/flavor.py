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

"""How a Nova flavor asks for vfpool VFs: the ``vfpool:vfs`` extra spec.

One key holds every request of the flavor, so that the whole request can
be checked when the key is set (Nova validates extra specs one key at a
time: with one key per request field a half-written request would pass)::

    vfpool:vfs = <request>[,<request>...]
    <request>  = <physical network>[:<count>][;<field>=<value>...]
    <field>    = vendor | product | vlan | numa

for instance ``vfpool:vfs = physnet1:2;vlan=100,physnet2;vendor=8086``:
two VFs on ``physnet1`` programmed with VLAN 100 and one Intel VF on
``physnet2``.  ``count`` is 1 by default; ``vendor`` and ``product`` are
4-digit hexadecimal PCI IDs; ``numa`` is the NUMA node the VF should sit
on (honoured as ``[pool] numa_policy`` of vfpool-server says).  Any other
key under ``vfpool:`` is refused.

The one parser of that syntax for the driver, the scheduler filter and
Nova's API validator (:mod:`vfpool.nova.extra_specs`).  It does not import
Nova, so that it can be tested without it.
"""

import dataclasses
import re
import typing

from vfpool import exception
from vfpool import validation as v

NAMESPACE = 'vfpool'
KEY = NAMESPACE + ':vfs'
#: Most VFs one flavor may ask for: what one ``allocate`` may claim.
MAX_VFS = v.MAX_CAPACITY_REQUESTS

_PHYSNET = re.compile(r'^[A-Za-z0-9_.-]{1,255}$')
_COUNT = re.compile(r'^[0-9]+$')
_FIELDS = {
    'vendor': ('vendor_id', v.hex_id),
    'product': ('product_id', v.hex_id),
    'vlan': ('vlan', lambda f, value: v.vlan(f, _int(f, value))),
    'numa': ('numa_node', lambda f, value: v.numa_node(f, _int(f, value))),
}


class InvalidSpec(exception.InvalidInput):
    """A ``vfpool:`` extra spec that cannot be read; names its key."""

    msg_fmt = 'Invalid flavor extra spec %(key)s: %(reason)s'


@dataclasses.dataclass(frozen=True)
class VFRequest:
    """``count`` VFs on one physical network, alike in every field."""

    physical_network: str
    count: int = 1
    vendor_id: str | None = None
    product_id: str | None = None
    vlan: int | None = None
    numa_node: int | None = None

    def allocate_requests(self) -> list[dict]:
        """One request of vfpool's ``allocate`` per VF (MAC assigned)."""
        one = {key: value for key, value in (
            ('physical_network', self.physical_network),
            ('vendor_id', self.vendor_id), ('product_id', self.product_id),
            ('numa_node', self.numa_node), ('vlan', self.vlan))
            if value is not None}
        return [dict(one) for _ in range(self.count)]

    def capacity_request(self) -> dict:
        """The request of vfpool's ``get_capacity`` (no VLAN: any VF)."""
        return {key: value for key, value in (
            ('physical_network', self.physical_network),
            ('count', self.count), ('vendor_id', self.vendor_id),
            ('product_id', self.product_id), ('numa_node', self.numa_node))
            if value is not None}


def _int(field: str, value: str) -> int:
    if not _COUNT.match(value):
        raise exception.InvalidInput(reason='%s must be an integer, not %r'
                                     % (field, value))
    return int(value)


def _invalid(reason: str) -> InvalidSpec:
    return InvalidSpec(key=KEY, reason=reason)


def _request(text: str) -> VFRequest:
    head, *fields = [part.strip() for part in text.split(';')]
    network, _, count = head.partition(':')
    if not _PHYSNET.match(network):
        raise _invalid('%r is not a physical network name ([A-Za-z0-9_.-])'
                       % network)
    values: dict[str, typing.Any] = {'physical_network': network}
    if count:
        if not _COUNT.match(count) or not 1 <= int(count) <= MAX_VFS:
            raise _invalid('the count of %s must be 1-%d, not %r'
                           % (network, MAX_VFS, count))
        values['count'] = int(count)
    for field in fields:
        name, sep, value = (s.strip() for s in field.partition('='))
        if not sep or name not in _FIELDS:
            raise _invalid('%r is not one of %s=<value>'
                           % (field, '|'.join(sorted(_FIELDS))))
        attr, check = _FIELDS[name]
        if attr in values:
            raise _invalid('%s is given twice for %s' % (name, network))
        try:
            values[attr] = check(name, value)
        except exception.InvalidInput as exc:
            raise _invalid('%s of %s: %s' % (name, network,
                                             exc.kwargs.get('reason', exc)))
    return VFRequest(**values)


def parse(value: typing.Any) -> list[VFRequest]:
    """The requests of a ``vfpool:vfs`` value, or InvalidSpec."""
    if not isinstance(value, str) or not value.strip():
        raise _invalid('must be <physnet>[:<count>][;field=value...], '
                       'comma-separated, not %r' % (value,))
    requests = [_request(part) for part in value.split(',')]
    total = sum(r.count for r in requests)
    if total > MAX_VFS:
        raise _invalid('asks for %d VFs, more than %d' % (total, MAX_VFS))
    return requests


def check_key(key: str, value: typing.Any) -> list[VFRequest]:
    """Check one extra spec under ``vfpool:``; the API validator's rule."""
    if key != KEY:
        raise InvalidSpec(key=key, reason='vfpool knows only %s' % KEY)
    return parse(value)


def requests(extra_specs: typing.Mapping[str, str]) -> list[VFRequest]:
    """What a flavor's extra specs ask of vfpool ([] for nothing).

    The driver and the scheduler filter both read a flavor through here,
    so a spec set before the API validator was installed is refused the
    same way.
    """
    found: list[VFRequest] = []
    for key, value in sorted((extra_specs or {}).items()):
        if key.split(':', 1)[0] == NAMESPACE:
            found.extend(check_key(key, value))
    return found


def allocate_requests(reqs: list[VFRequest]) -> list[dict]:
    """vfpool ``allocate`` requests, one per VF, in the spec's order."""
    return [one for r in reqs for one in r.allocate_requests()]


def capacity_requests(reqs: list[VFRequest]) -> list[dict]:
    return [r.capacity_request() for r in reqs]
