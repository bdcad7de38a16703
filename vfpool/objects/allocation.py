"""VFs owned by instances: allocate, release, look up, re-home."""

import hashlib

from oslo_serialization import jsonutils
from oslo_utils import timeutils
import sqlalchemy as sa

from vfpool.db import api as db_api
from vfpool.db import models
from vfpool import exception
from vfpool.objects import host as host_obj
from vfpool.objects import vf as vf_obj

VF = models.VirtualFunction
Request = models.AllocationRequest


def _digest(*parts) -> str:
    return hashlib.sha256(
        jsonutils.dumps(parts, sort_keys=True).encode()).hexdigest()


def _owner_values(instance_uuid: str, request: dict,
                  request_id: str | None) -> dict:
    return dict(instance_uuid=instance_uuid, request_id=request_id,
                mac=request.get('mac'), vlan=request.get('vlan'),
                port_id=request.get('port_id'), attach_state=None)


def _replay(session, instance_uuid: str, request_id: str) -> list[dict]:
    rows = vf_obj.with_pf(session, vf_obj.owned_by(instance_uuid),
                          VF.request_id == request_id)
    return [vf_obj.allocation(vf) for vf in rows]


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def allocate(context, instance_uuid: str, host: str, requests: list[dict],
             request_id: str, numa_policy: str = 'preferred') -> list[dict]:
    """Claim one VF per request for an instance, all or nothing.

    The request id is recorded first, under a unique key: a retry (or a
    concurrent duplicate) of the same request finds it and gets the same
    allocations back instead of claiming new ones.
    """
    session = context.session
    digest = _digest(instance_uuid, host, requests)
    seen = session.execute(sa.select(Request).where(
        Request.request_id == request_id)).scalar_one_or_none()
    if seen is not None:
        if seen.digest != digest:
            raise exception.RequestConflict(request_id=request_id)
        return _replay(session, instance_uuid, request_id)
    host_row = host_obj.get_by_name(session, host)
    if host_row.disabled:
        raise exception.HostDisabled(host=host)
    session.add(Request(request_id=request_id, instance_uuid=instance_uuid,
                        host_id=host_row.id, digest=digest,
                        created_at=timeutils.utcnow()))
    session.flush()
    result = []
    taken: set = set()
    for request in requests:
        claimed = vf_obj.claim(
            session, request, models.ALLOCATED,
            _owner_values(instance_uuid, request, request_id),
            numa_policy=numa_policy, exclude=taken, host_id=host_row.id)
        if claimed is None:
            raise vf_obj.no_vf(host, request)
        vf_id, _host_id, alloc = claimed
        taken.add(vf_id)
        result.append(alloc)
    return result


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def release(context, instance_uuid: str, host: str | None = None) -> int:
    """Free every VF the instance holds (on ``host``, if given).

    Destination claims of its migrations in flight are freed too and
    those migrations end as aborted: the instance is gone.
    """
    session = context.session
    criteria = [VF.instance_uuid == instance_uuid]
    request_criteria = [Request.instance_uuid == instance_uuid]
    if host is not None:
        host_row = host_obj.get_by_name(session, host)
        criteria.append(VF.host_id == host_row.id)
        request_criteria.append(Request.host_id == host_row.id)
    migrations = {m for (m,) in session.execute(
        sa.select(VF.migration_uuid).where(
            *criteria, VF.migration_uuid.is_not(None))).all()}
    freed = vf_obj.free(session, sa.and_(*criteria))
    session.execute(sa.delete(Request).where(*request_criteria))
    if migrations:
        _end_migrations(session, migrations)
    return freed


def _end_migrations(session, uuids: set) -> None:
    Migration = models.Migration
    session.execute(
        sa.update(Migration)
        .where(Migration.uuid.in_(uuids),
               Migration.state == models.IN_PROGRESS)
        .values(state=models.ABORTED, updated_at=timeutils.utcnow())
        .execution_options(synchronize_session=False))
    # Whatever the instance still holds elsewhere is no longer moving.
    vf_obj.transition(session, sa.and_(VF.migration_uuid.in_(uuids),
                                       VF.state != models.CLAIMED,
                                       VF.prior_state.is_distinct_from(
                                           models.CLAIMED)),
                      models.ALLOCATED, migration_uuid=None)
    vf_obj.free(session, VF.migration_uuid.in_(uuids))


def allocations(session, instance_uuid: str, host_id: int | None = None,
                extra: bool = False) -> list[dict]:
    criteria = [vf_obj.owned_by(instance_uuid)]
    if host_id is not None:
        criteria.append(VF.host_id == host_id)
    rows = vf_obj.with_pf(session, *criteria)
    names = host_obj.names_by_id(
        session, {vf.host_id for vf in rows}) if extra else {}
    result = []
    for vf in rows:
        alloc = vf_obj.allocation(vf)
        if extra:
            alloc.update(host=names[vf.host_id], state=vf.state,
                         attach_state=vf.attach_state)
        result.append(alloc)
    return result


@db_api.context_manager.reader
def get_instance(context, instance_uuid: str) -> dict:
    from vfpool.objects import migration as migration_obj
    session = context.session
    return {
        'allocations': allocations(session, instance_uuid, extra=True),
        'migration': migration_obj.current(session, instance_uuid),
    }


def _owned_vf(session, instance_uuid: str, host: str, address: str):
    host_row = host_obj.get_by_name(session, host)
    rows = vf_obj.with_pf(session, vf_obj.owned_by(instance_uuid),
                          VF.host_id == host_row.id, VF.address == address)
    if not rows:
        raise exception.AllocationNotFound(
            instance_uuid=instance_uuid, host=host, address=address)
    return host_row, rows[0]


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def set_attach_state(context, instance_uuid: str, host: str, address: str,
                     attach_state: str) -> dict:
    """Record whether an allocated VF is really plugged into its guest."""
    session = context.session
    _host, vf = _owned_vf(session, instance_uuid, host, address)
    session.execute(
        sa.update(VF).where(VF.id == vf.id)
        .values(attach_state=attach_state, generation=VF.generation + 1,
                updated_at=timeutils.utcnow())
        .execution_options(synchronize_session=False))
    return dict(vf_obj.allocation(vf), attach_state=attach_state)


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def replace(context, instance_uuid: str, host: str, address: str,
            numa_policy: str = 'preferred',
            match_device_type: bool = True) -> dict:
    """Swap an allocated VF for another equivalent one on the same host.

    One transaction: the new VF is won (same physical network, MAC, VLAN
    and port) before the old one is freed, so a failure changes nothing.
    """
    session = context.session
    host_row, old = _owned_vf(session, instance_uuid, host, address)
    if old.migration_uuid is not None:
        raise exception.MigrationInProgress(
            instance_uuid=instance_uuid, migration_uuid=old.migration_uuid)
    request = equivalent_request(old, match_device_type)
    values = dict(instance_uuid=instance_uuid, request_id=old.request_id,
                  mac=old.mac, vlan=old.vlan, port_id=old.port_id,
                  attach_state=None)
    claimed = vf_obj.claim(session, request, models.ALLOCATED, values,
                           numa_policy=numa_policy, exclude={old.id},
                           host_id=host_row.id)
    if claimed is None:
        raise vf_obj.no_vf(host, request)
    _vf_id, _host_id, alloc = claimed
    vf_obj.free(session, VF.id == old.id)
    return alloc


def equivalent_request(vf: models.VirtualFunction,
                       match_device_type: bool) -> dict:
    request = {'physical_network': vf.physical_network,
               'numa_node': vf.numa_node}
    if match_device_type:
        request.update(vendor_id=vf.vendor_id, product_id=vf.product_id)
    return request
