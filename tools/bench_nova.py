#!/usr/bin/env python3
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

"""Cost of vfpool's Nova driver per live migration, next to stock Nova.

A benchmark, not a test: it measures and prints; it fails (exit status 1)
only when a migration does not end where it should.  Run it from the
nova-functional env (Nova 34 and its functional framework)::

    tox -e nova-functional --notest   # once, to build the env
    .tox/nova-functional/bin/python tools/bench_nova.py [--rounds N]

One harness, one run: Nova's functional framework (API, conductor,
scheduler, placement, fakelibvirt computes, as in ``tox -e
nova-functional``) with four computes, two on stock
``libvirt.LibvirtDriver`` and two on ``vfpool.VfpoolLibvirtDriver``
talking to real vfpool-server processes over RabbitMQ.  Three servers
migrate back and forth between the hosts of their pair:

* ``stock``: a server with a Neutron direct port, on ``LibvirtDriver``
  (the baseline);
* ``vfpool, no VF``: the same server on the vfpool driver: what every
  live migration pays for the driver (claim and settle RPCs);
* ``vfpool, 1 VF``: the same server with a vfpool VF besides its port:
  claim, detach, attach, complete.

Rounds alternate the order of the three (A B C, B C A, ...), so the
machine's background load weighs on all alike.  A migration is timed from
the live-migration API call to Nova's ``instance.live_migration_post.end``
notification, then left to settle (untimed).  Each line gives the median
and the ratio of medians to ``stock``; the ratio is the number to watch,
since fakelibvirt migrates in no time and Nova's own work dominates.
"""

import argparse
import logging
import os
import statistics
import sys
import time
import unittest

os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', 'True')

# Nova's functional package first: it picks threads over eventlet.
import nova.tests.functional  # noqa: E402,F401,H306
from nova import context as nova_context  # noqa: E402,H306
from nova import objects  # noqa: E402

from vfpool.nova.tests.functional import test_live_migration as lm  # noqa
from vfpool.nova import virt_alias  # noqa: E402

STOCK = 'libvirt.LibvirtDriver'
KINDS = ('stock', 'vfpool, no VF', 'vfpool, 1 VF')
RESULTS: dict[str, list[float]] = {}
POST_END = 'instance.live_migration_post.end'


class NovaMigrationBench(lm.VfpoolLiveMigrationBase):

    ROUNDS = 10
    WARMUP = 1

    def start_host(self, name: str, driver: str) -> str:
        self.flags(compute_driver=driver)
        return self.start_vfpool_compute(name)

    def test_bench(self):
        stock = (self.start_host('stock-a', STOCK),
                 self.start_host('stock-b', STOCK))
        vf = (self.start_host('vf-a', virt_alias.COMPUTE_DRIVER),
              self.start_host('vf-b', virt_alias.COMPUTE_DRIVER))
        ports = (self.neutron.network_4_port_1, self.neutron.network_4_port_2,
                 self.neutron.network_4_port_3)
        servers = {
            KINDS[0]: (self.boot_with_direct_port(stock[0], ports[0]), stock),
            KINDS[1]: (self.boot_with_direct_port(vf[0], ports[1]), vf),
            KINDS[2]: (self.boot_with_vfpool_vf(vf[0], ports[2])[0], vf),
        }
        self.migrated = 0
        for round_ in range(self.WARMUP + self.ROUNDS):
            order = KINDS[round_ % 3:] + KINDS[:round_ % 3]
            for kind in order:
                server, pair = servers[kind]
                took = self.migrate(server, pair)
                if round_ >= self.WARMUP:
                    RESULTS.setdefault(kind, []).append(took)
        # The VF went along every time: it is on the last host, attached.
        server, pair = servers[KINDS[2]]
        host = self.host_of(server)
        self.assertIsNotNone(self.vfpool_vf(host, server))

    def host_of(self, server) -> str:
        return self.api.get_server(server['id'])['OS-EXT-SRV-ATTR:host']

    def migrate(self, server, pair) -> float:
        source = self.host_of(server)
        target = pair[1] if source == pair[0] else pair[0]
        started = time.perf_counter()
        self.api.post_server_action(
            server['id'],
            {'os-migrateLive': {'host': target, 'block_migration': 'auto'}})
        self.migrated += 1
        self.notifier.wait_for_versioned_notifications(
            POST_END, n_events=self.migrated, timeout=60)
        took = time.perf_counter() - started
        self.settle(server, target)
        return took

    def settle(self, server, target: str, timeout: float = 60) -> None:
        """Until the migration is completed and the server rests on target."""
        ctxt = nova_context.get_admin_context()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = max(objects.MigrationList.get_by_filters(
                ctxt, {'instance_uuid': server['id']}), key=lambda m: m.id)
            found = self.api.get_server(server['id'])
            if (last.status == 'completed' and found['status'] == 'ACTIVE'
                    and found['OS-EXT-SRV-ATTR:host'] == target and
                    found['OS-EXT-STS:task_state'] is None):
                return
            time.sleep(0.05)
        self.fail('server %s did not settle on %s (migration %s)'
                  % (server['id'], target, last.status))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=10,
                        help='timed migrations of each server (default 10)')
    parser.add_argument('--warmup', type=int, default=1,
                        help='untimed migrations of each server first')
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    # The scratch database's schema upgrade, and Nova's executors closing
    # after the test's logging fixture is gone, would print to stdout.
    for name in ('alembic', 'nova.thread_pool_factory'):
        logging.getLogger(name).setLevel(logging.WARNING)
    NovaMigrationBench.ROUNDS = args.rounds
    NovaMigrationBench.WARMUP = args.warmup
    print('vfpool Nova driver benchmark: %d timed live migrations of each '
          'server (+%d warm-up), load average %.2f %.2f %.2f'
          % ((args.rounds, args.warmup) + os.getloadavg()), flush=True)
    started = time.perf_counter()
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(
        NovaMigrationBench)
    result = unittest.TextTestRunner(stream=sys.stderr, verbosity=0).run(
        suite)
    if not result.wasSuccessful() or not RESULTS:
        print('benchmark FAILED', flush=True)
        return 1
    base = statistics.median(RESULTS[KINDS[0]])
    print('%-40s %10s %10s %10s %8s' % (
        'live migration', 'median ms', 'min ms', 'max ms', 'ratio'))
    for kind in KINDS:
        times = RESULTS[kind]
        median = statistics.median(times)
        print('%-40s %10.1f %10.1f %10.1f %8.2f' % (
            'nova live migration, %s' % kind, median * 1000,
            min(times) * 1000, max(times) * 1000, median / base))
    print('done in %.1f s; load average %.2f %.2f %.2f'
          % ((time.perf_counter() - started,) + os.getloadavg()), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
