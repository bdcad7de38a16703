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
