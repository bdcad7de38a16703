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

"""Operator-only queries: what vfpool-manage reads and repairs.

Nothing here is reachable over RPC.  Every write is a compare-and-swap
through :mod:`vfpool.objects.vf`, so an operator command that races with
a server (a claim, a report, the reaper) either wins cleanly or changes
nothing and says so.  Every write also makes the host's next report a
full one (``host.forget_report``): an operator's repair is re-checked
against what the agent sees.
"""

import typing

import sqlalchemy as sa

from vfpool.db import api as db_api
from vfpool.db import models
from vfpool import exception
from vfpool.objects import host as host_obj
from vfpool.objects import leases
from vfpool.objects import vf as vf_obj
from vfpool import states
from vfpool import utils

VF = models.VirtualFunction
PF = models.PhysicalFunction
Host = models.Host
Migration = models.Migration

#: Leak kinds found by :func:`leaks`.
ORPHAN_CLAIM = 'orphan_claim'
LAPSED_CLAIM = 'lapsed_claim'
STALE_MARK = 'stale_migration_mark'


def _in_state(state: str):
    """A VF in ``state``, or gone missing while it was in that state."""
    return sa.or_(VF.state == state,
                  sa.and_(VF.state == states.MISSING,
                          VF.prior_state == state))


def _describe(vf: models.VirtualFunction, pf_address: str, host: str,
              migration_state: str | None = None,
              lease_expires_at=None) -> dict:
    return {
        'host': host,
        'address': vf.address,
        'pf_address': pf_address,
        'vf_index': vf.vf_index,
        'physical_network': vf.physical_network,
        'vendor_id': vf.vendor_id,
        'product_id': vf.product_id,
        'numa_node': vf.numa_node,
        'netdev': vf.netdev,
        'state': vf.state,
        'prior_state': vf.prior_state,
        'instance_uuid': vf.instance_uuid,
        'request_id': vf.request_id,
        'migration_uuid': vf.migration_uuid,
        'migration_state': migration_state,
        'lease_expires_at': utils.isotime(lease_expires_at),
        'mac': vf.mac,
        'vlan': vf.vlan,
        'port_id': vf.port_id,
        'attach_state': vf.attach_state,
        'reserved_reason': vf.reserved_reason,
        'generation': vf.generation,
        'updated_at': utils.isotime(vf.updated_at or vf.created_at),
    }


def _rows(session, *criteria, lapsed: bool = False) -> list:
    """(VF, PF address, host, migration state, lease expiry) rows.

    With ``lapsed``, each also says whether the lease lapsed, by the
    database's clock (:mod:`vfpool.objects.leases`).
    """
    columns: list[typing.Any] = [VF, PF.address, Host.name,
                                 Migration.state, Migration.lease_expires_at]
    if lapsed:
        columns.append(Migration.lease_expires_at < leases.now())
    query = (sa.select(*columns)
             .join(PF, PF.id == VF.pf_id)
             .join(Host, Host.id == VF.host_id)
             .outerjoin(Migration, Migration.uuid == VF.migration_uuid)
             .where(*criteria).order_by(Host.name, VF.address))
    return session.execute(query).all()


def _select(session, *criteria) -> list[dict]:
    return [_describe(*row) for row in _rows(session, *criteria)]


@db_api.context_manager.reader
def list_vfs(context, host: str | None = None,
             physical_network: str | None = None, state: str | None = None,
             instance_uuid: str | None = None) -> list[dict]:
    """Every VF matching all the given filters, by host and address."""
    session = context.session
    criteria: list[typing.Any] = []
    if host is not None:
        criteria.append(VF.host_id == host_obj.get_by_name(session, host).id)
    if physical_network is not None:
        criteria.append(VF.physical_network == physical_network)
    if state is not None:
        criteria.append(VF.state == state)
    if instance_uuid is not None:
        criteria.append(VF.instance_uuid == instance_uuid)
    return _select(session, *criteria)


def _get(session, host: str, address: str) -> tuple[int, dict]:
    host_id = host_obj.get_by_name(session, host).id
    rows = _select(session, VF.host_id == host_id, VF.address == address)
    if not rows:
        raise exception.VFNotFound(host=host, address=address)
    return host_id, rows[0]


@db_api.context_manager.reader
def get_vf(context, host: str, address: str) -> dict:
    return _get(context.session, host, address)[1]


def _conflict(vf: dict, reason: str) -> exception.VFStateConflict:
    return exception.VFStateConflict(address=vf['address'], host=vf['host'],
                                     state=vf['state'], reason=reason)


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def reserve(context, host: str, address: str,
            reason: str | None = None) -> dict:
    """Hold an ``available`` VF back from every claim."""
    session = context.session
    host_id, vf = _get(session, host, address)
    done = vf_obj.reserve(
        session, sa.and_(VF.host_id == host_id, VF.address == address,
                         VF.state == states.AVAILABLE), reason)
    if not done:
        raise _conflict(vf, 'only an available VF can be reserved')
    host_obj.forget_report(session, host_id)
    return _get(session, host, address)[1]


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def unreserve(context, host: str, address: str) -> dict:
    """Give a ``reserved`` VF back to the pool."""
    session = context.session
    host_id, vf = _get(session, host, address)
    done = vf_obj.unreserve(
        session, sa.and_(VF.host_id == host_id, VF.address == address,
                         VF.state == states.RESERVED))
    if not done:
        raise _conflict(vf, 'only a reserved VF can be unreserved')
    host_obj.forget_report(session, host_id)
    return _get(session, host, address)[1]


def _leak_kind(vf, migration_state, lapsed: bool) -> str | None:
    claimed = states.CLAIMED in (vf.state, vf.prior_state)
    in_flight = migration_state in states.IN_FLIGHT
    if claimed and not in_flight:
        return ORPHAN_CLAIM
    # A moving migration past its lease is stalled, not leaked: nothing
    # may free its claims until an operator says where the guest runs.
    if (claimed and migration_state == states.IN_PROGRESS
            and lapsed):
        return LAPSED_CLAIM
    if not claimed and vf.migration_uuid and not in_flight:
        return STALE_MARK
    return None


@db_api.context_manager.reader
def leaks(context) -> list[dict]:
    """Claims and migration marks that nothing will ever clear.

    * ``orphan_claim``: a claimed VF whose migration is unknown or no
      longer in flight;
    * ``lapsed_claim``: a claimed VF whose migration is in progress past
      its lease (a running vfpool-server would have expired it);
    * ``stale_migration_mark``: an allocated VF still marked with a
      migration that is over, which blocks every later migration of its
      instance.

    Each VF is returned with its ``leak`` kind and its ``generation``,
    for :func:`free_claim` / :func:`clear_mark` to act on exactly it.
    """
    rows = _rows(context.session, sa.or_(
        _in_state(states.CLAIMED),
        sa.and_(_in_state(states.ALLOCATED), VF.migration_uuid.is_not(None))),
        lapsed=True)
    found = []
    for row in rows:
        kind = _leak_kind(row[0], row[3], bool(row[5]))
        if kind is not None:
            found.append(dict(_describe(*row[:5]), leak=kind))
    return found


def _swap(session, host: str, address: str, generation: int, criteria,
          move, *args) -> bool:
    """``move`` (a transition of ``vf``) of one VF, as it was seen."""
    host_id = host_obj.get_by_name(session, host).id
    done = bool(move(
        session, sa.and_(VF.host_id == host_id, VF.address == address,
                         VF.generation == generation, criteria), *args))
    if done:
        host_obj.forget_report(session, host_id)
    return done


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def free_claim(context, host: str, address: str, generation: int) -> bool:
    """Free an orphan claim, if the VF is still as it was seen."""
    return _swap(context.session, host, address, generation,
                 _in_state(states.CLAIMED), vf_obj.free)


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def clear_mark(context, host: str, address: str, generation: int) -> bool:
    """Unmark an allocation whose migration is over; the owner stays."""
    return _swap(context.session, host, address, generation,
                 _in_state(states.ALLOCATED), vf_obj.unmark)


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def set_attach_state(context, host: str, address: str, generation: int,
                     attach_state: str) -> bool:
    """Record what is really plugged in, if the VF is unchanged."""
    return _swap(context.session, host, address, generation,
                 VF.state == states.ALLOCATED, vf_obj.set_attach_state,
                 attach_state)


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def reserve_seen(context, host: str, address: str, generation: int,
                 reason: str) -> bool:
    """Reserve an available VF found in use, if it is unchanged."""
    return _swap(context.session, host, address, generation,
                 VF.state == states.AVAILABLE, vf_obj.reserve, reason)
