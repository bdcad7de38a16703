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

"""A server killed with SIGKILL while callers are busy.

Callers keep retrying with the same request ids and migration uuids, as
a compute service does after a timeout.  After a restart every caller
must get a consistent answer, nothing may be half done, and claims
whose migration nobody finishes must be gone after lease + reaper
interval.
"""

import concurrent.futures
import signal
import threading
import time

import oslo_messaging as messaging
import testscenarios

from vfpool import exception
from vfpool import rpc
from vfpool import rpcapi
from vfpool.tests import api_cases
from vfpool.tests.functional import base
from vfpool.tests import inventory as inv

# Each scenario is its own test id, so that stestr can place each one
# on a worker of its own (see tools/functional-workers.yaml).
load_tests = testscenarios.load_tests_apply_scenarios

CALLERS = 16
LEASE = 3
REAPER_INTERVAL = 1


class TestServerKilled(testscenarios.WithScenarios,
                       base.FunctionalTestCase):
    scenarios = base.backend_scenarios(base.SHARED_BACKENDS)

    def setUp(self):
        super().setUp()
        self.stack = self.useFixture(base.ServiceStack(
            self.backend, servers=1,
            **{'pool.reaper_interval': REAPER_INTERVAL}))
        for i in range(CALLERS):
            self.stack.client.report_inventory(
                None, 'src-%d' % i, [inv.pf(5, 2)])
            self.stack.client.report_inventory(
                None, 'dst-%d' % i, [inv.pf(6, 2)])

    def retrying(self, stop, call, *args):
        """Call until the server answers; timeouts are retried as-is."""
        while not stop.is_set():
            try:
                return call(None, *args)
            except messaging.MessagingTimeout:
                with self.lock:
                    self.timeouts += 1
                continue
        raise AssertionError('gave up on %s' % call.__name__)

    def caller(self, i, client, stop, abandon):
        instance = inv.new_uuid()
        request_id = 'req-%d' % i
        migration = inv.new_uuid()
        src, dst = 'src-%d' % i, 'dst-%d' % i
        first = self.retrying(stop, client.allocate, instance, src,
                              [inv.request(mac=inv.mac(i))], request_id)
        again = self.retrying(stop, client.allocate, instance, src,
                              [inv.request(mac=inv.mac(i))], request_id)
        pairs = self.retrying(stop, client.prepare_migration, migration,
                              instance, src, dst, LEASE)
        pairs_again = self.retrying(stop, client.prepare_migration,
                                    migration, instance, src, dst, LEASE)
        done = None
        if not abandon:
            done = self.retrying(stop, client.complete_migration, migration)
            done_again = self.retrying(stop, client.complete_migration,
                                       migration)
            self.assertEqual(done, done_again)
        return dict(instance=instance, first=first, again=again,
                    pairs=pairs, pairs_again=pairs_again, done=done,
                    src=src, dst=dst)

    def test_sigkill_while_callers_are_active(self):
        transport = rpc.get_transport(self.stack.conf)
        self.addCleanup(transport.cleanup)
        client = rpcapi.VfpoolAPI(self.stack.conf, transport=transport,
                                  timeout=3)
        stop = threading.Event()
        self.addCleanup(stop.set)
        self.lock = threading.Lock()
        self.timeouts = 0
        with concurrent.futures.ThreadPoolExecutor(CALLERS) as pool:
            futures = [pool.submit(self.caller, i, client, stop, i % 4 == 0)
                       for i in range(CALLERS)]
            time.sleep(0.3)
            server = self.stack.procs[0]
            server.kill(signal.SIGKILL)
            time.sleep(1)
            server.start()
            results = [f.result(timeout=240) for f in futures]

        # The kill really hit callers in flight: they had to retry.
        self.assertGreater(self.timeouts, 0)
        for result in results:
            self.assertEqual(result['first'], result['again'])
            self.assertEqual(result['pairs'], result['pairs_again'])
            self.assertEqual(1, len(result['pairs']))
        # Abandoned migrations expire; completed ones moved the VF.
        deadline = time.monotonic() + LEASE + REAPER_INTERVAL + 5
        while time.monotonic() < deadline:
            table = api_cases.vf_table(self.stack.engine)
            if not [k for k, v in table.items() if v[0] == 'claimed']:
                break
            time.sleep(0.2)
        table = api_cases.vf_table(self.stack.engine)
        self.assertEqual([], [k for k, v in table.items()
                              if v[0] == 'claimed'])
        for result in results:
            info = self.stack.client.get_instance(None, result['instance'])
            owned = [(a['host'], a['address'])
                     for a in info['allocations']]
            if result['done'] is None:
                self.assertEqual('expired', info['migration']['state'])
                self.assertEqual([(result['src'],
                                   result['first'][0]['address'])], owned)
            else:
                self.assertEqual('completed', info['migration']['state'])
                self.assertEqual([(result['dst'],
                                   result['pairs'][0]['dest']['address'])],
                                 owned)
            # Nothing else anywhere belongs to it.
            held = [k for k, v in table.items()
                    if v[1] == result['instance']]
            self.assertEqual(sorted(owned), sorted(held))
        self.assertRaises(exception.HostNotFound,
                          self.stack.client.get_host, None, 'nowhere')
