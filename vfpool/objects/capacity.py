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
says why that is exact); for the rest, each request's first servable
VFs are read and matched to the requests as ``allocate`` matches them
(:func:`vfpool.objects.vf.assign`), by the same rule
(:func:`vfpool.objects.vf.can_serve`): the answer is ``allocate``'s.
"""

import collections

import sqlalchemy as sa

from vfpool.conf import pool as pool_conf
from vfpool.db import api as db_api
from vfpool.db import models
from vfpool.objects import vf as vf_obj

Host = models.Host
VF = models.VirtualFunction


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
    requests are scarce get each request's first servable VFs read (a
    statement per request, on those hosts alone) and matched exactly as
    ``allocate`` matches them (:func:`vfpool.objects.vf.assign`).
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
        options = _servable(context.session, list(scarce), requests,
                            numa_policy, total)
        for host_id, name in scarce.items():
            answer[name] = vf_obj.assign([
                options[i].get(host_id, [])
                for i, r in enumerate(requests)
                for _ in range(r['count'])]) is not None
    return answer


def _servable(session, host_ids: list[int], requests: list[dict],
              numa_policy: str, limit: int) -> list[dict[int, list]]:
    """Per request, ``{host id: its first servable VFs}``, by id.

    ``limit`` (the VFs asked in all) per host is enough: a request with
    that many candidates can always be served after the others, so the
    matching over these finds an assignment whenever one exists.
    """
    found: list[dict[int, list]] = []
    for i, request in enumerate(requests):
        criteria, params = vf_obj.can_serve(request, numa_policy,
                                            'r%d_' % i)
        ranked = sa.select(
            VF.id, VF.host_id,
            sa.func.row_number().over(partition_by=VF.host_id,
                                      order_by=VF.id).label('rank')
        ).where(VF.host_id.in_(host_ids), *criteria).subquery()
        per_host: dict[int, list] = collections.defaultdict(list)
        for row in session.connection().execute(
                sa.select(ranked.c.id, ranked.c.host_id)
                .where(ranked.c.rank <= limit)
                .order_by(ranked.c.id), params):
            per_host[row.host_id].append(row)
        found.append(per_host)
    return found
