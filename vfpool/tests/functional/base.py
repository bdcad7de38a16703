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

"""What functional tests share: real databases, RabbitMQ and servers.

Each test gets its own scratch database (created through the
``openstack_citest`` account, see tools/test-setup.sh) and its own
oslo.messaging ``control_exchange`` and RPC topic, so parallel workers
never share state or messages.  A backend that cannot be reached fails
the test: CI must never pass by skipping.
"""

import os
import signal
import subprocess
import sys
import time
import uuid

import fixtures
from oslotest import base
import sqlalchemy as sa

from vfpool.tests import fixtures as vfpool_fixtures

ADMIN_URLS = {
    'sqlite': None,
    'mysql': os.environ.get(
        'VFPOOL_TEST_MYSQL_URL',
        'mysql+pymysql://openstack_citest:openstack_citest@127.0.0.1/'
        'openstack_citest'),
    'postgresql': os.environ.get(
        'VFPOOL_TEST_POSTGRESQL_URL',
        'postgresql+psycopg2://openstack_citest:openstack_citest@127.0.0.1/'
        'openstack_citest'),
}
#: The databases vfpool runs on; MariaDB and PostgreSQL take several
#: servers on one database, SQLite only one.
BACKENDS = tuple(ADMIN_URLS)
SHARED_BACKENDS = ('mysql', 'postgresql')


def backend_scenarios(backends: tuple = BACKENDS) -> list:
    """testscenarios' ``scenarios``: one per backend, ``backend`` set."""
    return [(name, {'backend': name}) for name in backends]


TRANSPORT_URL = os.environ.get('VFPOOL_TEST_TRANSPORT_URL',
                               'rabbit://guest:guest@127.0.0.1:5672/')


class ScratchDatabase(fixtures.Fixture):
    """A new, empty database on one backend, dropped afterwards."""

    def __init__(self, backend: str):
        super().__init__()
        self.backend = backend

    def _setUp(self):
        name = 'vfpool_%s' % uuid.uuid4().hex[:16]
        if self.backend == 'sqlite':
            tmp = self.useFixture(fixtures.TempDir()).path
            self.url = 'sqlite:///' + os.path.join(tmp, name + '.sqlite')
            return
        admin = sa.create_engine(ADMIN_URLS[self.backend],
                                 isolation_level='AUTOCOMMIT')
        self.addCleanup(admin.dispose)
        with admin.connect() as conn:
            conn.exec_driver_sql('CREATE DATABASE %s' % name)
        url = sa.engine.make_url(ADMIN_URLS[self.backend]).set(
            database=name)
        if self.backend == 'mysql':
            # Keeps any query the admin URL has, e.g. an init_command
            # that sets a session variable for every connection.
            url = url.update_query_dict({'charset': 'utf8mb4'})
        self.url = url.render_as_string(hide_password=False)

        def drop():
            with admin.connect() as conn:
                if self.backend == 'postgresql':
                    conn.exec_driver_sql(
                        'SELECT pg_terminate_backend(pid) FROM '
                        'pg_stat_activity WHERE datname = %s '
                        'AND pid <> pg_backend_pid()', (name,))
                conn.exec_driver_sql('DROP DATABASE %s' % name)
        self.addCleanup(drop)


def delete_queues(names: list[str], url: str = TRANSPORT_URL) -> None:
    """Delete RabbitMQ queues, missing ones too.

    The queues of an RPC topic outlive the servers that declared them
    (only reply and fanout queues expire): without this every test
    would leave its own behind on the virtual host.
    """
    import kombu
    with kombu.Connection(url.replace('rabbit://', 'amqp://', 1)) as conn:
        channel = conn.channel()
        for name in names:
            channel.queue_delete(name)


def write_config(path: str, sections: dict) -> str:
    with open(path, 'w') as f:
        for section, values in sections.items():
            f.write('[%s]\n' % section)
            for key, value in values.items():
                for item in (value if isinstance(value, list) else [value]):
                    f.write('%s = %s\n' % (key, item))
            f.write('\n')
    return path


class ServerProcess(fixtures.Fixture):
    """A real ``vfpool-server`` process.

    It runs in its own session, so that its master and worker processes
    can be killed together.
    """

    def __init__(self, config_file: str, name: str,
                 wrapper: list[str] | None = None):
        """``wrapper``: a command the server runs under, e.g. faketime."""
        super().__init__()
        self.config_file = config_file
        self.name = name
        self.wrapper = list(wrapper or [])
        self.process = None

    def _setUp(self):
        self.log_path = os.path.join(os.path.dirname(self.config_file),
                                     '%s.log' % self.name)
        self.start()
        self.addCleanup(self.stop)

    def start(self):
        self.log = open(self.log_path, 'ab')
        own = write_config(os.path.join(os.path.dirname(self.config_file),
                                        '%s.conf' % self.name),
                           {'DEFAULT': {'host': self.name}})
        self.process = subprocess.Popen(
            self.wrapper + [
                sys.executable, '-c',
                'import sys; from vfpool.cmd import server; '
                'sys.exit(server.main())',
                '--config-file', self.config_file, '--config-file', own],
            stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def kill(self, sig=signal.SIGKILL, timeout: float = 30):
        """Signal the server's whole process group and reap it."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None
        self.log.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self):
        """Graceful stop, as an init system would do it."""
        self.kill(signal.SIGTERM, timeout=15)
        # stderr is captured per test and shown only when it fails.
        with open(self.log_path, errors='replace') as log:
            problems = [line for line in log
                        if ' ERROR ' in line or ' WARNING ' in line]
        if problems:
            sys.stderr.write('--- %s log (errors and warnings) ---\n%s'
                             % (self.name, ''.join(problems[-200:])))


class ServiceStack(fixtures.Fixture):
    """N vfpool-server processes on one scratch DB and a private exchange.

    ``conf`` is a client-side ConfigOpts pointing at the same exchange;
    ``client`` a VfpoolAPI on the real RabbitMQ.
    """

    def __init__(self, backend: str = 'sqlite', servers: int = 1,
                 wrappers: dict[int, list[str]] | None = None, **options):
        """``wrappers``: server index -> the command it runs under."""
        super().__init__()
        self.backend = backend
        self.servers = servers
        self.wrappers = wrappers or {}
        self.options = options

    def _setUp(self):
        from vfpool.db import api as db_api
        from vfpool.db import migration
        from vfpool import rpcapi

        self.workdir = self.useFixture(fixtures.TempDir()).path
        self.database = self.useFixture(ScratchDatabase(self.backend))
        # RabbitMQ queues are named after the topic, whatever the
        # exchange: both must be private to the test or servers of other
        # tests consume its calls.
        self.exchange = 'vfpool-test-%s' % uuid.uuid4().hex
        self.topic = self.exchange
        sections = {
            'DEFAULT': {'transport_url': TRANSPORT_URL,
                        'control_exchange': self.exchange,
                        'rpc_topic': self.topic,
                        'state_path': self.workdir,
                        'debug': 'false',
                        # One worker per server unless a test asks for
                        # more: the default (one per CPU) would double
                        # every test's processes on a 2-core machine.
                        'workers': 1},
            'database': {'connection': self.database.url},
            'pool': {'reaper_interval': 1},
        }
        for key, value in self.options.items():
            group, _, name = key.rpartition('.')
            sections.setdefault(group or 'DEFAULT', {})[name] = value
        self.config_file = write_config(
            os.path.join(self.workdir, 'vfpool.conf'), sections)
        # Runs once the servers below have stopped.
        topic = sections['DEFAULT']['rpc_topic']
        self.queues = [topic] + ['%s.server-%d' % (topic, i)
                                 for i in range(self.servers)]
        self.addCleanup(delete_queues, self.queues)

        # The test process talks to the same DB to seed and inspect it.
        self.addCleanup(db_api.use_connection(self.database.url))
        self.engine = db_api.get_engine()
        migration.upgrade(engine=self.engine)

        self.conf = self.useFixture(vfpool_fixtures.Conf()).conf
        self.conf(['--config-file', self.config_file], project='vfpool')
        self.client = rpcapi.VfpoolAPI(self.conf, timeout=60)
        self.addCleanup(self.client.transport.cleanup)
        self.procs = [self.useFixture(ServerProcess(
            self.config_file, 'server-%d' % i, self.wrappers.get(i)))
            for i in range(self.servers)]
        self.wait_ready()

    def wait_ready(self, timeout: float = 60):
        """Until every server answers on the topic (ping is a 1.1 call)."""
        import oslo_messaging as messaging
        from vfpool import rpc
        deadline = time.time() + timeout
        for proc in self.procs:
            target = rpc.get_target(self.conf, server=proc.name)
            client = messaging.get_rpc_client(
                self.client.transport, target, timeout=2)
            while True:
                try:
                    client.call({}, 'ping')
                    break
                except messaging.MessagingTimeout:
                    if time.time() > deadline or not proc.alive():
                        raise AssertionError(
                            'server %s did not answer; log: %s' % (
                                proc.name, open(proc.log_path).read()[-3000:]))


class FunctionalTestCase(base.BaseTestCase):
    """oslotest's base: a timeout, and output captured.

    The server logs a test prints are so shown only when it fails.
    """
