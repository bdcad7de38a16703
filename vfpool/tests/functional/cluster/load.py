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

"""Racing callers that keep calling through a fault, and what they saw.

Each caller runs the life of an instance again and again on two shared
hosts that have fewer VFs than there are callers: allocate on ``src``,
ask the same again, prepare a migration to ``dst``, ask that again, then
complete it (and release the instance), abort it (and release), or, once
per fourth caller, abandon it so that its lease must expire.  A call
that fails with a transient error (a timeout, or ``ServiceError`` from a
server that lost its database) is sent again with the same ids, as a
compute service does; a typed answer such as ``NoAvailableVF`` is final.

From the answers alone the callers know, for every VF, when someone was
told they held it; two such spans that overlap are a VF given twice.  At
the end :meth:`Load.check` compares the tables with what the callers
were told: every VF held belongs to an instance that is still alive and
was told it holds it, and no claim outlived its lease.
"""

import collections
import dataclasses
import json
import math
import os
import threading
import time

import oslo_messaging as messaging
import sqlalchemy as sa

from vfpool.db import models
from vfpool import exception
from vfpool.tests import api_cases
from vfpool.tests import inventory as inv

SRC, DST = 'src', 'dst'
LONG_LEASE = 300
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))))
#: Where each fault test appends its row; tools/fault-table.py prints them.
SUMMARY = os.environ.get('VFPOOL_FAULT_SUMMARY',
                         os.path.join(ROOT, '.fault-summary.jsonl'))


def error_name(exc: Exception) -> str:
    if isinstance(exc, exception.ServiceError):
        return 'ServiceError(%s)' % exc.kwargs.get('reason', '?')
    return type(exc).__name__


@dataclasses.dataclass
class Attempt:
    method: str
    start: float
    end: float
    #: The transient error it failed with; None if it got an answer.
    error: str | None = None
    #: It changed the tables: the first answer to a new id, not a
    #: replay, not a typed refusal such as NoAvailableVF.
    changed: bool = False


class GaveUp(Exception):
    """A caller still had no answer long after the load was stopped."""


class Load:
    """``callers`` threads calling through ``clients`` until stopped."""

    #: What a caller sends again, unchanged, as a compute service would.
    TRANSIENT = (messaging.MessagingTimeout, exception.ServiceError)

    def __init__(self, clients: list, callers: int = 16, lease: int = 3,
                 pause: float = 0.05, give_up_after: float = 90):
        self.clients = clients
        self.callers = callers
        #: Of the migrations abandoned; those finished get a long one, as
        #: a compute service renews its lease while the guest moves.
        self.lease = lease
        self.pause = pause
        self.give_up_after = give_up_after
        self.stopping = threading.Event()
        self.stopped_at = None
        self.lock = threading.Lock()
        self.attempts: list[Attempt] = []
        self.retried = 0
        # (host, address) -> [(told at, let go at, instance)]
        self.spans = collections.defaultdict(list)
        self.mismatches = []
        self.live = {}          # instance -> (src address, migration)
        #: Instances whose allocation was refused after a retry.
        self.given_up = set()
        self.errors = []
        self.threads = []

    # -- running -------------------------------------------------------

    def start(self) -> None:
        for i in range(self.callers):
            thread = threading.Thread(target=self._run, args=(i,),
                                      daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        """Let every caller finish the instance it is busy with."""
        self.stopped_at = time.monotonic()
        self.stopping.set()
        for thread in self.threads:
            thread.join(self.give_up_after + 30)
        alive = [t for t in self.threads if t.is_alive()]
        if alive or self.errors:
            raise AssertionError('callers failed: %d still running, '
                                 'errors %r' % (len(alive), self.errors))

    def halt(self) -> None:
        """After a failure: stop, and give up on calls not answered."""
        if self.stopped_at is None:
            self.stopped_at = time.monotonic() - self.give_up_after
        self.stopping.set()

    def wait_for_calls(self, count: int, stall: float = 60) -> None:
        """Until ``count`` more calls have changed something.

        Fails if none did for ``stall`` seconds: however slow the
        machine, a load that goes on is not stuck.
        """
        done = self.successes()
        target = done + count
        deadline = time.monotonic() + stall
        while done < target:
            if time.monotonic() > deadline or self.errors:
                raise AssertionError('no call changed anything for %d s '
                                     '(%d of %d done): %r' % (
                                         stall, count - target + done,
                                         count, self.errors))
            time.sleep(0.05)
            now = self.successes()
            if now > done:
                done = now
                deadline = time.monotonic() + stall

    def successes(self) -> int:
        with self.lock:
            return sum(1 for a in self.attempts if a.changed)

    def _run(self, i: int) -> None:
        client = self.clients[i % len(self.clients)]
        may_abandon = i % 4 == 0
        n = 0
        try:
            while not self.stopping.is_set():
                abandoned = self._instance(i, n, client, may_abandon)
                may_abandon = may_abandon and not abandoned
                n += 1
        except Exception as e:
            with self.lock:
                self.errors.append('caller %d: %r' % (i, e))

    def _call(self, client, method: str, *args, replay: bool = False):
        """Send until a final answer, and return it.

        ``replay``: the same call was answered before (so the answer
        changes nothing).
        """
        tries = 0
        while True:
            tries += 1
            start = time.monotonic()
            try:
                answer = getattr(client, method)(None, *args)
            except self.TRANSIENT as e:
                self._record(Attempt(method, start, time.monotonic(),
                                     error_name(e)), tries, final=False)
                if (self.stopped_at is not None and time.monotonic()
                        > self.stopped_at + self.give_up_after):
                    raise GaveUp('%s%r: %r' % (method, args, e))
                if isinstance(e, exception.ServiceError):
                    time.sleep(0.2)     # it failed fast; do not spin
                continue
            except exception.VfpoolException as e:
                self._record(Attempt(method, start, time.monotonic()),
                             tries, final=True)
                e.tries = tries
                raise
            self._record(Attempt(method, start, time.monotonic(),
                                 changed=not replay), tries, final=True)
            return answer

    def _record(self, attempt: Attempt, tries: int, final: bool) -> None:
        with self.lock:
            self.attempts.append(attempt)
            if final and tries > 1:
                self.retried += 1

    def _same(self, what: str, first, again) -> None:
        if first != again:
            with self.lock:
                self.mismatches.append((what, first, again))

    def _held(self, key: tuple, since: float, until: float,
              instance: str) -> None:
        with self.lock:
            self.spans[key].append((since, until, instance))

    def _instance(self, i: int, n: int, client, may_abandon: bool) -> bool:
        """One instance's life; True if it was left with a claim."""
        instance = inv.new_uuid()
        request_id = 'req-%d-%d-%s' % (i, n, instance[:8])
        requests = [inv.request(mac=inv.mac(i))]
        try:
            allocs = self._call(client, 'allocate', instance, SRC,
                                requests, request_id)
        except exception.NoAvailableVF as e:
            # An attempt that timed out may still win later; the compute
            # service deletes the instance that failed to build.
            self._call(client, 'release', instance, replay=True)
            if e.tries > 1:
                with self.lock:
                    self.given_up.add(instance)
            time.sleep(self.pause)
            return False
        told = time.monotonic()
        source = (SRC, allocs[0]['address'])
        again = self._call(client, 'allocate', instance, SRC, requests,
                           request_id, replay=True)
        self._same('allocate %s' % request_id, allocs, again)

        migration = inv.new_uuid()
        lease = self.lease if may_abandon else LONG_LEASE
        sent = time.monotonic()
        try:
            pairs = self._call(client, 'prepare_migration', migration,
                               instance, SRC, DST, lease)
        except exception.NoAvailableVF:
            self._held(source, told, time.monotonic(), instance)
            self._call(client, 'release', instance)
            time.sleep(self.pause)
            return False
        claimed = time.monotonic()
        dest = (DST, pairs[0]['dest']['address'])
        if may_abandon:
            # Nobody finishes it (nor asks again: the lease is short):
            # the claim is ours until the lease ends.
            self._held(dest, claimed, sent + self.lease, instance)
            self._held(source, told, math.inf, instance)
            with self.lock:
                self.live[instance] = (source, migration)
            return True
        again = self._call(client, 'prepare_migration', migration,
                           instance, SRC, DST, lease, replay=True)
        self._same('prepare %s' % migration, pairs, again)
        if n % 3 == 2:
            let_go = time.monotonic()
            self._call(client, 'abort_migration', migration)
            self._held(dest, claimed, let_go, instance)
            let_go = time.monotonic()
            self._call(client, 'release', instance)
            self._held(source, told, let_go, instance)
            return False
        let_go = time.monotonic()
        done = self._call(client, 'complete_migration', migration)
        self._held(source, told, let_go, instance)
        again = self._call(client, 'complete_migration', migration,
                           replay=True)
        self._same('complete %s' % migration, done, again)
        let_go = time.monotonic()
        self._call(client, 'release', instance)
        self._held(dest, claimed, let_go, instance)
        return False

    # -- what it saw ---------------------------------------------------

    def double_allocations(self) -> list:
        """Pairs of instances told they held one VF at the same time."""
        doubles = []
        for key, spans in self.spans.items():
            spans = sorted(spans)
            for (s1, e1, i1), (s2, e2, i2) in zip(spans, spans[1:]):
                if s2 < e1 and i1 != i2:
                    doubles.append((key, i1, i2))
        return doubles

    def summary(self, fault_at: float, repaired_at: float) -> dict:
        """The figures of the fault table.

        Recovery: from the fault to the end of the first call sent after
        it that changed something; and from the repair (the broker or
        the node back), which leaves out how long the fault lasted.
        """
        with self.lock:
            attempts = list(self.attempts)
        failed = collections.Counter(a.error for a in attempts if a.error)
        after = [a for a in attempts if a.changed and a.start >= fault_at]
        first = min(a.end for a in after) if after else None
        failures = [a.end for a in attempts if a.error]
        return {
            'calls': len(attempts),
            'failed': dict(failed),
            'retried': self.retried,
            'recovery_s': None if first is None else round(
                first - fault_at, 2),
            'after_repair_s': None if first is None else round(
                max(0.0, first - repaired_at), 2),
            'last_failure_s': round(max(failures) - fault_at, 2)
            if failures else None,
            'answers_differing': len(self.mismatches),
        }

    # -- the tables ----------------------------------------------------

    def wait_for_leases(self, engine, timeout: float) -> bool:
        """Until no VF is claimed (the abandoned leases all lapse)."""
        deadline = time.monotonic() + timeout
        while True:
            table = api_cases.vf_table(engine)
            if not [k for k, v in table.items() if v[0] == 'claimed']:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)

    def reaped_late(self, engine) -> list[float]:
        """Per abandoned migration: seconds from its lease to its reaping.

        Both times are the servers' own, from the migrations table.
        """
        Migration = models.Migration
        abandoned = [m for _s, m in self.live.values()]
        with engine.connect() as conn:
            rows = conn.execute(sa.select(
                Migration.state, Migration.lease_expires_at,
                Migration.updated_at).where(
                    Migration.uuid.in_(abandoned))).all()
        return [(updated - expires).total_seconds()
                if state == models.EXPIRED and updated else math.inf
                for state, expires, updated in rows]

    def leaked(self, engine) -> list:
        """VFs the tables hold for anybody but the live instances."""
        table = api_cases.vf_table(engine)
        expected = {source: instance
                    for instance, (source, _m) in self.live.items()}
        leaks = []
        for key, (state, instance, migration) in table.items():
            if state == 'available':
                continue
            if (expected.get(key) != instance or state != 'allocated'
                    or migration is not None):
                leaks.append((key, state, instance, migration,
                              'refused after a retry'
                              if instance in self.given_up else ''))
        for key, instance in expected.items():
            if table[key][1] != instance:
                leaks.append((key, 'lost by', instance, None, ''))
        return leaks


def record(fault: str, row: dict) -> None:
    """Append a fault's row for tools/fault-table.py."""
    with open(SUMMARY, 'a') as f:
        f.write(json.dumps(dict(row, fault=fault), sort_keys=True) + '\n')
