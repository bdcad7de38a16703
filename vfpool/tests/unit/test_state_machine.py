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

_DOC = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'doc',
                    'source', 'contributor', 'state-machine.rst')
_EDGE = re.compile(r'(\(none\)|``\w+``)\s*→\s*(\(none\)|``\w+``)')


def _state(text: str):
    if text == '(none)':
        return None
    return text.strip('`')


def documented_transitions() -> dict:
    """transition -> {from: to}, from the "Migration transitions" table."""
    with open(_DOC) as f:
        text = f.read()
    table = text.split('.. list-table:: Migration transitions')[1]
    table = table.split('.. list-table::')[0]
    rows = re.split(r'^   \* - ', table, flags=re.M)[2:]
    found = {}
    for row in rows:
        cells = re.split(r'^     - ', row, flags=re.M)
        name = cells[0].strip().strip('`')
        edges = _EDGE.findall(' '.join(cells[1].split()))
        found[name] = {_state(a): _state(b) for a, b in edges}
    return found


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
