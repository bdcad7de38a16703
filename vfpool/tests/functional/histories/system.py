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

"""The system under test: real vfpool-servers on a real database.

Two servers on MariaDB or PostgreSQL, one on SQLite, on a scratch
database of the system services and a private exchange and topic of the
real RabbitMQ (``vfpool.tests.functional.base``); or, for histories that
restart the database, on a MariaDB or PostgreSQL server of their own
(``cluster.backends``), never the system's.  Histories of one run share
the servers; the tables are emptied between them.
"""

import os
import signal
import time

import fixtures
import sqlalchemy as sa

from vfpool import rpc
from vfpool import rpcapi
from vfpool.tests.functional import base
from vfpool.tests.functional.cluster import backends
from vfpool.tests.functional.cluster import stack as cluster_stack
from vfpool.tests.functional.histories import generator
from vfpool.tests import inventory as inv

#: Seconds: the clients' lease, the servers' default lease, the reaper's
#: interval.  Short, so that a history quiesces within seconds.
LEASE = 6
REAPER_INTERVAL = 1
#: What a client waits for an answer, as the plugin's rpc_response_timeout.
RPC_TIMEOUT = 15


class System(fixtures.Fixture):
    """``servers`` vfpool-servers on ``backend``; ``private`` DB or not."""

    def __init__(self, backend: str, private_db: bool = False):
        super().__init__()
        self.backend = backend
        self.private_db = private_db and backend != 'sqlite'
        self.servers = 1 if backend == 'sqlite' else 2
        self.kills = 0
        self.db_restarts = 0

    @property
    def can_restart_db(self) -> bool:
        return self.private_db

    def _setUp(self):
        options = {'pool.reaper_interval': REAPER_INTERVAL,
                   'pool.lease_seconds': LEASE}
        if self.private_db:
            kind = (backends.MariaDB if self.backend == 'mysql'
                    else backends.PostgreSQL)
            self.database = self.useFixture(kind())
            # ClusterStack leaves its queues to the broker it was given;
            # this one is the system's: they go after the servers stop.
            self.addCleanup(self._delete_queues)
            self.stack = self.useFixture(cluster_stack.ClusterStack(
                [self.database.url], base.TRANSPORT_URL,
                servers=self.servers, transports=1,
                client_timeout=RPC_TIMEOUT, **options))
        else:
            self.stack = self.useFixture(base.ServiceStack(
                self.backend, servers=self.servers, **options))
        self.engine = self.stack.engine
        self.transport = rpc.get_transport(self.stack.conf)
        self.addCleanup(self.transport.cleanup)
        self.clean_api = self.api()

    def _delete_queues(self) -> None:
        stack = getattr(self, 'stack', None)
        if stack is not None:
            base.delete_queues([stack.topic] + [
                '%s.server-%d' % (stack.topic, i)
                for i in range(self.servers)])

    def api(self) -> rpcapi.VfpoolAPI:
        return rpcapi.VfpoolAPI(self.stack.conf, transport=self.transport,
                                timeout=RPC_TIMEOUT)

    # -- between histories ----------------------------------------------

    def reset(self) -> None:
        """Empty every table but the schema's version, then report."""
        meta = sa.MetaData()
        meta.reflect(self.engine)
        with self.engine.begin() as conn:
            for table in reversed(meta.sorted_tables):
                if table.name != 'alembic_version':
                    conn.execute(table.delete())
        for host in generator.HOSTS:
            self.clean_api.report_inventory(
                None, host, [inv.pf(5, generator.VFS_PER_HOST)])

    # -- faults -----------------------------------------------------------

    def kill_server(self) -> None:
        """SIGKILL one server (in turn) and start it again."""
        proc = self.stack.procs[self.kills % len(self.stack.procs)]
        self.kills += 1
        proc.kill(signal.SIGKILL)
        proc.start()
        self.stack.wait_ready(timeout=120)

    def restart_db(self) -> None:
        self.database.restart()
        self.db_restarts += 1

    def wait_not_in_progress(self, migration_uuid: str, lease: int) -> None:
        """Until the reaper ended the lapsed claim (bounded)."""
        deadline = time.monotonic() + lease + REAPER_INTERVAL + 20
        while time.monotonic() < deadline:
            if self.in_flight().get(migration_uuid) != 'in_progress':
                return
            time.sleep(0.5)

    def in_flight(self) -> dict:
        with self.engine.connect() as conn:
            return dict(conn.execute(sa.text(
                "SELECT uuid, state FROM migrations WHERE state IN "
                "('in_progress', 'moving')")).all())

    def quiesce(self, lease: int) -> float:
        """Until no claim is in progress, at most a lease and a pass more."""
        began = time.monotonic()
        deadline = began + lease + REAPER_INTERVAL + 20
        while time.monotonic() < deadline:
            if 'in_progress' not in self.in_flight().values():
                break
            time.sleep(0.5)
        return time.monotonic() - began

    def tables(self) -> dict:
        with self.engine.connect() as conn:
            vfs = conn.execute(sa.text(
                'SELECT h.name, v.address, v.state, v.instance_uuid, '
                'v.migration_uuid FROM vfs v JOIN hosts h '
                'ON h.id = v.host_id')).all()
            migrations = conn.execute(sa.text(
                'SELECT uuid, instance_uuid, state FROM migrations')).all()
        return {'vfs': [tuple(r) for r in vfs],
                'migrations': [tuple(r) for r in migrations]}


def server_log_tail(system: System, lines: int = 20) -> str:
    out = []
    for proc in system.stack.procs:
        path = getattr(proc, 'log_path', None)
        if path and os.path.exists(path):
            with open(path, errors='replace') as f:
                out.append(''.join(f.readlines()[-lines:]))
    return '\n'.join(out)
