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

"""The destination's lease renewer against a real vfpool-server (issue 18).

No guest is needed: the claim (``pre_live_migration``) and its renewal
are RPCs only.  The server runs with leases of its own length, which the
compute does not know (its ``[pool] lease_seconds`` says something else):

* the renewals are paced by the expiry the server gave (fix 11), so a
  server lease shorter than the compute's keeps its claim;
* renewal has an end (item 2): ``[migration] claim_max_seconds``, and
  the owner's word; then the lease lapses, ``vfpool-manage audit`` lists
  the claim until a reaper frees it, and the reaper frees it.
"""

import json
import subprocess
import sys
import threading
import time

import fixtures
import testtools

from vfpool.compute import plugin as vf_plugin
from vfpool.tests.api_cases import vf_table
from vfpool.tests.functional import base
from vfpool.tests import inventory as inv

SRC = 'lease-src'
DST = 'lease-dst'
#: The server's lease; the compute believes in ten times more.
SERVER_LEASE = 3
COMPUTE_LEASE = 10 * SERVER_LEASE


class LeaseBoundsTestCase(testtools.TestCase):

    stack_options: dict = {'pool.lease_seconds': SERVER_LEASE}

    def setUp(self) -> None:
        super().setUp()
        self.useFixture(fixtures.Timeout(120, gentle=True))
        self.stack = self.useFixture(base.ServiceStack(**self.stack_options))
        self.client = self.stack.client
        self.conf = self.stack.conf
        self.override('lease_seconds', COMPUTE_LEASE, 'pool')
        self.client.report_inventory(None, SRC, [inv.pf(5, 2)])
        self.client.report_inventory(None, DST, [inv.pf(6, 2)])
        self.instance = inv.new_uuid()
        self.migration = inv.new_uuid()
        self.client.allocate(None, self.instance, SRC, [inv.request()],
                             'boot-%s' % self.instance)

    def override(self, name: str, value, group: str) -> None:
        self.conf.set_override(name, value, group=group)
        self.addCleanup(self.conf.clear_override, name, group=group)

    def claim(self, owner=None) -> str:
        """Claim on DST as its driver does; the claimed VF's address."""
        kwargs = {} if owner is None else {'owner': owner}
        plugin = vf_plugin.VFMigrationPlugin(self.conf, DST,
                                             client=self.client, **kwargs)
        self.addCleanup(plugin.close)
        [pair] = plugin.pre_live_migration(None, self.instance,
                                           self.migration, SRC, DST)
        return pair['dest']['address']

    def renewer(self):
        for thread in threading.enumerate():
            if thread.name == 'vfpool-renew-%s' % self.migration:
                return thread
        return None

    def wait_for(self, what, timeout: float, message: str):
        deadline = time.monotonic() + timeout
        while True:
            value = what()
            if value or time.monotonic() > deadline:
                self.assertTrue(value, message)
                return value
            time.sleep(0.2)

    def migration_state(self) -> str:
        return self.client.get_instance(
            None, self.instance)['migration']['state']

    def audit(self) -> list[tuple]:
        """(problem, host, address) of ``vfpool-manage audit``."""
        result = subprocess.run(
            [sys.executable, '-c', 'import sys; from vfpool.cmd import '
             'manage; sys.exit(manage.main())',
             '--config-file', self.stack.config_file, 'audit',
             '--format', 'json'],
            capture_output=True, text=True, timeout=60)
        self.assertIn(result.returncode, (0, 1), result.stderr)
        return [(p['problem'], p['host'], p['address'])
                for p in json.loads(result.stdout)['problems']]


class TestPacedByTheServer(LeaseBoundsTestCase):

    def test_a_server_lease_shorter_than_the_computes_keeps_the_claim(self):
        claimed = self.claim()
        renewer = self.renewer()

        # Three renewals take about one server lease when they are paced
        # by what the server answered; paced by the compute's lease the
        # first would come long after the reaper freed the claim.
        self.wait_for(lambda: renewer.renewals >= 3 or not
                      renewer.is_alive(), 60, 'the renewer hangs')

        self.assertEqual('in_progress', self.migration_state())
        self.assertGreaterEqual(renewer.renewals, 3)
        self.assertEqual(('claimed', self.instance, self.migration),
                         vf_table(self.stack.engine)[(DST, claimed)])


class TestOwnerGaveUp(LeaseBoundsTestCase):

    def test_renewal_ends_when_the_owner_gives_the_migration_up(self):
        wanted = threading.Event()
        wanted.set()
        self.claim(owner=lambda uuid: wanted.is_set())
        renewer = self.renewer()
        self.wait_for(lambda: renewer.renewals >= 1, 30,
                      'the lease was never renewed')

        wanted.clear()

        self.wait_for(lambda: not renewer.is_alive(), 30,
                      'the renewer still renews')
        self.assertEqual('abandoned', renewer.outcome)
        # The lease lapses and the reaper (every second here) frees it.
        self.wait_for(lambda: self.migration_state() == 'expired', 30,
                      'the claim was never reaped')


class TestRenewalBound(LeaseBoundsTestCase):
    """No reaper runs: the lapsed claim stays, audit lists it."""

    stack_options = dict(LeaseBoundsTestCase.stack_options,
                         **{'pool.reaper_interval': 3600})

    def test_renewal_ends_at_claim_max_seconds_and_audit_lists_it(self):
        self.override('claim_max_seconds', 2 * SERVER_LEASE, 'migration')
        claimed = self.claim()
        renewer = self.renewer()

        # Nothing says the migration is over: only the bound ends it.
        self.wait_for(lambda: not renewer.is_alive(),
                      2 * SERVER_LEASE + 30, 'the renewer never stops')

        self.assertEqual('bound', renewer.outcome)
        self.assertGreaterEqual(renewer.renewals, 1)
        found = self.wait_for(
            lambda: ('lapsed_claim', DST, claimed) in self.audit(),
            SERVER_LEASE + 30, 'audit does not list the lapsed claim')
        self.assertTrue(found)
