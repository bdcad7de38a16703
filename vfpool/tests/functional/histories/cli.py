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

"""The runner: histories from seeds, their figures, a failure shrunk.

    python -m vfpool.tests.functional.histories --backend mysql \\
        --seed 1234 [--histories N] [--length L] [--ops 3,7,12] \\
        [--defect NN] [--private-db]

Runs ``N`` histories of ``L`` operations (seeds ``seed`` .. ``seed+N-1``)
and prints one line per history, then the figures.  A history that
breaks an invariant is printed with its seed and violations, shrunk to
the shortest one that still fails, and given the one command that
replays it.  Exits 1 when any history failed.
"""

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

#: Set in the process that runs from a patched copy (see defects.py).
TREE_ENV = 'VFPOOL_HISTORIES_TREE'


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='python -m vfpool.tests.functional.histories',
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--backend', default='mysql',
                        choices=('sqlite', 'mysql', 'postgresql'))
    parser.add_argument('--seed', type=int, default=None,
                        help='first seed (default: from the clock)')
    parser.add_argument('--histories', type=int,
                        default=_env_int('VFPOOL_HISTORIES', 1))
    parser.add_argument('--length', type=int,
                        default=_env_int('VFPOOL_HISTORY_OPS', 40),
                        help='operations generated per history')
    parser.add_argument('--ops', default=None,
                        help='replay only these operations (numbers, '
                             'comma separated) of the seed\'s history')
    parser.add_argument('--known', default=None,
                        help='replay histories of known.py (names, comma '
                             'separated, or "all") instead of generating')
    parser.add_argument('--defect', action='append', default=[],
                        help='put defect NN back (defects/NN-*.patch); '
                             'repeatable')
    parser.add_argument('--private-db', action='store_true',
                        help='a MariaDB or PostgreSQL server of its own, '
                             'which the histories restart')
    parser.add_argument('--no-shrink', action='store_true')
    parser.add_argument('--shrink-tries', type=int, default=40)
    parser.add_argument('--show', action='store_true',
                        help='print the operations of every history')
    parser.add_argument('--trace', action='store_true',
                        help='print every delivery and its answer')
    parser.add_argument('--json', default=None,
                        help='append the figures to this file as JSON')
    return parser.parse_args(argv)


def replay_command(args, seed: int, ops: list[int] | None,
                   name: str | None = None) -> str:
    parts = ['python -m vfpool.tests.functional.histories',
             '--backend', args.backend]
    if name:
        parts += ['--known', name]
    else:
        parts += ['--seed', str(seed), '--length', str(args.length)]
    if ops is not None and not name:
        parts += ['--ops', ','.join(str(n) for n in ops)]
    for defect in args.defect:
        parts += ['--defect', defect]
    if args.private_db:
        parts.append('--private-db')
    return ' '.join(parts)


def _reexec(args, argv: list[str]) -> int:
    """Run this command again from a copy of vfpool/ with the defects."""
    from vfpool.tests.functional.histories import defects
    tree = defects.patched_tree(args.defect)
    try:
        env = dict(os.environ, **{TREE_ENV: tree})
        env['PYTHONPATH'] = os.pathsep.join(
            [tree] + [p for p in env.get('PYTHONPATH', '').split(
                os.pathsep) if p])
        return subprocess.call(
            [sys.executable, '-m', 'vfpool.tests.functional.histories']
            + argv, env=env, cwd=tree)
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def _quiet() -> None:
    logging.basicConfig(level=logging.WARNING)
    for name in ('oslo.messaging', 'oslo_messaging', 'amqp', 'kombu'):
        logging.getLogger(name).setLevel(logging.ERROR)


def _line(result) -> str:
    faults = ', '.join('%s %d' % kv for kv in sorted(result.faults.items()))
    return ('seed %d: %d ops, %d steps, %d calls, %d renewals, faults: %s; '
            '%d violation(s); %.1f s' % (
                result.seed, len(result.ops), result.steps, result.calls,
                result.renewals, faults or 'none', len(result.violations),
                result.seconds))


def run(args, out=sys.stdout) -> dict:
    """Every history of ``args``; returns the figures."""
    from vfpool.tests.functional.histories import generator
    from vfpool.tests.functional.histories import known
    from vfpool.tests.functional.histories import runner
    from vfpool.tests.functional.histories import shrink
    from vfpool.tests.functional.histories import system as system_mod

    seed0 = args.seed if args.seed is not None else int(time.time())
    keep = ([int(n) for n in args.ops.split(',') if n.strip()]
            if args.ops else None)
    if args.known:
        names = sorted(known.KNOWN) if args.known == 'all' else [
            name for name in args.known.split(',') if name]
        plan = [known.lookup(name) + (name,) for name in names]
    else:
        plan = [(seed, generator.select(
            generator.generate(seed, args.length), keep), None)
            for seed in range(seed0, seed0 + args.histories)]
    figures = {'backend': args.backend, 'defects': args.defect,
               'histories': 0, 'calls': 0, 'renewals': 0, 'faults': {},
               'violations': 0, 'failed': [], 'seconds': 0.0}
    began = time.monotonic()
    system = system_mod.System(args.backend, private_db=args.private_db)
    system.setUp()
    try:
        for seed, history, name in plan:
            if name:
                print('%s:' % name, file=out)
            if args.show:
                for op in history:
                    print('  %s' % json.dumps(op, sort_keys=True), file=out)
            result = runner.run_history(system, seed, history)
            if args.trace:
                for line in result.trace_lines():
                    print('  %s' % line, file=out)
            figures['histories'] += 1
            figures['calls'] += result.calls
            figures['renewals'] += result.renewals
            for kind, count in result.faults.items():
                figures['faults'][kind] = figures['faults'].get(
                    kind, 0) + count
            figures['faults']['kill'] = figures['faults'].get('kill', 0)
            print(_line(result), file=out, flush=True)
            if not result.violations:
                continue
            figures['violations'] += len(result.violations)
            for v in result.violations:
                print('  VIOLATION %s' % v, file=out, flush=True)
            shortest = [op['n'] for op in history]
            if args.no_shrink or name:
                command = replay_command(args, seed, keep, name)
                print('  replay: %s' % command, file=out, flush=True)
                figures['failed'].append({
                    'seed': seed, 'ops': keep, 'replay': command,
                    'violations': result.violations})
                continue
            if len(shortest) > 1:
                def fails(subset):
                    r = runner.run_history(
                        system, seed, generator.select(history, subset))
                    print('    shrinking: %d ops -> %s' % (
                        len(subset), 'fails' if r.violations else 'passes'),
                        file=out, flush=True)
                    return bool(r.violations)
                # First the operations on the instances the violations
                # name (and the database's restarts): usually enough.
                focus = [op['n'] for op in history
                         if op['instance'] in result.implicated
                         or op['kind'] == 'restart_db']
                tries = args.shrink_tries
                if focus and len(focus) < len(shortest):
                    tries -= 1
                    if fails(focus):
                        shortest = focus
                shortest = shrink.ddmin(shortest, fails, tries)
            final = runner.run_history(
                system, seed, generator.select(history, shortest))
            print('  shortest history (%d ops) of seed %d:' % (
                len(shortest), seed), file=out)
            for op in generator.select(history, shortest):
                print('    %s' % json.dumps(op, sort_keys=True), file=out)
            for v in final.violations:
                print('    VIOLATION %s' % v, file=out)
            if not final.violations:
                print('    (it passed when replayed once more: timing '
                      'decides; replay the full history)', file=out)
            command = replay_command(args, seed, shortest)
            print('  replay: %s' % command, file=out, flush=True)
            figures['failed'].append({
                'seed': seed, 'ops': shortest, 'replay': command,
                'violations': final.violations or result.violations})
    finally:
        system.cleanUp()
    figures['seconds'] = round(time.monotonic() - began, 1)
    print('histories %d, calls %d (+%d renewals), faults %s, violations '
          '%d, %.1f s' % (
              figures['histories'], figures['calls'], figures['renewals'],
              ', '.join('%s %d' % kv for kv in sorted(
                  figures['faults'].items())) or 'none',
              figures['violations'], figures['seconds']), file=out,
          flush=True)
    if args.json:
        with open(args.json, 'a') as f:
            f.write(json.dumps(figures, sort_keys=True) + '\n')
    return figures


def _stop(signum, frame):
    # Through the finally clauses: the servers and databases go too.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if args.defect and not os.environ.get(TREE_ENV):
        return _reexec(args, argv)
    _quiet()
    figures = run(args)
    return 1 if figures['violations'] else 0
