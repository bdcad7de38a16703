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

"""Every RPC method through real RabbitMQ and a real vfpool-server process,
on SQLite, MariaDB and PostgreSQL.

The tests of one backend share one server and one scratch database (a
testresources resource): starting them is most of a test's time, and
each test empties the tables first, so none sees another's rows.
"""

import testresources
import testscenarios

from vfpool.db import models
from vfpool.tests import api_cases
from vfpool.tests import capacity_cases
from vfpool.tests.functional import base
from vfpool.tests import report_cases


class _Stack(testresources.TestResourceManager):
    """One ServiceStack on ``backend``, kept while tests use it."""

    def __init__(self, backend: str):
        super().__init__()
        self.backend = backend

    def make(self, dependency_resources):
        stack = base.ServiceStack(self.backend)
        stack.setUp()
        return stack

    def clean(self, stack):
        stack.cleanUp()


def load_tests(loader, tests, pattern):
    # Each scenario is its own test id, so that stestr can place each one
    # on a worker of its own (see tools/functional-workers.yaml); the
    # optimising suite sets each backend's stack up once per worker.
    return testresources.OptimisingTestSuite(
        testscenarios.load_tests_apply_scenarios(loader, tests, pattern))


SCENARIOS = [(name, {'backend': name, 'resources': [('stack', _Stack(name))]})
             for name in base.BACKENDS]


def empty_tables(engine) -> None:
    with engine.begin() as conn:
        for table in reversed(models.Base.metadata.sorted_tables):
            conn.execute(table.delete())


class TestApi(testscenarios.WithScenarios, api_cases.ApiBehaviour,
              api_cases.BadInputBehaviour,
              capacity_cases.CapacityBehaviour,
              report_cases.ReportDigestBehaviour,
              testresources.ResourcedTestCase, base.FunctionalTestCase):
    scenarios = SCENARIOS

    def setUp(self):
        super().setUp()
        self.client = self.stack.client
        self.engine = self.stack.engine
        empty_tables(self.engine)
