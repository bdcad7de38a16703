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

:data:`TRANSITIONS` is the VF half of the state machine
(doc/source/contributor/state-machine.rst); each transition is one
function here.  Every change of a VF's state is a compare-and-swap: the
UPDATE names the state (and generation) it expects, and a row count of
zero means another transaction won the VF.  That holds on SQLite,
MariaDB/Galera and PostgreSQL alike, with any number of servers, because
the database re-checks the WHERE clause against the latest committed row.
"""

import functools
import typing

from oslo_db import exception as db_exc
from oslo_utils import timeutils
import sqlalchemy as sa

from vfpool.conf import pool as pool_conf
from vfpool.db import models
from vfpool import exception
from vfpool.objects import host as host_obj
from vfpool import states

VF = models.VirtualFunction
PF = models.PhysicalFunction

#: How many candidates one query proposes; the loop asks again if all
#: of them were won by others meanwhile.
_CANDIDATES = 8


_OWNED = (states.ALLOCATED, states.CLAIMED)
_REPORTED = (states.AVAILABLE, states.CLAIMED, states.ALLOCATED,
             states.RESERVED)

#: transition -> the moves it makes, (state it leaves, state it enters);
#: ``None`` is "no row yet".  A ``missing`` VF stays ``missing`` through
#: every transition but ``back``, which returns it to the state the
#: others recorded in ``prior_state`` meanwhile (:func:`transition`).
TRANSITIONS: dict[str, frozenset[tuple[str | None, str]]] = {
    'add': frozenset({(None, states.AVAILABLE)}),
    'claim': frozenset({(states.AVAILABLE, states.ALLOCATED),
                        (states.AVAILABLE, states.CLAIMED)}),
    'win back': frozenset({(states.AVAILABLE, states.ALLOCATED)}),
    'settle': frozenset({(states.CLAIMED, states.ALLOCATED)}),
    'free': frozenset({(s, states.AVAILABLE) for s in _OWNED}),
    'mark': frozenset({(states.ALLOCATED, states.ALLOCATED)}),
    'unmark': frozenset({(states.ALLOCATED, states.ALLOCATED)}),
    'attach state': frozenset({(states.ALLOCATED, states.ALLOCATED)}),
    'missing': frozenset({(s, states.MISSING) for s in _REPORTED}),
    'back': frozenset({(states.MISSING, s) for s in _REPORTED}),
    'reserve': frozenset({(states.AVAILABLE, states.RESERVED)}),
    'unreserve': frozenset({(states.RESERVED, states.AVAILABLE)}),
}


def _leaving(name: str, to_state: str):
    """The guard of a move along ``name`` to ``to_state``: the table's.

    The VF is in a state the transition leaves for ``to_state``, or
    ``missing`` and would return to one.
    """
    sources = sorted(a for a, b in TRANSITIONS[name]
                     if b == to_state and a is not None)
    if not sources:
        raise ValueError('%s does not enter %s' % (name, to_state))
    return sa.or_(VF.state.in_(sources),
                  sa.and_(VF.state == states.MISSING,
                          VF.prior_state.in_(sources)))


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
        sa.or_(VF.state == states.ALLOCATED,
               sa.and_(VF.state == states.MISSING,
                       VF.prior_state == states.ALLOCATED)))


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
    is_missing = VF.state == states.MISSING
    return [
        (VF.prior_state, sa.case((is_missing, to_state),
                                 else_=VF.prior_state)),
        (VF.state, sa.case((is_missing, states.MISSING), else_=to_state)),
        (VF.generation, VF.generation + 1),
    ]


def transition(session, criteria, to_state: str, **values) -> int:
    """Move every VF matching ``criteria`` to ``to_state``; one statement.

    The move every named transition makes; ``criteria`` must include
    its guard (:func:`move` adds the table's).
    """
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


def move(session, name: str, criteria, to_state: str, **values) -> int:
    """Move the VFs matching ``criteria`` along transition ``name``.

    Guarded by the table (:func:`_leaving`) besides ``criteria``.
    """
    return transition(session, sa.and_(criteria, _leaving(name, to_state)),
                      to_state, **values)


def free(session, criteria) -> int:
    """Return VFs to the pool, dropping every trace of their owner."""
    return move(session, 'free', criteria, states.AVAILABLE, **FREE_VALUES)


def win_back(session, criteria, **owner) -> int:
    """Give available VFs (back) to an owner: a lapsed claim settled."""
    return move(session, 'win back', criteria, states.ALLOCATED, **owner)


def unmark(session, criteria) -> int:
    """Clear the migration mark of allocated VFs; the owner stays."""
    return move(session, 'unmark', criteria, states.ALLOCATED,
                migration_uuid=None)


def set_attach_state(session, criteria, attach_state: str) -> int:
    """Record whether allocated VFs are really plugged in."""
    return move(session, 'attach state', criteria, states.ALLOCATED,
                attach_state=attach_state)


def reserve(session, criteria, reason: str | None) -> int:
    """Hold available VFs back from every claim."""
    return move(session, 'reserve', criteria, states.RESERVED,
                reserved_reason=reason)


def unreserve(session, criteria) -> int:
    """Give reserved VFs back to the pool."""
    return move(session, 'unreserve', criteria, states.AVAILABLE,
                reserved_reason=None, **FREE_VALUES)


def _reported(session, row, changes: dict, now) -> None:
    """A report's change of one VF row, as read (its generation)."""
    done = session.execute(
        sa.update(VF).where(VF.id == row.id,
                            VF.generation == row.generation)
        .values(generation=row.generation + 1, updated_at=now, **changes)
        .execution_options(synchronize_session=False)).rowcount
    if not done:
        raise db_exc.RetryRequest(exception.VFStateConflict(
            address=row.address, host=row.host_id, state=row.state,
            reason='changed while the report was applied'))


def go_missing(session, row, now) -> None:
    """A VF its agent no longer reports; its state waits in prior_state."""
    assert (row.state, states.MISSING) in TRANSITIONS['missing'], row.state
    _reported(session, row, dict(state=states.MISSING,
                                 prior_state=row.state), now)


def update_reported(session, row, changes: dict, now) -> None:
    """A reported VF: its inventory ``changes``, and ``back`` if missing.

    A ``missing`` VF returns to its ``prior_state``.
    """
    if row.state == states.MISSING:
        state = row.prior_state or states.AVAILABLE
        assert (row.state, state) in TRANSITIONS['back'], state
        changes = dict(changes, state=state, prior_state=None)
    _reported(session, row, changes, now)


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
    criteria = [VF.state == states.AVAILABLE,
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
    assert (states.AVAILABLE, to_state) in TRANSITIONS['claim'], to_state
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


def assign(options: list[list]) -> list | None:
    """One distinct candidate per request, or None if there is none.

    ``options[i]``: request i's candidates (rows with an ``id``), best
    first.  A maximum bipartite matching by augmenting paths, requests in
    order, each trying its candidates best first: claiming request by
    request, greedily, fails when one request takes the only VF another
    could use although a VF it could use as well is free.
    """
    holder: dict[int, int] = {}  # VF id -> the request it serves

    def augment(i: int, seen: set) -> bool:
        # A free candidate first, best first: where claiming greedily
        # works, this is what it takes.
        for vf in options[i]:
            if vf.id not in holder:
                holder[vf.id] = i
                return True
        for vf in options[i]:
            if vf.id not in seen:
                seen.add(vf.id)
                if augment(holder[vf.id], seen):
                    holder[vf.id] = i
                    return True
        return False

    for i in range(len(options)):
        if not augment(i, set()):
            return None
    chosen: list = [None] * len(options)
    for i, vf_options in enumerate(options):
        chosen[i] = next(vf for vf in vf_options if holder.get(vf.id) == i)
    return chosen


def claim_all(session, requests: list[dict], to_state: str,
              values: list[dict], host_id: int,
              numa_policy: str = pool_conf.DEFAULT_NUMA_POLICY
              ) -> tuple[list[tuple[int, dict]], int | None]:
    """Win one VF per request on host ``host_id``, all or nothing.

    Whenever the available VFs hold an assignment, this finds one
    (:func:`assign`), by the same rule as ``get_capacity``
    (:func:`can_serve`); each request's best candidates first.  Each VF
    is won by the compare-and-swap of :func:`claim`; a VF another
    transaction won meanwhile is left out and the requests still open
    are matched again on fresh rows.  If they no longer can be while
    some VFs are won, the transaction starts over (``RetryRequest``): a
    full matching may exist without them.

    Returns ``([(VF id, its allocation)] in request order, None)``, or
    ``([], i)`` when no assignment exists, ``i`` a request left out.
    """
    assert (states.AVAILABLE, to_state) in TRANSITIONS['claim'], to_state
    conn = session.connection()
    limit = max(_CANDIDATES, len(requests))
    won: dict[int, tuple[int, dict]] = {}
    lost: set = set()
    keys = tuple(sorted(values[0])) if values else ()
    swap = _swap_statement(to_state, keys)
    now = timeutils.utcnow()
    while len(won) < len(requests):
        pending = [i for i in range(len(requests)) if i not in won]
        taken = lost | {vf_id for vf_id, _a in won.values()}
        options = [_candidates(conn, requests[i], host_id, numa_policy,
                               taken, limit) for i in pending]
        chosen = assign(options)
        if chosen is None:
            if won:
                raise db_exc.RetryRequest(exception.Conflict())
            return [], _unservable(options)
        for i, vf in zip(pending, chosen):
            if conn.execute(swap, dict(
                    {'v_' + k: v for k, v in values[i].items()},
                    v_updated_at=now, w_id=vf.id,
                    w_generation=vf.generation,
                    v_generation=vf.generation + 1)).rowcount:
                won[i] = (vf.id, allocation(
                    vf, mac=values[i].get('mac'),
                    vlan=values[i].get('vlan'),
                    port_id=values[i].get('port_id')))
            else:
                lost.add(vf.id)
    return [won[i] for i in range(len(requests))], None


def _unservable(options: list[list]) -> int:
    """A request to name in NoAvailableVF: the first without a VF left."""
    for i, vf_options in enumerate(options):
        if not vf_options:
            return i
    return len(options) - 1


def _candidates(conn, request: dict, host_id: int, numa_policy: str,
                exclude: set, limit: int) -> list:
    numa = request.get('numa_node')
    devices, numa_required = serve_shape(request, numa_policy)
    preferred = numa is not None and numa_policy == pool_conf.NUMA_PREFERRED
    return conn.execute(
        _candidates_statement(devices, numa_required, preferred,
                              bool(exclude), limit),
        dict(serve_params(request, 'c_'), c_host_id=host_id,
             c_exclude=list(exclude))).all()


# claim() builds its two statements once per shape: composing a
# SQLAlchemy statement costs more Python than executing a cached one.

@functools.lru_cache(maxsize=None)
def _candidates_statement(devices: tuple, numa_required: bool,
                          numa_preferred: bool, excluding: bool,
                          limit: int = _CANDIDATES):
    """Up to ``limit`` available VFs of a request, best first."""
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
            .where(*criteria).order_by(*order).limit(limit))


@functools.lru_cache(maxsize=None)
def _swap_statement(to_state: str, keys: tuple):
    """The compare-and-swap of one candidate: still available, unchanged."""
    return (sa.update(VF)
            .where(VF.id == sa.bindparam('w_id'),
                   VF.state == states.AVAILABLE,
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
