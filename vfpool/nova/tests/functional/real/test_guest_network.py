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

"""What the guest sees when Nova live-migrates it: the real tier's scenarios.

Each test boots the tiny guest through Nova's API on a real compute of the
lab, pings it from the lab's bridge for the whole migration (the prober),
live-migrates it through Nova's API and checks vfpool's tables, the
domain XML and what the guest itself reports.  Figures (lost probes, the
longest gap) are attached to the test's details; they are never asserted
(timing under TCG on a shared machine is no behaviour): the benchmark
family ``guest-network`` of tools/bench measures them.
"""

from vfpool.nova.tests.functional.real import base


class GuestNetworkTest(base.RealLibvirtTestBase):

    def test_a_standby_only_stock_migration(self):
        """Baseline: no VF, the address on the virtio NIC."""
        server = self.boot(self.src, 'standby', vfs=False)
        address = server['metadata'][base.ADDR_KEY]
        self.assertTrue(self.lab.answers(address, str(self.workdir)))
        self.assertEqual([], self.vf_allocations(server))

        server, _result = self.probe_migration(server)

        self.assertEqual(self.lab.fdb_port(base.standby_mac(server['id'])),
                         self.tap_of(self.dst, server,
                                     base.standby_mac(server['id'])))

    def test_b_bonded_guest_vfpool_migration(self):
        server, alloc = self.boot_with_vf('bond')
        self.wait_guest_net(server, lambda net: net.startswith(
            'bond active=e1000e:'))

        server, _result = self.probe_migration(server)

        self.assertFalse(self._on(self.src, server))
        self.assert_moved(server, alloc)
        # The hot-plugged VF joined the bond and is its active slave again.
        net = self.wait_guest_net(server, lambda net: net.startswith(
            'bond active=e1000e:') and 'virtio_net:' in net,
            after=self.net_mark)
        self.assertEqual(2, len(net.split('slaves=')[1].split(',')), net)
        self.assert_answers_through_vf(server, alloc['mac'])

    def test_c_unbonded_guest_vfpool_migration(self):
        server, alloc = self.boot_with_vf('plain')
        self.wait_guest_net(server, lambda net: net.startswith(
            'plain up=e1000e:'))

        server, _result = self.probe_migration(server)

        self.assert_moved(server, alloc)
        self.wait_guest_net(server, lambda net: net.startswith(
            'plain up=e1000e:'), after=self.net_mark)
        self.assert_answers_through_vf(server, alloc['mac'])
