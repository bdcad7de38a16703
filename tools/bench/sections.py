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

"""Extra sections: one module per benchmark family adds its own rows."""

import importlib

from bench.measure import measure_simple
from bench.migrations import Runner
from bench.results import Result
from bench.results import Target

#: Benchmark families beyond the core phases, each a module of this
#: package exporting ``EXTRA_SECTIONS``: callables taking a
#: :class:`SectionContext`, run for every backend and inventory while the
#: servers are up.  A new family is a new module named here.
FAMILIES = ('bench.reports', 'bench.plugin', 'bench.capacity')


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
                   informational: bool = False,
                   at_least: bool = False) -> None:
        self.report.targets.append(Target(self.backend, text, value, limit,
                                          informational, at_least))


def load_extra_sections(only: list | None = None) -> list:
    """The families' ``EXTRA_SECTIONS`` (``only`` those named), in order."""
    sections = []
    for name in FAMILIES:
        if only and name.split('.')[-1] not in only:
            continue
        sections.extend(getattr(importlib.import_module(name),
                                'EXTRA_SECTIONS', []))
    return sections
