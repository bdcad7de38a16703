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

"""oslo.messaging plumbing shared by servers, agents and compute plugins."""

from oslo_config import cfg
import oslo_messaging as messaging
from oslo_messaging._metrics import client as _metrics_client
from oslo_messaging._tracing import client as _tracing_client
from oslo_messaging import opts as messaging_opts

#: Modules whose exceptions a client may rebuild from a server's reply.
ALLOWED_EXMODS = ['vfpool.exception']
#: vfpool's ``[DEFAULT] control_exchange`` unless a file sets one.
CONTROL_EXCHANGE = 'vfpool'


def list_opts() -> list:
    """oslo.messaging option groups its own ``list_opts`` leaves out.

    Registered by :func:`register_opts` and listed in the sample config
    through the ``vfpool.messaging`` generator namespace.
    """
    return [
        ('oslo_messaging_tracing', _tracing_client.oslo_messaging_tracing),
        ('oslo_messaging_metrics', _metrics_client.oslo_messaging_metrics)]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register every oslo.messaging option on ``conf`` up front.

    oslo.messaging registers most options lazily on the ConfigOpts it is
    handed, but its tracing and metrics options only on the global
    ``cfg.CONF``; a call through a transport built on any other
    ConfigOpts then fails with ``NoSuchOptError``.  Registering them all
    here closes that gap and lets callers override ``transport_url``
    before a transport exists.

    ``control_exchange`` defaults to ``vfpool`` on ``conf`` only, when
    this call registers it there.  oslo.messaging's
    ``set_transport_defaults`` would change the default of the one option
    object every ConfigOpts of the process shares: inside nova-compute,
    Nova's own exchange (``nova``) would follow.
    """
    groups = list(messaging_opts.list_opts()) + list_opts()
    for group, opts in groups:
        for opt in opts:
            try:
                added = conf.register_opt(opt, group=group)
            except cfg.DuplicateOptError:
                continue
            if added and group is None and opt.name == 'control_exchange':
                conf.set_default('control_exchange', CONTROL_EXCHANGE)


def get_transport(conf: cfg.ConfigOpts) -> messaging.Transport:
    register_opts(conf)
    return messaging.get_rpc_transport(
        conf, allowed_remote_exmods=ALLOWED_EXMODS)


def get_target(conf: cfg.ConfigOpts, server: str | None = None,
               version: str | None = None) -> messaging.Target:
    return messaging.Target(topic=conf.rpc_topic, server=server,
                            version=version)


def get_server(conf: cfg.ConfigOpts, transport: messaging.Transport,
               endpoints: list) -> messaging.MessageHandlingServer:
    target = get_target(conf, server=conf.host)
    return messaging.get_rpc_server(transport, target, endpoints,
                                    executor='threading')


def get_notifier(conf: cfg.ConfigOpts, publisher_id: str,
                 retry: int | None = None) -> messaging.Notifier:
    """``retry``: connection retries per notification (None: forever)."""
    register_opts(conf)
    transport = messaging.get_notification_transport(conf)
    return messaging.Notifier(transport, publisher_id=publisher_id,
                              retry=retry)
