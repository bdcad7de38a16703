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

"""The invariants a history must keep, checked after it quiesced.

Against the model of the guests (what each has plugged, from the answers
its compute got), the tables, and every answer the delivery layer saw:

``plugged-twice``   no VF is plugged into two live guests;
``freed-in-use``    every VF a live guest has plugged is allocated to it
                    (no VF a guest uses is freed or given to another);
``leaked``          no VF is held for an instance that no longer exists,
                    nor held for a live one that does not have it;
``claim-unended``   every claim ended (no migration in flight) once its
                    lease and a reaper pass went by;
``flavor``          every live instance has its flavor's VFs, or a
                    recorded failure says why;
``two-answers``     each id that was sent more than once got one answer
                    (typed errors aside: a refusal is not an answer).

A typed ``vfpool.exception`` error alone is never a violation.
"""

import collections

from vfpool.tests.functional.histories import model as model_mod


def _answers(log: list, deleted_at: dict) -> list[str]:
    groups: dict = collections.defaultdict(list)
    instance_of = {d.kwargs['migration_uuid']: d.kwargs['instance_uuid']
                   for d in log if d.method == 'prepare_migration'}
    for i, d in enumerate(log):
        if d.error is not None or d.answer is None:
            continue
        k = d.kwargs
        if d.method == 'allocate':
            key = ('allocate', k['request_id'])
            # MACs follow the instance; a replay must give the same.
            value = sorted(a.get('mac') or '' for a in d.answer)
        elif d.method == 'prepare_migration':
            key = ('prepare_migration', k['migration_uuid'],
                   k['dest_host'])
            value = sorted(p['dest']['address'] for p in d.answer)
        elif d.method == 'complete_migration':
            # After the instance is deleted a replay has nothing to name.
            gone = deleted_at.get(instance_of.get(k['migration_uuid']))
            if gone is not None and i >= gone:
                continue
            key = ('complete_migration', k['migration_uuid'])
            value = sorted((a.get('host'), a['address']) for a in d.answer)
        else:
            continue
        groups[key].append((value, d.kind))
    found = []
    for key, values in sorted(groups.items()):
        distinct = {repr(v) for v, _kind in values}
        if len(distinct) > 1:
            found.append('two-answers: %s %s got %s' % (
                key[0], '/'.join(key[1:]),
                '; '.join('%s (%s)' % (v, kind) for v, kind in values)))
    return found


def check(model: model_mod.Model, tables: dict, log: list,
          deleted_at: dict | None = None) -> list[str]:
    """Every violation, one line each; [] when the history is sound."""
    found = []
    vfs = {(h, a): (state, owner, mig)
           for h, a, state, owner, mig in tables['vfs']}

    for key, names in sorted(model.plugged_by().items()):
        if len(names) > 1:
            found.append('plugged-twice: VF %s/%s is in guests %s'
                         % (key[0], key[1], ', '.join(sorted(names))))

    for guest in sorted(model.guests.values(), key=lambda g: g.name):
        if not guest.alive:
            continue
        for key in sorted(guest.plugged):
            state, owner, _mig = vfs.get(key, ('absent', None, None))
            if state != 'allocated' or owner != guest.uuid:
                holder = model.by_uuid(owner) if owner else None
                found.append(
                    'freed-in-use: VF %s/%s is in guest %s but %s%s'
                    % (key[0], key[1], guest.name, state,
                       ' for %s' % (holder.name if holder else owner)
                       if owner else ''))
        if not guest.failures and len(guest.plugged) != guest.vfs:
            found.append('flavor: %s runs on %s with %d VF(s), its '
                         'flavor asks %d, and no failure says why'
                         % (guest.name, guest.host, len(guest.plugged),
                            guest.vfs))

    for key, (state, owner, _mig) in sorted(vfs.items()):
        if owner is None:
            continue
        guest = model.by_uuid(owner)
        name = guest.name if guest else owner
        if guest is None or not guest.alive:
            if guest is not None and guest.release_pending:
                continue
            found.append('leaked: VF %s/%s is %s for %s, which no longer '
                         'exists' % (key[0], key[1], state, name))
        elif state == 'claimed':
            found.append('leaked: VF %s/%s is still claimed for %s'
                         % (key[0], key[1], name))
        elif key not in guest.plugged and not guest.failures:
            found.append('leaked: VF %s/%s is allocated to %s, which '
                         'does not have it' % (key[0], key[1], name))

    for uuid, owner, state in sorted(tables['migrations']):
        if state in ('in_progress', 'moving'):
            guest = model.by_uuid(owner)
            if guest is not None and any('GaveUp' in f
                                         for f in guest.failures):
                continue
            found.append('claim-unended: migration %s of %s is still %s'
                         % (uuid, guest.name if guest else owner, state))

    found.extend(_answers(log, deleted_at or {}))
    return found
