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

"""The notifications really sent, held against the admin guide.

doc/source/admin/notifications.rst is the contract: its envelope example,
its event types with their payload names and priorities, and the fields
after each ``Data:``.  The server runs in-process (``fake://``, SQLite)
with oslo.messaging's in-memory ``test`` notification driver, so a field
added to the sender and not to the guide, or the other way round, fails
here.
"""

import json
import os
import re

from oslo_messaging.notify import _impl_test as sent_notifications
import testtools

from vfpool import context as vfpool_context
from vfpool import notifications
from vfpool.server import reaper
from vfpool.tests import api_cases
from vfpool.tests import fixtures
from vfpool.tests import inventory as inv

GUIDE = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'doc',
                     'source', 'admin', 'notifications.rst')
_EVENT = re.compile(r'^``(vfpool\.[a-z_.]+)`` \(``(\w+)``(.*)\)$')
_LITERAL = re.compile(r'``([a-z_]+)``')


def _fields(text: str) -> list[str]:
    """The field names quoted in ``text`` (``name``), in order."""
    return _LITERAL.findall(text)


def read_guide(path: str = GUIDE) -> tuple[dict, list, dict]:
    """(envelope, allocation fields, {event: (payload, error, fields)})."""
    with open(path) as f:
        text = f.read()
    block = text.split('consumers can check what they parse::', 1)[1]
    envelope = json.loads(block.split('\n\n', 2)[1])
    paragraph = text.split('An *allocation* below is', 1)[1].split('\n\n')[0]
    allocation = _fields(paragraph)
    headers: dict[str, tuple[str, bool]] = {}
    bodies: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        match = _EVENT.match(line)
        if match:
            current = match.group(1)
            headers[current] = (match.group(2), 'ERROR' in match.group(3))
            bodies[current] = ''
        elif current and line.startswith('   '):
            bodies[current] += ' ' + line.strip()
        elif line.strip():
            current = None
    result = {}
    for event, (payload, error) in headers.items():
        body = bodies[event]
        data = body.split('Data:', 1)[1]
        fields = (allocation if data.strip().startswith('the allocation')
                  else []) + _fields(data)
        result[event] = (payload, error, fields)
    return envelope, allocation, result


class TestTheGuideIsRead(testtools.TestCase):
    """The parser sees what the guide says (else the test proves nothing)."""

    def test_every_event_and_the_allocation(self):
        envelope, allocation, events = read_guide()
        self.assertEqual(set(notifications.EVENTS), set(events))
        self.assertIn('vfpool_object.data', envelope)
        self.assertIn('pf_address', allocation)
        self.assertEqual(('ReleasePayload', False,
                          ['instance_uuid', 'host', 'freed']),
                         events['vfpool.allocation.release'])
        self.assertTrue(events['vfpool.allocation.reattach_failed'][1])


class TestPayloadsAsDocumented(testtools.TestCase):

    def setUp(self):
        super().setUp()
        conf = self.useFixture(fixtures.Conf(**{
            'notifications.enabled': True,
            'oslo_messaging_notifications.driver': ['test']})).conf
        self.engine = self.useFixture(fixtures.Database()).engine
        rpc = self.useFixture(fixtures.FakeRPC(conf))
        self.client, self.notifier = rpc.client, rpc.manager.notifier
        sent_notifications.reset()
        self.addCleanup(sent_notifications.reset)

    def _send_every_event(self) -> None:
        c, instance = self.client, inv.new_uuid()
        c.report_inventory(None, 'src', [inv.pf(5, 2)])
        c.report_inventory(None, 'dst', [inv.pf(6, 2)])
        [alloc] = c.allocate(None, instance, 'src', [inv.request()], 'r-1')
        c.set_attach_state(None, instance, 'src', alloc['address'],
                           'detached')
        moved, aborted, lapsed = (inv.new_uuid() for _ in range(3))
        c.prepare_migration(None, moved, instance, 'src', 'dst')
        c.begin_migration(None, moved)
        c.complete_migration(None, moved)
        c.prepare_migration(None, aborted, instance, 'dst', 'src')
        c.abort_migration(None, aborted)
        c.prepare_migration(None, lapsed, instance, 'dst', 'src')
        api_cases.lapse(self.engine, lapsed)
        self.assertEqual(1, reaper.LeaseReaper(self.notifier)())
        c.release(None, instance)

    def test_sent_payloads_are_the_documented_ones(self):
        self._send_every_event()
        envelope, allocation, events = read_guide()
        sent = {}
        for _ctxt, message, priority, _retry in (
                sent_notifications.NOTIFICATIONS):
            sent.setdefault(message['event_type'], (message['payload'],
                                                    priority))
        self.assertEqual(sorted(events), sorted(sent))
        for event, (name, error, fields) in events.items():
            body, priority = sent[event]
            self.assertEqual(sorted(envelope), sorted(body), event)
            self.assertEqual(name, body['vfpool_object.name'], event)
            self.assertEqual('ERROR' if error else 'INFO', priority, event)
            data = body['vfpool_object.data']
            self.assertEqual(sorted(fields), sorted(data), event)
            for item in data.get('allocations', []):
                self.assertEqual(sorted(allocation), sorted(item), event)
            for pair in data.get('vfs', []):
                self.assertEqual(['dest', 'source'], sorted(pair), event)
                for item in pair.values():
                    self.assertEqual(sorted(allocation), sorted(item), event)
        self.assertEqual(
            notifications.ALLOCATION_FIELDS, tuple(allocation))

    def test_the_table_is_the_guide(self):
        _envelope, _allocation, events = read_guide()
        for event, (name, error, fields) in events.items():
            spec = notifications.EVENTS[event]
            self.assertEqual((name, error, sorted(fields)),
                             (spec.payload, spec.error, sorted(spec.fields)))

    def test_a_stray_field_is_logged_and_not_sent(self):
        self.notifier.emit(vfpool_context.get_admin_context(),
                           notifications.MIGRATION_ABORT,
                           migration_uuid=inv.new_uuid(), freed=1, extra=2)
        self.notifier.emit(vfpool_context.get_admin_context(),
                           notifications.MIGRATION_ABORT,
                           migration_uuid=inv.new_uuid())
        self.assertEqual([], sent_notifications.NOTIFICATIONS)
        self.assertRaises(TypeError, notifications.payload,
                          notifications.MIGRATION_ABORT, freed=1)
