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

"""Shortest histories the checker found, kept as regression tests.

Each is what the shrinker printed for a defect of issue 18, written out
so that it does not depend on the generator: the seed (which names the
instances and migrations) and the operations.  On bda4d4e each breaks an
invariant; on main with the fix of its defect it must pass:
``test_histories.TestKnownHistories`` replays them on every database,
and ``--known NAME`` replays one from the runner.
"""

KNOWN = {
    # A first allocate delivered after release claims VFs for a deleted
    # instance: every attempt of the boot's allocate is held, the build
    # is aborted and the instance deleted, then the messages arrive.
    'defect-4-allocate-after-release': (5, [
        {'n': 24, 'kind': 'boot', 'instance': 'vm-0', 'host': 'cmp-2',
         'vfs': 1, 'faults': {'1': ['hold', 2], '2': ['hold', 6],
                              '3': ['hold', 8]}},
    ]),
    # A late prepare retargets the migration back to the host the
    # conductor abandoned; the new destination plugs that host's
    # addresses, its own VFs stay available.
    'defect-1-late-prepare-retargets': (78, [
        {'n': 0, 'kind': 'boot', 'instance': 'vm-0', 'host': 'cmp-1',
         'vfs': 2, 'faults': {}},
        {'n': 1, 'kind': 'live_migrate', 'instance': 'vm-0',
         'dests': ['cmp-0', 'cmp-2'], 'outcome': 'complete',
         'lapse': False, 'faults': {'0': ['hold', 1], '1': ['hold', 2],
                                    '2': ['hold', 2]}},
    ]),
    # Deleting a migrated instance leaves its first request id live: a
    # late copy of the boot's allocate is answered [] as a success.
    'defect-10-migrated-request-id': (27, [
        {'n': 4, 'kind': 'boot', 'instance': 'vm-0', 'host': 'cmp-1',
         'vfs': 1, 'faults': {'1': ['dup', 38]}},
        {'n': 5, 'kind': 'live_migrate', 'instance': 'vm-0',
         'dests': ['cmp-2'], 'outcome': 'complete', 'lapse': False,
         'faults': {}},
        {'n': 6, 'kind': 'delete', 'instance': 'vm-0', 'faults': {}},
    ]),
    # The dead host comes back and releases between the evacuating
    # host's read and its prepare: the guest runs without its VF.
    'defect-7-evacuate-race': (176, [
        {'n': 15, 'kind': 'boot', 'instance': 'vm-4', 'host': 'cmp-0',
         'vfs': 1, 'faults': {}},
        {'n': 16, 'kind': 'evacuate', 'instance': 'vm-4', 'dest': 'cmp-1',
         'returns_at': 1, 'faults': {}},
    ]),
}

#: Those whose fix is not in this tree yet: each must still break an
#: invariant (``TestPendingHistories``); when its fix lands, move it out.
PENDING: frozenset[str] = frozenset()

#: Found by the checker on bda4d4e beyond issue 18's list; replayable
#: with ``--known NAME`` but not run by the tests until it is decided.
FINDINGS = {
    # A late copy of complete_migration, delivered after the instance
    # moved on by another migration, is answered with the instance's
    # allocations on that host now ([]): a second, different success.
    'finding-late-complete-after-move': (1, [
        {'n': 0, 'kind': 'boot', 'instance': 'vm-0', 'host': 'cmp-0',
         'vfs': 1, 'faults': {}},
        {'n': 1, 'kind': 'live_migrate', 'instance': 'vm-0',
         'dests': ['cmp-1'], 'outcome': 'complete', 'lapse': False,
         'faults': {'3': ['dup', 10]}},
        {'n': 2, 'kind': 'live_migrate', 'instance': 'vm-0',
         'dests': ['cmp-2'], 'outcome': 'complete', 'lapse': False,
         'faults': {}},
    ]),
}


def lookup(name: str) -> tuple[int, list[dict]]:
    if name in KNOWN:
        return KNOWN[name]
    if name in FINDINGS:
        return FINDINGS[name]
    raise SystemExit('no known history %s; kept: %s' % (
        name, ', '.join(sorted(KNOWN) + sorted(FINDINGS))))
