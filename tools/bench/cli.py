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

"""The benchmark's driver: options, stacks, phases, the final report."""

import argparse
import json
import logging
import os
import platform
import random
import sys
import time
import traceback

import bench
from bench.inventory import Inventory
from bench.inventory import inventory_label
from bench.inventory import seed_bulk
from bench.inventory import seed_by_rpc
from bench.measure import interleave
from bench import migrations
from bench.migrations import CALLERS
from bench.migrations import Runner
from bench import procstats
from bench.results import print_table
from bench.results import print_targets
from bench.results import Report
from bench.results import Target
from bench import sections as sections_mod
from bench.sections import SectionContext
from bench import sqlprofile


PROFILES = {
    # calls, warmup, small hosts, large hosts
    'full': dict(calls=500, warmup=50, small_hosts=16, large_hosts=10000),
    'quick': dict(calls=64, warmup=16, small_hosts=16, large_hosts=320),
}


def add_targets(report: Report, backend: str, small: str, large: str):
    """The issue's targets, listed before those of extra sections."""
    extra = [t for t in report.targets if t.backend == backend]
    report.targets = [t for t in report.targets if t.backend != backend]
    try:
        migrations.add_core_targets(report, backend, small, large)
    finally:
        report.targets.extend(extra)


#: prepare's throughput at 16 callers, 2 workers per server over 1.
TARGET_WORKERS_SPEEDUP = 1.6


def add_worker_targets(report: Report, labels: list, small: str) -> None:
    """2 workers against 1, per backend, when both ran.

    The runs are sequential, so the ratio of raw throughputs is given
    next to the same ratio for ping, which the machine's load moves too.
    """
    runs = {split_label(label): label for label in labels}
    for (backend, workers), label in runs.items():
        one = runs.get((backend, 1))
        if workers != 2 or one is None:
            continue
        for phase in ('prepare', 'ping'):
            a = report.find(label, small, phase, 16)
            b = report.find(one, small, phase, 16)
            report.targets.append(Target(
                label, '%s calls/s @16 (%s), %d workers / 1 worker'
                % (phase, small, workers),
                a.rate / b.rate if a and b and b.rate else None,
                TARGET_WORKERS_SPEEDUP, informational=phase == 'ping',
                at_least=True))


def _start_stack(args, report: Report, backend: str, inv: Inventory):
    from vfpool.tests.functional import base

    t0 = time.perf_counter()
    db, workers = split_label(backend)
    stack = base.ServiceStack(backend=db, servers=args.servers,
                              workers=workers,
                              **{'pool.reaper_interval': 30})
    stack.setUp()
    report.note(backend, '%s: scratch DB %s, %d vfpool-server process(es) '
                'of %d worker(s) on exchange/topic %s ready in %.1f s' % (
                    inv.label, stack.database.url.rsplit('/', 1)[-1]
                    .split('?')[0], args.servers, workers, stack.exchange,
                    time.perf_counter() - t0))
    return stack


def run_label(backend: str, workers: int, args) -> str:
    """The label of one run: ``mysql``, or ``mysql/w2`` with --workers."""
    if args.workers == [1]:
        return backend
    return '%s/w%d' % (backend, workers)


def split_label(label: str) -> tuple[str, int]:
    """(database backend, workers per server) of a run label."""
    backend, _, workers = label.partition('/w')
    return backend, int(workers or 1)


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
                sqlprofile.sql_profile(r, args.sql_profile)
        for r in runners:
            report.note(backend, '%s: %s' % (
                r.inv.label, procstats.summary(r.stack)),
                phase='rss', inventory=r.inv.label)
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
        description=bench.__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--backend', action='append',
                        choices=('mysql', 'postgresql', 'sqlite'),
                        help='database backend; repeat for several '
                             '(default: mysql)')
    parser.add_argument('--servers', type=int, default=1,
                        help='vfpool-server processes (default 1)')
    parser.add_argument('--workers', type=int, action='append',
                        help='[DEFAULT] workers of each server; repeat '
                             '(--workers 1 --workers 2) to run every '
                             'phase at each, labelled backend/wN '
                             '(default 1)')
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
                        help='skip the extra sections '
                             '(bench.sections.FAMILIES)')
    parser.add_argument('--family', action='append',
                        help='run only this extra family (e.g. reports, '
                             'plugin); repeatable (default: all)')
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
    args.workers = args.workers or [1]
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
    sections = [] if args.no_extra else sections_mod.load_extra_sections(
        args.family)
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
    labels = [run_label(b, w, args) for b in args.backend
              for w in args.workers]
    for backend in labels:
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
    add_worker_targets(report, labels, small.label)
    for backend in labels:
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
