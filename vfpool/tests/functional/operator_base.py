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

"""What the vfpool-manage and vfpool-status tests share.

Each test gets its own scratch database on one backend (the scenarios),
brought to head by the real migrations and seeded through the real
objects layer, and a config file pointing at it, so the commands under
test run exactly as an operator would run them.
"""

import datetime
import io
import os

import fixtures
from oslo_utils import timeutils
import sqlalchemy as sa
import testscenarios

from vfpool import context as vfpool_context
from vfpool.db import api as db_api
from vfpool.db import migration
from vfpool.db import models
from vfpool.objects import allocation as allocation_obj
from vfpool.objects import host as host_obj
from vfpool.objects import migration as migration_obj
from vfpool.tests.functional import base


INSTANCE = '6f1c3a52-9d2e-4b7a-8c41-2f0e5d6a7b81'
INSTANCE_2 = '0a9b8c7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d'
MIGRATION = 'c2d4e6f8-1a3b-4c5d-8e7f-9a0b1c2d3e4f'
STRANGER = 'deadbeef-0000-4000-8000-00000000beef'


class TtyInput(io.StringIO):
    """Stands for an operator typing ``text`` at a terminal."""

    def isatty(self):
        return True


class OperatorTestCase(testscenarios.WithScenarios,
                       base.FunctionalTestCase):
    scenarios = base.backend_scenarios()
    sync = True

    def setUp(self):
        super().setUp()
        self.database = self.useFixture(base.ScratchDatabase(self.backend))
        self.addCleanup(db_api.use_connection(self.database.url))
        if self.sync:
            migration.upgrade(engine=db_api.get_engine())
        self.workdir = self.useFixture(fixtures.TempDir()).path
        self.config_file = os.path.join(self.workdir, 'vfpool.conf')
        self.sections = {'DEFAULT': {'state_path': self.workdir},
                         'database': {'connection': self.database.url}}
        base.write_config(self.config_file, self.sections)
        self.context = vfpool_context.get_admin_context()
        self.addCleanup(timeutils.clear_time_override)

    def configure(self, group: str, **values) -> None:
        """Add options to the config file the commands read."""
        self.sections.setdefault(group, {}).update(values)
        base.write_config(self.config_file, self.sections)

    def run_main(self, main, args, stdin=None) -> tuple[int, str, str]:
        """Run a console script's ``main`` in-process: (code, out, err)."""
        out, err = io.StringIO(), io.StringIO()
        with fixtures.MonkeyPatch('sys.stdout', out), \
                fixtures.MonkeyPatch('sys.stderr', err), \
                fixtures.MonkeyPatch('sys.stdin', stdin or io.StringIO()):
            code = main(['--config-file', self.config_file] + list(args))
        return code, out.getvalue(), err.getvalue()

    # Seeding, through the objects layer as the server does it.

    def report(self, host: str, *pfs: dict, ago: float = 0) -> dict:
        """Report a snapshot, ``ago`` seconds in the past."""
        if ago:
            timeutils.set_time_override(
                timeutils.utcnow() - datetime.timedelta(seconds=ago))
        try:
            return host_obj.report_inventory(self.context, host, list(pfs))
        finally:
            timeutils.clear_time_override()

    def allocate(self, instance: str, host: str, count: int = 1,
                 physical_network: str = 'physnet1',
                 request_id: str | None = None) -> list[dict]:
        requests = [{'physical_network': physical_network,
                     'mac': 'fa:16:3e:00:00:%02x' % i, 'vlan': 100 + i}
                    for i in range(count)]
        return allocation_obj.allocate(self.context, instance, host,
                                       requests,
                                       request_id or 'req-%s' % instance)

    def prepare(self, migration_uuid: str, instance: str, source: str,
                dest: str, lease_seconds: int = 600,
                ago: float = 0) -> list[dict]:
        """Prepare a migration, as if ``ago`` seconds in the past.

        Leases run on the database's clock, so the lease is moved back
        in the database itself.
        """
        if ago:
            timeutils.set_time_override(
                timeutils.utcnow() - datetime.timedelta(seconds=ago))
        try:
            pairs = migration_obj.prepare(self.context, migration_uuid,
                                          instance, source, dest,
                                          lease_seconds)
        finally:
            timeutils.clear_time_override()
        if ago:
            Migration = models.Migration
            with db_api.get_engine().begin() as conn:
                lease = conn.execute(sa.select(Migration.lease_expires_at)
                                     .where(Migration.uuid == migration_uuid)
                                     ).scalar_one()
                conn.execute(sa.update(Migration)
                             .where(Migration.uuid == migration_uuid)
                             .values(lease_expires_at=lease - datetime
                                     .timedelta(seconds=ago)))
        return pairs
