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

"""libvirt device events: the process-wide loop (in a child process of its
own) and registries fed by the embedding process."""

import subprocess
import sys

import testtools

from vfpool.compute import events

_PROBE = '''
import threading
from vfpool.compute import events
%s
events.start_event_loop()
events.start_event_loop()
names = [t.name for t in threading.enumerate()]
print(names.count('libvirt-event-loop'), events.event_loop_running())
'''


class TestEventLoop(testtools.TestCase):
    def run_probe(self, prelude: str) -> str:
        return subprocess.run(
            [sys.executable, '-c', _PROBE % prelude], check=True,
            capture_output=True, text=True, timeout=60).stdout.strip()

    def test_started_once(self):
        self.assertEqual('1 True', self.run_probe(''))

    def test_left_to_a_host_process_that_runs_its_own(self):
        self.assertEqual('0 True',
                         self.run_probe('events.use_host_event_loop()'))


_HOST_FED_PROBE = '''
import libvirt
from vfpool.compute import events
registry = events.DeviceEventRegistry(host_fed=True)
conn = libvirt.open('test:///default')
registry.watch(conn)
print(registry.is_watching(conn), events.event_loop_running())
'''


class TestHostFedRegistry(testtools.TestCase):
    """A registry whose events come from the embedding process."""

    def test_watch_subscribes_nothing_and_starts_no_loop(self):
        out = subprocess.run(
            [sys.executable, '-c', _HOST_FED_PROBE], check=True,
            capture_output=True, text=True, timeout=60).stdout.strip()
        self.assertEqual('False False', out)

    def test_dispatch_reaches_the_waiter_of_that_device_only(self):
        registry = events.DeviceEventRegistry(host_fed=True)
        uuid = '4B5D3E0F-8C27-4C2E-9F6A-1B2C3D4E5F60'
        with registry.expect(uuid, 'ua-vf0') as waiter, \
                registry.expect(uuid, 'ua-vf1') as other:
            self.assertTrue(registry.dispatch(events.DEVICE_REMOVED,
                                              uuid.lower(), 'ua-vf0'))
            self.assertEqual(events.DEVICE_REMOVED, waiter.wait(1))
            self.assertEqual([], other.pending())

    def test_dispatch_without_waiter_says_so(self):
        registry = events.DeviceEventRegistry(host_fed=True)
        with registry.expect('a' * 8 + '-0000-0000-0000-' + 'b' * 12,
                             'ua-vf0',
                             kinds=[events.DEVICE_REMOVED]) as waiter:
            self.assertFalse(registry.dispatch(
                events.DEVICE_REMOVAL_FAILED, 'a' * 8 + '-0000-0000-0000-'
                + 'b' * 12, 'ua-vf0'))
            self.assertEqual([], waiter.pending())
        self.assertFalse(registry.dispatch(events.DEVICE_REMOVED,
                                           'c' * 36, 'ua-vf0'))
