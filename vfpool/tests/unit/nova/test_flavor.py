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

"""The ``vfpool:vfs`` flavor extra spec (no Nova needed)."""

import testtools

from vfpool.nova import flavor


class TestParse(testtools.TestCase):

    def test_requests_with_every_field(self):
        reqs = flavor.requests({
            'hw:cpu_policy': 'dedicated',
            'vfpool:vfs': 'physnet1:2;vlan=100 , physnet2;vendor=8086;'
                          'product=10ED;numa=1'})
        self.assertEqual([
            flavor.VFRequest('physnet1', count=2, vlan=100),
            flavor.VFRequest('physnet2', vendor_id='8086',
                             product_id='10ed', numa_node=1)], reqs)
        self.assertEqual([
            {'physical_network': 'physnet1', 'vlan': 100},
            {'physical_network': 'physnet1', 'vlan': 100},
            {'physical_network': 'physnet2', 'vendor_id': '8086',
             'product_id': '10ed', 'numa_node': 1}],
            flavor.allocate_requests(reqs))
        self.assertEqual([
            {'physical_network': 'physnet1', 'count': 2},
            {'physical_network': 'physnet2', 'count': 1,
             'vendor_id': '8086', 'product_id': '10ed', 'numa_node': 1}],
            flavor.capacity_requests(reqs))

    def test_no_vfpool_key_asks_for_nothing(self):
        self.assertEqual([], flavor.requests({'hw:mem_page_size': 'large'}))
        self.assertEqual([], flavor.requests(None))

    def test_bad_values_name_the_key_and_the_fault(self):
        cases = [
            ('', 'must be'),
            ('physnet1,', 'is not a physical network'),
            ('phys net', 'is not a physical network'),
            ('physnet1:0', 'count of physnet1 must be 1-64'),
            ('physnet1:x', 'count of physnet1'),
            ('physnet1:65', 'count of physnet1'),
            ('physnet1:40,physnet2:30', 'asks for 70 VFs'),
            ('physnet1;colour=red', "'colour=red' is not one of"),
            ('physnet1;vlan', "'vlan' is not one of"),
            ('physnet1;vlan=4096', 'vlan of physnet1'),
            ('physnet1;vlan=-1', 'vlan of physnet1'),
            ('physnet1;numa=one', 'numa of physnet1'),
            ('physnet1;vendor=80866', 'vendor of physnet1'),
            ('physnet1;vlan=1;vlan=2', 'vlan is given twice'),
        ]
        for value, why in cases:
            exc = self.assertRaises(flavor.InvalidSpec, flavor.requests,
                                    {'vfpool:vfs': value})
            self.assertIn('vfpool:vfs', str(exc), value)
            self.assertIn(why, str(exc), value)

    def test_unknown_key_in_the_namespace_is_refused(self):
        exc = self.assertRaises(flavor.InvalidSpec, flavor.requests,
                                {'vfpool:count': '2'})
        self.assertIn('vfpool:count', str(exc))
