"""Argument checks: canonical forms accepted, everything else refused."""

import testtools

from vfpool import exception
from vfpool import validation as v


class TestCanonicalForms(testtools.TestCase):
    def test_upper_case_is_made_canonical(self):
        self.assertEqual('0000:af:1f.7', v.pci_address('a', '0000:AF:1F.7'))
        self.assertEqual('fa:16:3e:0a:0b:0c',
                         v.mac_address('m', 'FA:16:3E:0A:0B:0C'))
        self.assertEqual('8086', v.hex_id('i', '8086'))

    def test_malformed_values_name_the_field(self):
        cases = [
            (v.pci_address, '0000:05:10'),
            (v.pci_address, '0000:05:20.0'),
            (v.pci_address, '00000:05:10.0'),
            (v.pci_address, 5),
            (v.mac_address, 'fa-16-3e-00-00-01'),
            (v.mac_address, 'fa:16:3e:00:00'),
            (v.uuid, 'zzzzzzzz-0000-0000-0000-000000000000'),
            (v.uuid, '1234'),
            (v.hex_id, '808'),
            (v.vlan, 4096),
            (v.vlan, -1),
            (v.vlan, False),
            (v.numa_node, '0'),
            (v.lease_seconds, 0),
            (v.name, ''),
            (v.name, 'x' * 256),
            (v.name, None),
        ]
        for check, value in cases:
            e = self.assertRaises(exception.InvalidInput, check, 'the.field',
                                  value)
            self.assertIn('the.field', str(e), (check, value))

    def test_record_rejects_unknown_and_missing_fields(self):
        schema = ({'a': v.name}, {'b': v.optional(v.vlan)})
        self.assertEqual({'a': 'x', 'b': None},
                         v.record('r', {'a': 'x'}, *schema))
        e = self.assertRaises(exception.InvalidInput, v.record, 'r',
                              {'a': 'x', 'c': 1}, *schema)
        self.assertIn('unknown fields: c', str(e))
        e = self.assertRaises(exception.InvalidInput, v.record, 'r',
                              {'b': 1}, *schema)
        self.assertIn('lacks required fields: a', str(e))

    def test_inventory_rejects_duplicates(self):
        vf = {'address': '0000:05:10.0', 'vf_index': 0, 'vendor_id': '8086',
              'product_id': '10ca'}
        pf = {'address': '0000:05:00.0', 'vendor_id': '8086',
              'product_id': '10c9', 'physical_network': 'p', 'vfs': [vf]}
        self.assertEqual(1, len(v.inventory('pfs', [pf])))
        self.assertRaises(exception.InvalidInput, v.inventory, 'pfs',
                          [pf, pf])
        twin = dict(vf, address='0000:05:10.1')
        self.assertRaises(exception.InvalidInput, v.inventory, 'pfs',
                          [dict(pf, vfs=[vf, twin])])

    def test_exceptions_survive_the_trip_over_rpc(self):
        # oslo.messaging rebuilds remote errors as cls(*args, **kwargs).
        e = exception.MigrationInProgress(instance_uuid='i',
                                          migration_uuid='m')
        again = type(e)(*e.args, **e.kwargs)
        self.assertEqual(str(e), str(again))
        self.assertIn('already has migration m', str(again))
