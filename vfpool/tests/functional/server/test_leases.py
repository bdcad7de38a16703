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

"""Leases on destination claims, with the real reaper of real servers."""

import time

import testscenarios

from vfpool import exception
from vfpool.tests import api_cases
from vfpool.tests.functional import base
from vfpool.tests import inventory as inv

# Each scenario is its own test id, so that stestr can place each one
# on a worker of its own (see tools/functional-workers.yaml).
load_tests = testscenarios.load_tests_apply_scenarios

REAPER_INTERVAL = 1
# Time for RPC round trips and a busy machine on top of the promise.
SLACK = 2.0


class TestLeases(testscenarios.WithScenarios, base.FunctionalTestCase):
    scenarios = base.backend_scenarios()

    def setUp(self):
        super().setUp()
        self.stack = self.useFixture(base.ServiceStack(
            self.backend, servers=2 if self.backend != 'sqlite' else 1,
            **{'pool.reaper_interval': REAPER_INTERVAL}))
        self.client = self.stack.client
        self.client.report_inventory(None, 'src', [inv.pf(5, 2)])
        self.client.report_inventory(None, 'dst', [inv.pf(6, 1)])
        self.instance = inv.new_uuid()
        self.source = self.client.allocate(None, self.instance, 'src',
                                           [inv.request(mac=inv.mac(1))],
                                           'req-1')[0]

    def dest_state(self):
        table = api_cases.vf_table(self.stack.engine)
        return table[('dst', '0000:06:10.0')]

    def wait_for_reaper(self, deadline):
        while time.monotonic() < deadline:
            if self.dest_state()[0] == 'available':
                return
            time.sleep(0.1)
        self.fail('claim still held after lease + reaper interval: %s'
                  % (self.dest_state(),))

    def prepare(self, lease):
        migration = inv.new_uuid()
        started = time.monotonic()
        self.client.prepare_migration(None, migration, self.instance, 'src',
                                      'dst', lease_seconds=lease)
        return migration, started

    def test_reaper_frees_claim_within_lease_plus_interval(self):
        migration, started = self.prepare(lease=2)
        self.assertEqual('claimed', self.dest_state()[0])
        self.wait_for_reaper(started + 2 + REAPER_INTERVAL + SLACK)
        # Not before the lease ran out.
        self.assertGreaterEqual(time.monotonic() - started, 2)
        info = self.client.get_instance(None, self.instance)
        self.assertEqual('expired', info['migration']['state'])
        # The source allocation is untouched and free to move again.
        self.assertEqual(('allocated', self.instance, None),
                         api_cases.vf_table(self.stack.engine)[
                             ('src', self.source['address'])])
        self.assertEqual(0, self.client.abort_migration(None, migration))
        self.assertRaises(exception.LeaseExpired,
                          self.client.renew_migration, None, migration)

    def test_complete_after_expiry_reacquires_free_vfs(self):
        migration, started = self.prepare(lease=1)
        self.wait_for_reaper(started + 1 + REAPER_INTERVAL + SLACK)
        done = self.client.complete_migration(None, migration)
        self.assertEqual(['0000:06:10.0'], [a['address'] for a in done])
        table = api_cases.vf_table(self.stack.engine)
        self.assertEqual(('allocated', self.instance, None),
                         table[('dst', '0000:06:10.0')])
        self.assertEqual('available', table[('src',
                                             self.source['address'])][0])

    def test_complete_after_expiry_fails_if_vfs_were_taken(self):
        migration, started = self.prepare(lease=1)
        self.wait_for_reaper(started + 1 + REAPER_INTERVAL + SLACK)
        thief = inv.new_uuid()
        self.client.allocate(None, thief, 'dst', [inv.request()], 'req-2')
        before = api_cases.table_dump(self.stack.engine)
        self.assertRaises(exception.LeaseExpired,
                          self.client.complete_migration, None, migration)
        self.assertEqual(before, api_cases.table_dump(self.stack.engine))

    def test_renew_keeps_the_claim(self):
        migration, started = self.prepare(lease=2)
        # Renew for three lease periods; the reaper must leave it alone.
        while time.monotonic() - started < 6:
            self.client.renew_migration(None, migration, 2)
            time.sleep(0.5)
            self.assertEqual('claimed', self.dest_state()[0])
        done = self.client.complete_migration(None, migration)
        self.assertEqual(['0000:06:10.0'], [a['address'] for a in done])
