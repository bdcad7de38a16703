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

"""Results of a benchmark run: rows, targets and the printed table."""

import dataclasses
import threading


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
    #: The value must reach the limit (a throughput), not stay below it.
    at_least: bool = False

    @property
    def passed(self) -> bool | None:
        if self.value is None or self.limit is None:
            return None
        if self.at_least:
            return self.value >= self.limit
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


def print_targets(report: Report, backend: str):
    print()
    print('TARGETS (%s)' % backend)
    for t in report.targets:
        if t.backend != backend:
            continue
        verdict = {True: 'PASS', False: 'FAIL', None: 'n/a'}[t.passed]
        if t.informational:
            verdict = 'info: ' + verdict
        print('  %s = %s (target %s %s) %s' % (
            t.text, _fmt(t.value), '>=' if t.at_least else '<=',
            _fmt(t.limit), verdict))
    errors = sum(r.errors for r in report.results if r.backend == backend)
    print('  errors = %d %s' % (errors, 'PASS' if errors == 0 else 'FAIL'))
