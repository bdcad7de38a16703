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

"""Hosts and their PF/VF inventory, as the agents report it."""

import typing

from oslo_db import exception as db_exc
from oslo_utils import timeutils
import sqlalchemy as sa

from vfpool.db import api as db_api
from vfpool.db import models
from vfpool import exception
from vfpool.objects import vf as vf_obj
from vfpool import states
from vfpool import utils

Host = models.Host
PF = models.PhysicalFunction
VF = models.VirtualFunction

# VF columns the agent describes; a change to any of them is an update.
_VF_FIELDS = ('vf_index', 'vendor_id', 'product_id', 'numa_node', 'netdev')
_PF_FIELDS = ('netdev', 'vendor_id', 'product_id', 'numa_node',
              'physical_network')


class HostRef(typing.NamedTuple):
    """What a claim needs of a host, read with Core on the hot path."""

    id: int
    name: str
    disabled: bool


def get_by_name(session, name: str) -> models.Host:
    host = session.execute(
        sa.select(Host).where(Host.name == name)).scalar_one_or_none()
    if host is None:
        raise exception.HostNotFound(host=name)
    return host


def names_by_id(session, ids) -> dict:
    rows = session.execute(sa.select(Host.id, Host.name)
                           .where(Host.id.in_(set(ids)))).all()
    return dict(rows)


def _get_or_create(session, name: str, now) -> models.Host:
    host = session.execute(
        sa.select(Host).where(Host.name == name)).scalar_one_or_none()
    if host is None:
        host = Host(name=name, disabled=False, created_at=now)
        session.add(host)
        # A concurrent first report of the same host loses here with
        # DBDuplicateEntry and is retried whole, finding the row.
        session.flush()
    return host


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def report_unchanged(context, host: str, digest: str) -> bool:
    """Record a report of the very snapshot last applied, if it is that.

    One UPDATE, guarded by the digest stored by the last full report:
    True when it matched (the host's ``last_report_at`` moved, nothing
    else changed), False when the report must be applied in full.  What
    a report reconciles (inventory columns, VFs present or ``missing``)
    is written by :func:`report_inventory` alone: every other write of a
    VF goes through ``vf.transition``, which keeps a ``missing`` VF
    missing, so claims and releases never make the digest stale.
    """
    return bool(context.session.connection().execute(_UNCHANGED, dict(
        u_name=host, u_digest=digest,
        last_report_at=timeutils.utcnow())).rowcount)


#: report_unchanged's one statement, built once: it is most of the
#: reports of a cloud.
_UNCHANGED = (sa.update(Host)
              .where(Host.name == sa.bindparam('u_name'),
                     Host.report_digest == sa.bindparam('u_digest'))
              .values(last_report_at=sa.bindparam('last_report_at')))


def forget_report(session, host_id: int) -> None:
    """Make the host's next report a full one (after an operator's edit).

    The generation moves too: a full report that read the rows before
    the edit starts over rather than store its digest over them.
    """
    session.execute(
        sa.update(Host).where(Host.id == host_id)
        .values(report_digest=None,
                report_generation=Host.report_generation + 1)
        .execution_options(synchronize_session=False))


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def report_inventory(context, host: str, pfs: list[dict],
                     digest: str | None = None) -> dict:
    """Make the DB match a full snapshot of one host.

    Owned VFs are never deleted: a VF that is no longer reported becomes
    ``missing`` and keeps its owner until it is released.  Every change
    of a VF is a compare-and-swap on its generation, so a claim that
    races with a report either lands first (and is kept) or makes the
    report start over.  ``digest`` (the snapshot's, or None) is stored
    in the same transaction, for :func:`report_unchanged`.
    """
    session = context.session
    now = timeutils.utcnow()
    host_row = _get_or_create(session, host, now)
    _fence_report(session, host_row, digest, now)
    counts = dict(added=0, removed=0, updated=0, unchanged=0)

    pf_rows = {p.address: p for p in session.execute(
        sa.select(PF).where(PF.host_id == host_row.id)).scalars()}
    vf_rows = {v.address: v for v in session.execute(
        sa.select(VF).where(VF.host_id == host_row.id)).scalars()}
    new_vfs = []
    seen = set()
    for pf in pfs:
        pf_row = pf_rows.get(pf['address'])
        if pf_row is None:
            pf_row = PF(host_id=host_row.id, address=pf['address'],
                        created_at=now,
                        **{k: pf[k] for k in _PF_FIELDS})
            session.add(pf_row)
            session.flush()
        elif any(getattr(pf_row, k) != pf[k] for k in _PF_FIELDS):
            for k in _PF_FIELDS:
                setattr(pf_row, k, pf[k])
            pf_row.updated_at = now
        for vf in pf['vfs']:
            seen.add(vf['address'])
            numa = vf['numa_node'] if vf['numa_node'] is not None \
                else pf['numa_node']
            wanted = dict({k: vf[k] for k in _VF_FIELDS}, numa_node=numa,
                          pf_id=pf_row.id,
                          physical_network=pf['physical_network'])
            row = vf_rows.get(vf['address'])
            if row is None:
                new_vfs.append(dict(
                    wanted, host_id=host_row.id, address=vf['address'],
                    state=states.AVAILABLE, generation=0, created_at=now))
                counts['added'] += 1
                continue
            changes = {k: v for k, v in wanted.items()
                       if getattr(row, k) != v}
            if not changes and row.state != states.MISSING:
                counts['unchanged'] += 1
                continue
            vf_obj.update_reported(session, row, changes, now)
            counts['updated'] += 1
    for address, row in vf_rows.items():
        if address in seen or row.state == states.MISSING:
            continue
        vf_obj.go_missing(session, row, now)
        counts['removed'] += 1
    if new_vfs:
        session.execute(sa.insert(VF), new_vfs)
    return counts


def _fence_report(session, host_row: models.Host, digest: str | None,
                  now) -> None:
    """Take the host's report generation, as read, with the digest.

    First, so that an overlapping report waits here or starts over: the
    swap is checked against the latest committed row whatever the
    transaction's snapshot, so a report that read its rows before
    another one committed never stores its digest over that one's rows.
    """
    done = session.connection().execute(
        sa.update(Host)
        .where(Host.id == host_row.id,
               Host.report_generation == host_row.report_generation)
        .values(report_generation=host_row.report_generation + 1,
                report_digest=digest, last_report_at=now)).rowcount
    if not done:
        raise db_exc.RetryRequest(exception.Conflict())


def _counts(session, host_id: int) -> dict:
    rows = session.execute(
        sa.select(VF.physical_network, VF.state, sa.func.count())
        .where(VF.host_id == host_id)
        .group_by(VF.physical_network, VF.state)).all()
    networks: dict = {}
    for network, state, count in rows:
        per_state = networks.setdefault(
            network, {s: 0 for s in states.VF_STATES})
        per_state[state] = count
    return networks


def _summary(session, host: models.Host) -> dict:
    networks = _counts(session, host.id)
    pf_count = session.execute(
        sa.select(sa.func.count()).select_from(PF)
        .where(PF.host_id == host.id)).scalar_one()
    return {
        'name': host.name,
        'disabled': bool(host.disabled),
        'disabled_reason': host.disabled_reason,
        'last_report_at': utils.isotime(host.last_report_at),
        'pf_count': pf_count,
        'vf_count': sum(sum(c.values()) for c in networks.values()),
        'physical_networks': networks,
    }


@db_api.context_manager.reader
def get_host(context, host: str) -> dict:
    session = context.session
    return _summary(session, get_by_name(session, host))


@db_api.context_manager.reader
def list_hosts(context) -> list[dict]:
    session = context.session
    hosts = session.execute(sa.select(Host).order_by(Host.name)).scalars()
    return [_summary(session, h) for h in hosts]


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def set_disabled(context, host: str, disabled: bool,
                 reason: str | None = None) -> dict:
    """Disable (no new claims) or enable a host; allocations stay."""
    session = context.session
    row = get_by_name(session, host)
    row.disabled = disabled
    row.disabled_reason = reason if disabled else None
    row.updated_at = timeutils.utcnow()
    session.flush()
    return _summary(session, row)
