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

"""Every way a vfpool program cannot run is one line a person can act on.

Each case runs the command in-process through its ``main`` and once as
the installed console script; the faults are at the edges: a config
file, a database URL (a closed port, a driver that is not installed),
an empty or an old schema, a closed broker port.
"""

import importlib.util
import socket
import subprocess

import fixtures
from oslo_db.sqlalchemy import enginefacade
import sqlalchemy as sa

from vfpool.cmd import agent
from vfpool.cmd import manage
from vfpool.cmd import status
from vfpool.db import api as db_api
from vfpool.db import migration
from vfpool.objects import admin
from vfpool.tests.functional import base
from vfpool.tests.functional import operator_base as ob
from vfpool.tests import inventory as inv

#: vfpool-manage's and vfpool-status's statuses (doc/source/admin/cli.rst).
MANAGE_BAD_CONFIG, MANAGE_CANNOT_RUN = 2, 4
STATUS_CANNOT_RUN = 255
SERVICE_CANNOT_START = 1

#: A dialect of each shared backend whose driver vfpool does not install.
_ABSENT_DRIVERS = {'mysql': ('mysql+mysqldb', 'MySQLdb'),
                   'postgresql': ('postgresql+pg8000', 'pg8000')}


def closed_port() -> int:
    """A local TCP port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class CliErrorTestCase(ob.OperatorTestCase):

    def assertOneLine(self, program: str, err: str, *fragments: str) -> str:
        """stderr is one line, ``program: ...``, holding ``fragments``."""
        lines = err.strip().splitlines()
        self.assertEqual(1, len(lines), err)
        self.assertTrue(lines[0].startswith(program + ': '), err)
        for fragment in fragments:
            self.assertIn(fragment, lines[0])
        return lines[0]

    def assertFails(self, main, code: int, args: tuple,
                    *fragments: str) -> str:
        rc, out, err = self.run_main(main, args)
        self.assertEqual(code, rc, 'stdout: %s\nstderr: %s' % (out, err))
        self.assertEqual('', out)
        program = main.__module__.rsplit('.', 1)[-1]
        return self.assertOneLine('vfpool-' + program, err, *fragments)

    def script(self, program: str, *args: str) -> subprocess.CompletedProcess:
        """The installed console script, in its own process."""
        return subprocess.run(
            [program, '--config-file', self.config_file] + list(args),
            capture_output=True, text=True, stdin=subprocess.DEVNULL,
            timeout=300)

    def assertScriptFails(self, code: int, program: str, args: tuple,
                          *fragments: str) -> str:
        done = self.script(program, *args)
        self.assertEqual(code, done.returncode, done.stderr)
        self.assertEqual('', done.stdout)
        return self.assertOneLine(program, done.stderr, *fragments)

    def connect_from_config(self, url: str) -> None:
        """Let the commands open ``url`` from ``[database]`` themselves.

        The base class points the facade at the scratch database before
        any command runs; here a fresh facade is patched in, which the
        command configures from the config file as it does in production.
        """
        self.configure('database', connection=url)
        reset = db_api.context_manager.patch_factory(
            enginefacade._TransactionFactory())
        self.useFixture(fixtures.MonkeyPatch('vfpool.db.api._configured',
                                             False))

        def restore():
            if db_api.context_manager.is_started:
                db_api.get_engine().dispose()
            reset()
        self.addCleanup(restore)


class TestBadConfigValue(CliErrorTestCase):
    scenarios = base.backend_scenarios(('sqlite',))

    def setUp(self):
        super().setUp()
        # Read by no command below: it is caught when the file is parsed.
        self.configure('agent', report_interval='often')

    def test_manage(self):
        line = self.assertFails(manage.main, MANAGE_BAD_CONFIG,
                                ('host', 'list'),
                                '[agent] report_interval', self.config_file,
                                "'often'")
        self.assertNotIn('LocationInfo', line)

    def test_debug_adds_the_traceback(self):
        self.useFixture(fixtures.EnvironmentVariable('VFPOOL_DEBUG', '1'))
        rc, _out, err = self.run_main(manage.main, ['host', 'list'])
        self.assertEqual(MANAGE_BAD_CONFIG, rc)
        self.assertIn('Traceback', err)
        self.assertIn('[agent] report_interval', err.strip().splitlines()[-1])

    def test_status(self):
        self.assertFails(status.main, STATUS_CANNOT_RUN,
                         ('upgrade', 'check'), '[agent] report_interval')

    def test_agent(self):
        self.assertFails(agent.main, SERVICE_CANNOT_START, (),
                         '[agent] report_interval', self.config_file)

    def test_console_scripts(self):
        self.assertScriptFails(MANAGE_BAD_CONFIG, 'vfpool-manage',
                               ('host', 'list'), '[agent] report_interval')
        self.assertScriptFails(SERVICE_CANNOT_START, 'vfpool-server', (),
                               '[agent] report_interval')


class TestSchemaNotSynced(CliErrorTestCase):
    sync = False

    def test_empty(self):
        self.assertFails(manage.main, MANAGE_CANNOT_RUN, ('vf', 'list'),
                         'revision none', str(migration.head()),
                         'run vfpool-manage db sync')

    def test_behind_head(self):
        migration.upgrade('b1a0c0de0001', engine=db_api.get_engine())
        self.assertFails(manage.main, MANAGE_CANNOT_RUN, ('host', 'list'),
                         'at revision b1a0c0de0001', str(migration.head()))

    def test_newer_release_is_served(self):
        # A revision this code does not know is a later release's, whose
        # migrations only add: the rolling upgrade runs old code on it.
        migration.upgrade(engine=db_api.get_engine())
        with db_api.get_engine().begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version "
                                 "SET version_num = 'f0f0f0f0ffff'"))
        rc, out, err = self.run_main(manage.main, ['host', 'list'])
        self.assertEqual((0, ''), (rc, err))

    def test_db_commands_still_run(self):
        rc, _out, err = self.run_main(manage.main, ['db', 'sync'])
        self.assertEqual((0, ''), (rc, err))

    def test_console_scripts(self):
        self.assertScriptFails(MANAGE_CANNOT_RUN, 'vfpool-manage',
                               ('host', 'list'), 'run vfpool-manage db sync')
        done = self.script('vfpool-server')
        self.assertEqual(SERVICE_CANNOT_START, done.returncode, done.stderr)
        # The service logs as configured; its last line is the reason.
        self.assertIn('run vfpool-manage db sync',
                      done.stderr.strip().splitlines()[-1])
        self.assertNotIn('Traceback', done.stderr)


class TestDatabaseUnreachable(CliErrorTestCase):
    scenarios = base.backend_scenarios(base.SHARED_BACKENDS)

    def setUp(self):
        super().setUp()
        self.password = 'not-to-be-shown'
        url = sa.engine.make_url(self.database.url).set(
            port=closed_port(), password=self.password)
        self.connect_from_config(url.render_as_string(hide_password=False))

    def test_manage(self):
        line = self.assertFails(manage.main, MANAGE_CANNOT_RUN,
                                ('host', 'list'),
                                'cannot connect to the database',
                                'refused', '***')
        self.assertNotIn(self.password, line)

    def test_status(self):
        self.assertFails(status.main, STATUS_CANNOT_RUN,
                         ('upgrade', 'check'),
                         'cannot connect to the database')

    def test_console_script(self):
        self.assertScriptFails(STATUS_CANNOT_RUN, 'vfpool-status',
                               ('upgrade', 'check'),
                               'cannot connect to the database')


class TestDriverMissing(CliErrorTestCase):
    scenarios = base.backend_scenarios(base.SHARED_BACKENDS)

    def setUp(self):
        super().setUp()
        dialect, module = _ABSENT_DRIVERS[self.backend]
        if importlib.util.find_spec(module) is not None:
            self.skipTest('%s is installed' % module)
        self.dialect = dialect
        # The scratch database, which another driver would reach.
        self.connect_from_config(sa.engine.make_url(self.database.url).set(
            drivername=dialect).render_as_string(hide_password=False))

    def test_manage(self):
        self.assertFails(manage.main, MANAGE_CANNOT_RUN, ('host', 'list'),
                         'the database driver for %s' % self.dialect,
                         'is not installed')

    def test_status(self):
        self.assertFails(status.main, STATUS_CANNOT_RUN,
                         ('upgrade', 'check'), 'is not installed')

    def test_console_script(self):
        self.assertScriptFails(MANAGE_CANNOT_RUN, 'vfpool-manage',
                               ('db', 'sync'), 'is not installed')


class TestBrokerUnreachable(CliErrorTestCase):
    scenarios = base.backend_scenarios(('sqlite',))

    def setUp(self):
        super().setUp()
        self.configure('DEFAULT', transport_url='rabbit://guest:guest@'
                       '127.0.0.1:%d/' % closed_port())
        self.configure('notifications', enabled='true')
        self.configure('oslo_messaging_notifications', driver='messagingv2')
        self.report('host-a', inv.pf(0x05, 2))
        self.allocate(ob.INSTANCE, 'host-a')

    def test_change_stands_and_the_lost_notification_is_one_line(self):
        rc, out, err = self.run_main(manage.main, [
            'instance', 'release', ob.INSTANCE, '--yes'])
        self.assertEqual(0, rc, err)
        self.assertEqual([], admin.list_vfs(self.context,
                                            instance_uuid=ob.INSTANCE))
        # The plan, then the warning.
        warning = err.strip().splitlines()[-1]
        self.assertIn('the change is made, but the notification '
                      'vfpool.allocation.release was not sent', warning)
        self.assertNotIn('Traceback', err)
