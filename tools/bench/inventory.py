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

"""The inventories a benchmark runs on, and how they are seeded."""

import dataclasses
import datetime
import time

from bench.results import Report


PHYSNET = 'physnet1'
VENDOR_ID = '8086'
PF_PRODUCT_ID = '1572'
VF_PRODUCT_ID = '154c'


def _utcnow() -> datetime.datetime:
    """Naive UTC, as oslo.utils' timeutils.utcnow() gives vfpool."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def host_name(prefix: str, index: int) -> str:
    return '%s-%05d' % (prefix, index)


def _pci(bus: int, offset: int) -> str:
    bus += offset // 256
    offset %= 256
    return '0000:%02x:%02x.%d' % (bus, offset // 8, offset % 8)


def host_snapshot(vfs_per_host: int, pfs_per_host: int) -> list[dict]:
    """What an agent reports for one host: PFs with their VFs.

    The same for every host (as a homogeneous cluster's would be); both
    seeding paths derive their rows from it.
    """
    pfs = []
    per_pf = [vfs_per_host // pfs_per_host + (1 if p < vfs_per_host
                                              % pfs_per_host else 0)
              for p in range(pfs_per_host)]
    for p, count in enumerate(per_pf):
        bus = 0x10 + p * 0x10
        pfs.append({
            'address': _pci(bus, 0), 'netdev': 'ens%df0' % (p + 1),
            'vendor_id': VENDOR_ID, 'product_id': PF_PRODUCT_ID,
            'numa_node': p % 2, 'physical_network': PHYSNET,
            'vfs': [{'address': _pci(bus, 16 + i), 'vf_index': i,
                     'vendor_id': VENDOR_ID, 'product_id': VF_PRODUCT_ID,
                     'numa_node': None, 'netdev': None}
                    for i in range(count)],
        })
    return pfs


@dataclasses.dataclass
class Inventory:
    label: str
    prefix: str
    hosts: int
    vfs_per_host: int
    pfs_per_host: int
    bulk: bool

    @property
    def vfs(self) -> int:
        return self.hosts * self.vfs_per_host

    def host(self, index: int) -> str:
        return host_name(self.prefix, index % self.hosts)


def inventory_label(vfs: int) -> str:
    if vfs >= 1000:
        return '%dk' % round(vfs / 1000.0)
    return str(vfs)


def seed_by_rpc(stack, ctxt, inv: Inventory, report: Report, backend: str):
    from vfpool import utils

    pfs = host_snapshot(inv.vfs_per_host, inv.pfs_per_host)
    start = time.perf_counter()
    added = 0
    for i in range(inv.hosts):
        counts = stack.client.report_inventory(
            ctxt, inv.host(i), pfs, digest=utils.snapshot_digest(pfs))
        added += counts['added']
    elapsed = time.perf_counter() - start
    if added != inv.vfs:
        raise RuntimeError('report_inventory added %d VFs, expected %d'
                           % (added, inv.vfs))
    report.note(backend, 'seeded %s: %d hosts x %d VFs = %d VFs through '
                '%d report_inventory RPC calls in %.1f s' % (
                    inv.label, inv.hosts, inv.vfs_per_host, inv.vfs,
                    inv.hosts, elapsed),
                phase='seed', inventory=inv.label, method='rpc',
                seconds=elapsed, vfs=inv.vfs)


def seed_bulk(engine, inv: Inventory, report: Report, backend: str,
              batch: int = 10000):
    """Bulk INSERT of what ``report_inventory`` would have written.

    Same columns and values as vfpool.objects.host.report_inventory:
    hosts (disabled false, created_at and last_report_at now, the
    snapshot's digest as an agent sends it), PFs and
    VFs (state available, generation 0, created_at now, numa_node taken
    from the PF when the VF reports none).  Bypasses RPC for speed only.
    """
    import sqlalchemy as sa

    from vfpool.db import models

    from vfpool import utils

    snapshot = host_snapshot(inv.vfs_per_host, inv.pfs_per_host)
    # As if each host's agent had reported it with its digest (RPC 1.4).
    digest = utils.snapshot_digest(snapshot)
    now = _utcnow()
    hosts_t = models.Host.__table__
    pfs_t = models.PhysicalFunction.__table__
    vfs_t = models.VirtualFunction.__table__
    start = time.perf_counter()
    names = [inv.host(i) for i in range(inv.hosts)]
    with engine.begin() as conn:
        for i in range(0, len(names), batch):
            conn.execute(sa.insert(hosts_t), [
                dict(name=n, disabled=False, disabled_reason=None,
                     created_at=now, last_report_at=now,
                     report_digest=digest)
                for n in names[i:i + batch]])
    with engine.connect() as conn:
        host_ids = dict(conn.execute(sa.select(
            hosts_t.c.name, hosts_t.c.id).where(
                hosts_t.c.name.like(inv.prefix + '-%'))).all())
    pf_rows = [dict(host_id=host_ids[n], address=pf['address'],
                    netdev=pf['netdev'], vendor_id=pf['vendor_id'],
                    product_id=pf['product_id'], numa_node=pf['numa_node'],
                    physical_network=pf['physical_network'], created_at=now)
               for n in names for pf in snapshot]
    with engine.begin() as conn:
        for i in range(0, len(pf_rows), batch):
            conn.execute(sa.insert(pfs_t), pf_rows[i:i + batch])
    with engine.connect() as conn:
        pf_ids = {(h, a): i for i, h, a in conn.execute(sa.select(
            pfs_t.c.id, pfs_t.c.host_id, pfs_t.c.address)).all()}
    rows_done = 0

    def vf_rows():
        for n in names:
            host_id = host_ids[n]
            for pf in snapshot:
                pf_id = pf_ids[(host_id, pf['address'])]
                for vf in pf['vfs']:
                    numa = (vf['numa_node'] if vf['numa_node'] is not None
                            else pf['numa_node'])
                    yield dict(
                        vf_index=vf['vf_index'], vendor_id=vf['vendor_id'],
                        product_id=vf['product_id'], numa_node=numa,
                        netdev=vf['netdev'], pf_id=pf_id,
                        physical_network=pf['physical_network'],
                        host_id=host_id, address=vf['address'],
                        state='available', generation=0, created_at=now)

    pending = []
    last_print = time.perf_counter()
    for row in vf_rows():
        pending.append(row)
        if len(pending) >= batch:
            with engine.begin() as conn:
                conn.execute(sa.insert(vfs_t), pending)
            rows_done += len(pending)
            pending = []
            if time.perf_counter() - last_print > 15:
                last_print = time.perf_counter()
                print('    ... %d / %d VFs inserted' % (rows_done, inv.vfs),
                      flush=True)
    if pending:
        with engine.begin() as conn:
            conn.execute(sa.insert(vfs_t), pending)
        rows_done += len(pending)
    inserted = time.perf_counter() - start

    start = time.perf_counter()
    if engine.dialect.name == 'postgresql':
        with engine.connect().execution_options(
                isolation_level='AUTOCOMMIT') as conn:
            conn.exec_driver_sql('VACUUM ANALYZE hosts, pfs, vfs')
    elif engine.dialect.name == 'mysql':
        with engine.connect() as conn:
            conn.exec_driver_sql('ANALYZE TABLE hosts, pfs, vfs').all()
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql('ANALYZE')
    analyzed = time.perf_counter() - start
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(
            vfs_t)).scalar_one()
    report.note(backend, 'seeded %s: %d hosts x %d VFs = %d VFs (%d PFs) by '
                'bulk INSERT (bypassing RPC, for speed) in %.1f s '
                '(%.0f VFs/s), then ANALYZE%s in %.1f s; vfs table: %d rows'
                % (inv.label, inv.hosts, inv.vfs_per_host, rows_done,
                   len(pf_rows), inserted, rows_done / inserted,
                   ' + VACUUM' if engine.dialect.name == 'postgresql'
                   else '', analyzed, total),
                phase='seed', inventory=inv.label, method='bulk',
                seconds=inserted, analyze_seconds=analyzed, vfs=rows_done)
