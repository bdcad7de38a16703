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

"""Print the fault tests' figures as a table, one row per fault.

The cluster tests (vfpool/tests/functional/cluster) append one JSON line
per fault to .fault-summary.jsonl (or $VFPOOL_FAULT_SUMMARY).  Usage:

    tools/fault-table.py [--markdown] [--clear] [FILE]

``--clear`` empties the file instead, before a run.
"""

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = os.environ.get('VFPOOL_FAULT_SUMMARY',
                         os.path.join(ROOT, '.fault-summary.jsonl'))

COLUMNS = ('Fault', 'Calls', 'Failed (error)', 'Retried',
           'Recovery (s)', 'Double allocations', 'VFs leaked', 'Notes')


def failed(row: dict) -> str:
    errors = row.get('failed') or {}
    if not errors:
        return '0'
    return ', '.join('%d %s' % (n, name)
                     for name, n in sorted(errors.items()))


def notes(row: dict) -> str:
    parts = []
    if row.get('down_s') is not None:
        parts.append('down %.1f s' % row['down_s'])
    if row.get('survivors_primary_s') is not None:
        parts.append('survivors Primary after %.1f s'
                     % row['survivors_primary_s'])
    if row.get('ist_writesets') is not None:
        parts.append('back by IST (%d write sets) in %.1f s'
                     % (row['ist_writesets'], row['rejoined_s']))
    if row.get('fault_to_repaired_s') is not None and not row.get(
            'down_s'):
        parts.append('repaired after %.1f s' % row['fault_to_repaired_s'])
    if row.get('after_repair_s') and (row.get('fault_to_repaired_s')
                                      or row.get('down_s')):
        parts.append('first change %.1f s after repair'
                     % row['after_repair_s'])
    if row.get('certification_conflicts') is not None:
        parts.append('%d certification conflicts retried'
                     % row['certification_conflicts'])
    if row.get('seconds') is not None:
        parts.append('%.0f s' % row['seconds'])
    if row.get('reaped_late_max_s') is not None:
        parts.append('claims reaped <= %.1f s past lease'
                     % row['reaped_late_max_s'])
    if row.get('answers_differing'):
        parts.append('%d ids answered differently'
                     % row['answers_differing'])
    return '; '.join(parts)


def cells(row: dict) -> list[str]:
    recovery = row.get('recovery_s')
    return [row['fault'], str(row['calls']), failed(row),
            str(row.get('retried', 0)),
            '-' if recovery is None else '%.2f' % recovery,
            str(row.get('double_allocations', 0)),
            str(row.get('leaked', 0)), notes(row)]


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [list(COLUMNS)] + rows)
              for i in range(len(COLUMNS))]

    def line(values):
        return '  '.join(v.ljust(w) for v, w in zip(values, widths)).rstrip()
    return '\n'.join([line(COLUMNS), line('-' * w for w in widths)]
                     + [line(r) for r in rows])


def markdown_table(rows: list[list[str]]) -> str:
    return '\n'.join(['| %s |' % ' | '.join(COLUMNS),
                      '|%s|' % '|'.join('---' for _ in COLUMNS)]
                     + ['| %s |' % ' | '.join(r) for r in rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('file', nargs='?', default=DEFAULT)
    parser.add_argument('--markdown', action='store_true')
    parser.add_argument('--clear', action='store_true')
    args = parser.parse_args()
    if args.clear:
        open(args.file, 'w').close()
        return 0
    if not os.path.exists(args.file):
        print('No fault figures in %s (did the cluster tests run?)'
              % args.file, file=sys.stderr)
        return 1
    with open(args.file) as f:
        rows = [cells(json.loads(line)) for line in f if line.strip()]
    print((markdown_table if args.markdown else text_table)(rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
