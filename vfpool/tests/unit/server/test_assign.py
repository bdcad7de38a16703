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

"""allocate's matching: a VF per request whenever the VFs hold one."""

import itertools
import random
import typing

import testtools

from vfpool.objects import vf


class Row(typing.NamedTuple):
    id: int


def brute_force(options: list[list[Row]]) -> bool:
    ids = sorted({r.id for rows in options for r in rows})
    return any(all(Row(pick) in rows for pick, rows in zip(picks, options))
               for picks in itertools.permutations(ids, len(options)))


class TestAssign(testtools.TestCase):

    def check(self, options: list[list[Row]]):
        chosen = vf.assign(options)
        self.assertEqual(brute_force(options), chosen is not None, options)
        if chosen is not None:
            self.assertEqual(len(options), len({r.id for r in chosen}))
            for row, rows in zip(chosen, options):
                self.assertIn(row, rows)
        return chosen

    def test_greedy_choice_is_undone(self):
        # Issue 18 item 8: request 0 takes any VF, request 1 only VF 1;
        # VF 1 comes first for both.
        self.assertEqual([Row(2), Row(1)],
                         self.check([[Row(1), Row(2)], [Row(1)]]))

    def test_best_candidates_when_greedy_works(self):
        self.assertEqual([Row(1), Row(2), Row(3)], self.check(
            [[Row(1), Row(2), Row(3)]] * 3))

    def test_none_when_no_assignment_exists(self):
        self.assertIsNone(self.check([[Row(1)], [Row(1)], [Row(1), Row(2)]]))
        self.assertIsNone(self.check([[]]))
        self.assertEqual([], self.check([]))

    def test_agrees_with_brute_force(self):
        rng = random.Random(18)
        for _ in range(500):
            vfs = [Row(i) for i in range(rng.randint(1, 5))]
            self.check([rng.sample(vfs, rng.randint(0, len(vfs)))
                        for _ in range(rng.randint(1, 4))])
