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

"""Transactions that interleave badly, forced in-process on real databases.

Each test holds one transaction (the *victim*, in a thread) just before
its first write, after all the reads it makes first, runs a competing
call to completion, then lets the victim go on: exactly what a second
server does when it commits between another's read and write.  The
victim must then change nothing it should not, and answer as if it had
run after the competitor.  The hold is an SQLAlchemy event on the
engine, seen only by the victim's thread: the code under test is
unchanged.

MariaDB (REPEATABLE READ, once with innodb_snapshot_isolation=ON) and
PostgreSQL (READ COMMITTED) only: SQLite runs writer transactions one at
a time, so there is nothing between a read and a write to interleave.
Each case is named after the item of issue 9 it proves.
"""

import threading

import fixtures
from oslo_db import exception as db_exc
import sqlalchemy as sa
import testscenarios

from vfpool import context as vfpool_context
from vfpool.db import api as db_api
from vfpool.db import migration
from vfpool.db import models
from vfpool import exception
from vfpool.objects import allocation as allocation_obj
from vfpool.objects import host as host_obj
from vfpool.objects import migration as migration_obj
from vfpool.tests import api_cases
from vfpool.tests.functional import base
from vfpool.tests import inventory as inv
from vfpool import utils

load_tests = testscenarios.load_tests_apply_scenarios

_WRITES = ('INSERT', 'UPDATE', 'DELETE')
_WAIT = 60


def _is_write(statement: str) -> bool:
    return statement.lstrip().split(None, 1)[0].upper() in _WRITES


class HeldBeforeFirstWrite(fixtures.Fixture):
    """Runs ``call`` in a thread held just before its first write.

    Or before the first statement ``when`` is true of.
    """

    def __init__(self, engine, call, when=_is_write):
        super().__init__()
        self.engine = engine
        self.call = call
        self.when = when
        self.held = threading.Event()
        self.go = threading.Event()
        self.outcome = None
        self.statements = []

    def _setUp(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        sa.event.listen(self.engine, 'before_cursor_execute', self._before)
        self.addCleanup(sa.event.remove, self.engine,
                        'before_cursor_execute', self._before)
        self.addCleanup(self.go.set)
        self.thread.start()
        if not self.held.wait(_WAIT):
            raise AssertionError('the victim never wrote: %s'
                                 % (self.outcome,))

    def _before(self, conn, cursor, statement, parameters, context,
                executemany):
        if threading.current_thread() is not self.thread:
            return
        self.statements.append(statement)
        if not self.held.is_set() and self.when(statement):
            self.held.set()
            self.go.wait(_WAIT)

    def _run(self):
        try:
            self.outcome = self.call()
        except Exception as e:
            self.outcome = e
        finally:
            self.held.set()

    def finish(self):
        """Let the victim go on; its result, or the exception it raised."""
        self.go.set()
        self.thread.join(_WAIT)
        return self.outcome


class HeldBeforeCommit(HeldBeforeFirstWrite):
    """Runs ``call`` in a thread held with all its writes uncommitted."""

    def _setUp(self):
        sa.event.listen(self.engine, 'commit', self._commit)
        self.addCleanup(sa.event.remove, self.engine, 'commit',
                        self._commit)
        super()._setUp()

    def _before(self, *args):
        pass

    def _commit(self, conn):
        if (threading.current_thread() is self.thread
                and not self.held.is_set()):
            self.held.set()
            self.go.wait(_WAIT)


class InThread(fixtures.Fixture):
    """Runs ``call`` in a thread of its own; :meth:`join` gives its end."""

    def __init__(self, call):
        super().__init__()
        self.call = call
        self.outcome = None

    def _setUp(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.outcome = self.call()
        except Exception as e:
            self.outcome = e

    def join(self):
        self.thread.join(_WAIT)
        return self.outcome


def _waiting_for_a_lock(engine) -> bool:
    """Whether a transaction on the test's database waits for a row lock."""
    query = {
        'mysql': 'SELECT COUNT(*) FROM information_schema.innodb_trx t '
                 'JOIN information_schema.processlist p '
                 'ON p.id = t.trx_mysql_thread_id '
                 "WHERE t.trx_state = 'LOCK WAIT' AND p.db = DATABASE()",
        'postgresql': "SELECT COUNT(*) FROM pg_stat_activity WHERE "
                      "wait_event_type = 'Lock' "
                      'AND datname = current_database()',
    }[engine.dialect.name]
    with engine.connect() as conn:
        return bool(conn.execute(sa.text(query)).scalar())


class TestInterleavings(testscenarios.WithScenarios,
                        base.FunctionalTestCase):
    scenarios = [
        ('mysql', {'backend': 'mysql', 'snapshot_isolation': False}),
        ('mysql_snapshot_isolation', {'backend': 'mysql',
                                      'snapshot_isolation': True}),
        ('postgresql', {'backend': 'postgresql',
                        'snapshot_isolation': False}),
    ]

    def setUp(self):
        super().setUp()
        url = self.useFixture(base.ScratchDatabase(self.backend)).url
        self.addCleanup(db_api.use_connection(url))
        self.engine = db_api.get_engine()
        migration.upgrade(engine=self.engine)
        if self.snapshot_isolation:
            # MariaDB >= 11.6.2's default: a row changed since this
            # transaction's snapshot raises 1020 instead of matching.
            sa.event.listen(self.engine, 'connect', _snapshot_isolation)
            self.engine.dispose()
        self.context = vfpool_context.get_admin_context()
        host_obj.report_inventory(self.context, 'src', [inv.pf(5, 4)])
        host_obj.report_inventory(self.context, 'dst', [inv.pf(6, 4)])

    def allocate(self, instance: str, host: str = 'src') -> dict:
        return allocation_obj.allocate(
            self.context, instance, host, [inv.request(mac=inv.mac(1))],
            inv.new_uuid())[0]

    def held(self, call, **kwargs):
        return self.useFixture(HeldBeforeFirstWrite(self.engine, call,
                                                    **kwargs))

    def owned(self) -> dict:
        """(host, address) -> instance, of every VF someone holds."""
        return {key: instance for key, (_s, instance, _m)
                in api_cases.vf_table(self.engine).items() if instance}

    def test_item2_replace_never_frees_a_vf_that_changed_hands(self):
        x, y = inv.new_uuid(), inv.new_uuid()
        old = self.allocate(x)
        victim = self.held(lambda: allocation_obj.replace(
            self.context, x, 'src', old['address']))
        # X is deleted and Y wins X's old VF (claims take the lowest id).
        allocation_obj.release(self.context, x)
        self.assertEqual(old['address'], self.allocate(y)['address'])
        outcome = victim.finish()
        self.assertIsInstance(outcome, exception.AllocationNotFound)
        self.assertEqual({('src', old['address']): y}, self.owned())

    def test_item2_attach_state_never_lands_on_another_instances_vf(self):
        x, y = inv.new_uuid(), inv.new_uuid()
        old = self.allocate(x)
        victim = self.held(lambda: allocation_obj.set_attach_state(
            self.context, x, 'src', old['address'], models.DETACHED))
        allocation_obj.release(self.context, x)
        self.assertEqual(old['address'], self.allocate(y)['address'])
        outcome = victim.finish()
        self.assertIsInstance(outcome, exception.AllocationNotFound)
        VF = models.VirtualFunction
        with self.engine.connect() as conn:
            self.assertIsNone(conn.execute(
                sa.select(VF.attach_state).where(VF.instance_uuid == y)
            ).scalar_one())

    def test_item3_late_complete_does_not_give_vfs_to_a_released_instance(
            self):
        x, m = inv.new_uuid(), inv.new_uuid()
        self.allocate(x)
        migration_obj.prepare(self.context, m, x, 'src', 'dst', 600)
        api_cases.lapse(self.engine, m)
        migration_obj.reap_expired(self.context)
        victim = self.held(lambda: migration_obj.complete(self.context, m))
        # The instance is deleted after complete's first read.
        allocation_obj.release(self.context, x)
        outcome = victim.finish()
        self.assertIsInstance(outcome, exception.LeaseExpired)
        self.assertEqual({}, self.owned())
        self.assertEqual('expired', api_cases.migration_row(
            self.engine, m).state)

    def test_item5_overlapping_prepares_of_one_uuid_get_one_answer(self):
        x, m = inv.new_uuid(), inv.new_uuid()
        self.allocate(x)
        victim = self.held(lambda: migration_obj.prepare(
            self.context, m, x, 'src', 'dst', 600))
        first = migration_obj.prepare(self.context, m, x, 'src', 'dst', 600)
        self.assertEqual(first, victim.finish())
        self.assertEqual(['claimed'], [
            s for (h, _a), (s, _i, _m) in api_cases.vf_table(
                self.engine).items() if h == 'dst' and s != 'available'])

    def test_item12_two_prepares_of_an_instance_without_vfs(self):
        z = inv.new_uuid()
        first, second = inv.new_uuid(), inv.new_uuid()
        victim = self.held(lambda: migration_obj.prepare(
            self.context, second, z, 'src', 'dst', 600))
        self.assertEqual([], migration_obj.prepare(
            self.context, first, z, 'src', 'dst', 600))
        outcome = victim.finish()
        self.assertIsInstance(outcome, exception.MigrationInProgress)
        self.assertIn(first, str(outcome))
        M = models.Migration
        with self.engine.connect() as conn:
            self.assertEqual([first], conn.execute(
                sa.select(M.uuid).where(M.instance_uuid == z,
                                        M.state == models.IN_PROGRESS)
            ).scalars().all())

    def test_item11_a_lost_swap_is_retried_not_surfaced(self):
        # Two allocations race for the lowest free VF on dst.  The held
        # one read the VF free, the other wins it: on MariaDB with
        # snapshot isolation the held one's swap raises 1020 (instead of
        # matching no row), which must be retried, not surfaced.
        errors = []
        sa.event.listen(self.engine, 'handle_error',
                        lambda ctx: errors.append(ctx.sqlalchemy_exception))
        x, y = inv.new_uuid(), inv.new_uuid()
        victim = self.held(lambda: self.allocate(y, host='dst'))
        won = self.allocate(x, host='dst')
        outcome = victim.finish()
        self.assertNotIsInstance(outcome, Exception)
        self.assertEqual({('dst', won['address']): x,
                          ('dst', outcome['address']): y}, self.owned())
        raised_1020 = [e for e in errors if '(1020,' in str(e)]
        self.assertEqual(self.snapshot_isolation, bool(raised_1020), errors)
        for error in raised_1020:
            # vfpool's own check knows 1020 however it arrives: as oslo.db
            # >= 17.4.0 translates it, as older ones wrap it, and raw.
            for form in (db_exc.DBConsistencyError(error),
                         db_exc.DBError(error), error):
                self.assertTrue(db_api._is_retriable(form), repr(form))

    # Issue 18

    def third(self) -> None:
        host_obj.report_inventory(self.context, 'third', [inv.pf(8, 4)])

    def test_issue18_item6_complete_settles_the_claims_of_a_retarget(self):
        # complete read the migration and its links to dst; a retarget to
        # third commits before complete's swap.  complete must settle
        # third's claims, not free the source and orphan them.
        self.third()
        x, m = inv.new_uuid(), inv.new_uuid()
        self.allocate(x)
        migration_obj.prepare(self.context, m, x, 'src', 'dst', 600)
        victim = self.held(lambda: migration_obj.complete(self.context, m))
        pairs = migration_obj.prepare(self.context, m, x, 'src', 'third',
                                      600)
        outcome = victim.finish()
        self.assertNotIsInstance(outcome, Exception)
        moved = pairs[0]['dest']['address']
        self.assertEqual([moved], [a['address'] for a in outcome])
        table = api_cases.vf_table(self.engine)
        self.assertEqual({('third', moved): ('allocated', x, None)}, {
            key: row for key, row in table.items()
            if row != ('available', None, None)})

    def test_issue18_item12_same_prepare_committed_between_two_reads(self):
        # The victim read no migration m; the same prepare commits before
        # its read of the sources, which it finds marked by m itself.  It
        # must replay, not refuse with its own uuid.
        x, m = inv.new_uuid(), inv.new_uuid()
        self.allocate(x)
        victim = self.held(
            lambda: migration_obj.prepare(self.context, m, x, 'src', 'dst',
                                          600),
            when=lambda statement: 'JOIN vfs' in statement)
        first = migration_obj.prepare(self.context, m, x, 'src', 'dst', 600)
        self.assertEqual(first, victim.finish())

    def test_issue18_fence_retarget_loses_to_a_concurrent_give_up(self):
        # The retarget to third read no fence; third gives up and commits
        # before the retarget's swap.  The retarget is refused, and the
        # migration stays on dst with its claim.
        self.third()
        x, m = inv.new_uuid(), inv.new_uuid()
        self.allocate(x)
        first = migration_obj.prepare(self.context, m, x, 'src', 'dst', 600)
        victim = self.held(lambda: migration_obj.prepare(
            self.context, m, x, 'src', 'third', 600))
        self.assertEqual(0, migration_obj.abort(self.context, m,
                                                dest_host='third'))
        outcome = victim.finish()
        self.assertIsInstance(outcome, exception.MigrationFenced)
        table = api_cases.vf_table(self.engine)
        self.assertEqual(('claimed', x, m),
                         table[('dst', first[0]['dest']['address'])])
        self.assertEqual(set(), {row for (h, _a), row in table.items()
                                 if h == 'third' and row[0] != 'available'})

    def test_issue18_item5_release_of_an_uncommitted_allocate(self):
        # The allocate has claimed and recorded its request id but not
        # committed when the instance is released: on PostgreSQL (READ
        # COMMITTED) the release saw none of it, and the VFs leaked.
        x, request_id = inv.new_uuid(), inv.new_uuid()
        victim = self.useFixture(HeldBeforeCommit(
            self.engine, lambda: allocation_obj.allocate(
                self.context, x, 'src', [inv.request()] * 2, request_id)))
        releaser = self.useFixture(InThread(lambda: allocation_obj.release(
            self.context, x, 'src', request_ids=[request_id])))
        for _ in range(_WAIT * 10):
            if not releaser.thread.is_alive() or _waiting_for_a_lock(
                    self.engine):
                break
            releaser.thread.join(0.1)
        allocs = victim.finish()
        freed = releaser.join()
        self.assertEqual(2, len(allocs), allocs)
        self.assertEqual(2, freed)
        self.assertEqual({}, self.owned())
        self.assertRaises(exception.RequestReleased, allocation_obj.allocate,
                          self.context, x, 'src', [inv.request()] * 2,
                          request_id)

    def test_issue18_item9_overlapping_reports_never_mix_rows_and_digest(
            self):
        # The agent's newer snapshot (the victim's) still has VF a and
        # renames VF b; an older one (the competitor's) had lost a.  The
        # victim read the host before the competitor committed.
        older = inv.pf(7, 2)
        a = older['vfs'].pop(0)
        newer = inv.pf(7, 2)
        newer['vfs'][1]['netdev'] = 'ens7v1'
        host_obj.report_inventory(self.context, 'h', [inv.pf(7, 2)])
        digest = utils.snapshot_digest([newer])
        victim = self.held(lambda: host_obj.report_inventory(
            self.context, 'h', [newer], digest))
        host_obj.report_inventory(self.context, 'h', [older],
                                  utils.snapshot_digest([older]))
        outcome = victim.finish()
        self.assertNotIsInstance(outcome, Exception)
        # The digest stored is the newer snapshot's: its rows with it.
        self.assertTrue(host_obj.report_unchanged(self.context, 'h', digest))
        self.assertEqual('available', api_cases.vf_table(
            self.engine)[('h', a['address'])][0])


def _snapshot_isolation(dbapi_connection, connection_record):
    with dbapi_connection.cursor() as cursor:
        cursor.execute('SET SESSION innodb_snapshot_isolation = ON')
