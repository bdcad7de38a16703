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

"""Run one history against the system, then check it.

The operations run interleaved, one hook at a time, in one thread: a
scheduler seeded from the history's seed picks which of the (at most
``CONCURRENCY``) operations under way makes its next step, as Nova's
computes would interleave them; operations on one instance never
overlap (Nova's task states), a late message may.  Given the same
operations and seed, the same steps run in the same order; what the
servers answer may still differ where timing decides (a server killed
while it works, a slow machine's timeouts).
"""

import dataclasses
import random
import re
import time

import oslo_messaging as messaging

from vfpool import rpcapi
from vfpool.tests.functional.histories import clients
from vfpool.tests.functional.histories import delivery
from vfpool.tests.functional.histories import invariants
from vfpool.tests.functional.histories import model as model_mod
from vfpool.tests.functional.histories import system as system_mod

CONCURRENCY = 3


@dataclasses.dataclass
class Result:
    seed: int
    ops: list
    violations: list
    calls: int = 0
    renewals: int = 0
    faults: dict = dataclasses.field(default_factory=dict)
    steps: int = 0
    skipped: int = 0
    seconds: float = 0.0
    trace: list = dataclasses.field(default_factory=list)
    log: list = dataclasses.field(default_factory=list)
    #: The instances the violations name: where shrinking starts.
    implicated: list = dataclasses.field(default_factory=list)

    def trace_lines(self) -> list[str]:
        return ['op %d %s %s %s -> %s' % (
            d.op, d.kind, d.method, _short(d.kwargs),
            d.error or _short(d.answer)) for d in self.log]


def _short(value) -> str:
    text = repr(value)
    return text if len(text) < 300 else text[:300] + '...'


def run_history(system: system_mod.System, seed: int,
                ops: list[dict]) -> Result:
    began = time.monotonic()
    system.reset()
    model = model_mod.Model(seed)
    nemesis = delivery.Nemesis(killer=system.kill_server)
    lease = system_mod.LEASE
    renewer = clients.Renewer(system.api(), lease)
    raw = system.api()
    nemesis.inner = raw.client

    def make_api(op: dict) -> rpcapi.VfpoolAPI:
        api = system.api()
        api.client = delivery.FaultyClient(api.client, nemesis, op['n'],
                                           op.get('faults', {}))
        return api

    world = clients.World(model, make_api, renewer, system, lease, nemesis)
    rng = random.Random(seed ^ 0x5EED)
    pending = list(ops)
    active: list = []      # (op, generator)
    deleted_at: dict = {}
    untyped: list[str] = []
    trace = []
    renewer.start()
    try:
        while pending or active:
            busy = {op['instance'] for op, _g in active}
            while (pending and len(active) < CONCURRENCY
                   and pending[0]['instance'] not in busy
                   and (not active or rng.random() < 0.5)):
                op = pending.pop(0)
                busy.add(op['instance'])
                gen = clients.OPERATIONS[op['kind']](world, op,
                                                     make_api(op))
                active.append((op, gen))
            if not active:
                # The next operation waits for its instance: none runs.
                continue
            op, gen = active[rng.randrange(len(active))]
            trace.append(op['n'])
            try:
                next(gen)
            except StopIteration:
                active.remove((op, gen))
            except messaging.RemoteError as e:
                # Not a typed answer: the API promises typed errors only.
                active.remove((op, gen))
                untyped.append('untyped-error: op %d (%s) got %s: %s' % (
                    op['n'], op['kind'], type(e).__name__, str(e)[:300]))
            guest = model.guests.get(op['instance'])
            if guest is not None and guest.deleted:
                deleted_at.setdefault(guest.uuid, len(nemesis.log))
            nemesis.step += 1
            nemesis.deliver_due(raw.client)
        nemesis.deliver_due(raw.client, final=True)
        # Late messages may have claimed: their effects count.
        for guest in model.guests.values():
            if guest.deleted:
                deleted_at.setdefault(guest.uuid, len(nemesis.log))
    finally:
        renewer.stop()
    system.quiesce(lease)
    violations = untyped + invariants.check(model, system.tables(),
                                            nemesis.log, deleted_at)
    implicated = sorted(
        guest.name for guest in model.guests.values()
        if any(guest.uuid in v or re.search(r'\b%s\b' % guest.name, v)
               for v in violations))
    return Result(seed, ops, violations, calls=nemesis.calls,
                  implicated=implicated,
                  renewals=renewer.renewals, faults=dict(nemesis.faults),
                  steps=len(trace), skipped=world.skipped,
                  seconds=time.monotonic() - began, trace=trace,
                  log=nemesis.log)
