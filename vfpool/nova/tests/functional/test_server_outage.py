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

"""vfpool-server down at Nova's post-migration hooks (issue 9 item 6).

Nova drives the live migration; the vfpool-server processes are killed
once the hypervisor's migration is done, before Nova runs
``post_live_migration`` and ``post_live_migration_at_destination``, and
restarted while the instance already runs on the destination.  The
driver must not fail the migration for it: the destination plugs the VF
it claimed (same MAC and VLAN) from what its plugin remembers, and the
plugins' background settlers complete the migration in vfpool once a
server answers again.
"""

import time

from vfpool.db import models
from vfpool.nova.tests.functional import test_live_migration as base

MAC = base.MAC
VLAN = base.VLAN
VFPOOL_VFS = base.VFPOOL_VFS


class TestServerDownAtPost(base.TwoComputesBase):

    # Its servers are killed: they are its own.
    PRIVATE_VFPOOL = True
    VFPOOL_OPTIONS = dict(base.VfpoolLiveMigrationBase.VFPOOL_OPTIONS, **{
        'rpc_response_timeout': 2,
        'migration.complete_timeout': 1,
        'migration.settle_initial_delay': 0.5,
        'migration.settle_max_delay': 2,
        'migration.settle_max_time': 120})

    def _migrate_stub(self, domain, destination, params, flags):
        super()._migrate_stub(domain, destination, params, flags)
        # The guest has moved; Nova's post-migration hooks come next.
        for proc in self.vfpool.procs:
            proc.kill()
        self.during['server'] = {'id': domain.UUIDString()}

    def servers_back(self) -> None:
        for proc in self.vfpool.procs:
            if not proc.alive():
                proc.start()
        self.vfpool.wait_ready()

    def wait_for(self, what, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while not what():
            self.assertLess(time.monotonic(), deadline, 'timed out')
            time.sleep(0.2)

    def test_settled_once_the_server_is_back(self):
        server, alloc = self.boot_with_vfpool_vf(self.src)
        self.addCleanup(self.servers_back)

        server = self._live_migrate(server)

        self.assertEqual(self.dst, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual('ACTIVE', server['status'])
        self.assertFalse(any(proc.alive() for proc in self.vfpool.procs))
        [(claimed, _row)] = [(a, row) for a, row in self.during['dst'].items()
                             if row[2]]
        # The claimed VF is in the guest, same MAC and VLAN, while vfpool
        # still holds both sides of the migration in flight.
        self.assertEqual((claimed, MAC, VLAN),
                         self.vfpool_vf(self.dst, server))
        self.assertEqual([(models.MOVING, self.src, self.dst)],
                         self.migrations(server))
        self.assertEqual(models.CLAIMED, self.vfs(self.dst)[claimed][0])

        self.servers_back()

        self.wait_for(lambda: self.migrations(server) == [
            (models.COMPLETED, self.src, self.dst)])
        self.assertEqual([claimed], self.owned(self.dst, server))
        self.assertEqual(VFPOOL_VFS, self.free(self.src))
        self.assertEqual(sorted(set(VFPOOL_VFS) - {claimed}),
                         self.free(self.dst))
        self.assertEqual((claimed, MAC, VLAN),
                         self.vfpool_vf(self.dst, server))
        server = self.api.get_server(server['id'])
        self.assertEqual(('ACTIVE', self.dst),
                         (server['status'], server['OS-EXT-SRV-ATTR:host']))
        self.assertTrue(self.neutron_port_plugged(self.dst, server))
