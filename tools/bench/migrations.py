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

"""The core phases: ping, and prepare + complete migrations."""

import concurrent.futures
import dataclasses
import random
import time
import uuid

from bench.inventory import Inventory
from bench.inventory import PHYSNET
from bench.inventory import VENDOR_ID
from bench.inventory import VF_PRODUCT_ID
from bench.measure import _split
from bench.measure import measure_steps
from bench.measure import run_concurrent
from bench.results import _first_line
from bench.results import _ratio
from bench.results import Report
from bench.results import Result
from bench.results import Target

CALLERS = (1, 16)

TARGET_PREPARE_VS_PING = 2.0
TARGET_LARGE_VS_SMALL = 1.25


@dataclasses.dataclass
class Job:
    source: str
    dest: str
    instance_uuid: str = ''
    migration_uuid: str = ''
    prepared: bool = False


class HostPicker:
    """Hands out hosts of the large inventory, spread out.

    No host comes back before every other host was handed out once.
    """

    def __init__(self, inv: Inventory, rng: random.Random):
        self.inv = inv
        self.rng = rng
        self.order: list[int] = []

    def take(self) -> str:
        if not self.order:
            self.order = list(range(self.inv.hosts))
            self.rng.shuffle(self.order)
        return self.inv.host(self.order.pop())


class MigrationPlan:
    """Which source and destination host the j-th job of a caller uses.

    ``mode`` is 'distinct' (callers never share a destination) or
    'shared' (every caller migrates to the same destination host).
    """

    def __init__(self, inv: Inventory, mode: str, callers: int,
                 picker: HostPicker | None):
        self.inv = inv
        self.mode = mode
        self.callers = callers
        self.picker = picker
        self.counter = 0
        if mode == 'shared':
            self.shared_dest = picker.take() if picker else inv.host(0)
        if picker is None and inv.hosts < 2:
            raise ValueError('need at least 2 hosts')

    def job(self, caller: int) -> Job:
        inv = self.inv
        if self.picker is not None:         # large inventory: spread
            dest = (self.shared_dest if self.mode == 'shared'
                    else self.picker.take())
            source = self.picker.take()
            while source == dest:           # the picker wrapped around
                source = self.picker.take()
            return Job(source, dest)
        n = inv.hosts
        if self.mode == 'shared':           # dest is host 0
            return Job(inv.host(1 + caller % (n - 1)), self.shared_dest)
        if self.callers == 1:               # rotate over every host
            self.counter += 1
            return Job(inv.host(self.counter), inv.host(self.counter + 1))
        return Job(inv.host(caller), inv.host(caller + 1))


class Runner:
    """Runs the phases of one backend and inventory on a ServiceStack."""

    def __init__(self, args, report: Report, backend: str, stack,
                 inv: Inventory, rng: random.Random):
        from vfpool import context as vfpool_context
        self.args = args
        self.report = report
        self.backend = backend
        self.stack = stack
        self.client = stack.client
        self.inv = inv
        self.rng = rng
        self.ctxt = vfpool_context.get_admin_context()
        self.picker = HostPicker(inv, rng) if inv.bulk else None
        self.helpers = concurrent.futures.ThreadPoolExecutor(
            max_workers=8, thread_name_prefix='bench-setup')

    def close(self):
        self.helpers.shutdown(wait=True)

    def new_result(self, phase: str, callers: int,
                   baseline_phase: str | None = 'ping') -> Result:
        result = Result(self.backend, self.inv.label, self.inv.vfs, phase,
                        callers, baseline_phase=baseline_phase)
        self.report.results.append(result)
        return result

    def ping_steps(self, callers: int):
        result = self.new_result('ping', callers, baseline_phase=None)
        return measure_steps(result, callers, self.args.calls,
                             self.args.warmup,
                             lambda: self.client.ping(self.ctxt),
                             chunk=128)

    # -- migrations --------------------------------------------------------

    def allocate_args(self, job: Job) -> tuple:
        """(instance_uuid, host, requests, request_id) of a new instance."""
        job.instance_uuid = str(uuid.uuid4())
        mac = 'fa:16:3e:%02x:%02x:%02x' % tuple(
            self.rng.randrange(256) for _ in range(3))
        return (job.instance_uuid, job.source,
                [{'physical_network': PHYSNET, 'vendor_id': VENDOR_ID,
                  'product_id': VF_PRODUCT_ID, 'numa_node': 0, 'mac': mac,
                  'vlan': 100, 'port_id': str(uuid.uuid4())}],
                'bench-%s' % uuid.uuid4().hex)

    def _allocate(self, job: Job) -> None:
        self.client.allocate(self.ctxt, *self.allocate_args(job))

    def _release(self, job: Job) -> None:
        if job.instance_uuid:
            self.client.release(self.ctxt, job.instance_uuid)

    def _helpers_map(self, fn, jobs: list[Job]) -> None:
        for future in [self.helpers.submit(fn, j) for j in jobs]:
            try:
                future.result()
            except Exception as e:
                msg = '%s: %s' % (fn.__name__, _first_line(e))
                self.report.setup_errors.append(msg)
                print('  setup error: %s' % msg, flush=True)

    def migration_steps(self, callers: int, mode: str):
        """prepare + complete; a generator that yields after each round."""
        suffix = '' if mode == 'distinct' else ' (shared dest)'
        prepare = self.new_result('prepare' + suffix, callers)
        complete = self.new_result('complete' + suffix, callers)
        plan = MigrationPlan(self.inv, mode, callers, self.picker)
        # Claims on one destination host per round stay below half of its
        # VFs, so a shared destination never runs out.
        round_cap = max(callers, min(32, self.inv.vfs_per_host // 2))
        per_round = max(1, round_cap // callers)
        yield from self._run_rounds(
            plan, callers, per_round,
            _split(max(self.args.warmup, callers), callers), None, None)
        yield from self._run_rounds(
            plan, callers, per_round, _split(self.args.calls, callers),
            prepare, complete)

    def _run_rounds(self, plan, callers, per_round, remaining,
                    prepare: Result | None, complete: Result | None):
        remaining = list(remaining)
        lease = 600
        while any(remaining):
            jobs = []
            for c in range(callers):
                take = min(per_round, remaining[c])
                remaining[c] -= take
                jobs.append([plan.job(c) for _ in range(take)])
            flat = [j for js in jobs for j in js]
            self._helpers_map(self._allocate, flat)

            def do_prepare(c, js):
                for job in js:
                    if not job.instance_uuid:
                        continue
                    job.migration_uuid = str(uuid.uuid4())
                    t0 = time.perf_counter()
                    try:
                        self.client.prepare_migration(
                            self.ctxt, job.migration_uuid, job.instance_uuid,
                            job.source, job.dest, lease_seconds=lease)
                    except Exception as e:
                        if prepare is not None:
                            prepare.record_error(e)
                        continue
                    job.prepared = True
                    if prepare is not None:
                        prepare.latencies.append(time.perf_counter() - t0)

            def do_complete(c, js):
                for job in js:
                    if not job.prepared:
                        continue
                    t0 = time.perf_counter()
                    try:
                        self.client.complete_migration(
                            self.ctxt, job.migration_uuid)
                    except Exception as e:
                        if complete is not None:
                            complete.record_error(e)
                        continue
                    if complete is not None:
                        complete.latencies.append(time.perf_counter() - t0)

            wall = run_concurrent(callers, jobs, do_prepare)
            if prepare is not None:
                prepare.wall += wall
                prepare.calls += sum(1 for j in flat if j.migration_uuid)
            wall = run_concurrent(callers, jobs, do_complete)
            if complete is not None:
                complete.wall += wall
                complete.calls += sum(1 for j in flat if j.prepared)
            self._helpers_map(self._release, flat)
            yield


def add_core_targets(report: Report, backend: str, small: str,
                     large: str):
    for inv in (small, large):
        prep = report.find(backend, inv, 'prepare', 1)
        ping = report.find(backend, inv, 'ping', 1)
        report.targets.append(Target(
            backend, 'prepare p50 @1 caller / ping p50 @1 caller (%s)' % inv,
            _ratio(prep and prep.p50, ping and ping.p50),
            TARGET_PREPARE_VS_PING))
    for callers in CALLERS:
        a = report.find(backend, large, 'prepare', callers)
        b = report.find(backend, small, 'prepare', callers)
        report.targets.append(Target(
            backend, 'prepare p50 %s / %s @%d caller%s' % (
                large, small, callers, 's' if callers > 1 else ''),
            _ratio(a and a.p50, b and b.p50), TARGET_LARGE_VS_SMALL))
    for callers in CALLERS:
        a = report.find(backend, large, 'complete', callers)
        b = report.find(backend, small, 'complete', callers)
        report.targets.append(Target(
            backend, 'complete p50 %s / %s @%d caller%s' % (
                large, small, callers, 's' if callers > 1 else ''),
            _ratio(a and a.p50, b and b.p50), TARGET_LARGE_VS_SMALL,
            informational=True))
