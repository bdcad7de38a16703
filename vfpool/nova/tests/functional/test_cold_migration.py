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

"""Resize, cold migration and evacuation of an instance with vfpool VFs.

The destination claims equivalent VFs with the same MACs when the source
powers the guest off; confirm completes (the source VFs are freed),
revert aborts (the source VFs are still the instance's).  Evacuation
moves the VFs off the dead host; when that host comes back, Nova destroys
the evacuated guest there and nothing is freed twice.
"""

from unittest import mock

from nova import exception as nova_exception

from vfpool.db import models
from vfpool.nova.tests.functional import test_lifecycle as lc
from vfpool.tests import api_cases

#: Nova's own libvirt functional tests stub the disk copy of a resize.
NO_DISK_COPY = mock.patch(
    'nova.virt.libvirt.driver.LibvirtDriver.migrate_disk_and_power_off',
    return_value='{}')
ALL_VFS = sorted(lc.VFS_A + lc.VFS_B)


class ColdMigrationBase(lc.LifecycleBase):

    def setUp(self):
        super().setUp()
        self.src = self.start_vfpool_compute('src')
        # More memory: the scheduler prefers dst (not that it has a choice).
        self.dst = self.start_vfpool_compute('dst', kb_mem=32000000)
        self.server = self.boot(self.src, self.vf_flavor())
        self.before = self.allocations(self.server)
        self.macs = [(m, v) for _h, _a, m, v in self.before]
        self.bigger = self._create_flavor(
            memory_mb=4096, extra_spec={'vfpool:vfs': lc.TWO_NETWORKS})

    def resize(self):
        with NO_DISK_COPY:
            return self._resize_server(self.server, self.bigger)

    def macs_on(self, host: str, server) -> list[tuple]:
        return [(m, v) for _h, _a, m, v in self.guest_vfs(host, server)]


class TestColdMigration(ColdMigrationBase):

    def test_resize_claims_on_the_destination_confirm_frees_the_source(self):
        server = self.resize()

        self.assertEqual(self.dst, server['OS-EXT-SRV-ATTR:host'])
        # The guest runs on dst with claimed VFs, the same MACs; the
        # source VFs are still the instance's until the confirm.
        self.assertEqual(self.macs, self.macs_on(self.dst, server))
        [(state, src, dst)] = self.migrations(server)
        self.assertEqual((models.MOVING, self.src, self.dst),
                         (state, src, dst))
        self.assertEqual(len(self.before), len(self.owned(self.src, server)))

        self._confirm_resize(server)

        after = self.allocations(server)
        self.assertEqual([self.dst] * 2, [h for h, _a, _m, _v in after])
        self.assertEqual(self.macs, [(m, v) for _h, _a, m, v in after])
        self.assertEqual(after, self.guest_vfs(self.dst, server))
        self.assertEqual(ALL_VFS, self.free(self.src))
        self.assertEqual([(models.COMPLETED, self.src, self.dst)],
                         self.migrations(server))

    def test_resize_revert_gives_back_the_source_vfs(self):
        server = self.resize()

        server = self._revert_resize(server)

        self.assertEqual(self.src, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(self.before, self.allocations(server))
        self.assertEqual(self.before, self.guest_vfs(self.src, server))
        self.assertEqual(ALL_VFS, self.free(self.dst))
        self.assertEqual([(models.ABORTED, self.src, self.dst)],
                         self.migrations(server))

    def test_cold_migration_confirmed(self):
        with NO_DISK_COPY:
            self._migrate_server(self.server)
        server = self._wait_for_state_change(self.server, 'VERIFY_RESIZE')
        self._confirm_resize(server)

        self.assertEqual(self.macs, self.macs_on(self.dst, server))
        self.assertEqual(ALL_VFS, self.free(self.src))


class TestColdMigrationRefused(ColdMigrationBase):
    """The destination has no free VF: the resize is refused, nothing moves.

    Nova's RPC casts stay casts here: as calls (the default of Nova's
    functional tests) the refusal would travel back into the
    destination's prep_resize, which would reschedule, which a real
    deployment never does for a failure in resize_instance.
    """

    CAST_AS_CALL = False

    def test_no_vf_on_the_destination_keeps_the_instance_home(self):
        self.take_all(self.dst)
        before = api_cases.table_dump(self.vfpool.engine)

        with NO_DISK_COPY:
            self.api.post_server_action(
                self.server['id'], {'resize': {'flavorRef': self.bigger}})
            self._wait_for_migration_status(self.server, ['error'])
        server = self._wait_for_state_change(self.server, 'ACTIVE')

        self.assertEqual(self.src, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(before, api_cases.table_dump(self.vfpool.engine))
        self.assertEqual(self.before, self.guest_vfs(self.src, server))
        log = self.stdlog.logger.output
        self.assertIn('vfpool cannot claim VFs on %s' % self.dst, log)


class TestResizeDiskCopyFails(ColdMigrationBase):
    """The destination claimed, then the source cannot copy the disk.

    Casts stay casts, as in TestColdMigrationRefused.
    """

    CAST_AS_CALL = False

    def test_failed_disk_copy_aborts_the_claim_and_a_resize_works_after(self):
        failing = mock.patch(
            'nova.virt.libvirt.driver.LibvirtDriver.'
            'migrate_disk_and_power_off',
            side_effect=nova_exception.InstanceFaultRollback(
                nova_exception.ResizeError(
                    reason='the disk cannot shrink (test)')))

        with failing:
            self.api.post_server_action(
                self.server['id'], {'resize': {'flavorRef': self.bigger}})
            self._wait_for_migration_status(self.server, ['error'])
        server = self._wait_for_state_change(self.server, 'ACTIVE')

        # The claim is freed; the guest, still here, keeps its VFs.
        self.assertEqual(self.src, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual([(models.ABORTED, self.src, self.dst)],
                         self.migrations(server))
        self.assertEqual(ALL_VFS, self.free(self.dst))
        self.assertEqual(self.before, self.allocations(server))
        self.assertEqual(self.before, self.guest_vfs(self.src, server))
        # Nothing blocks the instance: the next resize claims again.
        with NO_DISK_COPY:
            self.api.post_server_action(
                server['id'], {'resize': {'flavorRef': self.bigger}})
            server = self._wait_for_state_change(server, 'VERIFY_RESIZE')
        self.assertEqual(self.dst, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(self.macs, self.macs_on(self.dst, server))


class TestEvacuate(lc.LifecycleBase):

    def test_evacuate_moves_the_vfs_and_the_dead_host_frees_nothing(self):
        src = self.start_vfpool_compute('src')
        server = self.boot(src, self.vf_flavor())
        dst = self.start_vfpool_compute('dst')
        macs = [(m, v) for _h, _a, m, v in self.allocations(server)]
        self.computes[src].stop()
        self.api.put_service(self.computes[src].service_ref.uuid,
                             {'forced_down': True})

        # Nova's default: the evacuated guest ends stopped.
        server = self._evacuate_server(server, expected_host=dst)

        after = self.allocations(server)
        self.assertEqual([dst] * 2, [h for h, _a, _m, _v in after])
        self.assertEqual(macs, [(m, v) for _h, _a, m, v in after])
        self.assertEqual(after, self.guest_vfs(dst, server))
        self.assertEqual(ALL_VFS, self.free(src))
        # Meanwhile another instance gets a VF on the dead host.
        other = self.take_all(src, vfs=lc.VFS_A[:1], physnet=lc.PHYSNET_A)
        before = self.vfs(src)

        # The host comes back with the old domain still defined: Nova
        # destroys it there, which frees nothing of anyone's.
        self.restart_compute_service(src)
        self.api.put_service(self.computes[src].service_ref.uuid,
                             {'forced_down': False})

        self.assertFalse(self.has_domain(src, server))
        self.assertEqual(before, self.vfs(src))
        self.assertEqual(after, self.allocations(server))
        self.assertEqual(1, len([1 for s, i, _m in before.values()
                                 if i == other]))
