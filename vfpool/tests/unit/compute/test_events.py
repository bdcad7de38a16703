"""The process-wide libvirt event loop, in a child process of its own."""

import subprocess
import sys

import testtools

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
