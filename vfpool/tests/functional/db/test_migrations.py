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

"""The alembic migrations against the models, on every backend."""

import datetime

from oslo_db.sqlalchemy import test_migrations
import sqlalchemy as sa
import testscenarios

from vfpool.db import migration
from vfpool.db import models
from vfpool.tests.functional import base

# Each scenario is its own test id, so that stestr can place each one
# on a worker of its own (see tools/functional-workers.yaml).
load_tests = testscenarios.load_tests_apply_scenarios


class TestModelsMigrationsSync(testscenarios.WithScenarios,
                               test_migrations.ModelsMigrationsSync,
                               base.FunctionalTestCase):
    """alembic's head and the SQLAlchemy models describe one schema."""

    scenarios = base.backend_scenarios()

    def setUp(self):
        super().setUp()
        url = self.useFixture(base.ScratchDatabase(self.backend)).url
        self.engine = sa.create_engine(url)
        self.addCleanup(self.engine.dispose)

    def get_engine(self):
        return self.engine

    def get_metadata(self):
        return models.Base.metadata

    def db_sync(self, engine):
        migration.upgrade(engine=engine)

    def include_object(self, object_, name, type_, reflected, compare_to):
        # alembic's own bookkeeping table is not a model.
        return not (type_ == 'table' and name == 'alembic_version')


class TestUpgrade(testscenarios.WithScenarios, base.FunctionalTestCase):
    scenarios = base.backend_scenarios()

    def test_upgrade_from_empty_to_head(self):
        url = self.useFixture(base.ScratchDatabase(self.backend)).url
        engine = sa.create_engine(url)
        self.addCleanup(engine.dispose)
        self.assertIsNone(migration.version(engine))
        migration.upgrade(engine=engine)
        self.assertEqual(migration.head(), migration.version(engine))
        tables = set(sa.inspect(engine).get_table_names())
        self.assertEqual(set(), {t.name for t in
                                 models.Base.metadata.sorted_tables} - tables)
        # A second sync is a no-op.
        migration.upgrade(engine=engine)
        self.assertEqual(migration.head(), migration.version(engine))
        if self.backend == 'mysql':
            with engine.connect() as conn:
                engines = conn.exec_driver_sql(
                    "SELECT DISTINCT engine FROM information_schema.tables "
                    "WHERE table_schema = DATABASE()").scalars().all()
            self.assertEqual(['InnoDB'], engines)

    def test_in_flight_migrations_keep_one_per_instance(self):
        # c2b1d0e70002 marks the migrations in progress as in flight; of
        # two in progress for one instance (the race it closes could make
        # them), only the newest is, so that the unique index can exist.
        url = self.useFixture(base.ScratchDatabase(self.backend)).url
        engine = sa.create_engine(url)
        self.addCleanup(engine.dispose)
        migration.upgrade('b1a0c0de0001', engine=engine)
        now = datetime.datetime(2026, 1, 1)
        meta = sa.MetaData()
        hosts = sa.Table('hosts', meta, autoload_with=engine)
        migrations = sa.Table('migrations', meta, autoload_with=engine)
        with engine.begin() as conn:
            conn.execute(hosts.insert(), [
                dict(id=1, name='a', disabled=False, created_at=now),
                dict(id=2, name='b', disabled=False, created_at=now)])
            conn.execute(migrations.insert(), [
                dict(id=i + 1, uuid='m%d' % i, instance_uuid=instance,
                     source_host_id=1, dest_host_id=2, state=state,
                     lease_expires_at=now, created_at=now)
                for i, (instance, state) in enumerate([
                    ('i1', 'in_progress'), ('i1', 'in_progress'),
                    ('i2', 'completed'), ('i3', 'in_progress')])])
        migration.upgrade(engine=engine)
        with engine.connect() as conn:
            marked = dict(conn.execute(sa.text(
                'SELECT uuid, in_flight_instance_uuid FROM migrations'))
                .all())
        self.assertEqual({'m0': None, 'm1': 'i1', 'm2': None, 'm3': 'i3'},
                         marked)
