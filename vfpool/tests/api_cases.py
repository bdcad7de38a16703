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
        # unknown things and conflicts
        ('unknown-host', 'allocate', dict(host='nowhere'), 'HostNotFound'),
        ('unknown-dest', 'prepare_migration', dict(dest_host='nowhere'),
         'HostNotFound'),
        ('unknown-migration', 'complete_migration',
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
            call = getattr(self.client.client.prepare(version='1.1'),
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
