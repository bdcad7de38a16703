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

"""Callers racing for fewer VFs than there are callers, for real.

Several vfpool-server processes share one database; 32 client threads
are released together by a barrier each round.  Every round must have
exactly min(callers, VFs) winners, every loser must get NoAvailableVF
(deadlocks and lock waits are retried inside the server, never
surfaced), and the tables must show no VF held twice.
"""

import collections
import concurrent.futures
import os
import threading

import sqlalchemy as sa
import testscenarios

from vfpool.db import models
from vfpool import exception
from vfpool import rpc
from vfpool import rpcapi
from vfpool.tests.functional import base
from vfpool.tests import inventory as inv

# Each scenario is its own test id, so that stestr can place each one
# on a worker of its own (see tools/functional-workers.yaml).
load_tests = testscenarios.load_tests_apply_scenarios

CALLERS = 32
VFS = 8
# The sizes .ci/run uses; tox -e functional-races runs 200 and 50.
ROUNDS = int(os.environ.get('VFPOOL_RACE_ROUNDS', 16))
PREPARE_ROUNDS = int(os.environ.get('VFPOOL_RACE_PREPARE_ROUNDS', 6))
# Callers share a few transports, as the compute services of a cloud do.
TRANSPORTS = 4


class TestRaces(testscenarios.WithScenarios, base.FunctionalTestCase):
    scenarios = [
        ('sqlite', {'backend': 'sqlite', 'servers': 1}),
        ('mysql', {'backend': 'mysql', 'servers': 2}),
        ('postgresql', {'backend': 'postgresql', 'servers': 2}),
    ]

    rounds = ROUNDS
    prepare_rounds = PREPARE_ROUNDS

    def setUp(self):
        super().setUp()
        self.stack = self.useFixture(self.make_stack())
        self.clients = []
        for _ in range(TRANSPORTS):
            transport = rpc.get_transport(self.stack.conf)
            self.addCleanup(transport.cleanup)
            self.clients.append(rpcapi.VfpoolAPI(
                self.stack.conf, transport=transport, timeout=120))
        self.pool = concurrent.futures.ThreadPoolExecutor(CALLERS)
        self.addCleanup(self.pool.shutdown)

    def make_stack(self) -> base.ServiceStack:
        return base.ServiceStack(self.backend, servers=self.servers)

    def race(self, call) -> list:
        """Run ``call(i, client)`` in CALLERS threads released together.

        Returns per caller either the result or the exception raised.
        """
        barrier = threading.Barrier(CALLERS)

        def one(i):
            client = self.clients[i % TRANSPORTS]
            barrier.wait()
            try:
                return call(i, client)
            except Exception as e:
                return e
        return list(self.pool.map(one, range(CALLERS)))

    def check_round(self, outcomes, label):
        winners = [o for o in outcomes if not isinstance(o, Exception)]
        losers = [o for o in outcomes if isinstance(o, Exception)]
        unexpected = [o for o in losers
                      if not isinstance(o, exception.NoAvailableVF)]
        self.assertEqual([], unexpected, label)
        self.assertEqual(min(CALLERS, VFS), len(winners), label)
        self.assertEqual(CALLERS - min(CALLERS, VFS), len(losers), label)
        return winners

    def assert_no_vf_held_twice(self, owner_of):
        """``owner_of``: (host, address) -> instance, from the answers."""
        VF = models.VirtualFunction
        with self.stack.engine.connect() as conn:
            rows = conn.execute(
                sa.select(models.Host.name, VF.address, VF.state,
                          VF.instance_uuid)
                .join(models.Host, models.Host.id == VF.host_id)
                .where(VF.instance_uuid.is_not(None))).all()
        held = {(h, a): (s, i) for h, a, s, i in rows}
        for key, instance in owner_of.items():
            self.assertEqual(instance, held[key][1], key)
        by_state = collections.Counter(s for s, _i in held.values())
        self.assertEqual(len(owner_of), sum(by_state.values()))

    def test_allocate_race(self):
        for r in range(self.rounds):
            self.stack.client.report_inventory(
                None, 'race-%d' % r, [inv.pf(5, VFS)])
        owner_of = {}
        for r in range(self.rounds):
            host = 'race-%d' % r
            instances = [inv.new_uuid() for _ in range(CALLERS)]

            def call(i, client):
                allocs = client.allocate(
                    None, instances[i], host,
                    [inv.request(mac=inv.mac(i))], inv.new_uuid())
                return instances[i], allocs[0]['address']
            winners = self.check_round(self.race(call), 'round %d' % r)
            addresses = [a for _i, a in winners]
            self.assertEqual(len(addresses), len(set(addresses)),
                             'a VF was given twice in round %d' % r)
            for instance, address in winners:
                owner_of[(host, address)] = instance
        self.assert_no_vf_held_twice(owner_of)

    def held_on(self, host: str) -> dict:
        """address -> (state, instance) of every VF on ``host`` not free."""
        VF = models.VirtualFunction
        with self.stack.engine.connect() as conn:
            rows = conn.execute(
                sa.select(VF.address, VF.instance_uuid, VF.state)
                .join(models.Host, models.Host.id == VF.host_id)
                .where(models.Host.name == host,
                       VF.state != models.AVAILABLE)).all()
        return {r.address: (r.state, r.instance_uuid) for r in rows}

    def test_prepare_migration_race(self):
        # Every round: 32 instances on a source host race to migrate to a
        # destination host that has only 8 free VFs.  The winners'
        # migrations are aborted after the round, so the same instances
        # race again: a loser whose failed prepare left anything behind
        # (a marked source VF, a claim) fails the next round.
        src, dst = 'src', 'dst'
        self.stack.client.report_inventory(None, src, [inv.pf(5, CALLERS)])
        self.stack.client.report_inventory(None, dst, [inv.pf(6, VFS)])
        instances = [inv.new_uuid() for _ in range(CALLERS)]
        for i, instance in enumerate(instances):
            self.stack.client.allocate(
                None, instance, src, [inv.request(mac=inv.mac(i))],
                inv.new_uuid())
        for r in range(self.prepare_rounds):
            migrations = [inv.new_uuid() for _ in range(CALLERS)]

            def call(i, client):
                pairs = client.prepare_migration(
                    None, migrations[i], instances[i], src, dst)
                return i, pairs[0]['dest']['address']
            winners = self.check_round(self.race(call), 'round %d' % r)
            claimed = {address: (models.CLAIMED, instances[i])
                       for i, address in winners}
            self.assertEqual(len(winners), len(claimed),
                             'a VF was claimed twice in round %d' % r)
            # The tables agree with the answers: each claim is held by
            # the instance that was told it won, and by no other.
            self.assertEqual(claimed, self.held_on(dst), 'round %d' % r)
            for i, _address in winners:
                self.stack.client.abort_migration(None, migrations[i])
            self.assertEqual({}, self.held_on(dst), 'round %d' % r)
