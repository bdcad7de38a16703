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

"""MACs the server assigns to allocations requested without one.

The scheme (doc/source/reference/rpc-api.rst, "MAC addresses"):
``[pool] mac_prefix`` (Nova's ``fa:16:3e`` by default), the remaining
octets random, and none that a VF vfpool holds already carries.  A VF is
only re-attached after a migration with the MAC it was given, so an
allocation without one could never come back.
"""

import random

import sqlalchemy as sa

from vfpool.db import models
from vfpool import exception

VF = models.VirtualFunction

#: Draws before giving up: with three random octets and the VFs of a
#: whole region, the chance that this many in a row clash is nil.
_ATTEMPTS = 32

_random = random.SystemRandom()


def _draw(prefix: str) -> str:
    octets = prefix.split(':')
    octets += ['%02x' % _random.randrange(256)
               for _ in range(6 - len(octets))]
    return ':'.join(octets)


def _in_use(session, mac: str) -> bool:
    return session.connection().execute(
        sa.select(VF.id).where(VF.mac == mac).limit(1)).first() is not None


def assign(session, host: str, prefix: str, count: int,
           taken: set[str] | None = None) -> list[str]:
    """``count`` new MACs under ``prefix``, unused by any VF and distinct.

    ``taken`` are MACs the caller uses already (those of the same
    request).  The check is a read: two servers drawing the same random
    MAC at the same instant is as unlikely as a clash of Nova's own MACs,
    which work the same way.
    """
    chosen: list[str] = []
    avoid = set(taken or ())
    for _ in range(count):
        for _attempt in range(_ATTEMPTS):
            mac = _draw(prefix)
            if mac not in avoid and not _in_use(session, mac):
                break
        else:
            # NoAvailableVF, which every client of 1.0 on knows: the
            # allocation cannot be had, and why is in the message.
            raise exception.NoAvailableVF(
                'No free MAC is left under [pool] mac_prefix %s for an '
                'allocation on host %s.' % (prefix, host),
                host=host, request='mac_prefix=%s' % prefix)
        avoid.add(mac)
        chosen.append(mac)
    return chosen
