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

"""Which hosts could take a set of VF requests right now (read only).

For a scheduler: one answer for many candidate hosts.  It claims nothing:
a host answered ``True`` may have given its last VF away by the time the
caller allocates there (the allocate is the real claim).

One statement reads every candidate host with its available VFs counted
by what a request can ask for (physical network, vendor, product, NUMA
node); whether a host can serve all requests at once, one VF per request,
is then a small matching problem per host (:func:`satisfiable`).
"""

import collections
import typing

import sqlalchemy as sa

from vfpool.conf import pool as pool_conf
from vfpool.db import api as db_api
from vfpool.db import models

Host = models.Host
VF = models.VirtualFunction

#: What a request may constrain, in the order a bucket key holds it.
_KEY_COLUMNS = (VF.physical_network, VF.vendor_id, VF.product_id,
                VF.numa_node)


class Bucket(typing.NamedTuple):
    """Available VFs of one host that look alike to a request."""

    physical_network: str
    vendor_id: str
    product_id: str
    numa_node: int | None
    count: int  # type: ignore[assignment]  # (shadows tuple.count)


def matches(bucket: Bucket, request: dict, numa_policy: str) -> bool:
    """Whether a VF of ``bucket`` may serve ``request``.

    The same rules as a claim (:func:`vfpool.objects.vf.claim`): physical
    network always, vendor and product when asked, the NUMA node only
    under ``[pool] numa_policy = required``.
    """
    if bucket.physical_network != request['physical_network']:
        return False
    for key in ('vendor_id', 'product_id'):
        if request.get(key) and getattr(bucket, key) != request[key]:
            return False
    numa = request.get('numa_node')
    if numa is not None and numa_policy == pool_conf.NUMA_REQUIRED:
        return bucket.numa_node == numa
    return True


def satisfiable(buckets: list[Bucket], requests: list[dict],
                numa_policy: str) -> bool:
    """Whether ``buckets`` hold a distinct VF for every request at once.

    ``requests`` each carry a ``count``.  A maximum flow from requests to
    buckets (augmenting paths): greedy assignment is not enough when one
    request accepts several kinds of VF and another only one of them.
    """
    need = [r['count'] for r in requests]
    if sum(need) > sum(b.count for b in buckets):
        return False
    edges = [[j for j, b in enumerate(buckets)
              if matches(b, r, numa_policy)] for r in requests]
    left = [b.count for b in buckets]
    # flow[i][j]: VFs of bucket j given to request i.
    flow: list[collections.Counter[int]] = [
        collections.Counter() for _ in requests]

    def augment(i: int, seen: set) -> bool:
        for j in edges[i]:
            if j in seen:
                continue
            seen.add(j)
            if left[j] > 0:
                left[j] -= 1
                flow[i][j] += 1
                return True
            # Bucket j is full: move one of its VFs from another request
            # to some other bucket that request accepts.
            for k, given in enumerate(flow):
                if k != i and given[j] and augment(k, seen):
                    given[j] -= 1
                    flow[i][j] += 1
                    return True
        return False

    for i, count in enumerate(need):
        for _ in range(count):
            if not augment(i, set()):
                return False
    return True


@db_api.context_manager.reader
def get_capacity(context, hosts: list[str], requests: list[dict],
                 numa_policy: str = pool_conf.DEFAULT_NUMA_POLICY
                 ) -> dict[str, bool]:
    """``{host: can it take all of requests}`` for each known host.

    Hosts vfpool does not know are left out; a disabled host is False;
    with no request every known enabled host is True.  One statement:
    the hosts, left-joined with their available VFs on the requested
    physical networks, counted per :class:`Bucket`.
    """
    names = sorted(set(hosts))
    networks = sorted({r['physical_network'] for r in requests})
    on = sa.and_(VF.host_id == Host.id, VF.state == models.AVAILABLE,
                 VF.physical_network.in_(networks) if networks
                 else sa.false())
    rows = context.session.execute(
        sa.select(Host.name, Host.disabled, *_KEY_COLUMNS,
                  sa.func.count(VF.id))
        .select_from(Host).outerjoin(VF, on)
        .where(Host.name.in_(names))
        .group_by(Host.name, Host.disabled, *_KEY_COLUMNS)).all()
    disabled: dict[str, bool] = {}
    buckets: dict[str, list[Bucket]] = collections.defaultdict(list)
    for name, is_disabled, network, vendor, product, numa, count in rows:
        disabled[name] = bool(is_disabled)
        if count:
            buckets[name].append(Bucket(network, vendor, product, numa,
                                        count))
    return {name: not off and satisfiable(buckets[name], requests,
                                          numa_policy)
            for name, off in disabled.items()}
