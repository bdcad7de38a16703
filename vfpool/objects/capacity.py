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

For most hosts one cheap look per request decides (:func:`get_capacity`
says why that is exact); the rest get their available VFs counted by
what a request can ask for (physical network, vendor, product, NUMA
node), and whether such a host can serve all requests at once is then a
small matching problem (:func:`satisfiable`).
"""

import collections
import typing

import sqlalchemy as sa

from vfpool.conf import pool as pool_conf
from vfpool.db import api as db_api
from vfpool.db import models
from vfpool.objects import vf as vf_obj
from vfpool import states

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
    for key in vf_obj.DEVICE_KEYS:
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


def _nth_servable(request: dict, nth: int, numa_policy: str, prefix: str):
    """The id of some ``nth`` VF of a host that may serve ``request``.

    With its bind parameters (named ``prefix`` + key).  NULL when the host
    has fewer.  Correlated with the outer host row; an
    index range read that stops after ``nth`` entries, however many VFs
    the host has.  No ORDER BY: which VF is the nth does not matter, and
    sorting made PostgreSQL read (and JIT-compile for) every VF.
    """
    criteria, params = vf_obj.can_serve(request, numa_policy, prefix)
    return (sa.select(VF.id).where(VF.host_id == Host.id, *criteria)
            .limit(1).offset(nth - 1)
            .correlate(Host).scalar_subquery()), params


@db_api.context_manager.reader
def get_capacity(context, hosts: list[str], requests: list[dict],
                 numa_policy: str = pool_conf.DEFAULT_NUMA_POLICY
                 ) -> dict[str, bool]:
    """``{host: can it take all of requests}`` for each known host.

    Hosts vfpool does not know are left out; a disabled host is False;
    with no request every known enabled host is True.

    Counting every available VF of thousands of hosts is what made this
    slow, and is not needed: with ``total`` VFs asked in all, a request
    that ``total`` VFs of a host could serve ("plentiful") always finds
    its own among them, whatever the others took.  So one statement
    asks, per host and request, only whether a ``total``-th such VF
    exists.  A host passes when every request is plentiful; with one
    request it fails otherwise.  Only the hosts where some of several
    requests are scarce get their VFs counted per :class:`Bucket` (a
    second statement, on those hosts alone) for the exact matching.
    """
    names = sorted(set(hosts))
    if not requests:
        rows = context.session.connection().execute(
            sa.select(Host.name, Host.disabled)
            .where(Host.name.in_(names))).all()
        return {name: not disabled for name, disabled in rows}
    total = sum(r['count'] for r in requests)
    looks, params = [], {}
    for i, request in enumerate(requests):
        look, look_params = _nth_servable(request, total, numa_policy,
                                          'r%d_' % i)
        looks.append(look)
        params.update(look_params)
    rows = context.session.connection().execute(
        sa.select(Host.id, Host.name, Host.disabled, *looks)
        .where(Host.name.in_(names)), params).all()
    answer: dict[str, bool] = {}
    scarce: dict[int, str] = {}
    for host_id, name, disabled, *nth in rows:
        plentiful = all(vf_id is not None for vf_id in nth)
        answer[name] = not disabled and plentiful
        if not disabled and not plentiful and len(requests) > 1:
            scarce[host_id] = name
    if scarce:
        for host_id, buckets in _buckets(context.session, list(scarce),
                                         requests).items():
            answer[scarce[host_id]] = satisfiable(buckets, requests,
                                                  numa_policy)
    return answer


def _buckets(session, host_ids: list[int],
             requests: list[dict]) -> dict[int, list[Bucket]]:
    """The available VFs of ``host_ids`` on the requested networks."""
    networks = sorted({r['physical_network'] for r in requests})
    rows = session.connection().execute(
        sa.select(VF.host_id, *_KEY_COLUMNS, sa.func.count(VF.id))
        .where(VF.host_id.in_(host_ids), VF.state == states.AVAILABLE,
               VF.physical_network.in_(networks))
        .group_by(VF.host_id, *_KEY_COLUMNS)).all()
    buckets: dict[int, list[Bucket]] = collections.defaultdict(list)
    for host_id, network, vendor, product, numa, count in rows:
        buckets[host_id].append(Bucket(network, vendor, product, numa,
                                       count))
    return buckets
