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

"""A single database or broker of the test's own, restarted under load.

Two vfpool-servers share it; the system MariaDB, PostgreSQL and
RabbitMQ, which other tests use meanwhile, are never touched.
"""

import testscenarios

from vfpool.tests.functional import base
from vfpool.tests.functional.cluster import backends
from vfpool.tests.functional.cluster import base as ha_base
from vfpool.tests.functional.cluster import stack as ha_stack

load_tests = testscenarios.load_tests_apply_scenarios

SERVERS = 2


class TestDatabaseRestart(testscenarios.WithScenarios,
                          ha_base.FaultTestCase):
    scenarios = [('mysql', {'backend': backends.MariaDB,
                            'label': 'MariaDB'}),
                 ('postgresql', {'backend': backends.PostgreSQL,
                                 'label': 'PostgreSQL'})]

    def test_restart_under_load(self):
        database = self.useFixture(self.backend())
        self.stack = self.useFixture(ha_stack.ClusterStack(
            [database.url], base.TRANSPORT_URL, servers=SERVERS,
            client_timeout=ha_base.DATABASE_FAULT_TIMEOUT,
            **{'pool.reaper_interval': ha_base.REAPER_INTERVAL}))

        def inject():
            return {'down_s': round(database.restart(), 2)}
        row = self.run_fault('Single %s restarted' % self.label, inject)
        # The servers retried their transactions until the database was
        # back: callers that retry only timeouts (as the compute plugin
        # does) saw no error.
        self.assertEqual([], [e for e in row['failed']
                              if e.startswith('ServiceError')], row)


class TestBrokerRestart(ha_base.FaultTestCase):

    def test_restart_under_load(self):
        broker = self.useFixture(backends.RabbitMQ(1))
        database = self.useFixture(base.ScratchDatabase('mysql'))
        self.stack = self.useFixture(ha_stack.ClusterStack(
            [database.url], broker.transport_url(), servers=SERVERS,
            client_timeout=ha_base.TIMEOUT,
            **{'pool.reaper_interval': ha_base.REAPER_INTERVAL}))

        def inject():
            return {'down_s': round(broker.restart(), 2)}
        self.run_fault('Single RabbitMQ restarted', inject)
