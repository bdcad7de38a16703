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

"""What the fault tests share: a load, a fault, and the checks after it."""

import logging
import os
import time

from vfpool.tests.functional import base
from vfpool.tests.functional.cluster import load as load_mod
from vfpool.tests import inventory as inv


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


#: Callers, and VFs on each of the two hosts they race for: fewer, and a
#: quarter of the callers keep theirs (see load.py).
CALLERS = env_int('VFPOOL_HA_CALLERS', 16)
VFS = CALLERS // 2
LEASE = 3
REAPER_INTERVAL = 1
#: Calls that changed something, made before the fault and again after
#: it was repaired.
CALLS_AROUND_FAULT = env_int('VFPOOL_HA_CALLS', 30)
#: How long callers wait for an answer.  Longer than a server may take
#: to get to a call and do it, or a call that timed out could still be
#: done after its caller gave up, sent it again, was refused and moved
#: on (a starved machine took more than 10 s); short enough that calls
#: a broker lost are sent again within RECOVERY_LIMIT of its repair.
#: While its database is away a server retries a call for about 8 s
#: more (vfpool.db.api).
TIMEOUT = 20
DATABASE_FAULT_TIMEOUT = 30
#: What the issue promises for a fault of one node: a call changes
#: something again within this long of the fault, or of its repair when
#: the repair (a restart) takes longer.
RECOVERY_LIMIT = 30
#: How late past lease + reaper interval a claim may be freed: the
#: reaper's own pass, and a database that was away when it lapsed.
REAP_SLACK = 10


#: Loggers of the test process that log every message at DEBUG or TRACE:
#: under a load they make a test's captured log tens of megabytes.
CHATTY = ('oslo.messaging', 'oslo_messaging', 'amqp', 'kombu')


def quiet_messaging(test) -> None:
    """Keep the test's own messaging logs to INFO and above."""
    for name in CHATTY:
        logger = logging.getLogger(name)
        test.addCleanup(logger.setLevel, logger.level)
        logger.setLevel(logging.INFO)


class FaultTestCase(base.FunctionalTestCase):
    """A load through one fault, then the checks.

    Subclasses build ``self.stack`` (a ClusterStack), then call
    :meth:`run_fault` with the fault to inject.
    """

    def setUp(self):
        super().setUp()
        quiet_messaging(self)

    def seed(self) -> None:
        self.stack.client.report_inventory(None, load_mod.SRC,
                                           [inv.pf(5, VFS)])
        self.stack.client.report_inventory(None, load_mod.DST,
                                           [inv.pf(6, VFS)])

    def run_fault(self, name: str, inject, recover=None,
                  calls: int = CALLS_AROUND_FAULT,
                  recovery_limit: float | None = RECOVERY_LIMIT) -> dict:
        """Load, ``inject()``, ``recover()``, more load; then the checks.

        ``inject`` and ``recover`` may return a dict of facts about the
        fault (seconds down, write sets caught up) for the summary.
        """
        self.seed()
        load = load_mod.Load(self.stack.clients, callers=CALLERS,
                             lease=LEASE)
        self.addCleanup(load.halt)
        load.start()
        load.wait_for_calls(calls)
        facts = {}
        fault_at = time.monotonic()
        facts.update(inject() or {})
        if recover is not None:
            facts.update(recover() or {})
        repaired_at = time.monotonic()
        if recover is not None:
            facts['fault_to_repaired_s'] = round(repaired_at - fault_at, 2)
        load.wait_for_calls(calls)
        load.stop()
        return self.check(name, load, fault_at, repaired_at, facts,
                          recovery_limit)

    def check(self, name: str, load: load_mod.Load, fault_at: float,
              repaired_at: float, facts: dict,
              recovery_limit: float | None) -> dict:
        """The tables and the answers, after the load stopped."""
        engine = self.stack.engine
        cleared = load.wait_for_leases(engine, LEASE + REAPER_INTERVAL + 10)
        late = load.reaped_late(engine)
        doubles = load.double_allocations()
        leaks = load.leaked(engine)
        row = load.summary(fault_at, repaired_at)
        row.update(facts, double_allocations=len(doubles),
                   leaked=len(leaks),
                   reaped_late_max_s=round(max(late), 2) if late else None)
        load_mod.record(name, row)
        self.assertTrue(cleared, 'claims still held long after their '
                                 'leases: %s' % (row,))
        self.assertEqual([], doubles, 'VFs told to two instances at once')
        self.assertEqual([], leaks, 'VFs held for no live instance')
        self.assertEqual([], load.mismatches,
                         'an id got two different answers')
        self.assertEqual(len(load.live), len(late), row)
        # A lease lapsing while the database was away is reaped once it
        # is back; any other within a reaper pass.
        self.assertLess(max(late), REAPER_INTERVAL + REAP_SLACK, row)
        self.assertIsNotNone(row['recovery_s'], row)
        if recovery_limit is not None:
            # From the fault; a restart that itself lasts longer (a
            # broker on a starved machine) is the fault's time, not
            # vfpool's: that is measured from the repair.
            self.assertLess(row['after_repair_s'], recovery_limit, row)
        return row
