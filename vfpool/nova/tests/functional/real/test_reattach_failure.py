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

"""Scenario d: the VF cannot be re-attached on the destination.

The fault is this machine's own: the destination's compute plugin builds
the real ``<interface type='hostdev'>`` for the claimed VF, which libvirt
refuses here (no VFIO), while the source and any other VF get the
stand-in.  The bonded guest is live-migrated through Nova's API; each
``[migration] reattach_failure_policy`` is checked on vfpool's tables,
the domain XML, Nova's instance and what the guest sees.
"""

import functools

from vfpool.compute import vf_xml
from vfpool.db import models
from vfpool.nova.tests.functional.real import base


def refusing_builder(refused: set, bridge: str):
    """The real hostdev XML for ``refused`` addresses, a stand-in else."""
    stand_in = functools.partial(vf_xml.emulated_interface_xml,
                                 model='e1000e', bridge=bridge)

    def build(address: str, mac: str, vlan: int | None = None,
              alias: str | None = None,
              teaming_persistent_alias: str | None = None) -> str:
        builder = (vf_xml.hostdev_interface_xml if address in refused
                   else stand_in)
        return builder(address, mac, vlan=vlan, alias=alias,
                       teaming_persistent_alias=teaming_persistent_alias)
    return build


class ReattachFailureBase(base.RealLibvirtTestBase):

    POLICY: str

    def setUp(self):
        self.VFPOOL_OPTIONS = {'migration.reattach_failure_policy':
                               self.POLICY}
        super().setUp()

    def migrate_refused(self, expected_state: str = 'ACTIVE'):
        """The bonded guest migrated with its claimed VF refused on dst."""
        server, alloc = self.boot_with_vf('bond')
        self.wait_guest_net(server, lambda net: net.startswith(
            'bond active=e1000e:'))
        # vfpool claims the same PCI address on dst (equal inventories):
        # refuse whatever it claims first.
        refused = {alloc['address']}
        self.driver[self.dst].vfpool.xml_builder = (
            refusing_builder(refused, self.lab.BRIDGE))
        self.admin_api.post_server_action(
            server['id'], {'os-migrateLive': {'host': self.dst,
                                              'block_migration': 'auto'}})
        self._wait_for_migration_status(server, ['completed', 'error'])
        server = self._wait_for_state_change(server, expected_state)
        self.assertEqual(self.dst, server['OS-EXT-SRV-ATTR:host'])
        return server, alloc, refused

    def assert_on_standby(self, server) -> None:
        """The guest answers through its virtio standby on dst."""
        net = self.wait_guest_net(server, lambda net: net.startswith(
            'bond active=virtio_net:'))
        self.assertNotIn('e1000e', net)
        self.assertTrue(self.lab.answers(server['metadata'][base.ADDR_KEY],
                                         str(self.workdir)))
        standby = base.standby_mac(server['id'])
        # The bond answers with the VF's MAC from the standby's tap.
        [alloc] = self.vf_allocations(server)
        self.assertEqual(self.tap_of(self.dst, server, standby),
                         self.lab.fdb_port(alloc['mac']))


class DegradeTest(ReattachFailureBase):

    POLICY = 'degrade'

    def test_d_degrade_guest_stays_on_standby(self):
        server, alloc, refused = self.migrate_refused()

        [held] = self.vf_allocations(server)
        self.assertEqual((self.dst, alloc['mac'], models.DETACHED),
                         (held['host'], held['mac'], held['attach_state']))
        self.assertIsNone(self.vf_interface(self.dst, server, alloc['mac']))
        self.assert_on_standby(server)


class ErrorTest(ReattachFailureBase):

    POLICY = 'error'

    def test_d_error_instance_in_error_guest_on_standby(self):
        server, alloc, refused = self.migrate_refused('ERROR')

        [held] = self.vf_allocations(server)
        self.assertEqual((self.dst, models.ATTACH_FAILED),
                         (held['host'], held['attach_state']))
        # The guest itself still runs on dst, on its standby.
        self.assert_on_standby(server)


class SwapTest(ReattachFailureBase):

    POLICY = 'swap'

    def test_d_swap_another_vf_same_mac_rejoins_the_bond(self):
        server, alloc, refused = self.migrate_refused()

        [held] = self.vf_allocations(server)
        self.assertEqual((self.dst, alloc['mac']),
                         (held['host'], held['mac']))
        # Another VF, plugged: not recorded as failed or left detached.
        self.assertNotIn(held['address'], refused)
        self.assertNotIn(held['attach_state'],
                         (models.DETACHED, models.ATTACH_FAILED))
        self.assertIsNotNone(self.vf_interface(self.dst, server,
                                               alloc['mac']))
        self.wait_guest_net(server, lambda net: net.startswith(
            'bond active=e1000e:') and 'virtio_net:' in net)
        self.assert_answers_through_vf(server, alloc['mac'])
