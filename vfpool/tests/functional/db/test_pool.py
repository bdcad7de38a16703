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

"""The pool's reset on return, on the real databases.

On MariaDB vfpool skips the ROLLBACK the pool sends when it takes a
connection back right after a COMMIT (``db_api._skip_idle_rollback``);
a connection returned inside a transaction must still be rolled back,
or the next user of that connection would read an old snapshot.
"""

import sqlalchemy as sa
import testscenarios

from vfpool import context as vfpool_context
from vfpool.db import api as db_api
from vfpool.db import migration
from vfpool.db import models
from vfpool.objects import host as host_obj
from vfpool.tests.functional import base
from vfpool.tests import inventory as inv

load_tests = testscenarios.load_tests_apply_scenarios

Host = models.Host


class TestPoolReset(testscenarios.WithScenarios, base.FunctionalTestCase):
    scenarios = [(b, {'backend': b}) for b in ('mysql', 'postgresql')]

    def setUp(self):
        super().setUp()
        self.database = self.useFixture(base.ScratchDatabase(self.backend))
        # One pooled connection: every checkout below is the same one.
        self.addCleanup(db_api.use_connection(
            self.database.url, max_pool_size=1, max_overflow=0))
        self.engine = db_api.get_engine()
        migration.upgrade(engine=self.engine)
        self.other = sa.create_engine(self.database.url)
        self.addCleanup(self.other.dispose)
        host_obj.report_inventory(vfpool_context.get_admin_context(), 'h1',
                                  [inv.pf(5, 1)])

    def rollbacks(self) -> int:
        """ROLLBACKs the server has run for the pooled connection."""
        with self.engine.connect() as conn:
            if self.backend == 'mysql':
                return int(conn.exec_driver_sql(
                    "SHOW SESSION STATUS LIKE 'Com_rollback'").one()[1])
            return int(conn.exec_driver_sql(
                'SELECT xact_rollback FROM pg_stat_database '
                'WHERE datname = current_database()').scalar())

    def test_no_rollback_after_a_commit(self):
        if self.backend != 'mysql':
            self.skipTest('psycopg2 sends none when idle by itself')
        ctxt = vfpool_context.get_admin_context()
        idle = self.rollbacks()
        idle = self.rollbacks() - idle        # what reading costs
        before = self.rollbacks()
        self.assertFalse(host_obj.report_unchanged(ctxt, 'h1', 'x' * 64))
        host_obj.set_disabled(ctxt, 'h1', True, 'test')
        self.assertEqual(before + idle, self.rollbacks())

    def test_a_transaction_left_open_is_still_rolled_back(self):
        conn = self.engine.connect()
        conn.exec_driver_sql('SELECT 1')     # autobegin: a transaction
        seen = conn.execute(sa.select(Host.disabled)).scalar_one()
        self.assertFalse(seen)
        with self.other.begin() as other:
            other.execute(sa.update(Host).values(disabled=True))
        # Back to the pool without COMMIT or ROLLBACK: the reset must
        # end the snapshot, or this connection's next user reads it.
        conn.close()
        with self.engine.connect() as again:
            self.assertTrue(again.execute(
                sa.select(Host.disabled)).scalar_one())
