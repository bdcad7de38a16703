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

"""vfpool-agent, the real console script, against real vfpool-server
processes over RabbitMQ, reading libvirt test-driver hosts.

The agents report every second and back off for at most 2 s; what the
tests assert is read back through the server's RPC API and the database.
"""

import os
import shutil
import signal
import uuid

import fixtures
import libvirt
import sqlalchemy as sa

from vfpool.agent import device_spec
from vfpool.agent import discovery
from vfpool.db import models
from vfpool.tests.functional import agent_helpers as helpers
from vfpool.tests.functional import base

COMPUTE = helpers.host_path('compute_2numa.xml')
# All E810 VFs (two PFs, 12 VFs) on physnet0, the ConnectX-6 Dx port 0
# (6 VFs) on physnet1; its port 1, af:00.1, is selected by no spec.
SPECS = [helpers.spec(vendor_id='8086', product_id='1889',
                      physical_network='physnet0'),
         helpers.spec(devname='ens2f0np0', physical_network='physnet1')]
REPORTED = r'INFO vfpool\.agent\.reporter .* Reported '


def _states(**counts) -> dict:
    return {state: counts.get(state, 0) for state in models.VF_STATES}


def _available(count: int) -> dict:
    return _states(available=count)


COMPUTE_NETWORKS = {'physnet0': _available(12), 'physnet1': _available(6)}


class AgentTestCase(base.FunctionalTestCase):

    def start_stack(self, backend: str = 'sqlite') -> base.ServiceStack:
        self.stack = self.useFixture(helpers.service_stack(backend))
        return self.stack

    def start_agent(self, host: str, libvirt_uri: str,
                    specs: list[str] = SPECS,
                    **options) -> helpers.AgentProcess:
        return self.useFixture(helpers.AgentProcess(
            helpers.messaging_options(self.stack), host, libvirt_uri,
            specs, **options))

    def db_host(self, host: str):
        """The host row, read from the DB (no server needed), or None."""
        with self.stack.engine.connect() as conn:
            return conn.execute(sa.select(models.Host).where(
                models.Host.name == host)).one_or_none()

    def networks(self, host: str) -> dict | None:
        if self.db_host(host) is None:
            return None
        return self.stack.client.get_host({}, host)['physical_networks']

    def wait_for_networks(self, agent: helpers.AgentProcess,
                          expected: dict, timeout: float = 30) -> None:
        agent.wait_for(lambda: self.networks(agent.host) == expected,
                       'get_host(%s) shows %s' % (agent.host, expected),
                       timeout)

    def vf_rows(self, host: str) -> list:
        VF, PF, Host = (models.VirtualFunction, models.PhysicalFunction,
                        models.Host)
        with self.stack.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(
                sa.select(VF.address, PF.address, VF.physical_network,
                          VF.vf_index, VF.vendor_id, VF.product_id,
                          VF.numa_node, VF.netdev, VF.state,
                          VF.prior_state, VF.instance_uuid, VF.generation,
                          VF.updated_at)
                .join(PF, PF.id == VF.pf_id)
                .join(Host, Host.id == VF.host_id)
                .where(Host.name == host).order_by(VF.address))]

    def pf_rows(self, host: str) -> list:
        PF, Host = models.PhysicalFunction, models.Host
        with self.stack.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(
                sa.select(PF.address, PF.physical_network, PF.netdev)
                .join(Host, Host.id == PF.host_id)
                .where(Host.name == host).order_by(PF.address))]


class TestReports(AgentTestCase):

    def test_specs_tag_vfs_and_a_quiet_report_changes_nothing(self):
        self.start_stack('sqlite')
        agent = self.start_agent('compute-a', helpers.test_uri(COMPUTE))
        self.wait_for_networks(agent, COMPUTE_NETWORKS)

        summary = self.stack.client.get_host({}, 'compute-a')
        self.assertEqual((3, 18), (summary['pf_count'],
                                   summary['vf_count']))
        self.assertEqual([('0000:3b:00.0', 'physnet0', 'ens1f0'),
                          ('0000:3b:00.1', 'physnet0', 'ens1f1'),
                          ('0000:af:00.0', 'physnet1', 'ens2f0np0')],
                         self.pf_rows('compute-a'))
        first = agent.lines(REPORTED)[0]
        self.assertIn('Reported 3 PFs and 18 VFs of host compute-a '
                      '(physnet0: 12, physnet1: 6); server: added=18 '
                      'removed=0 updated=0 unchanged=0', first)

        rows = self.vf_rows('compute-a')
        last_report = self.db_host('compute-a').last_report_at
        quiet = len(agent.lines('unchanged=18'))
        agent.wait_for_lines('added=0 removed=0 updated=0 unchanged=18',
                             count=quiet + 2)
        # Reports arrived (the host saw them) but no VF row moved.
        self.assertGreater(self.db_host('compute-a').last_report_at,
                           last_report)
        self.assertEqual(rows, self.vf_rows('compute-a'))
        self.assertEqual({0}, {row[11] for row in rows})

        # SIGHUP (restart_method 'mutate') starts a fresh worker, which
        # reports again.
        quiet = len(agent.lines('unchanged=18'))
        os.kill(agent.process.pid, signal.SIGHUP)
        agent.wait_for_lines('vfpool-agent compute-a reporting every 1 s',
                             count=2)
        agent.wait_for_lines('unchanged=18', count=quiet + 1)
        self.assertEqual(rows, self.vf_rows('compute-a'))
        self.assertEqual(0, agent.stop())
        self.assertEqual([], agent.lines(r' (ERROR|WARNING) '))

    def test_fixture_hosts_report_what_discovery_finds(self):
        self.start_stack('postgresql')
        # host: (host file, specs, VFs per physical network).  Left out:
        # the I350 04:00.3 of the Intel host.
        hosts = {
            'intel-host': (
                'fixtures_intel.xml',
                [helpers.spec(address='0000:05:*.*',
                              physical_network='physnet-igb'),
                 helpers.spec(devname='eth3',
                              physical_network='physnet-ixgbe')],
                {'physnet-igb': 7, 'physnet-ixgbe': 4}),
            'mlx-host': (
                'fixtures_mlx_x540.xml',
                [helpers.spec(vendor_id='15b3',
                              physical_network='physnet-mlx'),
                 helpers.spec(address='0000:81:00.0',
                              physical_network='physnet-x540')],
                {'physnet-mlx': 12, 'physnet-x540': 1}),
        }
        agents = {
            host: self.start_agent(
                host, helpers.test_uri(helpers.host_path(name)), specs)
            for host, (name, specs, _counts) in hosts.items()}
        for host, (name, specs, counts) in hosts.items():
            self.wait_for_networks(agents[host], {
                net: _available(n) for net, n in counts.items()})
            # Every field of every VF is what discovery finds locally.
            expected = self._discover(helpers.host_path(name), specs)
            self.assertEqual(
                expected, [row[:8] for row in self.vf_rows(host)], host)
        self.assertNotIn('0000:04:00.3',
                         [row[0] for row in self.pf_rows('intel-host')])

    def _discover(self, path: str, specs: list[str]) -> list:
        """What the agent should have sent, found in this process."""
        conn = libvirt.openReadOnly(helpers.test_uri(path))
        self.addCleanup(conn.close)
        pfs = discovery.discover(conn, device_spec.parse_specs(specs))
        return sorted((vf['address'], pf['address'], pf['physical_network'],
                       vf['vf_index'], vf['vendor_id'], vf['product_id'],
                       vf['numa_node'], vf['netdev'])
                      for pf in pfs for vf in pf['vfs'])


class TestVanishedVF(AgentTestCase):

    def test_owned_vf_turns_missing_keeps_owner_and_comes_back(self):
        self.start_stack('mysql')
        agent = self.start_agent('compute-m', helpers.test_uri(COMPUTE))
        self.wait_for_networks(agent, COMPUTE_NETWORKS)
        instance = str(uuid.uuid4())
        [alloc] = self.stack.client.allocate(
            {}, instance, 'compute-m', [{'physical_network': 'physnet1'}],
            request_id=str(uuid.uuid4()))
        address = alloc['address']

        # The agent restarts on a host where that VF's node device is gone.
        shrunk = helpers.without_devices(
            COMPUTE, os.path.join(self.useFixture(
                fixtures.TempDir()).path, 'host.xml'), {address})
        agent.restart(helpers.test_uri(shrunk))
        missing = {'physnet0': _available(12),
                   'physnet1': _states(available=5, missing=1)}
        self.wait_for_networks(agent, missing)
        [held] = self.stack.client.get_instance({}, instance)['allocations']
        self.assertEqual((address, 'compute-m', 'missing'),
                         (held['address'], held['host'], held['state']))
        row = {r[0]: r for r in self.vf_rows('compute-m')}[address]
        self.assertEqual(('missing', 'allocated', instance), row[8:11])
        self.assertIn('removed=1', agent.lines(REPORTED)[0])
        self.assertTrue(agent.lines(r'WARNING .* Skipping VFs %s of PF '
                                    r'0000:af:00\.0' % address))

        # Back on the full host: the VF is the instance's again.
        agent.restart(helpers.test_uri(COMPUTE))
        self.wait_for_networks(agent, {
            'physnet0': _available(12),
            'physnet1': _states(available=5, allocated=1)})
        [held] = self.stack.client.get_instance({}, instance)['allocations']
        self.assertEqual((address, 'allocated'),
                         (held['address'], held['state']))
        row = {r[0]: r for r in self.vf_rows('compute-m')}[address]
        self.assertEqual(('allocated', None, instance), row[8:11])


class TestOutages(AgentTestCase):

    def test_agent_waits_for_a_server_to_start(self):
        self.start_stack('sqlite')
        for proc in self.stack.procs:
            proc.stop()
        agent = self.start_agent('compute-w', helpers.test_uri(COMPUTE),
                                 rpc_response_timeout=2)
        agent.wait_for_lines('WARNING .* No vfpool-server answered', count=2)
        self.assertTrue(agent.alive())
        self.assertIsNone(self.db_host('compute-w'))

        for proc in self.stack.procs:
            proc.start()
        self.stack.wait_ready()
        self.wait_for_networks(agent, COMPUTE_NETWORKS)
        agent.wait_for_lines('Reporting works again after')
        self.assertTrue(agent.alive())

    def test_missing_libvirt_host_is_retried_until_it_appears(self):
        self.start_stack('sqlite')
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'late.xml')
        agent = self.start_agent('compute-l', helpers.test_uri(path))
        errors = agent.wait_for_lines(
            'ERROR .* Cannot read node devices from libvirt at %s'
            % helpers.test_uri(path), count=3)
        self.assertIn('retrying in 2 s', errors[-1])
        self.assertTrue(agent.alive())
        self.assertIsNone(self.db_host('compute-l'))

        # No restart needed: each round tries to connect again.
        shutil.copy(COMPUTE, path)
        self.wait_for_networks(agent, COMPUTE_NETWORKS)
        agent.wait_for_lines('Reporting works again after')

    def test_broker_outage_is_survived(self):
        self.start_stack('sqlite')
        proxy = self.useFixture(helpers.BrokerProxy())
        # Only the agent reaches the broker through the proxy.
        agent = self.useFixture(helpers.AgentProcess(
            dict(helpers.messaging_options(self.stack),
                 transport_url=proxy.url),
            'compute-o', helpers.test_uri(COMPUTE), SPECS))
        self.wait_for_networks(agent, COMPUTE_NETWORKS)

        proxy.cut()
        agent.wait_for_lines(r'vfpool\.agent\.reporter .* (Cannot send the '
                             r'inventory report|No vfpool-server answered)',
                             timeout=60)
        self.assertTrue(agent.alive())
        reported = len(agent.lines(REPORTED))
        proxy.restore()
        agent.wait_for_lines(REPORTED, count=reported + 1, timeout=60)
        agent.wait_for_lines('Reporting works again after')
        self.assertTrue(agent.alive())

    def test_unreachable_broker_does_not_stop_the_agent(self):
        # Nothing listens on port 1: the bounded client's broker check
        # refuses each round at once, and the agent tries again.
        agent = self.useFixture(helpers.AgentProcess(
            {'transport_url': 'rabbit://guest:guest@127.0.0.1:1/',
             'control_exchange': 'vfpool-nowhere',
             'rpc_topic': 'vfpool-nowhere'},
            'compute-u', helpers.test_uri(COMPUTE), SPECS,
            graceful_shutdown_timeout=60))
        agent.wait_for_lines('BrokerUnreachable', count=2)
        self.assertTrue(agent.alive())
        # No round is stuck in the transport, so the worker leaves as
        # soon as it is told, well within the graceful shutdown timeout.
        self.assertEqual(0, agent.stop(timeout=10))


class TestStartup(AgentTestCase):

    def test_bad_device_spec_exits_non_zero(self):
        agent = self.useFixture(helpers.AgentProcess(
            {'transport_url': base.TRANSPORT_URL}, 'compute-b',
            helpers.test_uri(COMPUTE),
            SPECS + ['{"vendor_id": "8086", "physical_net": "p"}']))
        self.assertEqual(1, agent.wait_exit())
        [error] = agent.lines('ERROR')
        self.assertIn("vfpool-agent cannot start: device_spec "
                      "'{\"vendor_id\": \"8086\", \"physical_net\": \"p\"}'"
                      ": unknown keys ['physical_net']", error)
