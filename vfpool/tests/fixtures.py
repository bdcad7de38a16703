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

"""Fixtures shared by unit and functional tests."""

import os
import uuid

import fixtures
from oslo_config import cfg
from oslo_log import log as logging

from vfpool import conf as vfpool_conf
from vfpool.db import api as db_api
from vfpool.db import migration
from vfpool import rpc
from vfpool import rpcapi
from vfpool.server import manager


class Conf(fixtures.Fixture):
    """A fresh ``ConfigOpts`` with vfpool's and oslo.messaging's options."""

    def __init__(self, **overrides):
        super().__init__()
        self.overrides = overrides

    def _setUp(self):
        self.conf = vfpool_conf.new_conf()
        logging.register_options(self.conf)
        rpc.register_opts(self.conf)
        self.conf([], project='vfpool', default_config_files=[])
        tmp = self.useFixture(fixtures.TempDir()).path
        self.conf.set_override('state_path', tmp)
        self.conf.set_override('host', 'vfpool-test-server')
        for key, value in self.overrides.items():
            group, _, name = key.rpartition('.')
            self.conf.set_override(name, value, group=group or None)
        self.addCleanup(self.conf.reset)


class Database(fixtures.Fixture):
    """The facade on ``url`` (a new SQLite file by default), at head.

    The schema comes from the real migrations, not from the models.
    """

    def __init__(self, url: str | None = None):
        super().__init__()
        self.url = url

    def _setUp(self):
        if self.url is None:
            tmp = self.useFixture(fixtures.TempDir()).path
            self.url = 'sqlite:///' + os.path.join(tmp, 'vfpool.sqlite')
        self.addCleanup(db_api.use_connection(self.url))
        self.engine = db_api.get_engine()
        migration.upgrade(engine=self.engine)


class FakeRPC(fixtures.Fixture):
    """An in-process server on ``fake://`` and a client talking to it.

    Each fixture gets its own exchange and topic.
    """

    manager_class = manager.Manager

    def __init__(self, conf: cfg.ConfigOpts):
        super().__init__()
        self.conf = conf

    def _setUp(self):
        self.conf.set_override('transport_url', 'fake:/')
        name = 'vfpool-test-%s' % uuid.uuid4().hex
        self.conf.set_override('control_exchange', name)
        self.conf.set_override('rpc_topic', name)
        self.transport = rpc.get_transport(self.conf)
        self.addCleanup(self.transport.cleanup)
        self.manager = self.manager_class(self.conf)
        self.server = rpc.get_server(self.conf, self.transport,
                                     [self.manager])
        self.server.start()

        def stop():
            self.server.stop()
            self.server.wait()
        self.addCleanup(stop)
        self.client = rpcapi.VfpoolAPI(self.conf, transport=self.transport,
                                       timeout=30)
