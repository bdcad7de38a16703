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

"""Argument checks: canonical forms accepted, everything else refused."""

import testtools

from vfpool import exception
from vfpool.tests import inventory as inv
from vfpool import validation as v

#: The edges of the PCI address, MAC and VLAN rules, each (good, bad):
#: the server (validation) and the compute side (compute/vf_xml) are
#: held to the same table.
PCI_EDGES = (
    ['0000:00:00.0', '0000:05:1f.7', 'ffff:ff:1f.7', '0000:AF:1F.7'],
    ['0000:05:20.0', '0000:05:ff.0', '0000:05:1f.8', '0000:05:10',
     '00000:05:10.0', '0000:5:10.0', '0000:05:10.1x', '', None, 5])
MAC_EDGES = (
    ['00:00:00:00:00:00', 'ff:ff:ff:ff:ff:ff', 'FA:16:3E:0A:0B:0C'],
    ['fa-16-3e-00-00-01', 'fa:16:3e:00:00', 'fa:16:3e:00:00:01:02',
     'fa:16:3e:00:00:0g', "52:54:00:12:34:5'", '', None])
VLAN_EDGES = ([0, 1, v.MAX_VLAN],
              [v.MAX_VLAN + 1, -1, True, False, '42', 4.0])


class TestEdges(testtools.TestCase):
    def test_pci_address_mac_and_vlan_edges(self):
        for check, (good, bad) in ((v.pci_address, PCI_EDGES),
                                   (v.mac_address, MAC_EDGES),
                                   (v.vlan, VLAN_EDGES)):
            for value in good:
                canonical = value.lower() if isinstance(value, str) else value
                self.assertEqual(canonical, check('f', value))
            for value in bad:
                self.assertRaises(exception.InvalidInput, check, 'f', value)


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
        pf = inv.pf(5, 1)
        vf = pf['vfs'][0]
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


class TestInventoryBuilder(testtools.TestCase):
    def test_largest_pf_is_valid_and_one_more_is_refused(self):
        pfs = v.inventory('pfs', [inv.pf(5, inv.MAX_VFS_PER_PF)])
        self.assertEqual('0000:05:1f.7', pfs[0]['vfs'][-1]['address'])
        self.assertRaises(ValueError, inv.pf, 5, inv.MAX_VFS_PER_PF + 1)
