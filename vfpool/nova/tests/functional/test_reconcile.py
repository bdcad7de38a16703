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

"""Live migrations Nova gives up without a driver hook (issue 18, 2 and 13).

Each test leaves vfpool with a claim (or a detached VF) that no hook of
the driver will ever settle, the way Nova really does it: the conductor
giving up after the only destination claimed, a queued migration
aborted through the API, the source nova-compute restarting in the
middle of the migration.  The driver must see from Nova's Migration
record that the migration is over and roll vfpool's back: the claims
freed, the guest with its VF, the instance free to migrate again.
"""

import threading
import time

import fixtures
from neutronclient.common import exceptions as neutron_client_exc
from nova.tests.functional.api import client

from vfpool.db import models
from vfpool.nova.tests.functional import test_live_migration as lm

#: Long enough for any pass of the reconciler in these tests.
WAIT = 60


class ReconcileBase(lm.TwoComputesBase):

    VFPOOL_OPTIONS = dict(lm.VfpoolLiveMigrationBase.VFPOOL_OPTIONS,
                          **{'migration.reconcile_interval': 0.5})

    def wait_for(self, what, message: str, timeout: float = WAIT):
        deadline = time.monotonic() + timeout
        while True:
            value = what()
            if value or time.monotonic() > deadline:
                self.assertTrue(value, message)
                return value
            time.sleep(0.2)

    def wait_rolled_back(self, server) -> None:
        self.wait_for(
            lambda: self.migrations(server)[-1:] == [
                (models.ABORTED, self.src, self.dst)],
            'vfpool\'s migration is still %s' % self.migrations(server))

    def assert_home_with_its_vf(self, server, alloc) -> None:
        self.assertEqual((alloc['address'], lm.MAC, lm.VLAN),
                         self.vfpool_vf(self.src, server))
        self.assertEqual([alloc['address']], self.owned(self.src, server))
        self.assertEqual(lm.VFPOOL_VFS, self.free(self.dst))

    def assert_migrates_again(self, server) -> None:
        server = self._live_migrate(server)
        self.assertEqual(self.dst, server['OS-EXT-SRV-ATTR:host'])
        [dest_vf] = self.owned(self.dst, server)
        self.assertEqual((dest_vf, lm.MAC, lm.VLAN),
                         self.vfpool_vf(self.dst, server))
        self.assertEqual(lm.VFPOOL_VFS, self.free(self.src))


class TestConductorGivesUp(ReconcileBase):

    def test_binding_refused_on_the_only_destination_frees_its_claim(self):
        server, alloc = self.boot_with_vfpool_vf(self.src)
        # dst claims its VF, then Neutron cannot bind the port there and
        # there is no other host: the conductor gives up (error), no hook
        # of the driver runs on dst.
        bind = self.neutron.create_port_binding

        def refuse(port_id, body):
            raise neutron_client_exc.NeutronClientException(
                status_code=500, message='binding refused (test)')
        self.neutron.create_port_binding = refuse

        exc = self.assertRaises(client.OpenStackApiException,
                                self._live_migrate, server)
        self.assertIn('NoValidHost', str(exc))
        self._wait_for_migration_status(server, ['error'])
        server = self._wait_for_state_change(server, 'ACTIVE')

        self.wait_rolled_back(server)
        self.assertIsNone(self.during, 'the hypervisor migration started')
        self.assert_home_with_its_vf(server, alloc)
        self.neutron.create_port_binding = bind
        self.assert_migrates_again(server)


class TestQueuedMigrationAborted(ReconcileBase):

    def setUp(self):
        # Nova's default, set before the computes start: one at a time.
        lm.VfpoolLiveMigrationBase.setUp(self)
        self.flags(max_concurrent_live_migrations=1)
        self.src = self.start_vfpool_compute('src')
        self.dst = self.start_vfpool_compute('dst')
        self.during = None
        # Live migrations wait here while the test holds the lock.
        self.hold = threading.Lock()
        self.addCleanup(self.let_go)

    def let_go(self) -> None:
        if self.hold.locked():
            self.hold.release()

    def _migrate_stub(self, domain, destination, params, flags):
        with self.hold:
            super()._migrate_stub(domain, destination, params, flags)

    def test_aborting_a_queued_migration_frees_its_claim(self):
        first = self._create_server(host=self.src, networks='none')
        server, alloc = self.boot_with_vfpool_vf(self.src)
        self.hold.acquire()
        # The first migration runs (held); the second, whose destination
        # claimed a VF at its check, waits in the source's queue.
        self._live_migrate(first, 'running', 'MIGRATING')
        self._live_migrate(server, 'queued', 'MIGRATING')
        [(state, _s, _d)] = self.migrations(server)
        self.assertEqual(models.IN_PROGRESS, state)
        migration = self.api.api_get(
            '/os-migrations?instance_uuid=%s' % server['id']
        ).body['migrations'].pop()

        self.api.api_delete('/servers/%s/migrations/%s'
                            % (server['id'], migration['id']))
        self._wait_for_migration_status(server, ['cancelled'])

        # Nova calls no driver hook for a queued migration it cancels.
        self.wait_rolled_back(server)
        self.let_go()
        self._wait_for_state_change(first, 'ACTIVE')
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual(self.src, server['OS-EXT-SRV-ATTR:host'])
        self.assert_home_with_its_vf(server, alloc)
        self.assert_migrates_again(server)


class TestSourceRestartsMidMigration(ReconcileBase):

    def setUp(self):
        super().setUp()
        self.entered = threading.Event()
        self.resume = threading.Event()
        # The stub of the migration that never ends in this process: the
        # old service's threads are released only when the test is over.
        self.addCleanup(self.resume.set)

    def _migrate_stub(self, domain, destination, params, flags):
        # The source detached the VF and QEMU copies the guest: the
        # compute service dies here (its threads go nowhere).
        self.during = {'source_vf': self.vfpool_vf(
            self.src, {'id': domain.UUIDString()})}
        self.entered.set()
        self.resume.wait(WAIT)
        domain.fail_job()

    def test_guest_gets_its_vf_back_and_the_claim_is_freed(self):
        server, alloc = self.boot_with_vfpool_vf(self.src)
        self.api.post_server_action(
            server['id'],
            {'os-migrateLive': {'host': None, 'block_migration': 'auto'}})
        self.assertTrue(self.entered.wait(WAIT), 'no migration started')
        self.assertIsNone(self.during['source_vf'])
        self.assertEqual([(models.MOVING, self.src, self.dst)],
                         self.migrations(server))

        # Nova's new service aborts the job it finds and marks the
        # migration error; the guest stays on the source, ACTIVE.
        self.restart_compute_service(self.src)
        self._wait_for_migration_status(server, ['error'])
        server = self._wait_for_state_change(server, 'ACTIVE')

        self.wait_rolled_back(server)
        self.assertEqual(self.src, server['OS-EXT-SRV-ATTR:host'])
        self.assert_home_with_its_vf(server, alloc)
        self.assertTrue(self.neutron_port_plugged(self.src, server))


class TestReconcileLeavesRunningMigrations(ReconcileBase):

    def test_a_migration_nova_still_drives_is_left_alone(self):
        server, alloc = self.boot_with_vfpool_vf(self.src)
        reconcilers = [self.computes[h].driver._vfpool_reconciler
                       for h in (self.src, self.dst)]
        passes = []

        def slow(domain, destination, params, flags):
            # Both reconcilers run twice more while the guest moves.
            start = [r.passes for r in reconcilers]
            self.wait_for(lambda: all(
                r.passes >= s + 2 for r, s in zip(reconcilers, start)),
                'the reconcilers do not run')
            passes.append(True)
            lm.TwoComputesBase._migrate_stub(self, domain, destination,
                                             params, flags)
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.migrateToURI3', slow))

        server = self._live_migrate(server)

        self.assertEqual([True], passes)
        self.assertEqual(self.dst, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual([(models.COMPLETED, self.src, self.dst)],
                         self.migrations(server))
        [dest_vf] = self.owned(self.dst, server)
        self.assertEqual((dest_vf, lm.MAC, lm.VLAN),
                         self.vfpool_vf(self.dst, server))
