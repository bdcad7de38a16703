#!/usr/bin/env python3
"""Benchmark of vfpool-server through real RabbitMQ and a real database.

A benchmark, not a test: it measures and prints, and only fails (exit
status 1) when calls raised errors, or when ``--strict`` is given and a
target is missed.  Run it with ``tox -e bench -- [options]`` or
``python tools/bench.py [options]``.

For every backend (``--backend``, repeatable) and for two inventories
(a small one of ``--small-hosts`` x ``--vfs-per-host`` VFs, about 1,000,
and a large one of ``--large-hosts`` x ``--vfs-per-host``, about 640,000)
it starts a scratch database and ``--servers`` real vfpool-server
processes on a private ``control_exchange`` (the functional tests'
fixtures, ``vfpool.tests.functional.base.ServiceStack``), then measures:

* ``ping``: the no-op RPC call (API 1.1), the baseline, at 1 and 16
  callers;
* ``prepare`` and ``complete``: ``prepare_migration`` (one instance
  with one VF, host A to host B) and then ``complete_migration``, timed
  separately, at 1 caller, at 16 concurrent callers on distinct hosts
  and at 16 callers that share one destination host (contention).

Seeding.  The small inventory goes through real ``report_inventory``
RPC calls.  The large one is bulk-inserted with SQLAlchemy core
(``INSERT`` executemany, in batches) into hosts/pfs/vfs with the very
column values ``report_inventory`` writes; that bypasses RPC only for
speed (640,000 VFs through RPC would take most of the time budget) and
is timed and printed.  The statistics are refreshed afterwards (ANALYZE,
and VACUUM on PostgreSQL) as a live database's would be, so that neither
the planner nor autovacuum works on stale state while we measure.

Migrations are run in rounds: the instances of a round get their VF
through the real ``allocate`` RPC (untimed), every caller prepares its
migrations (timed), then completes them (timed), then the instances are
released (untimed), so the inventory is back where it started and a
shared destination host never runs out of VFs.  Calls per second are the
measured calls divided by the wall time of the rounds of that call.
Warm-up calls run the same way first and are not recorded.

Both inventories of a backend are up at once (own scratch DB, own
servers) and every phase alternates between them round by round
(A B B A ...): the machine's background load then weighs on both alike,
which keeps the large/small ratios meaningful on a shared machine.
``--sql-profile N`` adds N in-process prepare/complete calls per
inventory with every SQL round trip counted and timed.  The code under
test (git HEAD and a digest of vfpool/*.py) is printed at the start
and checked again at the end.

Extra sections.  ``EXTRA_SECTIONS`` is a list of callables run for each
backend and inventory after the core phases, while the servers are up;
``tools/bench_plugin.py``, when it exists, may export its own
``EXTRA_SECTIONS`` list, which is appended.  Each callable gets a
:class:`SectionContext` (see there: ``measure``, ``add_result``,
``add_target``, ``baseline``).
"""

import argparse
import concurrent.futures
import dataclasses
import datetime
import json
import logging
import os
import platform
import random
import sys
import threading
import time
import traceback
import uuid

# First of vfpool: selects oslo.service's threading backend before any
# module pulls oslo.service in (as vfpool.cmd does for the programs).
import vfpool.tests  # noqa: F401

#: Extra benchmark sections: callables ``section(ctx: SectionContext)``.
#: ``tools/bench_plugin.py`` may add more through its own EXTRA_SECTIONS.
EXTRA_SECTIONS: list = []

CALLERS = (1, 16)
PHYSNET = 'physnet1'
VENDOR_ID = '8086'
PF_PRODUCT_ID = '1572'
VF_PRODUCT_ID = '154c'

PROFILES = {
    # calls, warmup, small hosts, large hosts
    'full': dict(calls=500, warmup=50, small_hosts=16, large_hosts=10000),
    'quick': dict(calls=64, warmup=16, small_hosts=16, large_hosts=320),
}

TARGET_PREPARE_VS_PING = 2.0
TARGET_LARGE_VS_SMALL = 1.25


# ---------------------------------------------------------------------------
# results


def percentile(values: list, pct: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    data = sorted(values)
    rank = (len(data) - 1) * pct / 100.0
    low = int(rank)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (rank - low)


@dataclasses.dataclass
class Result:
    backend: str
    inventory: str
    vfs: int
    phase: str
    callers: int
    calls: int = 0
    errors: int = 0
    latencies: list = dataclasses.field(default_factory=list, repr=False)
    wall: float = 0.0
    error_samples: list = dataclasses.field(default_factory=list)
    baseline_phase: str | None = 'ping'

    @property
    def p50(self):
        return percentile(self.latencies, 50)

    @property
    def p99(self):
        return percentile(self.latencies, 99)

    @property
    def rate(self):
        return len(self.latencies) / self.wall if self.wall else None

    def record_error(self, exc: BaseException) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(_first_line(exc))

    def to_dict(self) -> dict:
        return {
            'backend': self.backend, 'inventory': self.inventory,
            'vfs': self.vfs, 'phase': self.phase, 'callers': self.callers,
            'calls': self.calls, 'errors': self.errors,
            'p50_ms': _ms(self.p50), 'p99_ms': _ms(self.p99),
            'mean_ms': _ms(sum(self.latencies) / len(self.latencies)
                           if self.latencies else None),
            'max_ms': _ms(max(self.latencies) if self.latencies else None),
            'calls_per_s': self.rate, 'error_samples': self.error_samples,
        }


def _first_line(exc: BaseException) -> str:
    """Class and message, without the remote traceback RPC appends."""
    text = str(exc).strip().splitlines()
    return '%s: %s' % (type(exc).__name__, text[0][:300] if text else '')


def _ms(seconds):
    return None if seconds is None else seconds * 1000.0


@dataclasses.dataclass
class Target:
    backend: str
    text: str
    value: float | None
    limit: float | None
    informational: bool = False

    @property
    def passed(self) -> bool | None:
        if self.value is None or self.limit is None:
            return None
        return self.value <= self.limit

    def to_dict(self) -> dict:
        return {'backend': self.backend, 'target': self.text,
                'value': self.value, 'limit': self.limit,
                'passed': self.passed, 'informational': self.informational}


class Report:
    def __init__(self):
        self.results: list[Result] = []
        self.targets: list[Target] = []
        self.notes: list[dict] = []
        self.setup_errors: list[str] = []
        self._lock = threading.Lock()

    def note(self, backend: str, text: str, **data) -> None:
        print('  [%s] %s' % (backend, text), flush=True)
        self.notes.append(dict(data, backend=backend, text=text))

    def find(self, backend, inventory, phase, callers) -> Result | None:
        for r in self.results:
            if (r.backend, r.inventory, r.phase, r.callers) == (
                    backend, inventory, phase, callers):
                return r
        return None

    def baseline_for(self, result: Result) -> Result | None:
        if result.baseline_phase is None or result.phase == 'ping':
            return None
        return self.find(result.backend, result.inventory,
                         result.baseline_phase, result.callers)

    def large_vs_small(self, result: Result, small: str) -> float | None:
        if result.inventory == small:
            return None
        other = self.find(result.backend, small, result.phase,
                          result.callers)
        return _ratio(result.p50, other and other.p50)

    def total_errors(self) -> int:
        return sum(r.errors for r in self.results) + len(self.setup_errors)


def _ratio(a, b):
    if a is None or not b:
        return None
    return a / b


def _fmt(value, fmt='%.2f'):
    return '-' if value is None else fmt % value


def _table_order(report: Report, backend: str, small: str) -> list:
    """Rows by phase in the order they first ran, small inventory first."""
    rows = [r for r in report.results if r.backend == backend]
    first: dict = {}
    for n, r in enumerate(rows):
        first.setdefault((r.phase, r.callers), n)
    return sorted(rows, key=lambda r: (first[(r.phase, r.callers)],
                                       r.inventory != small))


def print_table(report: Report, backend: str, small: str, large: str):
    rows = _table_order(report, backend, small)
    header = ('phase', 'inventory', 'callers', 'calls', 'errors', 'p50 ms',
              'p99 ms', 'calls/s', 'p50/ping', '%s/%s' % (large, small))
    lines = [header]
    for r in rows:
        base = report.baseline_for(r)
        lines.append((
            r.phase, '%s (%d VFs)' % (r.inventory, r.vfs), str(r.callers),
            str(r.calls), str(r.errors), _fmt(_ms(r.p50)),
            _fmt(_ms(r.p99)), _fmt(r.rate, '%.1f'),
            _fmt(_ratio(r.p50, base and base.p50)),
            _fmt(report.large_vs_small(r, small))))
    widths = [max(len(line[i]) for line in lines)
              for i in range(len(header))]
    print()
    print('=== %s ===' % backend)
    for n, line in enumerate(lines):
        print('  '.join(cell.ljust(w) if i < 2 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(line, widths))))
        if n == 0:
            print('  '.join('-' * w for w in widths))
    for r in rows:
        for sample in r.error_samples:
            print('  error in %s @%d (%s): %s' % (r.phase, r.callers,
                                                  r.inventory, sample))


def add_targets(report: Report, backend: str, small: str, large: str):
    """The issue's targets, listed before those of extra sections."""
    extra = [t for t in report.targets if t.backend == backend]
    report.targets = [t for t in report.targets if t.backend != backend]
    try:
        _add_core_targets(report, backend, small, large)
    finally:
        report.targets.extend(extra)


def _add_core_targets(report: Report, backend: str, small: str,
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


def print_targets(report: Report, backend: str):
    print()
    print('TARGETS (%s)' % backend)
    for t in report.targets:
        if t.backend != backend:
            continue
        verdict = {True: 'PASS', False: 'FAIL', None: 'n/a'}[t.passed]
        if t.informational:
            verdict = 'info: ' + verdict
        print('  %s = %s (target <= %s) %s' % (
            t.text, _fmt(t.value), _fmt(t.limit), verdict))
    errors = sum(r.errors for r in report.results if r.backend == backend)
    print('  errors = %d %s' % (errors, 'PASS' if errors == 0 else 'FAIL'))


# ---------------------------------------------------------------------------
# inventories


def _utcnow() -> datetime.datetime:
    """Naive UTC, as oslo.utils' timeutils.utcnow() gives vfpool."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def host_name(prefix: str, index: int) -> str:
    return '%s-%05d' % (prefix, index)


def _pci(bus: int, offset: int) -> str:
    bus += offset // 256
    offset %= 256
    return '0000:%02x:%02x.%d' % (bus, offset // 8, offset % 8)


def host_snapshot(vfs_per_host: int, pfs_per_host: int) -> list[dict]:
    """What an agent reports for one host: PFs with their VFs.

    The same for every host (as a homogeneous cluster's would be); both
    seeding paths derive their rows from it.
    """
    pfs = []
    per_pf = [vfs_per_host // pfs_per_host + (1 if p < vfs_per_host
                                              % pfs_per_host else 0)
              for p in range(pfs_per_host)]
    for p, count in enumerate(per_pf):
        bus = 0x10 + p * 0x10
        pfs.append({
            'address': _pci(bus, 0), 'netdev': 'ens%df0' % (p + 1),
            'vendor_id': VENDOR_ID, 'product_id': PF_PRODUCT_ID,
            'numa_node': p % 2, 'physical_network': PHYSNET,
            'vfs': [{'address': _pci(bus, 16 + i), 'vf_index': i,
                     'vendor_id': VENDOR_ID, 'product_id': VF_PRODUCT_ID,
                     'numa_node': None, 'netdev': None}
                    for i in range(count)],
        })
    return pfs


@dataclasses.dataclass
class Inventory:
    label: str
    prefix: str
    hosts: int
    vfs_per_host: int
    pfs_per_host: int
    bulk: bool

    @property
    def vfs(self) -> int:
        return self.hosts * self.vfs_per_host

    def host(self, index: int) -> str:
        return host_name(self.prefix, index % self.hosts)


def inventory_label(vfs: int) -> str:
    if vfs >= 1000:
        return '%dk' % round(vfs / 1000.0)
    return str(vfs)


def seed_by_rpc(stack, ctxt, inv: Inventory, report: Report, backend: str):
    pfs = host_snapshot(inv.vfs_per_host, inv.pfs_per_host)
    start = time.perf_counter()
    added = 0
    for i in range(inv.hosts):
        counts = stack.client.report_inventory(ctxt, inv.host(i), pfs)
        added += counts['added']
    elapsed = time.perf_counter() - start
    if added != inv.vfs:
        raise RuntimeError('report_inventory added %d VFs, expected %d'
                           % (added, inv.vfs))
    report.note(backend, 'seeded %s: %d hosts x %d VFs = %d VFs through '
                '%d report_inventory RPC calls in %.1f s' % (
                    inv.label, inv.hosts, inv.vfs_per_host, inv.vfs,
                    inv.hosts, elapsed),
                phase='seed', inventory=inv.label, method='rpc',
                seconds=elapsed, vfs=inv.vfs)


def seed_bulk(engine, inv: Inventory, report: Report, backend: str,
              batch: int = 10000):
    """Bulk INSERT of what ``report_inventory`` would have written.

    Same columns and values as vfpool.objects.host.report_inventory:
    hosts (disabled false, created_at and last_report_at now), PFs and
    VFs (state available, generation 0, created_at now, numa_node taken
    from the PF when the VF reports none).  Bypasses RPC for speed only.
    """
    import sqlalchemy as sa

    from vfpool.db import models

    snapshot = host_snapshot(inv.vfs_per_host, inv.pfs_per_host)
    now = _utcnow()
    hosts_t = models.Host.__table__
    pfs_t = models.PhysicalFunction.__table__
    vfs_t = models.VirtualFunction.__table__
    start = time.perf_counter()
    names = [inv.host(i) for i in range(inv.hosts)]
    with engine.begin() as conn:
        for i in range(0, len(names), batch):
            conn.execute(sa.insert(hosts_t), [
                dict(name=n, disabled=False, disabled_reason=None,
                     created_at=now, last_report_at=now)
                for n in names[i:i + batch]])
    with engine.connect() as conn:
        host_ids = dict(conn.execute(sa.select(
            hosts_t.c.name, hosts_t.c.id).where(
                hosts_t.c.name.like(inv.prefix + '-%'))).all())
    pf_rows = [dict(host_id=host_ids[n], address=pf['address'],
                    netdev=pf['netdev'], vendor_id=pf['vendor_id'],
                    product_id=pf['product_id'], numa_node=pf['numa_node'],
                    physical_network=pf['physical_network'], created_at=now)
               for n in names for pf in snapshot]
    with engine.begin() as conn:
        for i in range(0, len(pf_rows), batch):
            conn.execute(sa.insert(pfs_t), pf_rows[i:i + batch])
    with engine.connect() as conn:
        pf_ids = {(h, a): i for i, h, a in conn.execute(sa.select(
            pfs_t.c.id, pfs_t.c.host_id, pfs_t.c.address)).all()}
    rows_done = 0

    def vf_rows():
        for n in names:
            host_id = host_ids[n]
            for pf in snapshot:
                pf_id = pf_ids[(host_id, pf['address'])]
                for vf in pf['vfs']:
                    numa = (vf['numa_node'] if vf['numa_node'] is not None
                            else pf['numa_node'])
                    yield dict(
                        vf_index=vf['vf_index'], vendor_id=vf['vendor_id'],
                        product_id=vf['product_id'], numa_node=numa,
                        netdev=vf['netdev'], pf_id=pf_id,
                        physical_network=pf['physical_network'],
                        host_id=host_id, address=vf['address'],
                        state='available', generation=0, created_at=now)

    pending = []
    last_print = time.perf_counter()
    for row in vf_rows():
        pending.append(row)
        if len(pending) >= batch:
            with engine.begin() as conn:
                conn.execute(sa.insert(vfs_t), pending)
            rows_done += len(pending)
            pending = []
            if time.perf_counter() - last_print > 15:
                last_print = time.perf_counter()
                print('    ... %d / %d VFs inserted' % (rows_done, inv.vfs),
                      flush=True)
    if pending:
        with engine.begin() as conn:
            conn.execute(sa.insert(vfs_t), pending)
        rows_done += len(pending)
    inserted = time.perf_counter() - start

    start = time.perf_counter()
    if engine.dialect.name == 'postgresql':
        with engine.connect().execution_options(
                isolation_level='AUTOCOMMIT') as conn:
            conn.exec_driver_sql('VACUUM ANALYZE hosts, pfs, vfs')
    elif engine.dialect.name == 'mysql':
        with engine.connect() as conn:
            conn.exec_driver_sql('ANALYZE TABLE hosts, pfs, vfs').all()
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql('ANALYZE')
    analyzed = time.perf_counter() - start
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(
            vfs_t)).scalar_one()
    report.note(backend, 'seeded %s: %d hosts x %d VFs = %d VFs (%d PFs) by '
                'bulk INSERT (bypassing RPC, for speed) in %.1f s '
                '(%.0f VFs/s), then ANALYZE%s in %.1f s; vfs table: %d rows'
                % (inv.label, inv.hosts, inv.vfs_per_host, rows_done,
                   len(pf_rows), inserted, rows_done / inserted,
                   ' + VACUUM' if engine.dialect.name == 'postgresql'
                   else '', analyzed, total),
                phase='seed', inventory=inv.label, method='bulk',
                seconds=inserted, analyze_seconds=analyzed, vfs=rows_done)


# ---------------------------------------------------------------------------
# measurement


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0)
            for i in range(parts)]


def run_concurrent(callers: int, per_caller: list, fn) -> float:
    """Run ``fn(caller, items)`` in ``callers`` threads; wall seconds."""
    if callers == 1:
        start = time.perf_counter()
        fn(0, per_caller[0])
        return time.perf_counter() - start
    barrier = threading.Barrier(callers + 1)
    errors = []

    def worker(c):
        try:
            barrier.wait()
            fn(c, per_caller[c])
        except BaseException as e:  # noqa: B902 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(c,), daemon=True)
               for c in range(callers)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return wall


def measure_steps(result: Result | None, callers: int, calls: int,
                  warmup: int, call, chunk: int = 64):
    """Measure ``call()`` (no arguments) ``calls`` times over callers.

    A generator: it yields after the warm-up and after every ``chunk``
    measured calls, so that phases on two inventories can be
    interleaved (see :func:`interleave`).
    """
    def loop(record):
        def body(c, n):
            for _ in range(n):
                t0 = time.perf_counter()
                try:
                    call()
                except Exception as e:
                    if record:
                        result.record_error(e)
                    continue
                if record:
                    result.latencies.append(time.perf_counter() - t0)
        return body

    run_concurrent(callers, _split(max(warmup, callers), callers),
                   loop(False))
    yield
    chunk = max(chunk, callers)
    done = 0
    while result is not None and done < calls:
        n = min(chunk, calls - done)
        done += n
        result.calls += n
        result.wall += run_concurrent(callers, _split(n, callers),
                                      loop(True))
        yield


def measure_simple(result: Result | None, callers: int, calls: int,
                   warmup: int, call) -> Result | None:
    for _ in measure_steps(result, callers, calls, warmup, call):
        pass
    return result


def interleave(steppers: list) -> None:
    """Run generators step by step, A B B A A B ..., until all are done.

    Background load that comes and goes then hits every inventory alike.
    """
    active = list(steppers)
    cycle = 0
    while active:
        order = active if cycle % 2 == 0 else active[::-1]
        for gen in list(order):
            try:
                next(gen)
            except StopIteration:
                active.remove(gen)
        cycle += 1


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

    def _allocate(self, job: Job) -> None:
        job.instance_uuid = str(uuid.uuid4())
        mac = 'fa:16:3e:%02x:%02x:%02x' % tuple(
            self.rng.randrange(256) for _ in range(3))
        self.client.allocate(
            self.ctxt, job.instance_uuid, job.source,
            [{'physical_network': PHYSNET, 'vendor_id': VENDOR_ID,
              'product_id': VF_PRODUCT_ID, 'numa_node': 0, 'mac': mac,
              'vlan': 100, 'port_id': str(uuid.uuid4())}],
            'bench-%s' % uuid.uuid4().hex)

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


class SectionContext:
    """What an extra benchmark section gets (see EXTRA_SECTIONS).

    ``backend`` and ``inventory`` (an :class:`Inventory`: label, hosts,
    vfs, ``host(i)`` names) say where it runs; ``stack`` is the running
    ServiceStack (``conf``, ``client``, ``engine``, ``config_file``,
    ``procs``); ``client`` a VfpoolAPI on the real broker; ``ctxt`` a
    request context; ``args`` the parsed options (``calls``, ``warmup``).
    """

    def __init__(self, runner: Runner):
        self._runner = runner
        self.backend = runner.backend
        self.inventory = runner.inv
        self.stack = runner.stack
        self.client = runner.client
        self.ctxt = runner.ctxt
        self.args = runner.args
        self.report = runner.report

    def measure(self, phase: str, call, callers: int = 1,
                calls: int | None = None, warmup: int | None = None,
                baseline_phase: str | None = 'ping') -> Result:
        """Time ``call()`` like the core phases and add a table row."""
        result = self._runner.new_result(phase, callers, baseline_phase)
        return measure_simple(
            result, callers, self.args.calls if calls is None else calls,
            self.args.warmup if warmup is None else warmup, call)

    def add_result(self, phase: str, callers: int, latencies: list,
                   wall: float, errors: int = 0,
                   baseline_phase: str | None = 'ping') -> Result:
        """Add a row from latencies (seconds) measured elsewhere."""
        result = self._runner.new_result(phase, callers, baseline_phase)
        result.latencies.extend(latencies)
        result.calls = len(latencies) + errors
        result.errors = errors
        result.wall = wall
        return result

    def baseline(self, callers: int = 1) -> Result | None:
        return self.report.find(self.backend, self.inventory.label, 'ping',
                                callers)

    def add_target(self, text: str, value: float | None, limit: float,
                   informational: bool = False) -> None:
        self.report.targets.append(Target(self.backend, text, value, limit,
                                          informational))


def load_extra_sections() -> list:
    sections = list(EXTRA_SECTIONS)
    here = os.path.dirname(os.path.abspath(__file__))
    if not os.path.exists(os.path.join(here, 'bench_plugin.py')):
        return sections
    if here not in sys.path:
        sys.path.insert(0, here)
    import bench_plugin
    sections.extend(getattr(bench_plugin, 'EXTRA_SECTIONS', []))
    return sections


# ---------------------------------------------------------------------------
# optional SQL profile (in-process, no RPC)


class SQLProfile:
    """Counts and times every statement, the pre-ping and the COMMIT."""

    def __init__(self, engine):
        self.engine = engine
        self.stats: dict = {}
        self.local = threading.local()
        self.calls = 0

    def _start(self, conn, cursor, statement, params, context, many):
        self.local.t0 = time.perf_counter()

    def _end(self, conn, cursor, statement, params, context, many):
        self._add(' '.join(statement.split()),
                  time.perf_counter() - self.local.t0)

    def _add(self, key, seconds):
        self.stats.setdefault(key, []).append(seconds)

    def __enter__(self):
        import sqlalchemy as sa
        sa.event.listen(self.engine, 'before_cursor_execute', self._start)
        sa.event.listen(self.engine, 'after_cursor_execute', self._end)
        dialect = self.engine.dialect
        self._orig_ping = dialect.do_ping
        self._orig_commit = dialect.do_commit

        def do_ping(dbapi_connection):
            t0 = time.perf_counter()
            try:
                return self._orig_ping(dbapi_connection)
            finally:
                self._add('<pool pre-ping>', time.perf_counter() - t0)

        def do_commit(dbapi_connection):
            t0 = time.perf_counter()
            try:
                return self._orig_commit(dbapi_connection)
            finally:
                self._add('<COMMIT>', time.perf_counter() - t0)
        dialect.do_ping = do_ping
        dialect.do_commit = do_commit
        return self

    def __exit__(self, *exc):
        import sqlalchemy as sa
        sa.event.remove(self.engine, 'before_cursor_execute', self._start)
        sa.event.remove(self.engine, 'after_cursor_execute', self._end)
        self.engine.dialect.do_ping = self._orig_ping
        self.engine.dialect.do_commit = self._orig_commit

    def reset(self):
        self.stats = {}

    def lines(self, calls: int, total: float) -> list[str]:
        out = []
        in_sql = 0.0
        trips = 0
        for key, times in sorted(self.stats.items(),
                                 key=lambda kv: -sum(kv[1])):
            secs = sum(times)
            in_sql += secs
            trips += len(times)
            out.append('    %5.2f x  %7.3f ms/call (each: p50 %.3f ms)  %s'
                       % (len(times) / calls, secs * 1000 / calls,
                          percentile(times, 50) * 1000, _short_sql(key)))
        out.insert(0, '    %.1f round trips per call; %.3f ms per call, of '
                   'which %.3f ms waiting for the DB (statements, pre-ping, '
                   'COMMIT) and %.3f ms in Python (SQLAlchemy, ORM, vfpool)'
                   % (trips / calls, total * 1000 / calls,
                      in_sql * 1000 / calls, (total - in_sql) * 1000 / calls))
        return out


def _short_sql(statement: str, width: int = 200) -> str:
    """The statement with its column lists elided, to fit a line."""
    import re
    statement = re.sub(r'^SELECT (.+?) FROM ',
                       lambda m: 'SELECT %s FROM ' % (
                           m.group(1) if len(m.group(1)) < 40 else '...'),
                       statement)
    statement = re.sub(r'%\(([a-z_0-9]+)\)s', r':\1', statement)
    statement = re.sub(r'\(([a-z_, ]{40,})\) VALUES \(.*?\)',
                       '(...) VALUES (...)', statement)
    return statement[:width]


def sql_profile(runner: Runner, calls: int) -> None:
    """prepare/complete called in this process on the same DB, profiled."""
    from vfpool.db import api as db_api

    plan = MigrationPlan(runner.inv, 'distinct', 1, runner.picker)
    jobs = [plan.job(0) for _ in range(calls + 10)]
    runner._helpers_map(runner._allocate, jobs)
    # Point this process's facade at this inventory's DB (the other
    # stack may have patched it last).
    reset = db_api.use_connection(runner.stack.database.url)
    try:
        out = _sql_profile_calls(runner, jobs, calls)
    finally:
        reset()
    runner._helpers_map(runner._release, jobs)
    for step in ('prepare', 'complete', 'floor'):
        print('  SQL profile of %s in-process (%s, %s, %d calls):' % (
            step if step != 'floor' else 'the cheapest write transaction '
            '(1 UPDATE + COMMIT)', runner.backend, runner.inv.label, calls))
        for line in out[step]:
            print(line)
        runner.report.notes.append({
            'backend': runner.backend, 'inventory': runner.inv.label,
            'phase': 'sql-profile-' + step, 'lines': out[step]})


def _sql_profile_calls(runner: Runner, jobs: list, calls: int) -> dict:
    from vfpool import context as vfpool_context
    from vfpool.db import api as db_api
    from vfpool.objects import migration as migration_obj

    prof = SQLProfile(db_api.get_engine())
    conf = runner.stack.conf
    timings = {'prepare': 0.0, 'complete': 0.0}
    out = {}
    with prof:
        for step in ('prepare', 'complete'):
            prof.reset()
            timings[step] = 0.0
            for n, job in enumerate(jobs):
                ctxt = vfpool_context.get_admin_context()
                if step == 'prepare':
                    job.migration_uuid = str(uuid.uuid4())
                    fn = lambda: migration_obj.prepare(  # noqa: E731
                        ctxt, job.migration_uuid, job.instance_uuid,
                        job.source, job.dest, 600,
                        match_device_type=conf.pool.match_device_type,
                        numa_policy=conf.pool.numa_policy)
                else:
                    fn = lambda: migration_obj.complete(  # noqa: E731
                        ctxt, job.migration_uuid)
                if n == 10:     # the first ten are warm-up
                    prof.reset()
                    timings[step] = 0.0
                t0 = time.perf_counter()
                fn()
                timings[step] += time.perf_counter() - t0
            out[step] = prof.lines(calls, timings[step])
    out['floor'] = _write_floor(db_api.get_engine(), calls)
    return out


def _write_floor(engine, calls: int) -> list[str]:
    """The cheapest write transaction: checkout, one UPDATE, COMMIT."""
    import sqlalchemy as sa

    from vfpool.db import models

    hosts = models.Host.__table__
    prof = SQLProfile(engine)
    total = 0.0
    with prof:
        for n in range(calls + 10):
            if n == 10:
                prof.reset()
                total = 0.0
            t0 = time.perf_counter()
            with engine.begin() as conn:
                conn.execute(sa.update(hosts).where(hosts.c.id == 1).values(
                    updated_at=_utcnow()))
            total += time.perf_counter() - t0
    return prof.lines(calls, total)


# ---------------------------------------------------------------------------
# driver


def _start_stack(args, report: Report, backend: str, inv: Inventory):
    from vfpool.tests.functional import base

    t0 = time.perf_counter()
    stack = base.ServiceStack(backend=backend, servers=args.servers,
                              **{'pool.reaper_interval': 30})
    stack.setUp()
    report.note(backend, '%s: scratch DB %s, %d vfpool-server process(es) '
                'on exchange/topic %s ready in %.1f s' % (
                    inv.label, stack.database.url.rsplit('/', 1)[-1]
                    .split('?')[0], args.servers, stack.exchange,
                    time.perf_counter() - t0))
    return stack


def _timed(report: Report, backend: str, what: str, fn, *fn_args):
    t = time.perf_counter()
    fn(*fn_args)
    report.note(backend, '%s done in %.1f s' % (what,
                                                time.perf_counter() - t))


def run_backend(args, report: Report, backend: str, small: Inventory,
                large: Inventory, sections: list,
                rng: random.Random) -> None:
    """Measure both inventories of one backend.

    Both run side by side, each on its own scratch DB and servers, and
    every phase is interleaved between them round by round (A B B A
    ...), so that background load that comes and goes on the machine
    hits both alike and the large/small ratios stay fair.
    """
    stacks = []
    runners = []
    try:
        for inv in (small, large):
            stack = _start_stack(args, report, backend, inv)
            stacks.append((inv, stack))
            runners.append(Runner(args, report, backend, stack, inv, rng))
        rs, rl = runners
        seed_by_rpc(rs.stack, rs.ctxt, small, report, backend)
        seed_bulk(rl.stack.engine, large, report, backend)
        for callers in CALLERS:
            _timed(report, backend, 'ping @%d, both inventories '
                   'interleaved,' % callers, interleave,
                   [r.ping_steps(callers) for r in runners])
        for callers, mode in ((1, 'distinct'), (16, 'distinct'),
                              (16, 'shared')):
            _timed(report, backend, 'prepare+complete @%d (%s), both '
                   'inventories interleaved,' % (callers, mode), interleave,
                   [r.migration_steps(callers, mode) for r in runners])
        for section in sections:
            name = getattr(section, '__name__', repr(section))
            for r in runners:
                try:
                    section(SectionContext(r))
                except Exception:
                    msg = 'extra section %s failed on %s: %s' % (
                        name, r.inv.label, traceback.format_exc())
                    report.setup_errors.append(msg)
                    print('  ' + msg, flush=True)
        if args.sql_profile:
            for r in runners:
                sql_profile(r, args.sql_profile)
    finally:
        for r in runners:
            r.close()
        for inv, stack in reversed(stacks):
            t = time.perf_counter()
            try:
                if args.keep_logs:
                    keep_logs(args.keep_logs, stack, backend, inv)
            finally:
                stack.cleanUp()
            print('  [%s] %s: servers stopped, scratch DB dropped in %.1f s'
                  % (backend, inv.label, time.perf_counter() - t),
                  flush=True)


def keep_logs(directory: str, stack, backend: str, inv: Inventory):
    """Stop the servers (so their logs are complete) and copy the logs."""
    import shutil
    os.makedirs(directory, exist_ok=True)
    for proc in stack.procs:
        proc.stop()
        if os.path.exists(proc.log_path):
            shutil.copy(proc.log_path, os.path.join(
                directory, '%s-%s-%s.log' % (backend, inv.label, proc.name)))


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--backend', action='append',
                        choices=('mysql', 'postgresql', 'sqlite'),
                        help='database backend; repeat for several '
                             '(default: mysql)')
    parser.add_argument('--servers', type=int, default=1,
                        help='vfpool-server processes (default 1)')
    parser.add_argument('--calls', type=int,
                        help='measured calls per phase (default %d, '
                             '--quick %d)' % (PROFILES['full']['calls'],
                                              PROFILES['quick']['calls']))
    parser.add_argument('--warmup', type=int,
                        help='warm-up calls per phase, not recorded '
                             '(default %d, --quick %d)' % (
                                 PROFILES['full']['warmup'],
                                 PROFILES['quick']['warmup']))
    parser.add_argument('--small-hosts', type=int,
                        help='hosts of the small inventory, seeded through '
                             'report_inventory RPC (default 16)')
    parser.add_argument('--large-hosts', type=int,
                        help='hosts of the large inventory, bulk-inserted '
                             '(default 10000, --quick 320)')
    parser.add_argument('--vfs-per-host', type=int, default=64)
    parser.add_argument('--pfs-per-host', type=int, default=2)
    parser.add_argument('--quick', action='store_true',
                        help='smaller numbers for a smoke run (about 20k '
                             'VFs in the large inventory)')
    parser.add_argument('--json', metavar='FILE',
                        help='also write the results to FILE')
    parser.add_argument('--strict', action='store_true',
                        help='exit 1 when a target is missed too')
    parser.add_argument('--sql-profile', type=int, default=0,
                        metavar='CALLS',
                        help='also run CALLS prepare/complete in this '
                             'process with every SQL statement counted '
                             'and timed')
    parser.add_argument('--no-extra', action='store_true',
                        help='skip EXTRA_SECTIONS (tools/bench_plugin.py)')
    parser.add_argument('--keep-logs', metavar='DIR',
                        help='copy the vfpool-server logs to DIR')
    parser.add_argument('--seed', type=int, default=1,
                        help='random seed for host choice')
    args = parser.parse_args(argv)
    profile = PROFILES['quick' if args.quick else 'full']
    for key, value in profile.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.backend = args.backend or ['mysql']
    if args.vfs_per_host < 4 or args.pfs_per_host < 1:
        parser.error('--vfs-per-host must be >= 4, --pfs-per-host >= 1')
    if args.small_hosts < 2 or args.large_hosts < 2:
        parser.error('need at least 2 hosts per inventory')
    if args.calls < 1 or args.warmup < 0 or args.servers < 1:
        parser.error('--calls and --servers must be positive')
    return args


def code_fingerprint() -> str:
    """Which vfpool code runs: git HEAD, plus a digest of the package.

    Others may edit the tree while a benchmark runs; the digest is
    printed at the start and checked at the end.
    """
    import hashlib
    import subprocess

    import vfpool
    root = os.path.dirname(os.path.abspath(vfpool.__file__))
    digest = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        if os.sep + 'tests' in folder[len(root):]:
            continue
        for name in sorted(files):
            if name.endswith('.py'):
                with open(os.path.join(folder, name), 'rb') as f:
                    digest.update(name.encode() + b'\0' + f.read())
    try:
        head = subprocess.run(
            ['git', '-C', os.path.dirname(root), 'rev-parse', '--short',
             'HEAD'], capture_output=True, text=True,
            timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head = ''
    return '%s vfpool/*.py sha256:%s' % (head or '?',
                                         digest.hexdigest()[:12])


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # 16 client threads make oslo.messaging warn about "call queues".
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger('oslo_messaging._drivers.amqpdriver').setLevel(
        logging.ERROR)
    sections = [] if args.no_extra else load_extra_sections()
    report = Report()
    rng = random.Random(args.seed)
    small = Inventory(inventory_label(args.small_hosts * args.vfs_per_host),
                      'bench-s', args.small_hosts, args.vfs_per_host,
                      args.pfs_per_host, bulk=False)
    large = Inventory(inventory_label(args.large_hosts * args.vfs_per_host),
                      'bench-l', args.large_hosts, args.vfs_per_host,
                      args.pfs_per_host, bulk=True)
    if small.label == large.label:
        large.label += '-large'
    print('vfpool benchmark: backends %s, %d server(s), %d calls + %d '
          'warm-up per phase, inventories %s (%d VFs) and %s (%d VFs)' % (
              ', '.join(args.backend), args.servers, args.calls,
              args.warmup, small.label, small.vfs, large.label, large.vfs),
          flush=True)
    fingerprint = code_fingerprint()
    print('code under test: %s' % fingerprint, flush=True)
    started = time.perf_counter()
    for backend in args.backend:
        t = time.perf_counter()
        report.note(backend, 'load average before: %.2f %.2f %.2f'
                    % os.getloadavg())
        try:
            run_backend(args, report, backend, small, large, sections, rng)
        except Exception:
            msg = '%s failed: %s' % (backend, traceback.format_exc())
            report.setup_errors.append(msg)
            print(msg, flush=True)
        add_targets(report, backend, small.label, large.label)
        report.note(backend, 'backend done in %.1f s; load average: '
                    '%.2f %.2f %.2f' % ((time.perf_counter() - t,)
                                        + os.getloadavg()))
    for backend in args.backend:
        print_table(report, backend, small.label, large.label)
        print_targets(report, backend)
    elapsed = time.perf_counter() - started
    print()
    print('code under test: %s' % fingerprint)
    now = code_fingerprint()
    if now.split()[-1] != fingerprint.split()[-1]:
        print('WARNING: vfpool changed during the run (now %s); servers '
              'started at different times may have run different code'
              % now)
    if report.setup_errors:
        print('SETUP ERRORS: %d' % len(report.setup_errors))
        for msg in report.setup_errors[:10]:
            print('  ' + msg.strip().splitlines()[-1])
    print('total errors = %d %s; total time %.1f s' % (
        report.total_errors(), 'PASS' if not report.total_errors()
        else 'FAIL', elapsed))

    if args.json:
        with open(args.json, 'w') as f:
            json.dump({
                'options': {k: v for k, v in vars(args).items()},
                'machine': {'python': platform.python_version(),
                            'platform': platform.platform(),
                            'cpus': os.cpu_count()},
                'code': fingerprint,
                'inventories': {small.label: small.vfs,
                                large.label: large.vfs},
                'results': [r.to_dict() for r in report.results],
                'targets': [t.to_dict() for t in report.targets],
                'notes': report.notes,
                'setup_errors': report.setup_errors,
                'seconds': elapsed,
            }, f, indent=2)
        print('results written to %s' % args.json)

    if report.total_errors():
        return 1
    if args.strict and any(t.passed is False for t in report.targets
                           if not t.informational):
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
