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

"""Seeded random histories: the operations, and the faults each one meets.

A history is a list of operations, each a plain dict (so that it prints,
and a shortened list replays): what a cloud does to its instances (boot,
delete, live migration, resize, evacuation) and what the nemesis does to
the processes (restart the database).  Faults of the delivery layer
travel with the operation whose calls they hit: ``faults`` maps the
ordinal of a call the operation makes to ``[kind, delay]`` (see
:mod:`.delivery`).  Everything comes from ``random.Random(seed)``: the
same seed, the same operations.
"""

import random

#: Compute hosts; all have the same hardware, so the same PCI addresses.
HOSTS = ('cmp-0', 'cmp-1', 'cmp-2')
VFS_PER_HOST = 4
INSTANCES = 6

#: Delivery faults a call may meet, and how likely each is per call.
DELIVERY_FAULTS = (('hold', 0.05), ('dup', 0.05), ('drop', 0.04),
                   ('reorder', 0.03), ('kill', 0.015))

OP_WEIGHTS = (('boot', 3), ('delete', 2), ('live_migrate', 6),
              ('resize', 2), ('evacuate', 2), ('restart_db', 1))


def _delivery_faults(rng: random.Random, calls: int = 8) -> dict:
    faults = {}
    for n in range(calls):
        roll = rng.random()
        for kind, p in DELIVERY_FAULTS:
            if roll < p:
                faults[n] = [kind, rng.randint(1, 6)]
                break
            roll -= p
    return faults


def _op(rng: random.Random, kind: str, instance: str) -> dict:
    op: dict = {'kind': kind, 'instance': instance,
                'faults': _delivery_faults(rng)}
    if kind == 'restart_db':
        op['faults'] = {}
    others = list(HOSTS)
    rng.shuffle(others)
    if kind == 'boot':
        op.update(host=others[0], vfs=rng.choice((0, 1, 1, 2)))
        roll = rng.random()
        if roll < 0.2:
            # The allocate is stuck in a slow queue: every attempt times
            # out, the build is aborted, and the messages arrive later.
            op['faults'].update({n: ['hold', rng.randint(1, 8)]
                                 for n in (1, 2, 3)})
        elif roll < 0.35:
            # A copy of the allocate arrives long after: the instance
            # may have moved, or be gone, by then.
            op['faults'][1] = ['dup', rng.randint(8, 40)]
    elif kind == 'live_migrate':
        op.update(dests=others[:2], outcome=rng.choice(
            ('complete', 'complete', 'complete', 'fail', 'abandon')))
        if rng.random() < 0.3:
            # The first destination's pre-check times out three times
            # (a slow worker; the messages are still queued): the
            # conductor tries the next host with the same migration.
            op['faults'].update({n: ['hold', rng.randint(1, 4)]
                                 for n in (0, 1, 2)})
        op['lapse'] = rng.random() < 0.15
    elif kind == 'resize':
        op.update(dest=others[0], outcome=rng.choice(
            ('confirm', 'confirm', 'revert')))
    elif kind == 'evacuate':
        op.update(dest=others[0],
                  # When, among its steps, the dead host comes back and
                  # cleans up after the evacuated instance.
                  returns_at=rng.randint(0, 3))
    return op


def generate(seed: int, ops: int) -> list[dict]:
    """``ops`` operations on a few instances, from ``seed`` alone.

    Operations go mostly to instances that the history so far has booted
    (a boot may still fail when it runs: the operation then does nothing).
    """
    rng = random.Random(seed)
    kinds = [k for k, _w in OP_WEIGHTS]
    weights = [w for _k, w in OP_WEIGHTS]
    booted: list[str] = []
    fresh = ['vm-%d' % i for i in range(INSTANCES)]
    history = []
    for n in range(ops):
        kind = rng.choices(kinds, weights)[0]
        if kind == 'boot' or not booted:
            kind = 'boot'
            if not fresh:
                fresh.append('vm-%d' % (INSTANCES + n))
            instance = fresh.pop(rng.randrange(len(fresh)))
            booted.append(instance)
        else:
            instance = rng.choice(booted)
            if kind == 'delete':
                booted.remove(instance)
        op = _op(rng, kind, instance)
        op['n'] = n
        history.append(op)
    return history


def select(history: list[dict], keep: list[int] | None) -> list[dict]:
    """The operations numbered ``keep`` (all when None), in order."""
    if keep is None:
        return list(history)
    wanted = set(keep)
    return [op for op in history if op['n'] in wanted]
