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

"""vfpool-servers on the test's own databases and brokers."""

import contextlib
import os
import signal
import uuid

import fixtures

from vfpool.db import api as db_api
from vfpool.db import migration
from vfpool import rpc
from vfpool import rpcapi
from vfpool.tests import fixtures as vfpool_fixtures
from vfpool.tests.functional import base
from vfpool.tests.functional.cluster import backends

#: What the admin guide tells operators to set for a Galera cluster.
GALERA_OPTIONS = {'database.mysql_wsrep_sync_wait': 1}
#: ... and for a RabbitMQ cluster.
RABBIT_CLUSTER_OPTIONS = {
    'oslo_messaging_rabbit.rabbit_quorum_queue': 'true',
    'oslo_messaging_rabbit.heartbeat_timeout_threshold': 10,
}


class ClusterStack(base.ServiceStack):
    """``servers`` vfpool-servers; server ``i`` uses ``database_urls[i]``.

    With one URL per Galera node, every server writes through a node of
    its own (multi-writer).  All share a private exchange and topic on
    ``transport_url``.  ``conf``, ``client``, ``engine`` and ``procs`` are
    those of :class:`base.ServiceStack`; ``clients`` are more callers,
    each on a transport of its own.
    """

    def __init__(self, database_urls: list[str], transport_url: str,
                 servers: int = 2, engine_options: dict | None = None,
                 transports: int = 4, client_timeout: int = 10,
                 **options):
        super().__init__(servers=servers, **options)
        self.database_urls = database_urls
        self.transport_url = transport_url
        self.engine_options = engine_options or {}
        self.transports = transports
        self.client_timeout = client_timeout

    def _setUp(self):
        self.workdir = self.useFixture(fixtures.TempDir()).path
        self.exchange = 'vfpool-test-%s' % uuid.uuid4().hex
        self.topic = self.exchange
        self.config_files = [
            self._write_config(i, self.database_urls[
                i % len(self.database_urls)])
            for i in range(self.servers)]
        self.config_file = self.config_files[0]

        self.addCleanup(db_api.use_connection(self.database_urls[0],
                                              **self.engine_options))
        self.engine = db_api.get_engine()
        migration.upgrade(engine=self.engine)

        self.conf = self.useFixture(vfpool_fixtures.Conf()).conf
        self.conf(['--config-file', self.config_file], project='vfpool')
        self.client = rpcapi.VfpoolAPI(self.conf, timeout=60)
        self.clients = [
            rpcapi.VfpoolAPI(self.conf, transport=rpc.get_transport(
                self.conf), timeout=self.client_timeout)
            for _ in range(self.transports)]
        # A transport takes seconds to clean up; all of them at once.
        self.addCleanup(backends.in_parallel, [
            c.transport.cleanup for c in [self.client] + self.clients])
        self.procs = [self.useFixture(base.ServerProcess(
            path, 'server-%d' % i))
            for i, path in enumerate(self.config_files)]
        # Registered last, so run first: the servers stop in parallel
        # rather than one after the other.
        self.addCleanup(self._terminate_all)
        self.wait_ready()

    def _terminate_all(self) -> None:
        for proc in self.procs:
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.process.pid, signal.SIGTERM)

    def _write_config(self, i: int, database_url: str) -> str:
        sections = {
            'DEFAULT': {'transport_url': self.transport_url,
                        'control_exchange': self.exchange,
                        'rpc_topic': self.topic,
                        'state_path': self.workdir,
                        'debug': 'false',
                        # One worker per server, as ServiceStack's: the
                        # fault figures are per server process.
                        'workers': 1},
            'database': {'connection': database_url},
            'pool': {'reaper_interval': 1},
        }
        for key, value in self.options.items():
            group, _, name = key.rpartition('.')
            sections.setdefault(group or 'DEFAULT', {})[name] = value
        return base.write_config(
            os.path.join(self.workdir, 'vfpool-%d.conf' % i), sections)

    def server_queue(self, i: int) -> str:
        """The queue only server ``i`` consumes (topic.server)."""
        return '%s.%s' % (self.topic, self.procs[i].name)
