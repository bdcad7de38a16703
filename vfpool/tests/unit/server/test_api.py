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

"""The RPC API in-process, on ``fake://`` and SQLite."""

import testtools

from vfpool.tests import api_cases
from vfpool.tests import capacity_cases
from vfpool.tests import fixtures
from vfpool.tests import inventory as inv
from vfpool.tests import report_cases


class TestApi(api_cases.ApiBehaviour, api_cases.BadInputBehaviour,
              capacity_cases.CapacityBehaviour,
              report_cases.ReportDigestBehaviour,
              testtools.TestCase):
    def setUp(self):
        super().setUp()
        conf = self.useFixture(fixtures.Conf()).conf
        self.engine = self.useFixture(fixtures.Database()).engine
        self.client = self.useFixture(fixtures.FakeRPC(conf)).client


class TestCapacityNumaRequired(testtools.TestCase):
    """``[pool] numa_policy = required`` also binds ``get_capacity``."""

    def setUp(self):
        super().setUp()
        conf = self.useFixture(fixtures.Conf(
            **{'pool.numa_policy': 'required'})).conf
        self.useFixture(fixtures.Database())
        self.client = self.useFixture(fixtures.FakeRPC(conf)).client

    def test_only_vfs_on_the_node_count(self):
        self.client.report_inventory(None, 'h1', [
            inv.pf(5, 2, numa_node=0), inv.pf(7, 1, numa_node=1)])

        def capacity(*requests):
            return self.client.get_capacity(None, ['h1'],
                                            list(requests))['hosts']['h1']

        self.assertTrue(capacity(inv.request(count=2, numa_node=0)))
        self.assertFalse(capacity(inv.request(count=2, numa_node=1)))
        self.assertTrue(capacity(inv.request(count=3)))
        # Several requests: the scarce ones are matched exactly.
        self.assertTrue(capacity(inv.request(numa_node=1),
                                 inv.request(count=2, numa_node=0)))
        self.assertFalse(capacity(inv.request(numa_node=1),
                                  inv.request(numa_node=1)))
