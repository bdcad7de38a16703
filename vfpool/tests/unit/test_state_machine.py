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

"""The contributor guide's state machine is the one the code runs."""

import os
import re

import testtools

from vfpool.db import models
from vfpool.objects import migration
from vfpool.objects import vf
from vfpool import states

_DOC = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'doc',
                    'source', 'contributor', 'state-machine.rst')
_EDGE = re.compile(r'(\(none\)|``\w+``)\s*→\s*(\(none\)|``\w+``)')


def _state(text: str):
    if text == '(none)':
        return None
    return text.strip('`')


def documented_edges(title: str) -> dict:
    """transition -> [(from, to)], from the doc's table ``title``."""
    with open(_DOC) as f:
        text = f.read()
    table = text.split('.. list-table:: %s\n' % title)[1]
    table = re.split(r'^\S', table, flags=re.M)[0]
    rows = re.split(r'^   \* - ', table, flags=re.M)[2:]
    found = {}
    for row in rows:
        cells = re.split(r'^     - ', row, flags=re.M)
        name = cells[0].strip().strip('`')
        edges = _EDGE.findall(' '.join(cells[1].split()))
        found[name] = [(_state(a), _state(b)) for a, b in edges]
    return found


def documented_transitions() -> dict:
    """transition -> {from: to}, from the "Migration transitions" table."""
    return {name: dict(edges) for name, edges in
            documented_edges('Migration transitions').items()}


class TestStateMachineDoc(testtools.TestCase):

    def test_doc_lists_exactly_the_transitions_of_the_code(self):
        code = {name: {a: (None if b == migration.DROPPED else b)
                       for a, b in edges.items()}
                for name, edges in migration.TRANSITIONS.items()}
        self.assertEqual(code, documented_transitions())

    def test_every_state_is_reachable_and_known(self):
        states = {s for edges in migration.TRANSITIONS.values()
                  for pair in edges.items() for s in pair}
        states -= {None, migration.DROPPED}
        self.assertEqual(set(models.MIGRATION_STATES), states)
        self.assertEqual({models.IN_PROGRESS, models.MOVING},
                         set(models.IN_FLIGHT))


class TestVFStateMachineDoc(testtools.TestCase):

    def test_doc_lists_exactly_the_vf_transitions_of_the_code(self):
        documented = documented_edges('VF transitions')
        self.assertEqual({name: set(edges) for name, edges in
                          vf.TRANSITIONS.items()},
                         {name: set(edges) for name, edges in
                          documented.items()})
        for name, edges in documented.items():
            self.assertEqual(len(set(edges)), len(edges), name)

    def test_every_vf_state_is_reachable_and_known(self):
        entered = {b for edges in vf.TRANSITIONS.values() for _a, b in edges}
        left = {a for edges in vf.TRANSITIONS.values() for a, _b in edges}
        self.assertEqual(set(states.VF_STATES), entered)
        self.assertEqual(set(states.VF_STATES), left - {None})

    def test_a_transition_refuses_a_state_it_does_not_enter(self):
        self.assertRaises(ValueError, vf._leaving, 'free', states.RESERVED)

    def test_state_names_come_from_one_module(self):
        self.assertIs(states.VF_STATES, models.VF_STATES)
        self.assertIs(states.IN_FLIGHT, models.IN_FLIGHT)
        self.assertIs(states.ATTACH_STATES, models.ATTACH_STATES)
