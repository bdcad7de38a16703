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

"""``[DEFAULT] workers``: one vfpool-server, several worker processes.

Real processes on the real RabbitMQ and PostgreSQL: each worker consumes
from the topic and answers, each holds its own broker and database
connections (the master holds none: nothing is inherited across the
fork), and SIGTERM to the master stops them all.
"""

import concurrent.futures
import os
import signal
import time

from vfpool.tests.functional import base
from vfpool.tests import inventory as inv

WORKERS = 2
RABBIT_PORT = 5672
POSTGRESQL_PORT = 5432


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name: state, ppid, ..."""
    with open('/proc/%d/stat' % pid) as f:
        return f.read().rsplit(')', 1)[1].split()


def _children(pid: int) -> set[int]:
    """Live child processes of ``pid``, forked by any of its threads."""
    children = set()
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            state, ppid = _stat(int(entry))[:2]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(ppid) == pid and state != 'Z':
            children.add(int(entry))
    return children


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir('/proc/%d/fd' % pid):
        try:
            target = os.readlink('/proc/%d/fd/%s' % (pid, fd))
        except OSError:
            continue
        if target.startswith('socket:['):
            inodes.add(target[8:-1])
    return inodes


def _tcp_peers(pid: int) -> list[int]:
    """Remote ports of the process's established TCP connections."""
    inodes = _socket_inodes(pid)
    ports = []
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                # state 01: ESTABLISHED
                if fields[3] == '01' and fields[9] in inodes:
                    ports.append(int(fields[2].rsplit(':', 1)[1], 16))
    return ports


def _alive(pid: int) -> bool:
    try:
        return _stat(pid)[0] != 'Z'
    except FileNotFoundError:
        return False


class TestWorkers(base.FunctionalTestCase):

    def setUp(self):
        super().setUp()
        self.stack = self.useFixture(base.ServiceStack(
            'postgresql', servers=1, workers=WORKERS,
            **{'pool.reaper_interval': 1}))
        self.master = self.stack.procs[0].process.pid
        self.workers = self._wait_workers()

    def _wait_workers(self, timeout: float = 60) -> set[int]:
        """Until the master has WORKERS children and each answered."""
        deadline = time.time() + timeout
        answered: set[int] = set()
        while time.time() < deadline:
            answered.add(self.stack.client.ping(None)['pid'])
            time.sleep(0.05)
            if answered == _children(self.master) and len(answered) == \
                    WORKERS:
                return answered
        self.fail('workers %s answered; master %d has children %s'
                  % (answered, self.master, _children(self.master)))

    def test_each_worker_consumes_and_answers(self):
        self.assertEqual(WORKERS, len(self.workers))
        self.assertNotIn(self.master, self.workers)
        for i in range(8):
            self.stack.client.report_inventory(None, 'h%d' % i,
                                               [inv.pf(5, 2)])

        def allocate(i):
            instance = inv.new_uuid()
            self.stack.client.allocate(
                None, instance, 'h%d' % (i % 8),
                [inv.request(mac=inv.mac(i))], 'req-%d' % i)
            return self.stack.client.ping(None)['pid']

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            pids = set(pool.map(allocate, range(16)))
        self.assertLessEqual(pids, self.workers)
        self.assertEqual(16, sum(
            self.stack.client.get_host(None, 'h%d' % i)[
                'physical_networks']['physnet1']['allocated']
            for i in range(8)))

    def test_connections_are_made_after_the_fork(self):
        self.stack.client.report_inventory(None, 'h', [inv.pf(5, 2)])
        self.assertEqual([], _tcp_peers(self.master))
        for pid in self.workers:
            peers = _tcp_peers(pid)
            self.assertIn(RABBIT_PORT, peers, pid)
        # Every worker answered a call that needs the database by now, or
        # will: ask until each has shown a connection of its own.
        deadline = time.time() + 30
        while time.time() < deadline:
            if all(POSTGRESQL_PORT in _tcp_peers(pid)
                   for pid in self.workers):
                break
            self.stack.client.get_host(None, 'h')
        for pid in self.workers:
            self.assertIn(POSTGRESQL_PORT, _tcp_peers(pid), pid)

    def test_every_worker_reaps_and_a_lapsed_claim_is_freed_once(self):
        client = self.stack.client
        client.report_inventory(None, 'src', [inv.pf(5, 1)])
        client.report_inventory(None, 'dst', [inv.pf(6, 1)])
        instance = inv.new_uuid()
        client.allocate(None, instance, 'src', [inv.request(mac=inv.mac(1))],
                        'req-1')
        migration = inv.new_uuid()
        client.prepare_migration(None, migration, instance, 'src', 'dst',
                                 lease_seconds=1)
        deadline = time.time() + 30
        while client.get_instance(None, instance)['migration'][
                'state'] != 'expired':
            self.assertLess(time.time(), deadline)
            time.sleep(0.2)
        # Both workers ran passes meanwhile (reaper_interval 1 s); the
        # compare-and-swap let exactly one of them free the claim.
        time.sleep(2)
        with open(self.stack.procs[0].log_path, errors='replace') as log:
            expired = [line for line in log
                       if 'Lease of migration %s expired' % migration in line]
        self.assertEqual(1, len(expired), expired)
        self.assertEqual(
            0, client.get_host(None, 'dst')['physical_networks'][
                'physnet1']['claimed'])

    def test_sigterm_stops_every_worker(self):
        proc = self.stack.procs[0]
        process = proc.process
        os.kill(process.pid, signal.SIGTERM)
        self.assertEqual(0, process.wait(timeout=30))
        deadline = time.time() + 10
        while time.time() < deadline and any(
                _alive(p) for p in self.workers):
            time.sleep(0.1)
        self.assertEqual([], [p for p in self.workers if _alive(p)])
        with open(proc.log_path, errors='replace') as log:
            self.assertEqual([], [line for line in log if ' ERROR ' in line])
