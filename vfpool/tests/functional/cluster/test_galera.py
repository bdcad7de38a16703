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

"""vfpool on a 3-node MariaDB Galera cluster, every node a writer.

Each vfpool-server writes through a node of its own, so that two
callers racing for one VF usually race on two nodes: one of them loses
at COMMIT by certification (error 1213), and vfpool retries it whole.
"""

import signal
import time

import testscenarios

from vfpool.tests.functional import base
from vfpool.tests.functional.cluster import backends
from vfpool.tests.functional.cluster import base as ha_base
from vfpool.tests.functional.cluster import load as load_mod
from vfpool.tests.functional.cluster import stack as ha_stack
from vfpool.tests.functional.server import test_races

load_tests = testscenarios.load_tests_apply_scenarios

NODES = 3


def galera_stack(test, cluster: backends.GaleraCluster,
                 **options) -> ha_stack.ClusterStack:
    return test.useFixture(ha_stack.ClusterStack(
        cluster.urls, base.TRANSPORT_URL, servers=NODES,
        engine_options={'mysql_wsrep_sync_wait': 1},
        **dict(ha_stack.GALERA_OPTIONS, **options)))


class TestGaleraRaces(test_races.TestRaces):
    """The race tests of server/test_races.py, one server per node."""

    scenarios = [('galera', {'backend': 'galera', 'servers': NODES})]
    rounds = ha_base.env_int('VFPOOL_HA_RACE_ROUNDS', 4)
    prepare_rounds = ha_base.env_int('VFPOOL_HA_PREPARE_ROUNDS', 2)

    def make_stack(self):
        ha_base.quiet_messaging(self)
        self.cluster = self.useFixture(backends.GaleraCluster(NODES))
        return ha_stack.ClusterStack(
            self.cluster.urls, base.TRANSPORT_URL, servers=NODES,
            engine_options={'mysql_wsrep_sync_wait': 1}, transports=0,
            **ha_stack.GALERA_OPTIONS)

    def certification_failures(self) -> int:
        total = 0
        for node in self.cluster.nodes:
            status = node.wsrep_status()
            total += (int(status['wsrep_local_cert_failures'])
                      + int(status['wsrep_local_bf_aborts']))
        return total

    def record(self, name: str, calls: int, began: float) -> None:
        load_mod.record(name, {
            'calls': calls, 'failed': {}, 'retried': 0,
            'recovery_s': None, 'double_allocations': 0, 'leaked': 0,
            'seconds': round(time.monotonic() - began, 1),
            'certification_conflicts': self.certification_failures()})

    def test_allocate_race(self):
        began = time.monotonic()
        super().test_allocate_race()
        # Several nodes really were written at once.
        self.assertGreater(self.certification_failures(), 0)
        self.record('Galera multi-writer: %d allocate rounds, %d callers '
                    'for %d VFs' % (self.rounds, test_races.CALLERS,
                                    test_races.VFS),
                    self.rounds * test_races.CALLERS, began)

    def test_prepare_migration_race(self):
        began = time.monotonic()
        super().test_prepare_migration_race()
        self.assertGreater(self.certification_failures(), 0)
        self.record('Galera multi-writer: %d prepare rounds, %d callers '
                    'for %d VFs' % (self.prepare_rounds, test_races.CALLERS,
                                    test_races.VFS),
                    self.prepare_rounds * test_races.CALLERS, began)


class TestGaleraFaults(ha_base.FaultTestCase):

    def setUp(self):
        super().setUp()
        self.cluster = self.useFixture(backends.GaleraCluster(NODES))

    def make_stack(self, client_timeout: int) -> None:
        self.stack = galera_stack(self, self.cluster,
                                  client_timeout=client_timeout, **{
                                      'pool.reaper_interval':
                                          ha_base.REAPER_INTERVAL})

    def test_node_killed_and_back_by_ist(self):
        self.make_stack(ha_base.DATABASE_FAULT_TIMEOUT)
        victim = 1      # server-1 writes through it

        def inject():
            self.cluster.kill(victim)
            began = time.monotonic()
            self.cluster.survivors_synced(victim)
            return {'survivors_primary_s': round(time.monotonic() - began,
                                                 2)}

        def recover():
            back = self.cluster.rejoin(victim)
            self.assertIsNotNone(back['ist_writesets'],
                                 'the node took a full SST, not IST')
            return {'rejoined_s': round(back['seconds'], 2),
                    'ist_writesets': back['ist_writesets']}
        self.run_fault('Galera node SIGKILLed, back by IST', inject,
                       recover)

    def test_server_killed(self):
        self.make_stack(ha_base.TIMEOUT)
        server = self.stack.procs[0]

        def inject():
            server.kill(signal.SIGKILL)

        def recover():
            time.sleep(1)
            server.start()
            self.stack.wait_ready()
        self.run_fault('vfpool-server SIGKILLed (Galera)', inject, recover)
