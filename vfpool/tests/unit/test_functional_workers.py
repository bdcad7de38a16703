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

"""tools/functional-workers.yaml runs every functional test exactly once.

Its second worker is the complement of the first, written out by hand;
if the two drift apart, a test would run twice or silently never.
"""

import os
import unittest

from stestr import scheduler
import testtools

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
WORKER_FILE = os.path.join(ROOT, 'tools', 'functional-workers.yaml')


def _ids(suite) -> list:
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            yield from _ids(test)
        else:
            yield test.id()


class TestFunctionalWorkers(testtools.TestCase):

    def test_every_functional_test_runs_exactly_once(self):
        loader = unittest.TestLoader()
        suite = loader.discover(
            os.path.join(ROOT, 'vfpool', 'tests', 'functional'),
            top_level_dir=ROOT)
        ids = list(_ids(suite))
        self.assertEqual([], [i for i in ids if 'FailedTest' in i])
        partitions = scheduler.generate_worker_partitions(ids, WORKER_FILE)
        self.assertEqual(2, len(partitions))
        placed = [i for part in partitions for i in part]
        self.assertEqual(sorted(ids), sorted(placed))
        self.assertTrue(all(partitions), 'a worker has no test')
