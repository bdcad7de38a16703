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

"""Versioned notifications about VF claims and migrations.

Payloads follow the shape of OpenStack's versioned notifications: an
envelope naming the payload type and its version, so consumers can
check what they parse.  Bump ``PAYLOAD_VERSION``'s minor for added
fields, its major for anything else.

This module is the one place that builds them: :data:`EVENTS` says, for
each event type, its payload name, its fields and its priority, and
:meth:`Notifier.emit` sends only what that table says.  The unit test
``vfpool.tests.unit.test_notifications`` holds the table and what is
really sent against doc/source/admin/notifications.rst.
"""

import dataclasses
import typing

from oslo_config import cfg
from oslo_log import log as logging

from vfpool import rpc

LOG = logging.getLogger(__name__)

PAYLOAD_VERSION = '1.0'

#: The fields of an allocation, the RPC representation of a VF held for
#: an instance (vfpool.objects.vf.allocation).
ALLOCATION_FIELDS = ('address', 'pf_address', 'physical_network',
                     'vendor_id', 'product_id', 'numa_node', 'mac', 'vlan',
                     'port_id')

ALLOCATION_CREATE = 'vfpool.allocation.create'
ALLOCATION_RELEASE = 'vfpool.allocation.release'
ALLOCATION_REATTACH_FAILED = 'vfpool.allocation.reattach_failed'
MIGRATION_CLAIM = 'vfpool.migration.claim'
MIGRATION_BEGIN = 'vfpool.migration.begin'
MIGRATION_COMPLETE = 'vfpool.migration.complete'
MIGRATION_ABORT = 'vfpool.migration.abort'
MIGRATION_EXPIRE = 'vfpool.migration.expire'


@dataclasses.dataclass(frozen=True)
class Event:
    """What one event type's payload is called and holds."""

    payload: str
    fields: tuple[str, ...]
    error: bool = False
    """Sent with priority ERROR rather than INFO."""


#: event type -> its payload; the event types are the documented API.
EVENTS = {
    ALLOCATION_CREATE: Event(
        'AllocationPayload',
        ('instance_uuid', 'host', 'request_id', 'allocations')),
    ALLOCATION_RELEASE: Event(
        'ReleasePayload', ('instance_uuid', 'host', 'freed')),
    MIGRATION_CLAIM: Event(
        'MigrationPayload',
        ('migration_uuid', 'instance_uuid', 'source_host', 'dest_host',
         'vfs')),
    MIGRATION_BEGIN: Event(
        'MigrationPayload', ('migration_uuid', 'lease_expires_at')),
    MIGRATION_COMPLETE: Event(
        'MigrationPayload', ('migration_uuid', 'allocations')),
    MIGRATION_ABORT: Event('MigrationPayload', ('migration_uuid', 'freed')),
    MIGRATION_EXPIRE: Event('MigrationPayload', ('migration_uuid', 'freed')),
    ALLOCATION_REATTACH_FAILED: Event(
        'AttachPayload',
        ALLOCATION_FIELDS + ('attach_state', 'instance_uuid', 'host'),
        error=True),
}


def payload(event_type: str, **data: typing.Any) -> dict:
    """The versioned payload of ``event_type``, exactly its fields.

    A field missing or unknown is a bug in the sender: TypeError, so no
    payload ever strays from the documented one.
    """
    event = EVENTS[event_type]
    if set(data) != set(event.fields):
        raise TypeError('%s takes the fields %s, not %s' % (
            event_type, ', '.join(event.fields), ', '.join(sorted(data))))
    return {'vfpool_object.name': event.payload,
            'vfpool_object.namespace': 'vfpool',
            'vfpool_object.version': PAYLOAD_VERSION,
            'vfpool_object.data': {key: data[key] for key in event.fields}}


class Notifier:
    """Sends notifications when ``[notifications] enabled`` is true."""

    def __init__(self, conf: cfg.ConfigOpts, publisher: str = 'vfpool-server',
                 retry: int | None = None):
        self._notifier = None
        if conf.notifications.enabled:
            self._notifier = rpc.get_notifier(
                conf, publisher_id='%s:%s' % (publisher, conf.host),
                retry=retry)

    @property
    def enabled(self) -> bool:
        return self._notifier is not None

    def send(self, context: typing.Any, event_type: str,
             **data: typing.Any) -> None:
        """Send ``event_type`` with ``data``; raises if it cannot."""
        if self._notifier is None:
            return
        body = payload(event_type, **data)
        send = (self._notifier.error if EVENTS[event_type].error
                else self._notifier.info)
        send(context.to_dict() if hasattr(context, 'to_dict') else {},
             event_type, body)

    def emit(self, context: typing.Any, event_type: str,
             **data: typing.Any) -> None:
        """Send ``event_type`` with ``data``, its documented fields."""
        try:
            self.send(context, event_type, **data)
        except Exception:
            # A notification is never worth failing the change it reports.
            LOG.exception('Could not send notification %s', event_type)
