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

"""vfpool-server as an oslo.service service (threading backend)."""

import os
import typing

from oslo_config import cfg
from oslo_log import log as logging
from oslo_service import service

from vfpool.db import api as db_api
from vfpool import notifications
from vfpool import rpc
from vfpool.server import manager
from vfpool.server import reaper

LOG = logging.getLogger(__name__)


class RPCService(service.Service):
    """RPC server on the vfpool topic plus the periodic lease reaper.

    Connections to the broker and the database are made in ``start``,
    that is in the worker process, never inherited across a fork: every
    worker builds its own transport and its own engine.
    """

    def __init__(self, conf: cfg.ConfigOpts):
        super().__init__()
        self.conf = conf
        # oslo.messaging's server and transport, once started.
        self.rpcserver: typing.Any = None
        self.transport: typing.Any = None

    def start(self):
        super().start()
        if db_api.context_manager.is_started:
            # A facade started before the fork (a tool, a test): its pooled
            # connections belong to the parent; this worker opens its own.
            db_api.get_engine().dispose(close=False)
        db_api.configure(self.conf)
        notifier = notifications.Notifier(self.conf)
        self.transport = rpc.get_transport(self.conf)
        endpoints = [manager.Manager(self.conf, notifier)]
        self.rpcserver = rpc.get_server(self.conf, self.transport,
                                        endpoints)
        self.rpcserver.start()
        # Every worker reaps: each expiry is a compare-and-swap, so two
        # workers racing for one lapsed claim free it once.
        self.tg.add_timer_args(self.conf.pool.reaper_interval,
                               reaper.LeaseReaper(
                                   notifier,
                                   self.conf.pool.released_request_retention),
                               initial_delay=self.conf.pool.reaper_interval,
                               stop_on_exception=False)
        LOG.info('vfpool-server %s worker listening on topic %s',
                 self.conf.host, self.conf.rpc_topic)

    def stop(self, graceful=True):
        if self.rpcserver is not None:
            try:
                self.rpcserver.stop()
                self.rpcserver.wait()
            except Exception:
                LOG.exception('Failed to stop the RPC server cleanly')
        super().stop(graceful=graceful)
        if self.transport is not None:
            self.transport.cleanup()


def workers(conf: cfg.ConfigOpts) -> int:
    """``[DEFAULT] workers``; when unset, the number of CPUs.

    On SQLite one when unset: its writers take turns on one file lock,
    so more processes only wait for each other.
    """
    if conf.workers:
        return conf.workers
    # Unset, the connection is the embedded SQLite default.
    if (conf.database.connection or 'sqlite:').startswith('sqlite'):
        return 1
    return os.cpu_count() or 1


def launch(conf: cfg.ConfigOpts):
    count = workers(conf)
    LOG.info('Starting %d vfpool-server worker process(es)', count)
    return service.launch(conf, RPCService(conf), workers=count,
                          restart_method='mutate')
