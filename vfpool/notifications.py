"""Versioned notifications about VF claims and migrations.

Payloads follow the shape of OpenStack's versioned notifications: an
envelope naming the payload type and its version, so consumers can
check what they parse.  Bump ``PAYLOAD_VERSION``'s minor for added
fields, its major for anything else.
"""

from oslo_config import cfg
from oslo_log import log as logging

from vfpool import rpc

LOG = logging.getLogger(__name__)

PAYLOAD_VERSION = '1.0'

#: event type -> payload name; the event types are the documented API.
EVENTS = {
    'vfpool.allocation.create': 'AllocationPayload',
    'vfpool.allocation.release': 'ReleasePayload',
    'vfpool.migration.claim': 'MigrationPayload',
    'vfpool.migration.begin': 'MigrationPayload',
    'vfpool.migration.complete': 'MigrationPayload',
    'vfpool.migration.abort': 'MigrationPayload',
    'vfpool.migration.expire': 'MigrationPayload',
    'vfpool.allocation.reattach_failed': 'AttachPayload',
}


class Notifier:
    """Sends notifications when ``[notifications] enabled`` is true."""

    def __init__(self, conf: cfg.ConfigOpts, publisher: str = 'vfpool-server'):
        self._notifier = None
        if conf.notifications.enabled:
            self._notifier = rpc.get_notifier(
                conf, publisher_id='%s:%s' % (publisher, conf.host))

    @property
    def enabled(self) -> bool:
        return self._notifier is not None

    def emit(self, context, event_type: str, data: dict,
             error: bool = False) -> None:
        if self._notifier is None:
            return
        payload = {'vfpool_object.name': EVENTS[event_type],
                   'vfpool_object.namespace': 'vfpool',
                   'vfpool_object.version': PAYLOAD_VERSION,
                   'vfpool_object.data': data}
        send = self._notifier.error if error else self._notifier.info
        try:
            send(context.to_dict() if hasattr(context, 'to_dict') else {},
                 event_type, payload)
        except Exception:
            # A notification is never worth failing the change it reports.
            LOG.exception('Could not send notification %s', event_type)
