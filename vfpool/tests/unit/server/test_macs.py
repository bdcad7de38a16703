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

"""MACs the server assigns: ``[pool] mac_prefix``, unique among its VFs."""

import testtools

from vfpool import exception
from vfpool.tests import api_cases
from vfpool.tests import fixtures
from vfpool.tests import inventory as inv


class TestAssignedMacs(testtools.TestCase):

    def setUp(self):
        super().setUp()
        # 256 MACs only: clashes are frequent and the pool can run dry.
        self.conf = self.useFixture(fixtures.Conf(
            **{'pool.mac_prefix': 'FA:16:3E:00:00'})).conf
        self.engine = self.useFixture(fixtures.Database()).engine
        self.client = self.useFixture(fixtures.FakeRPC(self.conf)).client

    def hold(self, host: str, macs: list[str]) -> None:
        """An instance holding VFs with ``macs`` on ``host``."""
        instance = inv.new_uuid()
        for start in range(0, len(macs), 64):
            self.client.allocate(
                None, instance, host,
                [inv.request(mac=m) for m in macs[start:start + 64]],
                inv.new_uuid())

    def test_prefix_is_configured_and_clashes_are_drawn_again(self):
        self.client.report_inventory(None, 'h1', [inv.pf(5, 128),
                                                  inv.pf(6, 128)])
        held = ['fa:16:3e:00:00:%02x' % i for i in range(0, 256, 2)]
        self.hold('h1', held)
        # Each draw clashes with a held MAC one time in two: without
        # drawing again, ten allocations would almost surely (1 - 2**-10)
        # hand out a MAC in use.
        assigned = []
        for _ in range(10):
            alloc = self.client.allocate(None, inv.new_uuid(), 'h1',
                                         [inv.request()], inv.new_uuid())
            assigned.append(alloc[0]['mac'])
        for mac in assigned:
            self.assertTrue(mac.startswith('fa:16:3e:00:00:'), mac)
        self.assertEqual(set(), set(assigned) & set(held))
        self.assertEqual(len(assigned), len(set(assigned)))

    def test_no_mac_left_is_no_available_vf_and_changes_nothing(self):
        self.client.report_inventory(None, 'h1', [
            inv.pf(bus, 64) for bus in range(5, 9)] + [inv.pf(9, 1)])
        self.hold('h1', ['fa:16:3e:00:00:%02x' % i for i in range(256)])
        before = api_cases.table_dump(self.engine)
        e = self.assertRaises(exception.NoAvailableVF, self.client.allocate,
                              None, inv.new_uuid(), 'h1', [inv.request()],
                              'req-x')
        self.assertIn('mac_prefix fa:16:3e:00:00', str(e))
        self.assertEqual(before, api_cases.table_dump(self.engine))
