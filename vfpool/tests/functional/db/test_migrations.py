"""The alembic migrations against the models, on every backend."""

from oslo_db.sqlalchemy import test_migrations
import sqlalchemy as sa
import testscenarios

from vfpool.db import migration
from vfpool.db import models
from vfpool.tests.functional import base

# Each scenario is its own test id, so that stestr can place each one
# on a worker of its own (see tools/functional-workers.yaml).
load_tests = testscenarios.load_tests_apply_scenarios

BACKENDS = [(b, {'backend': b}) for b in ('sqlite', 'mysql', 'postgresql')]


class TestModelsMigrationsSync(testscenarios.WithScenarios,
                               test_migrations.ModelsMigrationsSync,
                               base.FunctionalTestCase):
    """alembic's head and the SQLAlchemy models describe one schema."""

    scenarios = BACKENDS

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
    scenarios = BACKENDS

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
