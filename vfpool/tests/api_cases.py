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

"""Behaviour of the RPC API, shared by the unit tests (``fake://`` and
SQLite, in-process) and the functional tests (RabbitMQ, real server
processes, SQLite/MariaDB/PostgreSQL).

A subclass provides ``self.client`` (a VfpoolAPI) and ``self.engine``
(an engine on the same database, to look at the tables directly).
"""

import datetime

from oslo_db import exception as db_exc
import sqlalchemy as sa

from vfpool import context as vfpool_context
from vfpool.db import models
from vfpool import exception
from vfpool.objects import allocation as allocation_obj
from vfpool.objects import migration as migration_obj
from vfpool.tests import inventory as inv

ALLOCATION_KEYS = {'address', 'pf_address', 'physical_network', 'vendor_id',
                   'product_id', 'numa_node', 'mac', 'vlan', 'port_id'}


def vf_table(engine) -> dict:
    """(host, address) -> (state, instance_uuid, migration_uuid)."""
    VF = models.VirtualFunction
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(models.Host.name, VF.address, VF.state,
                      VF.instance_uuid, VF.migration_uuid)
            .join(models.Host, models.Host.id == VF.host_id)).all()
    return {(h, a): (s, i, m) for h, a, s, i, m in rows}


def migration_row(engine, migration_uuid: str):
    M = models.Migration
    with engine.connect() as conn:
        return conn.execute(sa.select(M).where(
            M.uuid == migration_uuid)).first()


def lapse(engine, migration_uuid: str) -> None:
    """Put a migration's lease in the past, whatever clock reads it."""
    M = models.Migration
    with engine.begin() as conn:
        conn.execute(sa.update(M).where(M.uuid == migration_uuid).values(
            lease_expires_at=datetime.datetime(2000, 1, 1)))


def reap() -> list:
    """One pass of the reaper every server runs, from this process."""
    return migration_obj.reap_expired(vfpool_context.get_admin_context())


def table_dump(engine) -> dict:
    """Every row of every table, to prove that a call changed nothing."""
    with engine.connect() as conn:
        return {t.name: sorted(map(tuple, conn.execute(
                    sa.select(t)).all()), key=repr)
                for t in models.Base.metadata.sorted_tables}


class ApiBehaviour:

    def report(self, host, *pfs):
        return self.client.report_inventory(None, host, list(pfs))

    def states(self, host):
        return {a: s for (h, a), (s, _i, _m) in
                vf_table(self.engine).items() if h == host}

    def two_hosts(self, vfs=4):
        self.report('src', inv.pf(5, vfs))
        self.report('dst', inv.pf(6, vfs))

    # report_inventory

    def test_report_inventory_counts_each_kind_of_change(self):
        pf = inv.pf(5, 4)
        self.assertEqual({'added': 4, 'removed': 0, 'updated': 0,
                          'unchanged': 0}, self.report('h1', pf))
        self.assertEqual({'added': 0, 'removed': 0, 'updated': 0,
                          'unchanged': 4}, self.report('h1', pf))
        pf['vfs'][0]['netdev'] = 'ens5v0'
        gone = pf['vfs'].pop()
        self.assertEqual({'added': 0, 'removed': 1, 'updated': 1,
                          'unchanged': 2}, self.report('h1', pf))
        self.assertEqual('missing', self.states('h1')[gone['address']])
        pf['vfs'].append(gone)
        self.assertEqual({'added': 0, 'removed': 0, 'updated': 1,
                          'unchanged': 3}, self.report('h1', pf))
        self.assertEqual({'available'}, set(self.states('h1').values()))

    def test_get_host_counts_by_network_and_state(self):
        self.report('h1', inv.pf(5, 3), inv.pf(7, 2, 'physnet2'))
        self.client.allocate(None, inv.new_uuid(), 'h1',
                             [inv.request()], 'r1')
        summary = self.client.get_host(None, 'h1')
        self.assertEqual('h1', summary['name'])
        self.assertEqual(2, summary['pf_count'])
        self.assertEqual(5, summary['vf_count'])
        self.assertEqual(2, summary['physical_networks']['physnet1'][
            'available'])
        self.assertEqual(1, summary['physical_networks']['physnet1'][
            'allocated'])
        self.assertEqual(2, summary['physical_networks']['physnet2'][
            'available'])
        self.assertRaises(exception.HostNotFound,
                          self.client.get_host, None, 'nowhere')

    # allocate / release

    def test_allocate_returns_documented_allocations(self):
        self.report('h1', inv.pf(5, 2, numa_node=0),
                    inv.pf(7, 2, numa_node=1, vf_product='1515'))
        instance = inv.new_uuid()
        allocs = self.client.allocate(None, instance, 'h1', [
            inv.request(mac=inv.mac(1), vlan=42, port_id='port-1',
                        numa_node=1),
            inv.request(product_id='10ca', mac=inv.mac(2)),
        ], 'req-1')
        self.assertEqual(2, len(allocs))
        for alloc in allocs:
            self.assertEqual(ALLOCATION_KEYS, set(alloc))
        first, second = allocs
        self.assertEqual('0000:07:00.0', first['pf_address'])
        self.assertEqual(1, first['numa_node'])
        self.assertEqual((inv.mac(1), 42, 'port-1'),
                         (first['mac'], first['vlan'], first['port_id']))
        self.assertEqual('10ca', second['product_id'])
        self.assertEqual(inv.mac(2), second['mac'])
        table = vf_table(self.engine)
        for alloc in allocs:
            self.assertEqual(('allocated', instance, None),
                             table[('h1', alloc['address'])])

    def test_allocate_is_idempotent_on_request_id(self):
        self.report('h1', inv.pf(5, 4))
        instance = inv.new_uuid()
        reqs = [inv.request(mac=inv.mac(1)), inv.request(mac=inv.mac(2))]
        first = self.client.allocate(None, instance, 'h1', reqs, 'req-1')
        before = vf_table(self.engine)
        again = self.client.allocate(None, instance, 'h1', reqs, 'req-1')
        self.assertEqual(sorted(first, key=repr), sorted(again, key=repr))
        self.assertEqual(before, vf_table(self.engine))
        self.assertRaises(exception.RequestConflict, self.client.allocate,
                          None, instance, 'h1', reqs[:1], 'req-1')

    def test_allocate_is_all_or_nothing(self):
        self.report('h1', inv.pf(5, 2))
        before = table_dump(self.engine)
        self.assertRaises(exception.NoAvailableVF, self.client.allocate,
                          None, inv.new_uuid(), 'h1',
                          [inv.request()] * 3, 'req-1')
        self.assertEqual(before, table_dump(self.engine))
        # The failed request id is not burnt: it can be used again.
        allocs = self.client.allocate(None, inv.new_uuid(), 'h1',
                                      [inv.request()] * 2, 'req-1')
        self.assertEqual(2, len(allocs))

    def test_release_frees_and_is_idempotent(self):
        self.report('h1', inv.pf(5, 3))
        instance = inv.new_uuid()
        self.client.allocate(None, instance, 'h1', [inv.request()] * 2, 'r')
        self.assertEqual(2, self.client.release(None, instance))
        self.assertEqual(0, self.client.release(None, instance))
        self.assertEqual({'available'}, set(self.states('h1').values()))
        self.assertEqual([], self.client.get_instance(
            None, instance)['allocations'])

    def test_late_allocate_after_release_claims_nothing(self):
        # A caller's retry of an allocate that arrives after the instance
        # was released (deleted): its request id is a tombstone.
        self.report('h1', inv.pf(5, 3))
        instance = inv.new_uuid()
        reqs = [inv.request()] * 2
        self.client.allocate(None, instance, 'h1', reqs, 'req-late')
        self.assertEqual(2, self.client.release(None, instance))
        before = table_dump(self.engine)
        exc = self.assertRaises(exception.RequestReleased,
                                self.client.allocate, None, instance, 'h1',
                                reqs, 'req-late')
        self.assertIn(instance, str(exc))
        self.assertEqual(before, table_dump(self.engine))
        self.assertEqual({'available'}, set(self.states('h1').values()))
        # Another request id of the instance still claims.
        self.assertEqual(2, len(self.client.allocate(
            None, instance, 'h1', reqs, 'req-new')))

    def test_release_on_one_host_tombstones_only_that_host(self):
        self.two_hosts()
        instance = inv.new_uuid()
        self.client.allocate(None, instance, 'src', [inv.request()], 'r1')
        self.client.allocate(None, instance, 'dst', [inv.request()], 'r2')
        self.client.release(None, instance, 'dst')
        self.assertRaises(exception.RequestReleased, self.client.allocate,
                          None, instance, 'dst', [inv.request()], 'r2')
        # The retry of the request still held answers as before.
        [held] = self.client.get_instance(None, instance)['allocations']
        [again] = self.client.allocate(None, instance, 'src',
                                       [inv.request()], 'r1')
        self.assertEqual(('src', held['address']),
                         (held['host'], again['address']))

    def test_tombstones_are_reaped_after_their_retention(self):
        self.report('h1', inv.pf(5, 2))
        instance = inv.new_uuid()
        self.client.allocate(None, instance, 'h1', [inv.request()], 'r')
        self.client.release(None, instance)
        ctxt = vfpool_context.get_admin_context()
        self.assertEqual(0, allocation_obj.reap_released(ctxt, 3600))
        Request = models.AllocationRequest
        with self.engine.begin() as conn:
            conn.execute(sa.update(Request).values(
                released_at=datetime.datetime(2000, 1, 1)))
        # A server's own reaper may take it first (the functional servers
        # reap every second): whoever reaps, the tombstone is gone.
        allocation_obj.reap_released(ctxt, 3600)
        with self.engine.begin() as conn:
            self.assertEqual(0, conn.execute(
                sa.select(sa.func.count()).select_from(Request)).scalar())
        self.assertEqual(1, len(self.client.allocate(
            None, instance, 'h1', [inv.request()], 'r')))

    def test_allocate_finds_an_assignment_whenever_capacity_does(self):
        # Issue 18 item 8: the Mellanox VF has the lower id, and claiming
        # request by request gave it to the request that takes any VF.
        self.report('h1', inv.pf(5, 1, vendor_id='15b3', vf_product='1018'),
                    inv.pf(7, 1))
        reqs = [inv.request(), inv.request(vendor_id='15b3')]
        self.assertEqual({'h1': True}, self.client.get_capacity(
            None, ['h1'], reqs)['hosts'])
        allocs = self.client.allocate(None, inv.new_uuid(), 'h1', reqs, 'r')
        self.assertEqual(['8086', '15b3'], [a['vendor_id'] for a in allocs])

    def test_release_tombstones_the_request_ids_it_names(self):
        # Issue 18 item 4: the caller's allocate is still queued (it timed
        # out) when the instance is deleted; it must claim nothing later.
        self.report('h1', inv.pf(5, 2))
        instance, reqs = inv.new_uuid(), [inv.request()]
        self.assertEqual(0, self.client.release(
            None, instance, 'h1', request_ids=['req-queued']))
        before = table_dump(self.engine)
        self.assertRaises(exception.RequestReleased, self.client.allocate,
                          None, instance, 'h1', reqs, 'req-queued')
        self.assertEqual(before, table_dump(self.engine))
        # Naming it again, or a recorded id, frees and tombstones as ever.
        self.client.allocate(None, instance, 'h1', reqs, 'req-2')
        self.assertEqual(1, self.client.release(
            None, instance, 'h1', request_ids=['req-queued', 'req-2']))
        self.assertRaises(exception.RequestReleased, self.client.allocate,
                          None, instance, 'h1', reqs, 'req-2')
        self.assertEqual({'available'}, set(self.states('h1').values()))

    def test_release_refuses_another_instances_request_id(self):
        self.report('h1', inv.pf(5, 2))
        x, y = inv.new_uuid(), inv.new_uuid()
        self.client.allocate(None, y, 'h1', [inv.request()], 'req-y')
        self.client.allocate(None, x, 'h1', [inv.request()], 'req-x')
        before = table_dump(self.engine)
        self.assertRaises(exception.RequestConflict, self.client.release,
                          None, x, 'h1', request_ids=['req-y'])
        self.assertEqual(before, table_dump(self.engine))

    def test_release_after_a_migration_tombstones_the_original_id(self):
        # Issue 18 item 10: the request was recorded on src; the VFs
        # moved to dst, where the instance is deleted.  A late duplicate
        # of the allocate must be refused, not answered [] as a success.
        self.two_hosts()
        instance, migration = inv.new_uuid(), inv.new_uuid()
        self.client.allocate(None, instance, 'src', [inv.request()], 'r1')
        self.client.prepare_migration(None, migration, instance, 'src',
                                      'dst')
        self.client.complete_migration(None, migration)
        self.assertEqual(1, self.client.release(None, instance, 'dst'))
        self.assertRaises(exception.RequestReleased, self.client.allocate,
                          None, instance, 'src', [inv.request()], 'r1')
        self.assertEqual({'available'}, set(self.states('src').values()))

    def test_release_on_a_destination_keeps_the_source_request_id(self):
        # The destination claim carries the source's request id; the
        # instance still holds its source VF under it.
        self.two_hosts()
        instance, migration = inv.new_uuid(), inv.new_uuid()
        [alloc] = self.client.allocate(None, instance, 'src',
                                       [inv.request()], 'r1')
        self.client.prepare_migration(None, migration, instance, 'src',
                                      'dst')
        self.assertEqual(1, self.client.release(None, instance, 'dst'))
        [again] = self.client.allocate(None, instance, 'src',
                                       [inv.request()], 'r1')
        self.assertEqual(alloc['address'], again['address'])

    def test_release_on_one_host_only(self):
        self.two_hosts()
        instance = inv.new_uuid()
        self.client.allocate(None, instance, 'src', [inv.request()], 'r1')
        self.client.allocate(None, instance, 'dst', [inv.request()], 'r2')
        self.assertEqual(1, self.client.release(None, instance, 'dst'))
        allocs = self.client.get_instance(None, instance)['allocations']
        self.assertEqual(['src'], [a['host'] for a in allocs])

    # migrations

    def _allocated(self, vfs=1, host='src'):
        instance = inv.new_uuid()
        allocs = self.client.allocate(
            None, instance, host,
            [inv.request(mac=inv.mac(i), vlan=100 + i) for i in range(vfs)],
            inv.new_uuid())
        return instance, allocs

    def test_prepare_and_complete_move_the_allocations(self):
        self.two_hosts()
        instance, allocs = self._allocated(vfs=2)
        migration = inv.new_uuid()
        pairs = self.client.prepare_migration(None, migration, instance,
                                              'src', 'dst')
        self.assertEqual(2, len(pairs))
        for pair, alloc in zip(pairs, allocs):
            self.assertEqual(alloc, pair['source'])
            dest = pair['dest']
            self.assertEqual(ALLOCATION_KEYS, set(dest))
            self.assertTrue(dest['address'].startswith('0000:06:'))
            for key in ('physical_network', 'vendor_id', 'product_id',
                        'numa_node', 'mac', 'vlan', 'port_id'):
                self.assertEqual(alloc[key], dest[key], key)
        table = vf_table(self.engine)
        for pair in pairs:
            self.assertEqual(('claimed', instance, migration),
                             table[('dst', pair['dest']['address'])])
            self.assertEqual(('allocated', instance, migration),
                             table[('src', pair['source']['address'])])

        done = self.client.complete_migration(None, migration)
        self.assertEqual(sorted(p['dest']['address'] for p in pairs),
                         sorted(a['address'] for a in done))
        self.assertEqual({'available'}, set(self.states('src').values()))
        table = vf_table(self.engine)
        for pair in pairs:
            self.assertEqual(('allocated', instance, None),
                             table[('dst', pair['dest']['address'])])
        # Idempotent, and the migration can no longer be aborted.
        self.assertEqual(done, self.client.complete_migration(None,
                                                              migration))
        self.assertRaises(exception.MigrationStateConflict,
                          self.client.abort_migration, None, migration)
        info = self.client.get_instance(None, instance)
        self.assertEqual('completed', info['migration']['state'])
        self.assertEqual({'dst'}, {a['host'] for a in info['allocations']})

    def test_complete_keeps_vfs_that_went_missing_missing(self):
        # complete moves claims and sources in one UPDATE, each row by
        # its own rule: a VF gone missing meanwhile stays missing and
        # comes back as what it became (an allocation, a free VF).
        src_pf, dst_pf = inv.pf(5, 4), inv.pf(6, 4)
        self.report('src', src_pf)
        self.report('dst', dst_pf)
        instance, _allocs = self._allocated(vfs=2)
        migration = inv.new_uuid()
        pairs = self.client.prepare_migration(None, migration, instance,
                                              'src', 'dst')
        gone_src = pairs[0]['source']['address']
        gone_dst = pairs[1]['dest']['address']
        self.report('src', dict(src_pf, vfs=[
            v for v in src_pf['vfs'] if v['address'] != gone_src]))
        self.report('dst', dict(dst_pf, vfs=[
            v for v in dst_pf['vfs'] if v['address'] != gone_dst]))

        done = self.client.complete_migration(None, migration)
        self.assertEqual(sorted(p['dest']['address'] for p in pairs),
                         sorted(a['address'] for a in done))
        table = vf_table(self.engine)
        self.assertEqual(('missing', None, None), table[('src', gone_src)])
        self.assertEqual(('available', None, None),
                         table[('src', pairs[1]['source']['address'])])
        self.assertEqual(('missing', instance, None),
                         table[('dst', gone_dst)])
        self.assertEqual(('allocated', instance, None),
                         table[('dst', pairs[0]['dest']['address'])])
        self.report('src', src_pf)
        self.report('dst', dst_pf)
        self.assertEqual('available', self.states('src')[gone_src])
        self.assertEqual(('allocated', instance, None),
                         vf_table(self.engine)[('dst', gone_dst)])

    def test_prepare_is_idempotent_on_migration_uuid(self):
        self.two_hosts()
        instance, _ = self._allocated()
        migration = inv.new_uuid()
        first = self.client.prepare_migration(None, migration, instance,
                                              'src', 'dst')
        before = vf_table(self.engine)
        again = self.client.prepare_migration(None, migration, instance,
                                              'src', 'dst')
        self.assertEqual(first, again)
        self.assertEqual(before, vf_table(self.engine))
        self.assertEqual(1, list(self.states('dst').values()).count(
            'claimed'))

    def test_prepare_is_all_or_nothing(self):
        self.report('src', inv.pf(5, 4))
        self.report('dst', inv.pf(6, 1))
        instance, _ = self._allocated(vfs=2)
        before = table_dump(self.engine)
        self.assertRaises(exception.NoAvailableVF,
                          self.client.prepare_migration, None,
                          inv.new_uuid(), instance, 'src', 'dst')
        self.assertEqual(before, table_dump(self.engine))

    def test_prepare_matches_device_type(self):
        self.report('src', inv.pf(5, 2))
        self.report('dst', inv.pf(6, 2, vf_product='1515'))
        instance, _ = self._allocated()
        self.assertRaises(exception.NoAvailableVF,
                          self.client.prepare_migration, None,
                          inv.new_uuid(), instance, 'src', 'dst')

    def test_prepare_prefers_same_numa_node(self):
        self.report('src', inv.pf(5, 2, numa_node=1))
        self.report('dst', inv.pf(6, 2, numa_node=0),
                    inv.pf(7, 2, numa_node=1))
        instance, _ = self._allocated()
        pairs = self.client.prepare_migration(None, inv.new_uuid(),
                                              instance, 'src', 'dst')
        self.assertEqual('0000:07:00.0', pairs[0]['dest']['pf_address'])

    def test_second_migration_of_an_instance_is_refused(self):
        self.two_hosts()
        self.report('third', inv.pf(8, 4))
        instance, _ = self._allocated()
        first = inv.new_uuid()
        self.client.prepare_migration(None, first, instance, 'src', 'dst')
        before = table_dump(self.engine)
        self.assertRaises(exception.MigrationInProgress,
                          self.client.prepare_migration, None,
                          inv.new_uuid(), instance, 'src', 'third')
        self.assertEqual(before, table_dump(self.engine))
        # Once the first is aborted, a new one may start.
        self.assertEqual(1, self.client.abort_migration(None, first))
        self.client.prepare_migration(None, inv.new_uuid(), instance, 'src',
                                      'third')

    def test_abort_frees_claims_and_keeps_the_source(self):
        self.two_hosts()
        instance, allocs = self._allocated(vfs=2)
        migration = inv.new_uuid()
        self.client.prepare_migration(None, migration, instance, 'src',
                                      'dst')
        self.assertEqual(2, self.client.abort_migration(None, migration))
        self.assertEqual(0, self.client.abort_migration(None, migration))
        self.assertEqual({'available'}, set(self.states('dst').values()))
        table = vf_table(self.engine)
        for alloc in allocs:
            self.assertEqual(('allocated', instance, None),
                             table[('src', alloc['address'])])
        self.assertRaises(exception.MigrationStateConflict,
                          self.client.complete_migration, None, migration)
        self.assertRaises(exception.MigrationNotFound,
                          self.client.abort_migration, None, inv.new_uuid())

    def test_renew_extends_the_lease(self):
        self.two_hosts()
        instance, _ = self._allocated()
        migration = inv.new_uuid()
        self.client.prepare_migration(None, migration, instance, 'src',
                                      'dst', lease_seconds=60)
        first = self.client.get_instance(None, instance)['migration'][
            'lease_expires_at']
        renewed = self.client.renew_migration(None, migration, 3600)
        parse = datetime.datetime.fromisoformat
        self.assertGreater(parse(renewed.rstrip('Z')) - parse(
            first.rstrip('Z')), datetime.timedelta(seconds=3000))
        self.assertEqual(renewed, self.client.get_instance(
            None, instance)['migration']['lease_expires_at'])

    def test_get_instance_shows_allocations_and_migration(self):
        self.two_hosts()
        instance, allocs = self._allocated()
        info = self.client.get_instance(None, instance)
        self.assertIsNone(info['migration'])
        self.assertEqual(allocs[0]['address'],
                         info['allocations'][0]['address'])
        self.assertEqual('src', info['allocations'][0]['host'])
        migration = inv.new_uuid()
        pairs = self.client.prepare_migration(None, migration, instance,
                                              'src', 'dst')
        info = self.client.get_instance(None, instance)
        self.assertEqual(migration, info['migration']['uuid'])
        self.assertEqual('in_progress', info['migration']['state'])
        self.assertEqual(pairs, info['migration']['vfs'])

    def test_missing_vf_keeps_its_owner(self):
        pf = inv.pf(5, 2)
        self.report('h1', pf)
        instance, allocs = self._allocated(host='h1')
        owned = allocs[0]['address']
        pf_without = dict(pf, vfs=[v for v in pf['vfs']
                                   if v['address'] != owned])
        self.report('h1', pf_without)
        self.assertEqual(('missing', instance, None),
                         vf_table(self.engine)[('h1', owned)])
        self.assertEqual([owned], [a['address'] for a in
                                   self.client.get_instance(
                                       None, instance)['allocations']])
        self.report('h1', pf)
        self.assertEqual(('allocated', instance, None),
                         vf_table(self.engine)[('h1', owned)])

    # 1.1

    def test_ping(self):
        self.assertEqual('1.6', self.client.ping(None)['version'])

    def test_replace_allocation_swaps_in_one_step(self):
        self.report('h1', inv.pf(5, 2))
        instance, allocs = self._allocated(host='h1')
        new = self.client.replace_allocation(None, instance, 'h1',
                                             allocs[0]['address'])
        self.assertNotEqual(allocs[0]['address'], new['address'])
        self.assertEqual(allocs[0]['mac'], new['mac'])
        self.assertEqual(allocs[0]['vlan'], new['vlan'])
        states = self.states('h1')
        self.assertEqual('available', states[allocs[0]['address']])
        self.assertEqual('allocated', states[new['address']])
        # Nothing left to swap to: no change at all.
        self._allocated(host='h1')
        before = table_dump(self.engine)
        self.assertRaises(exception.NoAvailableVF,
                          self.client.replace_allocation, None, instance,
                          'h1', new['address'])
        self.assertEqual(before, table_dump(self.engine))

    def test_set_attach_state_is_recorded(self):
        self.report('h1', inv.pf(5, 1))
        instance, allocs = self._allocated(host='h1')
        self.client.set_attach_state(None, instance, 'h1',
                                     allocs[0]['address'], 'detached')
        info = self.client.get_instance(None, instance)
        self.assertEqual('detached', info['allocations'][0]['attach_state'])
        self.assertRaises(exception.AllocationNotFound,
                          self.client.set_attach_state, None,
                          inv.new_uuid(), 'h1', allocs[0]['address'],
                          'attached')

    # 1.2: begin_migration and the moving state

    def _prepared(self, vfs=1, dest='dst', lease_seconds=None):
        instance, allocs = self._allocated(vfs=vfs)
        migration = inv.new_uuid()
        pairs = self.client.prepare_migration(None, migration, instance,
                                              'src', dest,
                                              lease_seconds=lease_seconds)
        return instance, migration, pairs

    def test_begin_moves_to_moving_and_renews_the_lease(self):
        self.two_hosts()
        instance, migration, pairs = self._prepared(lease_seconds=60)
        before = vf_table(self.engine)
        first = self.client.get_instance(None, instance)['migration'][
            'lease_expires_at']
        expiry = self.client.begin_migration(None, migration, 3600)
        parse = datetime.datetime.fromisoformat
        self.assertGreater(parse(expiry.rstrip('Z')) - parse(
            first.rstrip('Z')), datetime.timedelta(seconds=3000))
        info = self.client.get_instance(None, instance)
        self.assertEqual(('moving', expiry),
                         (info['migration']['state'],
                          info['migration']['lease_expires_at']))
        # Both sides are held exactly as before.
        self.assertEqual(before, vf_table(self.engine))
        # Idempotent: moving -> moving, lease renewed again.
        self.client.begin_migration(None, migration)
        self.assertEqual('moving', migration_row(self.engine,
                                                 migration).state)
        # Renew and a replayed prepare keep working while moving.
        self.client.renew_migration(None, migration, 600)
        self.assertEqual(pairs, self.client.prepare_migration(
            None, migration, instance, 'src', 'dst'))
        done = self.client.complete_migration(None, migration)
        self.assertEqual([p['dest']['address'] for p in pairs],
                         [a['address'] for a in done])
        self.assertEqual({'available'}, set(self.states('src').values()))

    def test_begin_refuses_finished_migrations(self):
        self.two_hosts()
        _instance, migration, _pairs = self._prepared()
        self.client.abort_migration(None, migration)
        self.assertRaises(exception.MigrationStateConflict,
                          self.client.begin_migration, None, migration)
        _instance, migration, _pairs = self._prepared()
        self.client.complete_migration(None, migration)
        self.assertRaises(exception.MigrationStateConflict,
                          self.client.begin_migration, None, migration)
        self.assertRaises(exception.MigrationNotFound,
                          self.client.begin_migration, None, inv.new_uuid())

    def test_begin_after_expiry_raises_lease_expired(self):
        self.two_hosts()
        _instance, migration, _pairs = self._prepared()
        lapse(self.engine, migration)
        reap()
        self.assertEqual('expired', migration_row(self.engine,
                                                  migration).state)
        before = table_dump(self.engine)
        self.assertRaises(exception.LeaseExpired,
                          self.client.begin_migration, None, migration)
        self.assertEqual(before, table_dump(self.engine))

    def test_reaper_never_frees_a_moving_migration(self):
        self.two_hosts()
        instance, migration, pairs = self._prepared()
        self.client.begin_migration(None, migration)
        lapse(self.engine, migration)
        before = vf_table(self.engine)
        self.assertEqual([], reap())
        self.assertEqual('moving', migration_row(self.engine,
                                                 migration).state)
        self.assertEqual(before, vf_table(self.engine))
        # Still finished by complete: the guest made it.
        done = self.client.complete_migration(None, migration)
        self.assertEqual([pairs[0]['dest']['address']],
                         [a['address'] for a in done])

    def test_abort_of_a_moving_migration_keeps_the_source(self):
        self.two_hosts()
        instance, migration, pairs = self._prepared()
        self.client.begin_migration(None, migration)
        self.assertEqual(1, self.client.abort_migration(None, migration))
        self.assertEqual(('allocated', instance, None), vf_table(
            self.engine)[('src', pairs[0]['source']['address'])])
        self.assertEqual({'available'}, set(self.states('dst').values()))

    def test_release_aborts_a_moving_migration(self):
        self.two_hosts()
        instance, migration, _pairs = self._prepared()
        self.client.begin_migration(None, migration)
        self.assertEqual(2, self.client.release(None, instance))
        self.assertEqual('aborted', migration_row(self.engine,
                                                  migration).state)
        self.assertEqual(set(), {i for _s, i, _m in
                                 vf_table(self.engine).values() if i})

    # 1.2: prepare_migration retargets under the same uuid

    def three_hosts(self, third_vfs=4):
        self.two_hosts()
        self.report('third', inv.pf(8, third_vfs))

    def test_prepare_elsewhere_retargets_in_one_step(self):
        self.three_hosts()
        instance, migration, first = self._prepared(vfs=2)
        pairs = self.client.prepare_migration(None, migration, instance,
                                              'src', 'third')
        self.assertEqual([p['source'] for p in first],
                         [p['source'] for p in pairs])
        for pair in pairs:
            self.assertTrue(pair['dest']['address'].startswith('0000:08:'))
            self.assertEqual(pair['source']['mac'], pair['dest']['mac'])
        self.assertEqual({'available'}, set(self.states('dst').values()))
        table = vf_table(self.engine)
        for pair in pairs:
            self.assertEqual(('claimed', instance, migration),
                             table[('third', pair['dest']['address'])])
            self.assertEqual(('allocated', instance, migration),
                             table[('src', pair['source']['address'])])
        info = self.client.get_instance(None, instance)['migration']
        self.assertEqual(('third', 'in_progress', pairs),
                         (info['dest_host'], info['state'], info['vfs']))
        # The retarget replays like any prepare; the first host is over.
        self.assertEqual(pairs, self.client.prepare_migration(
            None, migration, instance, 'src', 'third'))
        done = self.client.complete_migration(None, migration)
        self.assertEqual(sorted(p['dest']['address'] for p in pairs),
                         sorted(a['address'] for a in done))
        self.assertEqual({'available'}, set(self.states('src').values()))

    def test_retarget_is_all_or_nothing(self):
        self.three_hosts(third_vfs=1)
        instance, migration, _first = self._prepared(vfs=2)
        before = table_dump(self.engine)
        self.assertRaises(exception.NoAvailableVF,
                          self.client.prepare_migration, None, migration,
                          instance, 'src', 'third')
        self.assertEqual(before, table_dump(self.engine))
        self.assertRaises(exception.HostNotFound,
                          self.client.prepare_migration, None, migration,
                          instance, 'src', 'nowhere')
        self.assertEqual(before, table_dump(self.engine))

    def test_retarget_refused_once_moving_or_finished(self):
        self.three_hosts()
        instance, migration, _first = self._prepared()
        self.client.begin_migration(None, migration)
        before = table_dump(self.engine)
        self.assertRaises(exception.MigrationStateConflict,
                          self.client.prepare_migration, None, migration,
                          instance, 'src', 'third')
        self.assertEqual(before, table_dump(self.engine))
        self.client.abort_migration(None, migration)
        self.assertRaises(exception.MigrationStateConflict,
                          self.client.prepare_migration, None, migration,
                          instance, 'src', 'third')
        instance, migration, _first = self._prepared()
        lapse(self.engine, migration)
        reap()
        self.assertRaises(exception.LeaseExpired,
                          self.client.prepare_migration, None, migration,
                          instance, 'src', 'third')

    def test_prepare_again_for_another_instance_or_source_is_invalid(self):
        self.three_hosts()
        instance, migration, _first = self._prepared()
        other, _allocs = self._allocated()
        before = table_dump(self.engine)
        self.assertRaises(exception.InvalidInput,
                          self.client.prepare_migration, None, migration,
                          other, 'src', 'third')
        self.assertRaises(exception.InvalidInput,
                          self.client.prepare_migration, None, migration,
                          instance, 'third', 'dst')
        self.assertEqual(before, table_dump(self.engine))

    # 1.2: instances without VFs

    def test_instance_without_vfs_on_unknown_hosts_gets_nothing(self):
        self.two_hosts()
        instance, migration = inv.new_uuid(), inv.new_uuid()
        before = table_dump(self.engine)
        for source, dest in (('nowhere', 'dst'), ('src', 'nowhere'),
                             ('nowhere', 'elsewhere')):
            self.assertEqual([], self.client.prepare_migration(
                None, migration, instance, source, dest))
        self.assertEqual(before, table_dump(self.engine))
        self.assertRaises(exception.MigrationNotFound,
                          self.client.complete_migration, None, migration)
        self.assertRaises(exception.MigrationNotFound,
                          self.client.abort_migration, None, migration)

    def test_instance_without_vfs_on_known_hosts_is_recorded(self):
        self.two_hosts()
        instance, migration = inv.new_uuid(), inv.new_uuid()
        self.assertEqual([], self.client.prepare_migration(
            None, migration, instance, 'src', 'dst'))
        info = self.client.get_instance(None, instance)
        self.assertEqual(([], 'in_progress', []),
                         (info['allocations'], info['migration']['state'],
                          info['migration']['vfs']))
        # One migration in flight per instance, VFs or not.
        self.assertRaises(exception.MigrationInProgress,
                          self.client.prepare_migration, None,
                          inv.new_uuid(), instance, 'src', 'dst')
        self.assertEqual([], self.client.complete_migration(None,
                                                            migration))
        self.assertEqual([], self.client.prepare_migration(
            None, inv.new_uuid(), instance, 'dst', 'src'))

    def test_empty_migration_retargeted_to_an_unknown_host_is_dropped(self):
        self.two_hosts()
        instance, migration = inv.new_uuid(), inv.new_uuid()
        self.client.prepare_migration(None, migration, instance, 'src',
                                      'dst')
        self.assertEqual([], self.client.prepare_migration(
            None, migration, instance, 'src', 'nowhere'))
        self.assertIsNone(migration_row(self.engine, migration))
        self.assertRaises(exception.MigrationNotFound,
                          self.client.complete_migration, None, migration)
        # The instance is free to migrate again.
        self.assertEqual([], self.client.prepare_migration(
            None, inv.new_uuid(), instance, 'src', 'dst'))

    def test_database_keeps_one_migration_in_flight_per_instance(self):
        # The guard is the schema, not a read: a second row in flight for
        # the same instance is refused by the database itself.
        self.two_hosts()
        instance, migration = inv.new_uuid(), inv.new_uuid()
        self.client.prepare_migration(None, migration, instance, 'src',
                                      'dst')
        row = migration_row(self.engine, migration)
        self.assertEqual(instance, row.in_flight_instance_uuid)
        values = {c: getattr(row, c) for c in (
            'instance_uuid', 'source_host_id', 'dest_host_id', 'state',
            'lease_expires_at', 'created_at', 'in_flight_instance_uuid')}
        M = models.Migration
        with self.engine.connect() as conn:
            self.assertRaises(db_exc.DBDuplicateEntry, conn.execute,
                              sa.insert(M).values(uuid=inv.new_uuid(),
                                                  **values))
        self.client.abort_migration(None, migration)
        self.assertIsNone(migration_row(
            self.engine, migration).in_flight_instance_uuid)

    # 1.2: complete_migration(reclaim=True)

    def _expired_and_taken(self, vfs=1, dest_vfs=2):
        self.report('src', inv.pf(5, 4))
        self.report('dst', inv.pf(6, dest_vfs))
        instance, migration, pairs = self._prepared(vfs=vfs)
        lapse(self.engine, migration)
        reap()
        thief = inv.new_uuid()
        self.client.allocate(None, thief, 'dst', [inv.request()] * vfs,
                             'thief')
        return instance, migration, pairs, thief

    def test_complete_after_expiry_wins_back_free_vfs(self):
        self.two_hosts()
        instance, migration, pairs = self._prepared()
        lapse(self.engine, migration)
        reap()
        done = self.client.complete_migration(None, migration)
        self.assertEqual([pairs[0]['dest']['address']],
                         [a['address'] for a in done])
        self.assertEqual((pairs[0]['source']['mac'], 100),
                         (done[0]['mac'], done[0]['vlan']))
        self.assertEqual({'available'}, set(self.states('src').values()))

    def test_complete_with_reclaim_stands_in_equivalent_vfs(self):
        instance, migration, pairs, thief = self._expired_and_taken()
        before = table_dump(self.engine)
        self.assertRaises(exception.LeaseExpired,
                          self.client.complete_migration, None, migration)
        self.assertEqual(before, table_dump(self.engine))
        done = self.client.complete_migration(None, migration,
                                              reclaim=True)
        self.assertEqual(1, len(done))
        self.assertNotEqual(pairs[0]['dest']['address'], done[0]['address'])
        self.assertEqual((pairs[0]['source']['mac'], 100),
                         (done[0]['mac'], done[0]['vlan']))
        table = vf_table(self.engine)
        self.assertEqual(('allocated', instance, None),
                         table[('dst', done[0]['address'])])
        self.assertEqual(('allocated', thief, None),
                         table[('dst', pairs[0]['dest']['address'])])
        self.assertEqual({'available'}, set(self.states('src').values()))
        VF = models.VirtualFunction
        with self.engine.connect() as conn:
            request_id = conn.execute(sa.select(VF.request_id).where(
                VF.instance_uuid == instance)).scalar_one()
        self.assertEqual('reclaim-%s' % migration, request_id)
        self.assertEqual('completed', migration_row(self.engine,
                                                    migration).state)
        # The other host's hook gets the same answer.
        self.assertEqual(done, self.client.complete_migration(
            None, migration, reclaim=True))

    def test_reclaim_frees_the_source_even_without_a_vf(self):
        instance, migration, _pairs, _thief = self._expired_and_taken(
            vfs=2, dest_vfs=3)
        done = self.client.complete_migration(None, migration,
                                              reclaim=True)
        # One free VF was left for two pairs: the answer lists it alone.
        self.assertEqual(1, len(done))
        self.assertEqual({'available'}, set(self.states('src').values()))
        self.assertEqual('completed', migration_row(self.engine,
                                                    migration).state)

    def test_late_complete_leaves_a_newer_migration_alone(self):
        # Issue 9 item 4: an expired migration's late complete must not
        # take the sources that a migration in flight holds.
        self.three_hosts()
        instance, first, pairs = self._prepared()
        lapse(self.engine, first)
        reap()
        second = inv.new_uuid()
        self.client.prepare_migration(None, second, instance, 'src',
                                      'third')
        before = table_dump(self.engine)
        self.assertRaises(exception.MigrationInProgress,
                          self.client.complete_migration, None, first)
        self.assertEqual(before, table_dump(self.engine))
        self.assertRaises(exception.MigrationInProgress,
                          self.client.complete_migration, None, first,
                          reclaim=True)
        self.assertEqual(before, table_dump(self.engine))
        self.client.abort_migration(None, second)
        self.assertEqual(('allocated', instance, None), vf_table(
            self.engine)[('src', pairs[0]['source']['address'])])

    def test_late_complete_after_release_changes_nothing(self):
        self.two_hosts()
        instance, migration, _pairs = self._prepared()
        lapse(self.engine, migration)
        reap()
        self.client.release(None, instance)
        before = table_dump(self.engine)
        self.assertRaises(exception.LeaseExpired,
                          self.client.complete_migration, None, migration)
        self.assertEqual(before, table_dump(self.engine))
        self.assertRaises(exception.LeaseExpired,
                          self.client.complete_migration, None, migration,
                          reclaim=True)
        self.assertEqual(before, table_dump(self.engine))

    # 1.2: MACs assigned by the server

    def test_allocate_assigns_unique_macs_kept_across_migrations(self):
        self.two_hosts()
        instance = inv.new_uuid()
        allocs = self.client.allocate(None, instance, 'src', [
            inv.request(), inv.request(mac=inv.mac(1)), inv.request()],
            'req-1')
        macs = [a['mac'] for a in allocs]
        self.assertEqual(inv.mac(1), macs[1])
        for mac in (macs[0], macs[2]):
            self.assertRegex(mac, r'^fa:16:3e(:[0-9a-f]{2}){3}$')
        self.assertEqual(3, len(set(macs)))
        VF = models.VirtualFunction
        with self.engine.connect() as conn:
            recorded = sorted(conn.execute(sa.select(VF.mac).where(
                VF.instance_uuid == instance)).scalars())
        self.assertEqual(sorted(macs), recorded)
        # A retry gets the same MACs back, not new ones.
        self.assertEqual(allocs, self.client.allocate(
            None, instance, 'src', [inv.request(),
                                    inv.request(mac=inv.mac(1)),
                                    inv.request()], 'req-1'))
        migration = inv.new_uuid()
        pairs = self.client.prepare_migration(None, migration, instance,
                                              'src', 'dst')
        self.assertEqual(sorted(macs),
                         sorted(p['dest']['mac'] for p in pairs))
        done = self.client.complete_migration(None, migration)
        self.assertEqual(sorted(macs), sorted(a['mac'] for a in done))

    # 1.6: the fence (issue 18)

    def test_late_prepare_never_takes_a_migration_back(self):
        # Issue 18 item 1: the conductor left dst for third; dst's late
        # prepare must not retarget the migration back.
        self.three_hosts()
        instance, migration, _first = self._prepared()
        pairs = self.client.prepare_migration(None, migration, instance,
                                              'src', 'third')
        before = table_dump(self.engine)
        self.assertRaises(exception.MigrationFenced,
                          self.client.prepare_migration, None, migration,
                          instance, 'src', 'dst')
        self.assertEqual(before, table_dump(self.engine))
        # third's own replays stay idempotent.
        self.assertEqual(pairs, self.client.prepare_migration(
            None, migration, instance, 'src', 'third'))
        self.assertEqual(before, table_dump(self.engine))

    def test_destination_that_gave_up_is_fenced_before_its_prepare(self):
        # Issue 18 item 1 as Nova shows it: dst's prepares time out and
        # are still queued; dst gives up, third claims; then dst's
        # prepare arrives.  It is refused, third keeps the migration.
        self.three_hosts()
        instance, _allocs = self._allocated()
        migration = inv.new_uuid()
        self.assertEqual(0, self.client.abort_migration(
            None, migration, dest_host='dst'))
        pairs = self.client.prepare_migration(None, migration, instance,
                                              'src', 'third')
        before = table_dump(self.engine)
        self.assertRaises(exception.MigrationFenced,
                          self.client.prepare_migration, None, migration,
                          instance, 'src', 'dst')
        self.assertEqual(before, table_dump(self.engine))
        # Giving up again, from a host that is not the destination,
        # changes nothing that matters.
        self.assertEqual(0, self.client.abort_migration(
            None, migration, dest_host='dst'))
        self.assertEqual(before[models.VirtualFunction.__tablename__],
                         table_dump(self.engine)[
                             models.VirtualFunction.__tablename__])
        done = self.client.complete_migration(None, migration,
                                              source_host='src',
                                              dest_host='third')
        self.assertEqual([pairs[0]['dest']['address']],
                         [a['address'] for a in done])

    def test_destination_giving_up_its_own_claim_aborts_it(self):
        self.three_hosts()
        instance, migration, _first = self._prepared(vfs=2)
        self.assertEqual(2, self.client.abort_migration(
            None, migration, dest_host='dst'))
        self.assertEqual('aborted', migration_row(self.engine,
                                                  migration).state)
        table = vf_table(self.engine)
        self.assertEqual({('available', None, None)}, {
            v for (h, _a), v in table.items() if h == 'dst'})
        self.assertEqual({('allocated', instance, None)}, {
            v for (h, _a), v in table.items()
            if h == 'src' and v[1] is not None})
        before = table_dump(self.engine)
        self.assertEqual(0, self.client.abort_migration(
            None, migration, dest_host='dst'))
        self.assertEqual(before, table_dump(self.engine))
        self.assertRaises(exception.MigrationFenced,
                          self.client.prepare_migration, None, migration,
                          instance, 'src', 'dst')

    def test_calls_whose_caller_believes_in_other_hosts_are_refused(self):
        # The source's begin names Nova's destination: it never detaches
        # for a destination vfpool no longer has.  Nor does a complete
        # settle, or a renew keep, another host's attempt.
        self.three_hosts()
        instance, migration, _first = self._prepared()
        self.client.prepare_migration(None, migration, instance, 'src',
                                      'third')
        before = table_dump(self.engine)
        for call, kwargs in (
                (self.client.begin_migration, dict(dest_host='dst')),
                (self.client.begin_migration, dict(source_host='dst')),
                (self.client.renew_migration, dict(dest_host='dst')),
                (self.client.complete_migration, dict(dest_host='dst')),
                (self.client.complete_migration,
                 dict(dest_host='dst', reclaim=True)),
                (self.client.abort_migration, dict(source_host='third'))):
            self.assertRaises(exception.MigrationFenced, call, None,
                              migration, **kwargs)
            self.assertEqual(before, table_dump(self.engine))
        self.client.begin_migration(None, migration, source_host='src',
                                    dest_host='third')
        self.client.renew_migration(None, migration, dest_host='third')
        # The destination's give-up cannot undo a migration that moves.
        self.assertEqual(1, self.client.abort_migration(
            None, migration, source_host='src', dest_host='third'))
        self.assertEqual('aborted', migration_row(self.engine,
                                                  migration).state)

    def test_completed_migration_answers_only_its_destination(self):
        self.three_hosts()
        instance, migration, _first = self._prepared()
        done = self.client.complete_migration(None, migration,
                                              dest_host='dst')
        self.assertEqual(done, self.client.complete_migration(
            None, migration, source_host='src', dest_host='dst'))
        self.assertRaises(exception.MigrationFenced,
                          self.client.complete_migration, None, migration,
                          dest_host='third')
        self.assertRaises(exception.MigrationStateConflict,
                          self.client.abort_migration, None, migration,
                          dest_host='dst')

    def test_fences_are_reaped_once_their_migration_is_over(self):
        self.three_hosts()
        instance, migration, _first = self._prepared()
        self.client.prepare_migration(None, migration, instance, 'src',
                                      'third')
        Fence = models.MigrationFence
        with self.engine.begin() as conn:
            conn.execute(sa.update(Fence).values(
                created_at=datetime.datetime(2000, 1, 1)))
        ctxt = vfpool_context.get_admin_context()
        # Not while the migration is in flight: dst could come back.
        self.assertEqual(0, migration_obj.reap_fences(ctxt, 3600))
        self.client.complete_migration(None, migration)
        self.assertEqual(1, migration_obj.reap_fences(ctxt, 3600))
        self.assertEqual([], table_dump(self.engine)[Fence.__tablename__])

    def test_allocation_without_a_mac_gets_one_when_it_moves(self):
        # Issue 18 item 12: allocations made before RPC 1.2 have no MAC,
        # and a VF is plugged again only with its MAC.
        self.two_hosts()
        instance, allocs = self._allocated(vfs=2)
        VF = models.VirtualFunction
        bare = allocs[0]['address']
        with self.engine.begin() as conn:
            conn.execute(sa.update(VF).where(VF.address == bare).values(
                mac=None))
        migration = inv.new_uuid()
        pairs = self.client.prepare_migration(None, migration, instance,
                                              'src', 'dst')
        mac = pairs[0]['source']['mac']
        self.assertRegex(mac or '', r'^fa:16:3e(:[0-9a-f]{2}){3}$')
        self.assertNotEqual(allocs[1]['mac'], mac)
        self.assertEqual(mac, pairs[0]['dest']['mac'])
        self.assertEqual(allocs[1]['mac'], pairs[1]['source']['mac'])
        self.assertEqual(pairs, self.client.prepare_migration(
            None, migration, instance, 'src', 'dst'))
        done = self.client.complete_migration(None, migration)
        self.assertEqual(sorted([mac, allocs[1]['mac']]),
                         sorted(a['mac'] for a in done))

    def test_prepare_refuses_sources_that_are_not_as_expected(self):
        # Issue 18 item 7: the evacuating host read the instance's VFs on
        # the dead host, which released them before the prepare: an
        # answer of [] would boot the instance without them.
        self.two_hosts()
        instance, allocs = self._allocated(vfs=2)
        held = [a['address'] for a in allocs]
        migration = inv.new_uuid()
        self.client.release(None, instance, 'src')
        before = table_dump(self.engine)
        self.assertRaises(exception.SourcesChanged,
                          self.client.prepare_migration, None, migration,
                          instance, 'src', 'dst', expected_sources=held)
        self.assertEqual(before, table_dump(self.engine))
        other, allocs = self._allocated(vfs=2)
        held = [a['address'] for a in allocs]
        self.assertRaises(exception.SourcesChanged,
                          self.client.prepare_migration, None, migration,
                          other, 'src', 'dst', expected_sources=held[:1])
        self.assertIsNone(migration_row(self.engine, migration))
        pairs = self.client.prepare_migration(
            None, migration, other, 'src', 'dst',
            expected_sources=list(reversed(held)))
        self.assertEqual(held, [p['source']['address'] for p in pairs])
        # A replay checks the same thing.
        self.assertEqual(pairs, self.client.prepare_migration(
            None, migration, other, 'src', 'dst', expected_sources=held))


def _bad_input_cases():
    """(name, method, kwargs, expected exception) for the table test.

    The arguments are built around a valid call so each case breaks
    exactly one thing.
    """
    good_pf = inv.pf(9, 1)
    req = {'physical_network': 'physnet1'}
    cases = [
        # malformed identifiers
        ('uuid', 'allocate', dict(instance_uuid='not-a-uuid'), 'Invalid'),
        ('uuid-type', 'allocate', dict(instance_uuid=42), 'Invalid'),
        ('mig-uuid', 'prepare_migration', dict(migration_uuid='1234'),
         'Invalid'),
        ('mac', 'allocate', dict(requests=[dict(req, mac='fa:16:3e:0')]),
         'Invalid'),
        ('mac-chars', 'allocate',
         dict(requests=[dict(req, mac='zz:16:3e:00:00:01')]), 'Invalid'),
        ('vlan-range', 'allocate', dict(requests=[dict(req, vlan=4096)]),
         'Invalid'),
        ('vlan-bool', 'allocate', dict(requests=[dict(req, vlan=True)]),
         'Invalid'),
        ('vlan-str', 'allocate', dict(requests=[dict(req, vlan='7')]),
         'Invalid'),
        ('vendor', 'allocate',
         dict(requests=[dict(req, vendor_id='0x8086')]), 'Invalid'),
        ('numa', 'allocate', dict(requests=[dict(req, numa_node=-1)]),
         'Invalid'),
        ('pci-address', 'report_inventory',
         dict(pfs=[dict(good_pf, address='0000:09:00')]), 'Invalid'),
        ('pci-slot', 'report_inventory',
         dict(pfs=[dict(good_pf, address='0000:09:20.0')]), 'Invalid'),
        ('pci-function', 'report_inventory',
         dict(pfs=[dict(good_pf, address='0000:09:00.8')]), 'Invalid'),
        ('replace-address', 'replace_allocation', dict(address='05:10.1'),
         'Invalid'),
        # wrong types and shapes
        ('requests-not-list', 'allocate', dict(requests=req), 'Invalid'),
        ('requests-empty', 'allocate', dict(requests=[]), 'Invalid'),
        ('request-not-dict', 'allocate', dict(requests=['physnet1']),
         'Invalid'),
        ('pfs-not-list', 'report_inventory', dict(pfs={}), 'Invalid'),
        ('vfs-not-list', 'report_inventory',
         dict(pfs=[dict(good_pf, vfs='x')]), 'Invalid'),
        ('host-empty', 'allocate', dict(host=''), 'Invalid'),
        ('host-type', 'get_host', dict(host=['h']), 'Invalid'),
        ('lease-zero', 'prepare_migration', dict(lease_seconds=0),
         'Invalid'),
        ('lease-float', 'renew_migration', dict(lease_seconds=1.5),
         'Invalid'),
        ('attach-state', 'set_attach_state', dict(attach_state='maybe'),
         'Invalid'),
        ('reclaim-type', 'complete_migration', dict(reclaim='yes'),
         'Invalid'),
        ('begin-lease', 'begin_migration', dict(lease_seconds=-1),
         'Invalid'),
        ('begin-uuid', 'begin_migration', dict(migration_uuid='x'),
         'Invalid'),
        ('belief-host', 'begin_migration', dict(dest_host=['dst']),
         'Invalid'),
        ('belief-empty', 'complete_migration', dict(source_host=''),
         'Invalid'),
        ('expected-sources', 'prepare_migration',
         dict(expected_sources='0000:05:10.0'), 'Invalid'),
        ('expected-address', 'prepare_migration',
         dict(expected_sources=['05:10.0']), 'Invalid'),
        ('stale-begin', 'begin_migration', dict(dest_host='src'),
         'MigrationFenced'),
        ('stale-complete', 'complete_migration', dict(source_host='dst'),
         'MigrationFenced'),
        ('sources-changed', 'prepare_migration', dict(expected_sources=[]),
         'SourcesChanged'),
        # missing and unknown fields
        ('request-missing', 'allocate', dict(requests=[{'vlan': 1}]),
         'Invalid'),
        ('request-unknown', 'allocate',
         dict(requests=[dict(req, colour='blue')]), 'Invalid'),
        ('pf-missing', 'report_inventory',
         dict(pfs=[{k: v for k, v in good_pf.items()
                    if k != 'physical_network'}]), 'Invalid'),
        ('vf-unknown', 'report_inventory',
         dict(pfs=[dict(good_pf, vfs=[dict(good_pf['vfs'][0], x=1)])]),
         'Invalid'),
        ('duplicate-address', 'report_inventory',
         dict(pfs=[dict(good_pf, vfs=good_pf['vfs'] * 2)]), 'Invalid'),
        ('same-mac-twice', 'allocate',
         dict(requests=[dict(req, mac=inv.mac(7))] * 2), 'Invalid'),
        ('same-host', 'prepare_migration', dict(dest_host='src'),
         'Invalid'),
        ('unknown-argument', 'release', dict(colour='blue'), 'Invalid'),
        ('request-ids-type', 'release', dict(host='src', request_ids='r'),
         'Invalid'),
        ('request-ids-twice', 'release',
         dict(host='src', request_ids=['r', 'r']), 'Invalid'),
        ('request-ids-no-host', 'release', dict(request_ids=['r']),
         'Invalid'),
        ('request-ids-other', 'release',
         dict(host='src', request_ids=['req-3']), 'RequestConflict'),
        # unknown things and conflicts
        ('unknown-host', 'allocate', dict(host='nowhere'), 'HostNotFound'),
        ('unknown-dest', 'prepare_migration', dict(dest_host='nowhere'),
         'HostNotFound'),
        ('unknown-migration', 'complete_migration',
         dict(migration_uuid='00000000-0000-0000-0000-000000000000'),
         'MigrationNotFound'),
        ('unknown-begin', 'begin_migration',
         dict(migration_uuid='00000000-0000-0000-0000-000000000000'),
         'MigrationNotFound'),
        ('second-migration', 'prepare_migration',
         dict(instance_uuid='MIGRATING'), 'MigrationInProgress'),
        ('no-vf-left', 'allocate',
         dict(requests=[dict(req, physical_network='physnet9')]),
         'NoAvailableVF'),
    ]
    return cases


class BadInputBehaviour:
    """Every kind of bad input gets its typed error and changes nothing."""

    def test_bad_input_table(self):
        self.client.report_inventory(None, 'src', [inv.pf(5, 2)])
        self.client.report_inventory(None, 'dst', [inv.pf(6, 2)])
        instance, other = inv.new_uuid(), inv.new_uuid()
        alloc = self.client.allocate(None, instance, 'src',
                                     [inv.request()], 'req-1')[0]
        self.client.allocate(None, other, 'src', [inv.request()], 'req-3')
        migration = inv.new_uuid()
        self.client.prepare_migration(None, migration, instance, 'src',
                                      'dst')
        valid = {
            'allocate': dict(instance_uuid=inv.new_uuid(), host='src',
                             requests=[inv.request()],
                             request_id='req-2'),
            'release': dict(instance_uuid=instance),
            'prepare_migration': dict(migration_uuid=inv.new_uuid(),
                                      instance_uuid=other,
                                      source_host='src', dest_host='dst'),
            'renew_migration': dict(migration_uuid=migration),
            'complete_migration': dict(migration_uuid=migration),
            'begin_migration': dict(migration_uuid=migration),
            'report_inventory': dict(host='src', pfs=[inv.pf(5, 2)]),
            'get_host': dict(host='src'),
            'replace_allocation': dict(instance_uuid=instance, host='src',
                                       address=alloc['address']),
            'set_attach_state': dict(instance_uuid=instance, host='src',
                                     address=alloc['address'],
                                     attach_state='attached'),
        }
        cases = _bad_input_cases()
        before = table_dump(self.engine)
        for name, method, change, expected in cases:
            kwargs = dict(valid[method])
            for key, value in change.items():
                kwargs[key] = instance if value == 'MIGRATING' else value
            expected_cls = (exception.InvalidInput if expected == 'Invalid'
                            else getattr(exception, expected))
            call = getattr(self.client.client.prepare(version='1.2'),
                           'call')
            try:
                call({}, method, **kwargs)
            except expected_cls as e:
                self.assertTrue(str(e), name)
            except Exception as e:
                self.fail('%s: %s raised %r, not %s' % (
                    name, method, e, expected_cls.__name__))
            else:
                self.fail('%s: %s did not raise %s' % (
                    name, method, expected_cls.__name__))
            self.assertEqual(before, table_dump(self.engine),
                             '%s changed the database' % name)
