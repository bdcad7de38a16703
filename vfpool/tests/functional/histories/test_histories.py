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

"""The history checker's short run, and proof that it can fail.

``TestHistories`` runs ``VFPOOL_HISTORIES`` histories (default 1) of
``VFPOOL_HISTORY_OPS`` operations (default 40) from seed
``VFPOOL_HISTORY_SEED`` (default 1; plus 1000 per scenario) on each
database: two servers on MariaDB and on PostgreSQL, one on SQLite, and
two on a PostgreSQL server of the test's own that the histories
restart.  A failure shows each
violation, the shortest history found and the command that replays it.
``tox -e functional-histories`` runs them at a larger size.
"""

import io
import os
import subprocess
import sys

import testscenarios

from vfpool.tests.functional import base
from vfpool.tests.functional.cluster import base as cluster_base
from vfpool.tests.functional.histories import cli
from vfpool.tests.functional.histories import defects
from vfpool.tests.functional.histories import generator
from vfpool.tests.functional.histories import known
from vfpool.tests.functional.histories import shrink

load_tests = testscenarios.load_tests_apply_scenarios

HISTORIES = int(os.environ.get('VFPOOL_HISTORIES', 1))
OPS = int(os.environ.get('VFPOOL_HISTORY_OPS', 40))
SEED = int(os.environ.get('VFPOOL_HISTORY_SEED', 1))
#: Shrinking tries in a test run (each replays a history).
SHRINK_TRIES = int(os.environ.get('VFPOOL_HISTORY_SHRINK_TRIES', 12))


class TestHistories(testscenarios.WithScenarios, base.FunctionalTestCase):
    # Each scenario starts at a seed of its own (SEED + 1000 * offset):
    # the run covers as many different histories as it runs.
    scenarios = [
        ('sqlite', {'backend': 'sqlite', 'private_db': False,
                    'offset': 0}),
        ('mysql', {'backend': 'mysql', 'private_db': False, 'offset': 1}),
        ('postgresql', {'backend': 'postgresql', 'private_db': False,
                        'offset': 2}),
        ('postgresql-restarts', {'backend': 'postgresql',
                                 'private_db': True, 'offset': 3}),
    ]

    def setUp(self):
        super().setUp()
        cluster_base.quiet_messaging(self)

    def test_histories(self):
        seed = SEED + 1000 * self.offset
        argv = ['--backend', self.backend, '--seed', str(seed),
                '--histories', str(HISTORIES), '--length', str(OPS),
                '--shrink-tries', str(SHRINK_TRIES)]
        if self.private_db:
            argv.append('--private-db')
        out = io.StringIO()
        figures = cli.run(cli.parse(argv), out=out)
        self.assertEqual(HISTORIES, figures['histories'], out.getvalue())
        self.assertEqual(0, figures['violations'], out.getvalue())


class TestKnownHistories(testscenarios.WithScenarios,
                         base.FunctionalTestCase):
    """The shortest histories found on bda4d4e (known.py), replayed.

    Each broke an invariant there; with its defect's fix each must pass.
    """

    scenarios = base.backend_scenarios()

    def setUp(self):
        super().setUp()
        cluster_base.quiet_messaging(self)

    def replay(self, names: list[str]) -> tuple[dict, str]:
        out = io.StringIO()
        figures = cli.run(cli.parse(['--backend', self.backend,
                                     '--known', ','.join(names)]), out=out)
        self.assertEqual(len(names), figures['histories'], out.getvalue())
        return figures, out.getvalue()

    def test_known_histories_pass(self):
        figures, out = self.replay(sorted(set(known.KNOWN) - known.PENDING))
        self.assertEqual([], figures['failed'], out)

    def test_pending_histories_still_fail(self):
        # Their fix is not in this tree: each still finds its violation.
        # When one passes, its fix landed: take it out of known.PENDING.
        if not known.PENDING:
            self.skipTest('no known history is pending a fix')
        for name in sorted(known.PENDING):
            figures, out = self.replay([name])
            self.assertEqual(1, len(figures['failed']), out)


class TestCanFail(base.FunctionalTestCase):
    """A defect put back through the switch is found, from a copy."""

    def boot_and_delete(self) -> tuple[int, list[int]]:
        """A seed that boots a guest with a VF and deletes it, unfaulted.

        Returns the seed and the numbers of its two operations.
        """
        for seed in range(1, 10000):
            history = generator.generate(seed, 12)
            for op in history:
                if op['kind'] == 'boot' and op['vfs'] and not op['faults']:
                    for later in history[op['n'] + 1:]:
                        if later['instance'] == op['instance']:
                            if (later['kind'] == 'delete'
                                    and not later['faults']):
                                return seed, [op['n'], later['n']]
                            break
        raise AssertionError('no such seed')

    def run_cli(self, *argv: str) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        env.pop(cli.TREE_ENV, None)
        env['PYTHONPATH'] = os.pathsep.join(
            [defects.ROOT] + [p for p in env.get('PYTHONPATH', '').split(
                os.pathsep) if p])
        return subprocess.run(
            [sys.executable, '-m', 'vfpool.tests.functional.histories',
             '--backend', 'sqlite', '--length', '12'] + list(argv),
            capture_output=True, text=True, timeout=600, env=env)

    def test_defect_switch(self):
        seed, ops = self.boot_and_delete()
        ops_arg = ','.join(map(str, ops))
        sound = self.run_cli('--seed', str(seed), '--ops', ops_arg)
        self.assertEqual(0, sound.returncode, sound.stdout + sound.stderr)
        broken = self.run_cli('--seed', str(seed), '--ops', ops_arg,
                              '--defect', '00')
        self.assertEqual(1, broken.returncode,
                         broken.stdout + broken.stderr)
        self.assertIn('VIOLATION leaked: VF', broken.stdout)
        self.assertIn('replay: python -m vfpool.tests.functional.histories '
                      '--backend sqlite --seed %d --length 12 --ops %s '
                      '--defect 00' % (seed, ops_arg), broken.stdout)


class TestShrink(base.FunctionalTestCase):

    def test_ddmin_finds_the_three_that_matter(self):
        def fails(subset):
            return {7, 23, 31} <= set(subset)
        self.assertEqual([7, 23, 31],
                         shrink.ddmin(list(range(40)), fails, 1000))

    def test_ddmin_stops_at_its_bound(self):
        tries = []

        def fails(subset):
            tries.append(subset)
            return {7, 23, 31} <= set(subset)
        shorter = shrink.ddmin(list(range(40)), fails, 5)
        self.assertEqual(5, len(tries))
        self.assertEqual(set(), {7, 23, 31} - set(shorter))
