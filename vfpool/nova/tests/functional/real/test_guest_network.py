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

from testtools import content

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
