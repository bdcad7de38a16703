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

"""A load run: N agents at their interval plus a maintenance storm.

``python tools/bench load [--agents 10000] [--interval 60] [--duration
60] [--storm-hosts 100] [--backend mysql] [--workers N]``: one stack of
real servers on a bulk-seeded inventory (``--agents`` hosts), then, for
``--duration`` seconds at once,

* every agent reports its unchanged snapshot once per ``--interval`` as
  the agent does, by its digest (``report_unchanged``), spread evenly:
  ``agents / interval`` reports per second;
* a storm: ``--storm-hosts`` hosts are drained, every instance on them
  live-migrated as Nova would: ``prepare_migration``,
  ``begin_migration``, the memory copy (``--copy-seconds``), then
  ``complete_migration``; one migration per drained host at a time
  (Nova's default ``max_concurrent_live_migrations``), or
  ``--storm-callers`` at once.  ``--copy-seconds 0 --storm-callers 16``
  is a closed loop: the servers' throughput, not a storm's latency.

It prints p50/p99 per call, errors, how late reports were sent (the
client could not keep up if so), the servers' CPU and RSS, the load
generator's CPU and the whole machine's (saturated or not); then steps the
report rate up (x2 each ``--step`` seconds, without the storm) and prints
the highest rate whose p99 stayed under 100 ms with no errors.
"""

import argparse
import concurrent.futures
import queue
import threading
import time
import uuid

from bench.inventory import host_snapshot
from bench.inventory import Inventory
from bench.inventory import PHYSNET
from bench.inventory import seed_bulk
from bench import procstats
from bench.results import percentile
from bench.results import Report

P99_LIMIT = 0.100
#: What the agents send: an unchanged snapshot's report (RPC 1.5).
REPORT = 'report_unchanged'


class Calls:
    """Latencies and errors per call name, from many threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.times: dict = {}
        self.errors: dict = {}
        self.samples: list = []

    def timed(self, name: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
        except Exception as e:
            with self.lock:
                self.errors[name] = self.errors.get(name, 0) + 1
                if len(self.samples) < 5:
                    self.samples.append('%s: %s: %s' % (
                        name, type(e).__name__, str(e).splitlines()[0][:200]))
            return None
        with self.lock:
            self.times.setdefault(name, []).append(time.perf_counter() - t0)
        return result

    def lines(self) -> list[str]:
        out = []
        for name in sorted(set(self.times) | set(self.errors)):
            t = self.times.get(name, [])
            out.append('  %-20s calls %6d  errors %4d  p50 %7.2f ms  '
                       'p99 %7.2f ms' % (
                           name, len(t), self.errors.get(name, 0),
                           (percentile(t, 50) or 0) * 1000,
                           (percentile(t, 99) or 0) * 1000))
        return out + ['  error: ' + s for s in self.samples]


def _agents(client, ctxt, inv: Inventory, rate: float, duration: float,
            calls: Calls, senders: int) -> float:
    """Reports at ``rate``/s for ``duration`` s; the p99 of lateness."""
    from vfpool import utils

    pfs = host_snapshot(inv.vfs_per_host, inv.pfs_per_host)
    digest = utils.snapshot_digest(pfs)
    todo: queue.Queue = queue.Queue(maxsize=senders * 4)

    def report(host):
        # What an agent sends for its unchanged snapshot (RPC 1.5).
        if not client.report_unchanged(ctxt, host, digest):
            raise AssertionError('the server refused the digest of %s'
                                 % host)
    late = []

    def sender():
        while True:
            item = todo.get()
            if item is None:
                return
            due, host = item
            late.append(max(0.0, time.perf_counter() - due))
            calls.timed(REPORT, report, host)

    threads = [threading.Thread(target=sender, daemon=True)
               for _ in range(senders)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    n = 0
    while True:
        due = start + n / rate
        if due - start >= duration:
            break
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        todo.put((due, inv.host(n)))
        n += 1
    for _ in threads:
        todo.put(None)
    for t in threads:
        t.join()
    return percentile(late, 99) or 0.0


def _storm_jobs(client, ctxt, inv: Inventory, hosts: int,
                per_host: int) -> list[tuple]:
    """Instances on the hosts to drain, allocated before the clock runs."""
    drained = [inv.host(i) for i in range(hosts)]
    targets = [inv.host(i) for i in range(hosts, inv.hosts)]
    jobs = []
    # Round by round, one instance of each host: the first migrations
    # under way are one per drained host, as Nova starts them.
    for k in range(per_host):
        for n, host in enumerate(drained):
            instance = str(uuid.uuid4())
            client.allocate(ctxt, instance, host,
                            [{'physical_network': PHYSNET,
                              'mac': 'fa:16:3e:%02x:%02x:%02x' % (
                                  n >> 8, n & 0xff, k)}],
                            'storm-%s' % instance)
            jobs.append((instance, host, targets[(n * per_host + k)
                                                 % len(targets)]))
    return jobs


def _storm(client, ctxt, jobs: list, callers: int, copy_seconds: float,
           calls: Calls, stop: threading.Event) -> None:
    """Drain the hosts: migrate their instances, ``callers`` at once.

    ``copy_seconds`` between ``begin_migration`` and
    ``complete_migration`` stands for the guest's memory copy, during
    which Nova calls vfpool nothing; 0 makes the storm a closed loop that
    sends calls as fast as the servers answer them.
    """
    def migrate(job):
        if stop.is_set():
            return
        instance, source, dest = job
        migration = str(uuid.uuid4())
        if calls.timed('prepare_migration', client.prepare_migration, ctxt,
                       migration, instance, source, dest) is None:
            return
        if calls.timed('begin_migration', client.begin_migration, ctxt,
                       migration) is None:
            return
        if copy_seconds:
            stop.wait(copy_seconds)
        calls.timed('complete_migration', client.complete_migration, ctxt,
                    migration)

    with concurrent.futures.ThreadPoolExecutor(callers) as pool:
        list(pool.map(migrate, jobs))


def run(args) -> int:
    from vfpool import context
    from vfpool.tests.functional import base

    inv = Inventory('load', 'load', args.agents, args.vfs_per_host,
                    args.pfs_per_host, bulk=True)
    stack = base.ServiceStack(backend=args.backend, servers=args.servers,
                              workers=args.workers,
                              **{'pool.reaper_interval': 30})
    stack.setUp()
    report = Report()
    try:
        seed_bulk(stack.engine, inv, report, args.backend)
        client, ctxt = stack.client, context.get_admin_context()
        for _ in range(20):
            client.ping(ctxt)
        pings = Calls()
        for _ in range(100):
            pings.timed('ping', client.ping, ctxt)
        rate = args.agents / args.interval
        print('load run: %d agents every %d s = %.0f reports/s, storm of '
              '%d hosts x %d instances, %d s, %s, %d server(s) x %d '
              'worker(s)' % (args.agents, args.interval, rate,
                             args.storm_hosts, args.per_host, args.duration,
                             args.backend, args.servers, args.workers),
              flush=True)
        jobs = _storm_jobs(client, ctxt, inv, args.storm_hosts,
                           args.per_host)
        calls = Calls()
        stop = threading.Event()
        pids = procstats.servers(stack)
        cpu0, t0 = procstats.cpu_seconds(pids), time.perf_counter()
        own0, (busy0, ncpu) = (procstats.own_cpu_seconds(),
                               procstats.machine_busy())
        storm = threading.Thread(target=_storm, args=(
            client, ctxt, jobs, args.storm_callers or args.storm_hosts,
            args.copy_seconds, calls, stop),
            daemon=True)
        storm.start()
        late = _agents(client, ctxt, inv, rate, args.duration, calls,
                       args.senders)
        stop.set()
        storm.join()
        wall = time.perf_counter() - t0
        cpu = procstats.cpu_seconds(pids) - cpu0
        own = procstats.own_cpu_seconds() - own0
        busy = procstats.machine_busy()[0] - busy0
        print('\n'.join(pings.lines()))
        print('\n'.join(calls.lines()))
        errors = sum(calls.errors.values())
        worst = max(percentile(t, 99) for t in calls.times.values())
        print('  storm: %d of %d migrations done in the run'
              % (len(calls.times.get('complete_migration', [])), len(jobs)))
        print('  errors %d, worst p99 %.1f ms (target < %.0f ms): %s; '
              'reports sent up to %.1f ms late (p99)' % (
                  errors, worst * 1000, P99_LIMIT * 1000,
                  'PASS' if not errors and worst < P99_LIMIT else 'FAIL',
                  late * 1000))
        print('  servers: %.2f CPU cores busy on average over %.0f s; %s'
              % (cpu / wall, wall, procstats.summary(stack)), flush=True)
        print('  load generator (this process): %.2f cores; whole machine: '
              '%.2f of %d cores busy' % (own / wall, busy / wall, ncpu),
              flush=True)
        best = None
        step_rate = rate
        while step_rate <= args.max_rate:
            step = Calls()
            _agents(client, ctxt, inv, step_rate, args.step, step,
                    args.senders)
            times = step.times.get(REPORT, [])
            p99 = percentile(times, 99) or 0
            ok = not step.errors and p99 < P99_LIMIT
            print('  reports alone at %.0f/s: p50 %.2f ms, p99 %.2f ms, '
                  'errors %d: %s' % (step_rate,
                                     (percentile(times, 50) or 0) * 1000,
                                     p99 * 1000, sum(step.errors.values()),
                                     'ok' if ok else 'over'), flush=True)
            if not ok:
                break
            best = step_rate
            step_rate *= 2
        print('  highest report rate sustained with p99 < 100 ms: %s'
              % ('%.0f/s' % best if best else 'none'))
        return 1 if errors else 0
    finally:
        stack.cleanUp()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--backend', default='mysql',
                        choices=('mysql', 'postgresql', 'sqlite'))
    parser.add_argument('--agents', type=int, default=10000)
    parser.add_argument('--interval', type=int, default=60,
                        help="the agents' [agent] report_interval")
    parser.add_argument('--duration', type=int, default=60)
    parser.add_argument('--storm-hosts', type=int, default=100)
    parser.add_argument('--per-host', type=int, default=4,
                        help='instances on each drained host')
    parser.add_argument('--storm-callers', type=int, default=0,
                        help='migrations at once (default: one per '
                        "drained host, Nova's default "
                        'max_concurrent_live_migrations = 1)')
    parser.add_argument('--copy-seconds', type=float, default=2.0,
                        help="each migration's memory copy, between "
                        'begin and complete (0: a closed loop)')
    parser.add_argument('--senders', type=int, default=64,
                        help='client threads sending the reports')
    parser.add_argument('--servers', type=int, default=1)
    parser.add_argument('--workers', type=int, default=1)
    parser.add_argument('--vfs-per-host', type=int, default=64)
    parser.add_argument('--pfs-per-host', type=int, default=2)
    parser.add_argument('--step', type=int, default=10,
                        help='seconds per step of the report-rate search')
    parser.add_argument('--max-rate', type=float, default=3000)
    return run(parser.parse_args(argv))
