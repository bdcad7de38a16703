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

"""Optional SQL profile: every round trip of a call, counted and timed."""

import threading
import time
import uuid

from bench.inventory import _utcnow
from bench.migrations import MigrationPlan
from bench.migrations import Runner
from bench.results import percentile


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

    #: Dialect methods timed besides the statements: the pool's pre-ping,
    #: COMMIT and ROLLBACK (the pool's reset-on-return is one).
    HOOKS = (('do_ping', '<pool pre-ping>'), ('do_commit', '<COMMIT>'),
             ('do_rollback', '<ROLLBACK>'))

    def __enter__(self):
        import sqlalchemy as sa
        sa.event.listen(self.engine, 'before_cursor_execute', self._start)
        sa.event.listen(self.engine, 'after_cursor_execute', self._end)
        dialect = self.engine.dialect
        self._orig = {name: getattr(dialect, name) for name, _ in self.HOOKS}
        for name, key in self.HOOKS:
            setattr(dialect, name, self._timed(self._orig[name], key))
        return self

    def _timed(self, method, key):
        def timed(dbapi_connection):
            t0 = time.perf_counter()
            try:
                return method(dbapi_connection)
            finally:
                self._add(key, time.perf_counter() - t0)
        return timed

    def __exit__(self, *exc):
        import sqlalchemy as sa
        sa.event.remove(self.engine, 'before_cursor_execute', self._start)
        sa.event.remove(self.engine, 'after_cursor_execute', self._end)
        for name, method in self._orig.items():
            setattr(self.engine.dialect, name, method)

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


#: The calls profiled, in this order on the same instances.
STEPS = ('allocate', 'prepare', 'complete')


def sql_profile(runner: Runner, calls: int) -> None:
    """allocate/prepare/complete in this process on the same DB, profiled."""
    from vfpool.db import api as db_api

    plan = MigrationPlan(runner.inv, 'distinct', 1, runner.picker)
    jobs = [plan.job(0) for _ in range(calls + 10)]
    # Point this process's facade at this inventory's DB (the other
    # stack may have patched it last).
    reset = db_api.use_connection(runner.stack.database.url)
    try:
        out = _sql_profile_calls(runner, jobs, calls)
    finally:
        reset()
    runner._helpers_map(runner._release, jobs)
    for step in STEPS + ('floor',):
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
    from vfpool.objects import allocation as allocation_obj
    from vfpool.objects import migration as migration_obj

    prof = SQLProfile(db_api.get_engine())
    conf = runner.stack.conf
    timings = dict.fromkeys(STEPS, 0.0)
    out = {}
    with prof:
        for step in STEPS:
            prof.reset()
            timings[step] = 0.0
            for n, job in enumerate(jobs):
                ctxt = vfpool_context.get_admin_context()
                if step == 'allocate':
                    args = runner.allocate_args(job)
                    fn = lambda: allocation_obj.allocate(  # noqa: E731
                        ctxt, *args, numa_policy=conf.pool.numa_policy,
                        mac_prefix=conf.pool.mac_prefix.lower())
                elif step == 'prepare':
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
