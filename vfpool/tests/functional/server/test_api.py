"""Every RPC method through real RabbitMQ and a real vfpool-server process,
on SQLite, MariaDB and PostgreSQL."""

import testscenarios

from vfpool.tests import api_cases
from vfpool.tests.functional import base

BACKENDS = [(name, {'backend': name})
            for name in ('sqlite', 'mysql', 'postgresql')]


class TestApi(testscenarios.WithScenarios, api_cases.ApiBehaviour,
              api_cases.BadInputBehaviour,
              base.FunctionalTestCase):
    scenarios = BACKENDS

    def setUp(self):
        super().setUp()
        stack = self.useFixture(base.ServiceStack(self.backend))
        self.client = stack.client
        self.engine = stack.engine
