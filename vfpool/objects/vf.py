"""VF rows: how they are read, matched, and moved between states.

Every change of a VF's state is a compare-and-swap: the UPDATE names the
state (and generation) it expects, and a row count of zero means another
transaction won the VF.  That holds on SQLite, MariaDB/Galera and
PostgreSQL alike, with any number of servers, because the database
re-checks the WHERE clause against the latest committed row.
"""

from oslo_utils import timeutils
import sqlalchemy as sa

from vfpool.db import models
from vfpool import exception

VF = models.VirtualFunction
PF = models.PhysicalFunction

#: How many candidates one query proposes; the loop asks again if all
#: of them were won by others meanwhile.
_CANDIDATES = 8


def allocation(vf: VF, pf_address: str, **override) -> dict:
    """The RPC representation of a VF held for an instance."""
    result = {
        'address': vf.address,
        'pf_address': pf_address,
        'physical_network': vf.physical_network,
        'vendor_id': vf.vendor_id,
        'product_id': vf.product_id,
        'numa_node': vf.numa_node,
        'mac': vf.mac,
        'vlan': vf.vlan,
        'port_id': vf.port_id,
    }
    result.update(override)
    return result


def with_pf(session, *criteria, order_by=(VF.id,)):
    """VF rows matching ``criteria``, each with its PF's address."""
    query = (sa.select(VF, PF.address).join(PF, PF.id == VF.pf_id)
             .where(*criteria).order_by(*order_by))
    return session.execute(query).all()


def owned_by(instance_uuid: str):
    """Criteria of the VFs an instance holds as its allocations.

    A source VF that a migration in flight is moving is still one; a
    destination claim is not yet.
    """
    return sa.and_(
        VF.instance_uuid == instance_uuid,
        sa.or_(VF.state == models.ALLOCATED,
               sa.and_(VF.state == models.MISSING,
                       VF.prior_state == models.ALLOCATED)))


def transition(session, criteria, to_state: str, **values) -> int:
    """Move every VF matching ``criteria`` to ``to_state``.

    A VF that is ``missing`` keeps that state and records ``to_state`` as
    the state it returns to when the agent reports it again.
    """
    now = timeutils.utcnow()
    common = dict(values, updated_at=now, generation=VF.generation + 1)
    present = session.execute(
        sa.update(VF).where(criteria, VF.state != models.MISSING)
        .values(state=to_state, **common)
        .execution_options(synchronize_session=False)).rowcount
    gone = session.execute(
        sa.update(VF).where(criteria, VF.state == models.MISSING)
        .values(prior_state=to_state, **common)
        .execution_options(synchronize_session=False)).rowcount
    return present + gone


FREE_VALUES = dict(instance_uuid=None, request_id=None, migration_uuid=None,
                   mac=None, vlan=None, port_id=None, attach_state=None)


def free(session, criteria) -> int:
    """Return VFs to the pool, dropping every trace of their owner."""
    return transition(session, criteria, models.AVAILABLE, **FREE_VALUES)


def claim(session, host_id: int, request: dict, to_state: str,
          values: dict, numa_policy: str = 'preferred',
          exclude: set | None = None) -> tuple[int, dict]:
    """Win one available VF matching ``request`` on a host.

    Returns the VF's id and its allocation as it is after the swap.
    Raises NoAvailableVF when every candidate is taken.
    """
    exclude = set(exclude or ())
    criteria = [VF.host_id == host_id,
                VF.physical_network == request['physical_network'],
                VF.state == models.AVAILABLE]
    for key in ('vendor_id', 'product_id'):
        if request.get(key):
            criteria.append(getattr(VF, key) == request[key])
    numa = request.get('numa_node')
    order = [VF.id]
    if numa is not None:
        if numa_policy == 'required':
            criteria.append(VF.numa_node == numa)
        elif numa_policy == 'preferred':
            order = [sa.case((VF.numa_node == numa, 0), else_=1), VF.id]
    now = timeutils.utcnow()
    while True:
        if exclude:
            criteria_now = criteria + [VF.id.not_in(exclude)]
        else:
            criteria_now = criteria
        query = (sa.select(VF, PF.address).join(PF, PF.id == VF.pf_id)
                 .where(*criteria_now).order_by(*order).limit(_CANDIDATES)
                 .execution_options(populate_existing=True))
        candidates = session.execute(query).all()
        if not candidates:
            raise exception.NoAvailableVF(
                host=request.get('host', host_id),
                request=_describe(request))
        for vf, pf_address in candidates:
            won = session.execute(
                sa.update(VF)
                .where(VF.id == vf.id, VF.state == models.AVAILABLE,
                       VF.generation == vf.generation)
                .values(state=to_state, generation=vf.generation + 1,
                        updated_at=now, **values)
                .execution_options(synchronize_session=False)).rowcount
            if won:
                return vf.id, allocation(
                    vf, pf_address, mac=values.get('mac'),
                    vlan=values.get('vlan'), port_id=values.get('port_id'))
            exclude.add(vf.id)


def _describe(request: dict) -> str:
    return ', '.join('%s=%s' % (k, request[k]) for k in sorted(request)
                     if request[k] is not None and k != 'host')
