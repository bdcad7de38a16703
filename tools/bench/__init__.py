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

"""Benchmark of vfpool-server through real RabbitMQ and a real database.

A benchmark, not a test: it measures and prints, and only fails (exit
status 1) when calls raised errors, or when ``--strict`` is given and a
target is missed.  Run it with ``tox -e bench -- [options]`` or
``python tools/bench [options]``.

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

Layout: one module per benchmark family.  ``cli`` (options, the driver,
the final report), ``results`` (rows, targets, the table), ``inventory``
(snapshots, seeding), ``measure`` (timing over callers, interleaving),
``migrations`` (the core phases), ``sqlprofile`` (``--sql-profile``),
``sections`` (the extension point) and the families it lists in
``sections.FAMILIES`` (``reports``: report_inventory unchanged and
changed; ``plugin``: the compute plugin's overhead), ``procstats`` (the
servers' CPU and RSS) and ``load`` (``python tools/bench load``: agents
at their interval plus a maintenance storm).

Extra sections.  Each family module exports ``EXTRA_SECTIONS``, a list
of callables run for each backend and inventory after the core phases,
while the servers are up.  Each callable gets a
:class:`bench.sections.SectionContext` (see there: ``measure``,
``add_result``, ``add_target``, ``baseline``).  A new family is a new
module named in ``sections.FAMILIES``.
"""

# First of vfpool: selects oslo.service's threading backend before any
# module pulls oslo.service in (as vfpool.cmd does for the programs).
import vfpool.tests  # noqa: F401
