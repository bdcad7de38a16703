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

"""An instance's vfpool VFs from boot to delete, driven by Nova's API.

The flavor asks for VFs (``vfpool:vfs``); nothing else asks vfpool for
anything.  Each compute is a fakelibvirt host with three PFs of four VFs:
Nova's ``[pci] device_spec`` takes those of 0000:81:00.0, vfpool's
``[agent] device_spec`` those of 0000:81:01.0 (``physnet-a``) and
0000:81:02.0 (``physnet-b``).  Every test checks vfpool's tables and the
guest's domain XML.
"""

import json
import os
import uuid

import fixtures
import nova.conf
import sqlalchemy as sa

from vfpool.compute import vf_xml
from vfpool.db import models
from vfpool.nova.tests.functional import test_live_migration as lm

PHYSNET_A = 'physnet-a'
PHYSNET_B = 'physnet-b'
VFS_A = ['0000:81:01.%d' % i for i in range(1, 5)]
VFS_B = ['0000:81:02.%d' % i for i in range(1, 5)]
#: One VF on each network, the one on physnet-a with VLAN 100.
TWO_NETWORKS = '%s;vlan=100,%s' % (PHYSNET_A, PHYSNET_B)


class LifecycleBase(lm.VfpoolLiveMigrationBase):

    VFPOOL_OPTIONS = {
        'agent.device_spec': [
            json.dumps({'address': '0000:81:01.0',
                        'physical_network': PHYSNET_A}),
            json.dumps({'address': '0000:81:02.0',
                        'physical_network': PHYSNET_B})],
    }

    # The PCI layout these tests were written for.
    num_pfs = 3
    num_vfs = 12

    def take_all(self, host: str, vfs: list[str] = VFS_B,
                 physnet: str = PHYSNET_B) -> str:
        """Another instance takes these VFs of ``host``; its uuid."""
        other = str(uuid.uuid4())
        self.vfpool.client.allocate(
            None, other, host, [{'physical_network': physnet}] * len(vfs),
            'take-%s' % other)
        return other

    def vf_flavor(self, spec: str = TWO_NETWORKS) -> str:
        return self._create_flavor(extra_spec={'vfpool:vfs': spec})

    def boot(self, host: str, flavor_id: str, **kwargs):
        return self._create_server(flavor_id=flavor_id, networks='none',
                                   host=host, **kwargs)

    def allocations(self, server) -> list[dict]:
        """(host, address, MAC, VLAN) of what vfpool gave the server."""
        return sorted(
            (a['host'], a['address'], a['mac'], a['vlan'])
            for a in self.vfpool.client.get_instance(
                None, server['id'])['allocations'])

    def guest_vfs(self, host: str, server) -> list[tuple]:
        """(host, PCI source, MAC, VLAN) of the guest's hostdev NICs."""
        return sorted(
            (host, i.pci_address, i.mac, i.vlan) for i in
            vf_xml.parse_interfaces(self.domain(host, server).XMLDesc(0))
            if i.type == 'hostdev')

    def free_vfs(self, host: str) -> list[str]:
        return self.free(host)

    def request_rows(self, server) -> list[tuple]:
        """(request id, released?) of the server's allocation requests."""
        Request = models.AllocationRequest
        with self.vfpool.engine.connect() as conn:
            return sorted(
                (r.request_id, r.released_at is not None)
                for r in conn.execute(sa.select(Request).where(
                    Request.instance_uuid == server['id'])))


class TestBootAndDelete(LifecycleBase):

    def setUp(self):
        super().setUp()
        self.host = self.start_vfpool_compute('host')

    def test_boot_with_two_vfs_on_two_networks_then_delete_frees(self):
        server = self.boot(self.host, self.vf_flavor())

        allocs = self.allocations(server)
        self.assertEqual(2, len(allocs))
        [(_h, vf_a, mac_a, vlan_a), (_h2, vf_b, mac_b, vlan_b)] = allocs
        self.assertIn(vf_a, VFS_A)
        self.assertIn(vf_b, VFS_B)
        self.assertEqual((100, None), (vlan_a, vlan_b))
        for mac in (mac_a, mac_b):
            self.assertTrue(mac.startswith('fa:16:3e:'), mac)
        # In the guest's XML from the start, with vfpool's MACs.
        self.assertEqual(allocs, self.guest_vfs(self.host, server))
        self.assertEqual(
            [('nova-%s-%s-0' % (server['id'], self.host), False)],
            self.request_rows(server))

        self._delete_server(server)

        self.assertEqual([], self.allocations(server))
        self.assertEqual(sorted(VFS_A + VFS_B), self.free(self.host))
        # The request id is a tombstone: a late retry claims nothing.
        self.assertEqual(
            [('nova-%s-%s-0' % (server['id'], self.host), True)],
            self.request_rows(server))

    def test_no_free_vf_fails_the_build_saying_why_holding_nothing(self):
        # Another instance holds every VF of physnet-b.
        self.take_all(self.host)
        before = self.vfs(self.host)

        server = self.boot(self.host, self.vf_flavor(),
                           expected_state='ERROR')

        self.assertEqual(before, self.vfs(self.host))
        self.assertEqual([], self.allocations(server))
        fault = self.api.get_server(server['id'])['fault']['message']
        self.assertIn('vfpool', fault)

    def test_failed_spawn_frees_what_it_allocated(self):
        def refuse(*args, **kwargs):
            raise RuntimeError('the guest does not start (test)')
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.'
            '_create_guest_with_network', refuse))

        server = self.boot(self.host, self.vf_flavor(),
                           expected_state='ERROR')

        self.assertEqual([], self.allocations(server))
        self.assertEqual(sorted(VFS_A + VFS_B), self.free(self.host))
        # The failed spawn's release tombstoned its id (no late copy of
        # that allocate can claim) and recorded that the instance holds
        # no VF, so the clean-up after it asks vfpool nothing more.
        self.assertEqual(
            [('nova-%s-%s-0' % (server['id'], self.host), True)],
            self.request_rows(server))

    def test_flavor_without_vfpool_asks_nothing(self):
        server = self.boot(self.host, self._create_flavor())

        self.assertEqual([], self.allocations(server))
        self.assertEqual([], self.guest_vfs(self.host, server))
        self.assertEqual([], self.request_rows(server))


class TestDomainRebuilt(LifecycleBase):
    """What rebuilds the domain XML keeps the VFs, with the same MACs."""

    def setUp(self):
        super().setUp()
        self.host = self.start_vfpool_compute('host')
        self.server = self.boot(self.host, self.vf_flavor())
        self.before = self.allocations(self.server)
        self.assertEqual(self.before, self.guest_vfs(self.host, self.server))

    def assert_kept(self):
        self.assertEqual(self.before, self.allocations(self.server))
        self.assertEqual(self.before,
                         self.guest_vfs(self.host, self.server))
        self.assertEqual(4 + 4 - 2, len(self.free(self.host)))

    def test_hard_reboot(self):
        self._reboot_server(self.server, hard=True)
        self.assert_kept()

    def test_rebuild(self):
        self._rebuild_server(self.server, self.server['image']['id'])
        self.assert_kept()

    def test_rescue_and_unrescue(self):
        # Rescue keeps the domain's XML in the instance's directory, which
        # fakelibvirt's computes never create.
        os.makedirs(os.path.join(nova.conf.CONF.instances_path,
                                 self.server['id']), exist_ok=True)
        self._rescue_server(self.server)
        self.assert_kept()
        self._unrescue_server(self.server)
        self.assert_kept()

    def test_suspend_detaches_resume_reattaches_same_macs(self):
        self._suspend_server(self.server)
        # Out of the guest for the managed save, still the instance's.
        self.assertEqual([], self.guest_vfs(self.host, self.server))
        self.assertEqual(self.before, self.allocations(self.server))

        self._resume_server(self.server)
        self.assert_kept()

    def test_cold_snapshot_detaches_and_reattaches_same_macs(self):
        # A cold snapshot: Nova suspends the guest (a managed save).
        self.flags(disable_libvirt_livesnapshot=True, group='workarounds')

        self._snapshot_server(self.server, 'snap')
        self._wait_for_server_parameter(self.server,
                                        {'OS-EXT-STS:task_state': None})

        log = self.stdlog.logger.output
        self.assertIn('vfpool: detached VF(s)', log)
        self.assertIn('vfpool: re-attached VF(s)', log)
        self.assert_kept()


class TestShelve(LifecycleBase):

    def test_offload_frees_unshelve_claims_again_with_the_same_macs(self):
        self.flags(shelved_offload_time=0)
        host = self.start_vfpool_compute('host')
        server = self.boot(host, self.vf_flavor())
        before = self.allocations(server)

        self._shelve_server(server)

        self.assertEqual([], self.allocations(server))
        self.assertEqual(sorted(VFS_A + VFS_B), self.free(host))

        server = self._unshelve_server(server)

        after = self.allocations(server)
        self.assertEqual([(h, m, v) for h, _a, m, v in before],
                         [(h, m, v) for h, _a, m, v in after])
        self.assertEqual(after, self.guest_vfs(host, server))
        # A new request id: the first one is a tombstone.
        self.assertEqual(
            [('nova-%s-%s-0' % (server['id'], host), True),
             ('nova-%s-%s-1' % (server['id'], host), False)],
            self.request_rows(server))
