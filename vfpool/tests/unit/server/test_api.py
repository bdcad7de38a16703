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
