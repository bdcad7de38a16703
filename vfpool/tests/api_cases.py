"""Behaviour of the RPC API, shared by the unit tests (``fake://`` and
SQLite, in-process) and the functional tests (RabbitMQ, real server
processes, SQLite/MariaDB/PostgreSQL).

A subclass provides ``self.client`` (a VfpoolAPI) and ``self.engine``
(an engine on the same database, to look at the tables directly).
"""

import datetime

import sqlalchemy as sa

from vfpool.db import models
from vfpool import exception
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
        self.assertEqual('1.1', self.client.ping(None)['version'])

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
