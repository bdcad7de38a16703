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

"""The agent loop, one round at a time.

libvirt is its test driver loaded with tests/data/hosts; the server is
the real manager behind oslo.messaging's ``fake://`` driver on a SQLite
database.  Only where the test driver cannot show a case (libvirt dying
in the middle of a discovery, a listing that fails on a live-looking
connection) does a small stand-in wrap a real test-driver connection.
"""

import logging
import os
import time

import fixtures
import libvirt
import sqlalchemy as sa
import testtools

from vfpool.agent import device_spec
from vfpool.agent import reporter
from vfpool.db import models
from vfpool import exception
from vfpool import rpcapi
from vfpool.tests import fixtures as vfpool_fixtures
from vfpool.tests.unit.server import test_rpcapi

HOSTS = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..',
                                     'data', 'hosts'))
COMPUTE = 'test://' + os.path.join(HOSTS, 'compute_2numa.xml')
MISSING = 'test://' + os.path.join(HOSTS, 'no-such-host.xml')
HOST = 'compute-1'
# E810 VFs (both PFs, 12 VFs) and the ConnectX-6 Dx port 0 (6 VFs); the
# ConnectX port 1 (af:00.1) is selected by no spec.
SPECS = [
    '{"vendor_id": "8086", "product_id": "1889", '
    '"physical_network": "physnet0"}',
    '{"devname": "ens2f0np0", "physical_network": "physnet1"}',
]
INTERVAL = 30
MAX_BACKOFF = 8
UNCHANGED = dict(added=0, removed=0, updated=0, unchanged=18)


def _available(count):
    return {state: (count if state == models.AVAILABLE else 0)
            for state in models.VF_STATES}


class ReporterTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(vfpool_fixtures.Conf(**{
            'host': HOST,
            'agent.libvirt_uri': COMPUTE,
            'agent.device_spec': SPECS,
            'agent.report_interval': INTERVAL,
            'agent.max_backoff': MAX_BACKOFF})).conf
        self.engine = self.useFixture(vfpool_fixtures.Database()).engine
        self.rpc = self.useFixture(vfpool_fixtures.FakeRPC(self.conf))
        self.log = self.useFixture(fixtures.FakeLogger(
            name=reporter.__name__, level=logging.DEBUG,
            format='%(levelname)s %(message)s'))
        self.opened = []
        self.reporter = self.make_reporter()

    def make_reporter(self, api=None, open_connection=None):
        def opener(uri):
            conn = (open_connection or libvirt.openReadOnly)(uri)
            self.opened.append(conn)
            return conn
        agent = reporter.Reporter(
            self.conf, device_spec.parse_specs(self.conf.agent.device_spec),
            api or self.rpc.client, open_connection=opener)
        self.addCleanup(agent.close)
        return agent

    def get_host(self):
        return self.rpc.client.get_host({}, HOST)

    def vf_rows(self):
        VF = models.VirtualFunction
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(VF.address, VF.state, VF.generation,
                          VF.updated_at).order_by(VF.address)).all()

    def lines(self, level):
        return [line[len(level) + 1:]
                for line in self.log.output.splitlines()
                if line.startswith(level + ' ')]

    def assertInventoryIntact(self):
        host = self.get_host()
        self.assertEqual({'physnet0': _available(12),
                          'physnet1': _available(6)},
                         host['physical_networks'])


class TestReportRound(ReporterTestCase):

    def test_first_round_stores_the_inventory(self):
        self.assertEqual(INTERVAL, self.reporter.run_once())
        host = self.get_host()
        self.assertEqual(3, host['pf_count'])
        self.assertEqual(18, host['vf_count'])
        self.assertInventoryIntact()
        self.assertEqual(
            ['Connected to libvirt at %s' % COMPUTE,
             'Reported 3 PFs and 18 VFs of host compute-1 (physnet0: 12, '
             'physnet1: 6); server: added=18 removed=0 updated=0 '
             'unchanged=0'],
            self.lines('INFO'))

    def test_unselected_pf_is_not_reported(self):
        self.reporter.run_once()
        PF = models.PhysicalFunction
        with self.engine.connect() as conn:
            pfs = conn.execute(sa.select(PF.address, PF.physical_network)
                               .order_by(PF.address)).all()
        self.assertEqual([('0000:3b:00.0', 'physnet0'),
                          ('0000:3b:00.1', 'physnet0'),
                          ('0000:af:00.0', 'physnet1')],
                         [tuple(row) for row in pfs])

    def test_second_round_changes_nothing(self):
        self.assertEqual(18, self.reporter.report()['added'])
        before = self.vf_rows()
        self.assertEqual(UNCHANGED, self.reporter.report())
        self.assertEqual(before, self.vf_rows())
        self.assertEqual({0}, {row.generation for row in before})
        # One connection serves every round while it lives.
        self.assertEqual(1, len(self.opened))

    def test_unchanged_snapshot_travels_as_its_digest(self):
        sent = []
        client = self.rpc.client

        class Recording:
            def __getattr__(self, name):
                sent.append(name)
                return getattr(client, name)

        agent = self.make_reporter(api=Recording())
        self.assertEqual(18, agent.report()['added'])
        self.assertEqual(UNCHANGED, agent.report())
        self.assertEqual(['report_inventory', 'report_unchanged'], sent)
        # The server forgot the snapshot (an operator's change): the
        # digest is refused and the snapshot sent in full.
        with self.engine.begin() as conn:
            conn.execute(sa.update(models.Host).values(report_digest=None))
        self.assertEqual(UNCHANGED, agent.report())
        self.assertEqual(['report_unchanged', 'report_inventory'], sent[2:])
        self.assertEqual(UNCHANGED, agent.report())
        self.assertEqual(['report_unchanged'], sent[4:])

    def test_no_spec_reports_an_empty_host(self):
        self.reporter.report()
        self.reporter.specs = []
        self.assertEqual(dict(added=0, removed=18, updated=0, unchanged=0),
                         self.reporter.report())
        self.assertEqual({models.MISSING},
                         {row.state for row in self.vf_rows()})


class TestOldServer(ReporterTestCase):

    def test_uncapped_agent_reports_in_full_to_a_1_4_server(self):
        rpc = vfpool_fixtures.FakeRPC(self.conf)
        rpc.manager_class = test_rpcapi.Manager14
        agent = self.make_reporter(api=self.useFixture(rpc).client)
        self.assertEqual(18, agent.report()['added'])
        # report_unchanged is refused as too new; the round still reports.
        self.assertEqual(UNCHANGED, agent.report())
        self.assertEqual(UNCHANGED, agent.report())
        self.assertIn('does not know report_unchanged (RPC 1.5)',
                      self.log.output)


class TestLibvirtFailures(ReporterTestCase):

    def test_open_failure_backs_off_up_to_the_cap(self):
        self.conf.set_override('libvirt_uri', MISSING, group='agent')
        delays = [self.reporter.run_once() for _ in range(6)]
        self.assertEqual([1, 2, 4, 8, 8, 8], delays)
        self.assertIsNone(self.reporter.conn)
        self.assertRaises(exception.HostNotFound, self.get_host)
        errors = self.lines('ERROR')
        self.assertEqual(6, len(errors))
        self.assertIn('Cannot read node devices from libvirt at %s' % MISSING,
                      errors[-1])
        self.assertIn('failure 6 in a row; retrying in 8 s', errors[-1])

    def test_success_resets_the_backoff(self):
        self.conf.set_override('libvirt_uri', MISSING, group='agent')
        for _ in range(3):
            self.reporter.run_once()
        self.conf.clear_override('libvirt_uri', group='agent')
        self.conf.set_override('libvirt_uri', COMPUTE, group='agent')
        self.assertEqual(INTERVAL, self.reporter.run_once())
        self.assertIn('Reporting works again after 3 failed rounds',
                      self.lines('INFO'))
        self.assertInventoryIntact()
        self.conf.set_override('libvirt_uri', MISSING, group='agent')
        # Still connected: the URI is only read for a new connection.
        self.assertEqual(INTERVAL, self.reporter.run_once())
        self.reporter.close()
        self.assertEqual([1, 2], [self.reporter.run_once()
                                  for _ in range(2)])

    def test_dead_connection_is_replaced(self):
        self.reporter.run_once()
        # What a client sees of a libvirtd that went away: calls on the
        # old connection fail.
        self.opened[0].close()
        self.assertEqual(INTERVAL, self.reporter.run_once())
        self.assertEqual(2, len(self.opened))
        self.assertIs(self.opened[1], self.reporter.conn)
        self.assertIn('The libvirt connection to %s is dead (libvirt '
                      'restarted?); reconnecting' % COMPUTE,
                      self.lines('WARNING'))
        self.assertEqual([], self.lines('ERROR'))

    def test_listing_error_drops_the_connection(self):
        # isAlive() says yes but the listing fails: what a libvirtd
        # restart looks like to a client without an event loop.
        agent = self.make_reporter(open_connection=_failing_listing())
        self.assertEqual(1, agent.run_once())
        self.assertIsNone(agent.conn)
        self.assertIn('Cannot read node devices from libvirt at %s: '
                      'End of file while reading data' % COMPUTE,
                      self.lines('ERROR')[0])
        self.assertEqual(2, agent.run_once())
        self.assertEqual(2, len(self.opened))

    def test_connection_lost_during_discovery_reports_nothing(self):
        self.reporter.run_once()
        before = self.vf_rows()
        agent = self.make_reporter(open_connection=_dying_during_discovery)
        self.assertEqual(1, agent.run_once())
        # The partial snapshot (every device skipped) never left: nothing
        # turned missing.
        self.assertEqual(before, self.vf_rows())
        self.assertInventoryIntact()
        self.assertIsNone(agent.conn)
        self.assertIn('the connection to %s died during discovery'
                      % COMPUTE, self.lines('ERROR')[-1])

    def test_unexpected_error_is_logged_with_its_traceback(self):
        def broken(uri):
            raise RuntimeError('binding bug')
        agent = self.make_reporter(open_connection=broken)
        self.assertEqual(1, agent.run_once())
        self.assertIn('Unexpected error while reporting the inventory '
                      '(failure 1 in a row; retrying in 1 s)',
                      self.log.output)
        self.assertIn('Traceback', self.log.output)
        self.assertIn('RuntimeError: binding bug', self.log.output)


class TestServerFailures(ReporterTestCase):

    def test_refused_report_is_logged_and_the_loop_goes_on(self):
        # The agent accepts any network name; the server limits its length.
        long_name = 'p' * 256
        specs = self.reporter.specs
        self.reporter.specs = device_spec.parse_specs(
            ['{"physical_network": "%s"}' % long_name])
        self.assertEqual([1, 2], [self.reporter.run_once()
                                  for _ in range(2)])
        self.assertEqual(
            ['vfpool-server refused the inventory of host compute-1: '
             'InvalidInput: Invalid input: pfs[0].physical_network is '
             'longer than 255 characters (failure %d in a row; retrying '
             'in %d s)' % (n, n) for n in (1, 2)],
            self.lines('ERROR'))
        self.reporter.specs = specs
        self.assertEqual(INTERVAL, self.reporter.run_once())
        self.assertInventoryIntact()

    def test_server_that_does_not_answer(self):
        api = rpcapi.VfpoolAPI(self.conf, transport=self.rpc.transport,
                               timeout=1)
        agent = self.make_reporter(api=api)
        self.rpc.server.stop()
        self.rpc.server.wait()
        self.assertEqual(1, agent.run_once())
        self.assertIn('No vfpool-server answered the inventory report',
                      self.lines('WARNING')[0])
        # The libvirt connection is fine and kept.
        self.assertIsNotNone(agent.conn)
        self.rpc.server.start()
        # The unanswered report stayed queued and lands first; waiting
        # for it keeps the two reports from racing on SQLite.
        self.wait_for_host()
        self.assertEqual(INTERVAL, agent.run_once())
        self.assertIn('server: added=0 removed=0 updated=0 unchanged=18',
                      self.lines('INFO')[-2])
        self.assertEqual(1, len(self.opened))
        self.assertInventoryIntact()

    def wait_for_host(self, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.get_host()
            except exception.HostNotFound:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


class TestBackoff(testtools.TestCase):

    def test_doubles_from_one_second_up_to_the_cap(self):
        self.assertEqual([1, 2, 4, 8, 16, 32, 60, 60],
                         [reporter.backoff(n, 60) for n in range(1, 9)])

    def test_no_overflow_after_many_failures(self):
        self.assertEqual(60, reporter.backoff(10 ** 6, 60))


class TestAgentService(testtools.TestCase):

    def test_bad_spec_fails_at_construction(self):
        conf = self.useFixture(vfpool_fixtures.Conf(**{
            'agent.device_spec': SPECS + ['{"vendor_id": 8086, '
                                          '"physical_network": "p"}']})).conf
        error = self.assertRaises(device_spec.DeviceSpecError,
                                  reporter.AgentService, conf)
        self.assertIn('vendor_id must be a hex string', str(error))
        self.assertIn('8086', str(error))

    def test_specs_are_parsed_before_start(self):
        conf = self.useFixture(vfpool_fixtures.Conf(**{
            'agent.device_spec': SPECS})).conf
        agent = reporter.AgentService(conf)
        self.assertEqual(['physnet0', 'physnet1'],
                         [s.physical_network for s in agent.specs])
        self.assertIsNone(agent.transport)


# Stand-ins for libvirt failures the test driver cannot produce; each
# wraps a real test-driver connection.

class _Connection:
    def __init__(self, uri):
        self.real = libvirt.openReadOnly(uri)

    def isAlive(self):
        return self.real.isAlive()

    def getLibVersion(self):
        return self.real.getLibVersion()

    def listAllDevices(self, flags=0):
        return self.real.listAllDevices(flags)

    def close(self):
        return self.real.close()


def _failing_listing():
    def opener(uri):
        conn = _Connection(uri)

        def listAllDevices(flags=0):
            raise libvirt.libvirtError('End of file while reading data')
        conn.listAllDevices = listAllDevices
        return conn
    return opener


class _DeadDevice:
    def __init__(self, name):
        self._name = name

    def name(self):
        return self._name

    def XMLDesc(self, flags=0):
        raise libvirt.libvirtError('Cannot write data: Broken pipe')


class _DyingConnection(_Connection):
    """Lists the devices, then dies before they are described."""

    dead = False

    def isAlive(self):
        return not self.dead and self.real.isAlive()

    def listAllDevices(self, flags=0):
        devices = self.real.listAllDevices(flags)
        self.dead = True
        return [_DeadDevice(dev.name()) for dev in devices]


def _dying_during_discovery(uri):
    return _DyingConnection(uri)


class TestReportTimeout(testtools.TestCase):
    def timeout(self, interval, rpc_timeout=60):
        conf = self.useFixture(vfpool_fixtures.Conf(**{
            'agent.report_interval': interval,
            'rpc_response_timeout': rpc_timeout})).conf
        return reporter.report_timeout(conf)

    def test_follows_the_report_interval_within_bounds(self):
        self.assertEqual(10, self.timeout(1))
        self.assertEqual(30, self.timeout(30))
        self.assertEqual(60, self.timeout(600))
        self.assertEqual(20, self.timeout(600, rpc_timeout=20))
