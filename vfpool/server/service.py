"""vfpool-server as an oslo.service service (threading backend)."""

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
    that is in the worker process, never inherited across a fork.
    """

    def __init__(self, conf: cfg.ConfigOpts):
        super().__init__()
        self.conf = conf
        # oslo.messaging's server and transport, once started.
        self.rpcserver: typing.Any = None
        self.transport: typing.Any = None

    def start(self):
        super().start()
        db_api.configure(self.conf)
        notifier = notifications.Notifier(self.conf)
        self.transport = rpc.get_transport(self.conf)
        endpoints = [manager.Manager(self.conf, notifier)]
        self.rpcserver = rpc.get_server(self.conf, self.transport,
                                        endpoints)
        self.rpcserver.start()
        self.tg.add_timer_args(self.conf.pool.reaper_interval,
                               reaper.LeaseReaper(notifier),
                               initial_delay=self.conf.pool.reaper_interval,
                               stop_on_exception=False)
        LOG.info('vfpool-server %s listening on topic %s',
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


def launch(conf: cfg.ConfigOpts):
    return service.launch(conf, RPCService(conf), workers=1,
                          restart_method='mutate')
