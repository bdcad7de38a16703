"""Every RPC method through real RabbitMQ and a real vfpool-server process,
on SQLite, MariaDB and PostgreSQL."""

import testscenarios

from vfpool.tests import api_cases
from vfpool.tests.functional import base

# Each scenario is its own test id, so that stestr can place each one
# on a worker of its own (see tools/functional-workers.yaml).
load_tests = testscenarios.load_tests_apply_scenarios

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
