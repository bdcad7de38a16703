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

import json

import libvirt
from testtools import content

from vfpool.compute import plugin as vf_plugin
from vfpool.nova.tests.functional.real import base
from vfpool.nova.tests.functional.real import netlab


class GuestNetworkTest(base.RealLibvirtTestBase):

    def probe_migration(self, server):
        """Live-migrate ``server`` to dst under the prober; its result."""
        prober = self.useFixture(netlab.Prober(
            self.lab, server['metadata'][base.ADDR_KEY], str(self.workdir)))
        prober.wait_first_reply()
        server = self._live_migrate(server, host=self.dst)
        # The guest's reaction (bond fail-back, address on the new NIC)
        # runs after Nova is done: give the prober a moment of it.
        self.assertTrue(self.lab.answers(server['metadata'][base.ADDR_KEY],
                                         str(self.workdir)))
        result = prober.stop()
        summary = dict(result, lost=len(result['lost']))
        self.addDetail('probe', content.text_content(json.dumps(summary)))
        self.assertEqual(self.dst, server['OS-EXT-SRV-ATTR:host'])
        return server, result

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

    # -- with a vfpool VF ---------------------------------------------------

    def boot_with_vf(self, net: str):
        server = self.boot(self.src, net, vfs=True)
        [alloc] = self.vf_allocations(server)
        self.assertEqual(self.src, alloc['host'])
        # The stand-in is in the guest with the VF's MAC and alias.
        vf = self.vf_interface(self.src, server, alloc['mac'])
        self.assertEqual(('bridge', 'e1000e', vf_plugin.vf_alias(alloc)),
                         (vf.type, vf.model, vf.alias))
        self.assertTrue(self.lab.answers(server['metadata'][base.ADDR_KEY],
                                         str(self.workdir)))
        return server, alloc

    def vf_interface(self, hostname: str, server, mac: str):
        found = [i for i in self.interfaces(hostname, server)
                 if i.mac == mac and i.model == 'e1000e']
        return found[0] if found else None

    def assert_moved(self, server, alloc) -> dict:
        """vfpool moved the VF: the same MAC on dst, the source's freed."""
        [moved] = self.vf_allocations(server)
        self.assertEqual((self.dst, alloc['mac']),
                         (moved['host'], moved['mac']))
        self.assertIsNone(self.vf_interface(self.src, server, alloc['mac'])
                          if self._on(self.src, server) else None)
        vf = self.vf_interface(self.dst, server, alloc['mac'])
        self.assertIsNotNone(vf, 'the VF is not in the guest on %s'
                             % self.dst)
        self.assertEqual(vf_plugin.vf_alias(moved), vf.alias)
        return moved

    def _on(self, hostname: str, server) -> bool:
        try:
            self.domain(hostname, server)
            return True
        except libvirt.libvirtError:
            return False

    def assert_answers_through_vf(self, server, mac: str) -> None:
        """The guest's replies come from the VF's tap on dst."""
        self.assertTrue(self.lab.answers(server['metadata'][base.ADDR_KEY],
                                         str(self.workdir)))
        self.assertEqual(self.tap_of(self.dst, server, mac),
                         self.lab.fdb_port(mac))

    def test_b_bonded_guest_vfpool_migration(self):
        server, alloc = self.boot_with_vf('bond')
        self.wait_guest_net(server, lambda net: net.startswith(
            'bond active=e1000e:'))

        server, _result = self.probe_migration(server)

        self.assertFalse(self._on(self.src, server))
        self.assert_moved(server, alloc)
        # The hot-plugged VF joined the bond and is its active slave again.
        net = self.wait_guest_net(server, lambda net: net.startswith(
            'bond active=e1000e:') and 'virtio_net:' in net)
        self.assertEqual(2, net.count(':') - 1, net)
        self.assert_answers_through_vf(server, alloc['mac'])

    def test_c_unbonded_guest_vfpool_migration(self):
        server, alloc = self.boot_with_vf('plain')
        self.wait_guest_net(server, lambda net: net.startswith(
            'plain up=e1000e:'))

        server, _result = self.probe_migration(server)

        self.assert_moved(server, alloc)
        self.wait_guest_net(server, lambda net: net.startswith(
            'plain up=e1000e:'))
        self.assert_answers_through_vf(server, alloc['mac'])
