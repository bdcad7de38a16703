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

"""VF rows: how they are read, matched, and moved between states.

Every change of a VF's state is a compare-and-swap: the UPDATE names the
state (and generation) it expects, and a row count of zero means another
transaction won the VF.  That holds on SQLite, MariaDB/Galera and
PostgreSQL alike, with any number of servers, because the database
re-checks the WHERE clause against the latest committed row.
"""

import functools
import typing

from oslo_utils import timeutils
import sqlalchemy as sa

from vfpool.conf import pool as pool_conf
from vfpool.db import models
from vfpool import exception
from vfpool.objects import host as host_obj

VF = models.VirtualFunction
PF = models.PhysicalFunction

#: How many candidates one query proposes; the loop asks again if all
#: of them were won by others meanwhile.
_CANDIDATES = 8


#: What a claim or an answer needs of a VF row, read with Core rather
#: than the ORM: these queries are on the hot path of every migration.
COLUMNS = (VF.id, VF.host_id, VF.generation, VF.state, VF.address,
           VF.physical_network, VF.vendor_id, VF.product_id, VF.numa_node,
           VF.instance_uuid, VF.migration_uuid, VF.request_id, VF.mac,
           VF.vlan, VF.port_id, VF.attach_state,
           PF.address.label('pf_address'))


def allocation(vf, pf_address: str | None = None, **override) -> dict:
    """The RPC representation of a VF held for an instance."""
    result = {
        'address': vf.address,
        'pf_address': pf_address or vf.pf_address,
        'physical_network': vf.physical_network,
        'vendor_id': vf.vendor_id,
        'product_id': vf.product_id,
        'numa_node': vf.numa_node,
        'mac': getattr(vf, 'mac', None),
        'vlan': getattr(vf, 'vlan', None),
        'port_id': getattr(vf, 'port_id', None),
    }
    result.update(override)
    return result


def with_pf(session, *criteria, order_by=(VF.id,)) -> list:
    """VF rows matching ``criteria``, each with its PF's ``pf_address``."""
    query = (sa.select(*COLUMNS).join(PF, PF.id == VF.pf_id)
             .where(*criteria).order_by(*order_by))
    return session.connection().execute(query).all()


def owned_by(instance_uuid: str | sa.BindParameter):
    """Criteria of the VFs an instance holds as its allocations.

    A source VF that a migration in flight is moving is still one; a
    destination claim is not yet.
    """
    return sa.and_(
        VF.instance_uuid == instance_uuid,
        sa.or_(VF.state == models.ALLOCATED,
               sa.and_(VF.state == models.MISSING,
                       VF.prior_state == models.ALLOCATED)))


def allocations(session, instance_uuid: str, host_id: int | None = None,
                extra: bool = False) -> list[dict]:
    """The instance's allocations (on ``host_id``), by VF id.

    With ``extra``, each also says its ``host``, ``state`` and
    ``attach_state``, as ``get_instance`` answers.
    """
    rows = session.connection().execute(
        _allocations_statement(host_id is not None),
        dict(a_instance_uuid=instance_uuid, a_host_id=host_id)).all()
    names = host_obj.names_by_id(
        session, {vf.host_id for vf in rows}) if extra else {}
    result = []
    for vf in rows:
        alloc = allocation(vf)
        if extra:
            alloc.update(host=names[vf.host_id], state=vf.state,
                         attach_state=vf.attach_state)
        result.append(alloc)
    return result


@functools.lru_cache(maxsize=None)
def _allocations_statement(on_host: bool):
    criteria = [owned_by(sa.bindparam('a_instance_uuid'))]
    if on_host:
        criteria.append(VF.host_id == sa.bindparam('a_host_id'))
    return (sa.select(*COLUMNS).join(PF, PF.id == VF.pf_id)
            .where(*criteria).order_by(VF.id))


def equivalent_request(vf, match_device_type: bool) -> dict:
    """What a VF that may stand in for ``vf`` must match."""
    request = {'physical_network': vf.physical_network,
               'numa_node': vf.numa_node}
    if match_device_type:
        request.update(vendor_id=vf.vendor_id, product_id=vf.product_id)
    return request


def _state_assignments(to_state) -> list:
    """SET clauses of a move to ``to_state`` (a value or an expression).

    A VF that is ``missing`` keeps that state and records ``to_state`` as
    the state it returns to when the agent reports it again.
    ``prior_state`` is assigned first because MySQL evaluates SET clauses
    left to right, on values already changed.
    """
    is_missing = VF.state == models.MISSING
    return [
        (VF.prior_state, sa.case((is_missing, to_state),
                                 else_=VF.prior_state)),
        (VF.state, sa.case((is_missing, models.MISSING), else_=to_state)),
        (VF.generation, VF.generation + 1),
    ]


def transition(session, criteria, to_state: str, **values) -> int:
    """Move every VF matching ``criteria`` to ``to_state``; one statement."""
    assignments = _state_assignments(to_state) + [
        (VF.updated_at, timeutils.utcnow())] + [
        (getattr(VF, k), v) for k, v in values.items()]
    return session.connection().execute(
        sa.update(VF).where(criteria).ordered_values(*assignments)
    ).rowcount


def transitions(moves: list[tuple[str, typing.Any, str, dict]]):
    """One UPDATE making several :func:`transition` moves at once.

    Each move is (name of an expanding bind parameter of VF ids, its
    guard, its state, its values): a VF moves only if its id is in its
    list and its guard holds, exactly as that move alone would.  The
    lists must be disjoint.  Each SET clause picks the move by id alone,
    which no move changes (MySQL's left-to-right SET would show the
    other columns already changed).  Built once by the caller, run with
    the lists and ``updated_at`` as parameters.
    """
    ids = {name: VF.id.in_(sa.bindparam(name, expanding=True))
           for name, _guard, _state, _values in moves}

    def pick(per_move: dict, default):
        whens = [(ids[name], value) for name, value in per_move.items()]
        return sa.case(*whens, else_=default)

    to_state = pick({name: state for name, _g, state, _v in moves},
                    VF.state)
    columns = sorted({k for _n, _g, _s, values in moves for k in values})
    assignments = _state_assignments(to_state) + [
        (VF.updated_at, sa.bindparam('updated_at'))] + [
        (getattr(VF, key), pick({name: values[key]
                                 for name, _g, _s, values in moves
                                 if key in values}, getattr(VF, key)))
        for key in columns]
    return (sa.update(VF)
            .where(sa.or_(*[sa.and_(ids[name], guard)
                            for name, guard, _s, _v in moves]))
            .ordered_values(*assignments))


#: The columns that say who holds a VF: every claim sets them all
#: (:func:`owner`), every free clears them all (:data:`FREE_VALUES`).
OWNER_FIELDS = ('instance_uuid', 'request_id', 'migration_uuid', 'mac',
                'vlan', 'port_id', 'attach_state')
FREE_VALUES: dict[str, None] = dict.fromkeys(OWNER_FIELDS)


def owner(instance_uuid: str, request_id: str | None, mac: str | None,
          vlan: int | None, port_id: str | None,
          migration_uuid: str | None = None) -> dict:
    """The owner columns of a VF held for an instance.

    A destination claim names its migration; an allocation does not.
    Each new holding starts with no attach state recorded.
    """
    return dict(instance_uuid=instance_uuid, request_id=request_id,
                migration_uuid=migration_uuid, mac=mac, vlan=vlan,
                port_id=port_id, attach_state=None)


def free(session, criteria) -> int:
    """Return VFs to the pool, dropping every trace of their owner."""
    return transition(session, criteria, models.AVAILABLE, **FREE_VALUES)


#: What a request may ask of a VF besides its physical network.
DEVICE_KEYS = ('vendor_id', 'product_id')


def serve_shape(request: dict, numa_policy: str) -> tuple[tuple, bool]:
    """(device keys asked, NUMA node required?): what ``can_serve`` binds."""
    devices = tuple(key for key in DEVICE_KEYS if request.get(key))
    return devices, (request.get('numa_node') is not None and
                     numa_policy == pool_conf.NUMA_REQUIRED)


def serve_criteria(devices: tuple, numa_required: bool,
                   prefix: str) -> list:
    """The criteria of :func:`can_serve` for one shape of request.

    Bind parameters named ``prefix + key``: a statement built once serves
    every request of that shape.
    """
    criteria = [VF.state == models.AVAILABLE,
                VF.physical_network == sa.bindparam(
                    prefix + 'physical_network')]
    criteria += [getattr(VF, key) == sa.bindparam(prefix + key)
                 for key in devices]
    if numa_required:
        criteria.append(VF.numa_node == sa.bindparam(prefix + 'numa_node'))
    return criteria


def serve_params(request: dict, prefix: str) -> dict:
    """The values of :func:`serve_criteria`'s bind parameters."""
    return {prefix + key: request.get(key)
            for key in ('physical_network', 'numa_node') + DEVICE_KEYS}


def can_serve(request: dict,
              numa_policy: str = pool_conf.DEFAULT_NUMA_POLICY,
              prefix: str = 's_') -> tuple[list, dict]:
    """Criteria of the VFs that may serve ``request``, and their values.

    Physical network always, vendor and product when asked, the NUMA
    node only under ``[pool] numa_policy = required``: what a claim
    takes, and what ``get_capacity`` counts.
    """
    return (serve_criteria(*serve_shape(request, numa_policy), prefix),
            serve_params(request, prefix))


def claim(session, request: dict, to_state: str, values: dict,
          host_id: int, numa_policy: str = pool_conf.DEFAULT_NUMA_POLICY,
          exclude: set | None = None) -> tuple[int, int, dict] | None:
    """Win one available VF matching ``request`` on host ``host_id``.

    Whether the host may give out VFs (known, enabled) is the caller's
    to check.  Returns the VF's id, its host's id and its allocation as
    it is after the swap; None when every candidate is taken.
    """
    conn = session.connection()
    exclude = set(exclude or ())
    numa = request.get('numa_node')
    devices, numa_required = serve_shape(request, numa_policy)
    preferred = numa is not None and numa_policy == pool_conf.NUMA_PREFERRED
    params = dict(serve_params(request, 'c_'), c_host_id=host_id)
    swap = _swap_statement(to_state, tuple(sorted(values)))
    swap_params = dict({'v_' + k: v for k, v in values.items()},
                       v_updated_at=timeutils.utcnow())
    while True:
        candidates = conn.execute(
            _candidates_statement(devices, numa_required, preferred,
                                  bool(exclude)),
            dict(params, c_exclude=list(exclude))).all()
        if not candidates:
            return None
        for vf in candidates:
            won = conn.execute(swap, dict(
                swap_params, w_id=vf.id, w_generation=vf.generation,
                v_generation=vf.generation + 1)).rowcount
            if won:
                return vf.id, vf.host_id, allocation(
                    vf, mac=values.get('mac'), vlan=values.get('vlan'),
                    port_id=values.get('port_id'))
            exclude.add(vf.id)


# claim() builds its two statements once per shape: composing a
# SQLAlchemy statement costs more Python than executing a cached one.

@functools.lru_cache(maxsize=None)
def _candidates_statement(devices: tuple, numa_required: bool,
                          numa_preferred: bool, excluding: bool):
    """Up to _CANDIDATES available VFs of a request, best first."""
    criteria = [VF.host_id == sa.bindparam('c_host_id'),
                *serve_criteria(devices, numa_required, 'c_')]
    order: list[typing.Any] = [VF.id]
    if numa_preferred:
        order = [sa.case((VF.numa_node == sa.bindparam('c_numa_node'), 0),
                         else_=1), VF.id]
    if excluding:
        criteria.append(VF.id.not_in(sa.bindparam('c_exclude',
                                                  expanding=True)))
    return (sa.select(*COLUMNS).join(PF, PF.id == VF.pf_id)
            .where(*criteria).order_by(*order).limit(_CANDIDATES))


@functools.lru_cache(maxsize=None)
def _swap_statement(to_state: str, keys: tuple):
    """The compare-and-swap of one candidate: still available, unchanged."""
    return (sa.update(VF)
            .where(VF.id == sa.bindparam('w_id'),
                   VF.state == models.AVAILABLE,
                   VF.generation == sa.bindparam('w_generation'))
            .values(state=to_state,
                    generation=sa.bindparam('v_generation'),
                    updated_at=sa.bindparam('v_updated_at'),
                    **{key: sa.bindparam('v_' + key) for key in keys}))


def no_vf(host: str, request: dict) -> exception.NoAvailableVF:
    return exception.NoAvailableVF(host=host, request=_describe(request))


def _describe(request: dict) -> str:
    return ', '.join('%s=%s' % (k, request[k]) for k in sorted(request)
                     if request[k] is not None and k != 'host')
