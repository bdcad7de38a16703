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

"""Live migration of a server with a vfpool VF, driven by Nova itself.

Each compute is a fakelibvirt host with two PFs of four VFs: Nova's
``[pci] device_spec`` takes the VFs of PF 0000:81:00.0 (for Neutron direct
ports), vfpool's ``[agent] device_spec`` those of PF 0000:81:01.0.  The
inventory reaches the vfpool-server processes as vfpool-agent sends it:
vfpool's discovery on the host's (fake) libvirt node devices, then
``report_inventory`` over RabbitMQ.

How a server gets its vfpool VF: Nova cannot yet ask vfpool for one at
boot (that is issue 10), so each test boots the server with a Neutron
direct port, then allocates a VF for it through vfpool's ``allocate`` RPC
and hot-plugs it into the guest as ``<interface type='hostdev'>`` with the
allocation's MAC and VLAN, which is what a boot-time allocation will leave
in the domain.  From there on everything is Nova's live migration API and
the vfpool driver.

Every test checks vfpool's tables (through the servers' database) and the
guests' domain XML.
"""

import json
import uuid

import fixtures
from neutronclient.common import exceptions as neutron_client_exc
from nova.conductor.tasks import live_migrate
from nova import context as nova_context
from nova import exception as nova_exception
from nova import objects
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.functional.api import client
from nova.tests.functional.libvirt import base as nova_base
from nova.tests.functional.libvirt import test_pci_sriov_servers as nova_sriov
from oslo_serialization import jsonutils
import sqlalchemy as sa

from vfpool.agent import device_spec
from vfpool.agent import discovery
from vfpool.compute import plugin as vf_plugin
from vfpool.compute import vf_xml
from vfpool.db import models
from vfpool.nova import lifecycle
from vfpool.nova.tests.functional import base
from vfpool.nova.tests.functional import fakelibvirt_gaps
from vfpool.tests import api_cases

NOVA_PF = '0000:81:00.0'
VFPOOL_PF = '0000:81:01.0'
VFPOOL_VFS = ['0000:81:01.%d' % i for i in range(1, 5)]
PHYSNET = 'physnet-vfpool'
MAC = 'fa:16:3e:12:34:56'
VLAN = 123


class VfpoolLiveMigrationBase(base.VfpoolDriverMixin,
                              nova_sriov._PCIServersWithMigrationTestBase):

    ADMIN_API = True
    microversion = 'latest'

    # Nova's Neutron direct ports use the VFs of the first PF only.
    PCI_DEVICE_SPEC = [jsonutils.dumps({
        'vendor_id': fakelibvirt.PCI_VEND_ID,
        'product_id': fakelibvirt.VF_PROD_ID,
        'address': '0000:81:00.*',
        'physical_network': 'physnet4',
    })]
    PCI_ALIAS = []
    VFPOOL_OPTIONS = {
        'agent.device_spec': json.dumps({'address': VFPOOL_PF,
                                         'physical_network': PHYSNET}),
    }

    def setUp(self):
        super().setUp()
        self.useFixture(fakelibvirt_gaps.FakeLibvirtGaps())
        self.neutron = self.useFixture(nova_base.LibvirtNeutronFixture(self))

    # -- hosts --------------------------------------------------------------

    #: fakelibvirt's PCI layout of every compute these tests start.
    num_pfs = 2
    num_vfs = 8

    def start_vfpool_compute(self, name: str, kb_mem: int = 16780000,
                             report: bool = True):
        """A compute; ``report``: its VFs reported to vfpool, as an agent."""
        hostname = self.host_name(name)
        pci_info = fakelibvirt.HostPCIDevicesInfo(
            num_pfs=self.num_pfs, num_vfs=self.num_vfs, numa_node=0)
        host_info = fakelibvirt.HostInfo(cpu_nodes=2, cpu_sockets=1,
                                         cpu_cores=2, cpu_threads=2,
                                         kB_mem=kb_mem)
        self.start_compute(hostname, host_info=host_info, pci_info=pci_info)
        conn = self.connection(hostname)
        fakelibvirt_gaps.register_nova_host_events(
            self.computes[hostname].driver._host, conn)
        if report:
            specs = device_spec.parse_specs(
                self.vfpool_conf().agent.device_spec)
            self.vfpool.client.report_inventory(
                None, hostname, discovery.discover(conn, specs))
        return hostname

    def connection(self, hostname: str):
        return self.computes[hostname].driver._host.get_connection()

    def domain(self, hostname: str, server):
        return self.connection(hostname).lookupByUUIDString(server['id'])

    def has_domain(self, hostname: str, server) -> bool:
        try:
            return bool(self.domain(hostname, server).isActive())
        except fakelibvirt.libvirtError:
            return False

    # -- servers ------------------------------------------------------------

    def boot_with_direct_port(self, host: str, port=None):
        """A server with a Neutron direct port on ``host``."""
        port = self.neutron.create_port(
            {'port': port or self.neutron.network_4_port_1})['port']
        return self._create_server(networks=[{'port': port['id']}],
                                   host=host)

    def boot_with_vfpool_vf(self, host: str, port=None, mac: str = MAC):
        """A server with a Neutron direct port and a vfpool VF on ``host``."""
        server = self.boot_with_direct_port(host, port)
        [alloc] = self.vfpool.client.allocate(
            None, server['id'], host,
            [{'physical_network': PHYSNET, 'mac': mac, 'vlan': VLAN}],
            'boot-%s' % server['id'])
        self.domain(host, server).attachDeviceFlags(
            vf_xml.hostdev_interface_xml(alloc['address'], mac, vlan=VLAN,
                                         alias=vf_plugin.vf_alias(alloc)),
            fakelibvirt.VIR_DOMAIN_AFFECT_LIVE |
            fakelibvirt.VIR_DOMAIN_AFFECT_CONFIG)
        self.assertEqual((alloc['address'], mac, VLAN),
                         self.vfpool_vf(host, server, mac))
        self.set_holds(server, '1')
        return server, alloc

    def set_holds(self, server, value: str | None) -> None:
        """Set the instance's vfpool_holds key (None: as before it existed).

        '1' is what a boot-time allocation leaves; the servers here get
        their VF by hand, after a boot that left '0'.
        """
        instance = objects.Instance.get_by_uuid(
            nova_context.get_admin_context(), server['id'],
            expected_attrs=['system_metadata'])
        if value is None:
            instance.system_metadata.pop(lifecycle.HOLDS_KEY, None)
        else:
            instance.system_metadata[lifecycle.HOLDS_KEY] = value
        instance.save()

    def holds(self, server) -> str | None:
        """The instance's vfpool_holds key, as the driver left it."""
        return objects.Instance.get_by_uuid(
            nova_context.get_admin_context(), server['id'],
            expected_attrs=['system_metadata']).system_metadata.get(
                lifecycle.HOLDS_KEY)

    def vfpool_vf(self, hostname: str, server, mac: str = MAC):
        """(PCI source, MAC, VLAN) of the guest's vfpool VF, or None."""
        for info in vf_xml.parse_interfaces(
                self.domain(hostname, server).XMLDesc(0)):
            if info.type == 'hostdev' and info.mac == mac:
                return info.pci_address, info.mac, info.vlan
        return None

    def neutron_port_plugged(self, hostname: str, server) -> bool:
        mac = self.neutron.network_4_port_1['mac_address']
        return any(i.mac == mac for i in vf_xml.parse_interfaces(
            self.domain(hostname, server).XMLDesc(0)))

    # -- vfpool's tables ----------------------------------------------------

    def vfs(self, hostname: str) -> dict:
        """address -> (state, instance, migration) of vfpool's VFs there."""
        return {a: row for (h, a), row in
                api_cases.vf_table(self.vfpool.engine).items()
                if h == hostname}

    def free(self, hostname: str) -> list[str]:
        return sorted(a for a, (state, _i, _m) in self.vfs(hostname).items()
                      if state == models.AVAILABLE)

    def owned(self, hostname: str, server) -> list[str]:
        return sorted(a for a, (state, inst, _m) in
                      self.vfs(hostname).items()
                      if state == models.ALLOCATED and inst == server['id'])

    def migrations(self, server) -> list[tuple]:
        """(state, source, destination) of vfpool's migrations, in order."""
        Host = models.Host
        Migration = models.Migration
        src = sa.orm.aliased(Host)
        dst = sa.orm.aliased(Host)
        with self.vfpool.engine.connect() as conn:
            rows = conn.execute(
                sa.select(Migration.state, src.name, dst.name)
                .join(src, src.id == Migration.source_host_id)
                .join(dst, dst.id == Migration.dest_host_id)
                .where(Migration.instance_uuid == server['id'])
                .order_by(Migration.id)).all()
        return [tuple(r) for r in rows]

    def attach_state(self, hostname: str, address: str, server) -> str:
        for alloc in self.vfpool.client.get_instance(
                None, server['id'])['allocations']:
            if alloc['host'] == hostname and alloc['address'] == address:
                return alloc['attach_state']
        raise AssertionError('%s on %s is not allocated to %s'
                             % (address, hostname, server['id']))


class TwoComputesBase(VfpoolLiveMigrationBase):
    """A source and a destination compute, both known to vfpool."""

    def setUp(self):
        super().setUp()
        self.src = self.start_vfpool_compute('src')
        self.dst = self.start_vfpool_compute('dst')
        self.during = None

    def _migrate_stub(self, domain, destination, params, flags):
        # What vfpool and the source guest look like when Nova starts the
        # hypervisor's migration.
        server = {'id': domain.UUIDString()}
        self.during = {
            'src': self.vfs(self.src), 'dst': self.vfs(self.dst),
            'source_vf': self.vfpool_vf(self.src, server),
            'destination_xml': params['destination_xml'],
        }
        super()._migrate_stub(domain, destination, params, flags)


class TestLiveMigration(TwoComputesBase):

    def test_vf_claimed_detached_migrated_attached_source_freed(self):
        server, alloc = self.boot_with_vfpool_vf(self.src)
        self.assertEqual(VFPOOL_VFS[1:], self.free(self.src))

        server = self._live_migrate(server)

        self.assertEqual(self.dst, server['OS-EXT-SRV-ATTR:host'])
        # While the hypervisor migrated: one VF claimed on the destination
        # for this migration, the source VF still the guest's but out of
        # the guest and of the XML sent to the destination.
        [migration] = {m for _s, _i, m in self.during['dst'].values() if m}
        [(claimed, (state, inst, _m))] = [
            (a, row) for a, row in self.during['dst'].items() if row[2]]
        self.assertEqual((models.CLAIMED, server['id']), (state, inst))
        self.assertEqual((models.ALLOCATED, server['id'], migration),
                         self.during['src'][alloc['address']])
        self.assertIsNone(self.during['source_vf'])
        self.assertNotIn(MAC, self.during['destination_xml'])
        # The detach ended on libvirt's DEVICE_REMOVED, which came through
        # Nova's Host and the driver's emit_event, not on a timeout.
        log = self.stdlog.logger.output
        alias = vf_plugin.vf_alias(alloc)
        self.assertIn('Device %s detached from domain' % alias, log)
        self.assertNotIn('Device %s is gone from domain' % alias, log)
        # After: the claimed VF is attached on the destination with the
        # same MAC and VLAN; Nova's own direct port came back too.
        self.assertEqual([claimed], self.owned(self.dst, server))
        self.assertEqual((claimed, MAC, VLAN),
                         self.vfpool_vf(self.dst, server))
        self.assertTrue(self.neutron_port_plugged(self.dst, server))
        # The source VF went back to the pool; nothing else is held.
        self.assertEqual(VFPOOL_VFS, self.free(self.src))
        self.assertEqual(sorted(set(VFPOOL_VFS) - {claimed}),
                         self.free(self.dst))
        self.assertEqual([(models.COMPLETED, self.src, self.dst)],
                         self.migrations(server))

    def test_migration_job_fails(self):
        server, alloc = self.boot_with_vfpool_vf(self.src)

        def fail(domain, destination, params, flags):
            self.during = {'source_vf': self.vfpool_vf(self.src, server)}
            domain.fail_job()
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.migrateToURI3', fail))

        server = self._live_migrate(server, 'failed')

        self.assertEqual(self.src, server['OS-EXT-SRV-ATTR:host'])
        self.assertIsNone(self.during['source_vf'])
        # The VF is back in the guest, as it was; the claim is freed.
        self.assertEqual((alloc['address'], MAC, VLAN),
                         self.vfpool_vf(self.src, server))
        self.assertEqual([alloc['address']], self.owned(self.src, server))
        self.assertEqual(VFPOOL_VFS, self.free(self.dst))
        self.assertEqual([(models.ABORTED, self.src, self.dst)],
                         self.migrations(server))
        self.assertFalse(self.has_domain(self.dst, server))

    def test_destination_pre_live_migration_fails(self):
        server, alloc = self.boot_with_vfpool_vf(self.src)

        def refuse(*args, **kwargs):
            raise RuntimeError('cannot plug the VIFs here (test)')
        self.computes[self.dst].driver.plug_vifs = refuse

        server = self._live_migrate(server, 'failed')

        # The instance path is shared between these computes, so Nova calls
        # no rollback hook on either host: the destination's driver freed
        # its claim when its pre_live_migration failed.
        self.assertEqual(self.src, server['OS-EXT-SRV-ATTR:host'])
        self.assertIsNone(self.during, 'the hypervisor migration started')
        self.assertEqual((alloc['address'], MAC, VLAN),
                         self.vfpool_vf(self.src, server))
        self.assertEqual([alloc['address']], self.owned(self.src, server))
        self.assertEqual(VFPOOL_VFS, self.free(self.dst))
        self.assertEqual([(models.ABORTED, self.src, self.dst)],
                         self.migrations(server))

    def test_detach_times_out(self):
        server, alloc = self.boot_with_vfpool_vf(self.src)
        # The guest never lets go of the VF.
        self.connection(self.src).stuck_macs = {MAC}

        server = self._live_migrate(server, 'failed')

        self.assertEqual(self.src, server['OS-EXT-SRV-ATTR:host'])
        self.assertIsNone(self.during, 'the hypervisor migration started')
        self.assertEqual((alloc['address'], MAC, VLAN),
                         self.vfpool_vf(self.src, server))
        self.assertTrue(self.neutron_port_plugged(self.src, server))
        self.assertEqual([alloc['address']], self.owned(self.src, server))
        self.assertEqual(VFPOOL_VFS, self.free(self.dst))
        self.assertEqual([(models.ABORTED, self.src, self.dst)],
                         self.migrations(server))


class TestServerUnreachable(VfpoolLiveMigrationBase):

    # Its servers are killed: they are its own.
    PRIVATE_VFPOOL = True
    VFPOOL_OPTIONS = dict(VfpoolLiveMigrationBase.VFPOOL_OPTIONS,
                          rpc_response_timeout=1)

    def setUp(self):
        super().setUp()
        self.src = self.start_vfpool_compute('src')
        self.dst = self.start_vfpool_compute('dst')
        self.during = None

    def _migrate_stub(self, domain, destination, params, flags):
        self.during = True
        super()._migrate_stub(domain, destination, params, flags)

    def test_vfpool_server_unreachable_at_the_claim(self):
        server, alloc = self.boot_with_vfpool_vf(self.src)
        before = api_cases.table_dump(self.vfpool.engine)
        for proc in self.vfpool.procs:
            proc.kill()

        # The only destination refused: Nova answers NoValidHost.
        exc = self.assertRaises(client.OpenStackApiException,
                                self._live_migrate, server)
        self.assertIn('NoValidHost', str(exc))
        self._wait_for_migration_status(server, ['error'])
        server = self._wait_for_state_change(server, 'ACTIVE')

        # Refused before anything moved: the guest keeps its VF, and
        # vfpool holds nothing more than before.
        self.assertEqual(self.src, server['OS-EXT-SRV-ATTR:host'])
        self.assertIsNone(self.during, 'the hypervisor migration started')
        self.assertEqual((alloc['address'], MAC, VLAN),
                         self.vfpool_vf(self.src, server))
        self.assertEqual(before, api_cases.table_dump(self.vfpool.engine))
        self.assertEqual([], self.migrations(server))


class TestMixedComputes(VfpoolLiveMigrationBase):
    """A rolling upgrade: the destination still runs stock LibvirtDriver."""

    def test_no_claim_on_the_destination_keeps_the_instance_home(self):
        self.src = self.start_vfpool_compute('src')
        self.flags(compute_driver='libvirt.LibvirtDriver')
        self.dst = self.start_vfpool_compute('dst')
        server, alloc = self.boot_with_vfpool_vf(self.src)

        server = self._live_migrate(server, 'failed')

        # Nothing claimed the VF a destination would need: the source
        # refuses to detach it and Nova rolls back.
        self.assertEqual(self.src, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual((alloc['address'], MAC, VLAN),
                         self.vfpool_vf(self.src, server))
        self.assertEqual([alloc['address']], self.owned(self.src, server))
        self.assertEqual(VFPOOL_VFS, self.free(self.dst))
        self.assertEqual([], self.migrations(server))


class TestNextDestination(VfpoolLiveMigrationBase):
    """The conductor's retry of another host with the same Migration."""

    def setUp(self):
        super().setUp()
        self.src = self.start_vfpool_compute('src')
        # More memory: the scheduler offers dst1 before dst2.
        self.dst1 = self.start_vfpool_compute('dst1', kb_mem=32000000)
        self.dst2 = self.start_vfpool_compute('dst2')

    def destination_checks(self) -> list[tuple]:
        """(host, outcome) of each destination the conductor will check."""
        checks = []
        check = live_migrate.LiveMigrationTask._call_livem_checks_on_host

        def observed(task, destination, provider_mapping):
            try:
                check(task, destination, provider_mapping)
            except Exception as exc:
                checks.append((destination, type(exc).__name__))
                raise
            checks.append((destination, 'accepted'))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.conductor.tasks.live_migrate.LiveMigrationTask.'
            '_call_livem_checks_on_host', observed))
        return checks

    def test_first_destination_has_no_free_vf(self):
        server, alloc = self.boot_with_vfpool_vf(self.src)
        # Everything on dst1 is taken by another instance.
        other = str(uuid.uuid4())
        self.vfpool.client.allocate(
            None, other, self.dst1,
            [{'physical_network': PHYSNET} for _vf in VFPOOL_VFS],
            'full-%s' % other)
        dst1_before = self.vfs(self.dst1)
        checks = self.destination_checks()

        server = self._live_migrate(server)

        self.assertEqual(self.dst2, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual([(self.dst1, 'MigrationPreCheckError'),
                          (self.dst2, 'accepted')], checks)
        [dest_vf] = self.owned(self.dst2, server)
        self.assertEqual((dest_vf, MAC, VLAN),
                         self.vfpool_vf(self.dst2, server))
        self.assertEqual(dst1_before, self.vfs(self.dst1))
        self.assertEqual(VFPOOL_VFS, self.free(self.src))
        self.assertEqual([(models.COMPLETED, self.src, self.dst2)],
                         self.migrations(server))

    def test_first_destination_refused_after_its_claim_is_freed_at_once(self):
        server, alloc = self.boot_with_vfpool_vf(self.src)
        # dst1 claims a VF, then Neutron cannot bind the port there: the
        # conductor moves on to dst2 with the same migration.
        bind = self.neutron.create_port_binding

        def bind_or_refuse(port_id, body):
            if body['binding']['host'] == self.dst1:
                raise neutron_client_exc.NeutronClientException(
                    status_code=500, message='binding refused (test)')
            return bind(port_id, body)
        self.neutron.create_port_binding = bind_or_refuse
        checks = self.destination_checks()

        server = self._live_migrate(server)

        self.assertEqual(self.dst2, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual([(self.dst1, 'MigrationPreCheckError'),
                          (self.dst2, 'accepted')], checks)
        # dst1's claim went when dst2 claimed, not with its lease.
        self.assertEqual(VFPOOL_VFS, self.free(self.dst1))
        [dest_vf] = self.owned(self.dst2, server)
        self.assertEqual((dest_vf, MAC, VLAN),
                         self.vfpool_vf(self.dst2, server))
        self.assertEqual(VFPOOL_VFS, self.free(self.src))
        self.assertEqual([(models.COMPLETED, self.src, self.dst2)],
                         self.migrations(server))


class ReattachFailureBase(VfpoolLiveMigrationBase):
    """The VF cannot be plugged on the destination after the migration.

    The guest already runs there, so the migration is not undone: the
    source VF is freed whatever happens, and ``[migration]
    reattach_failure_policy`` decides what the instance becomes.
    """

    POLICY = None
    ATTEMPTS = 2

    def setUp(self):
        self.VFPOOL_OPTIONS = dict(
            self.VFPOOL_OPTIONS,
            **{'migration.reattach_failure_policy': self.POLICY,
               'migration.reattach_attempts': self.ATTEMPTS})
        super().setUp()
        self.src = self.start_vfpool_compute('src')
        self.dst = self.start_vfpool_compute('dst')
        self.server, self.alloc = self.boot_with_vfpool_vf(self.src)

    def refuse(self, addresses) -> list:
        """libvirt on dst refuses to plug these VFs; returns the attempts."""
        conn = self.connection(self.dst)
        conn.refuse_attach = set(addresses)
        conn.refused_attempts = []
        return conn.refused_attempts

    def assert_source_freed(self):
        self.assertEqual(VFPOOL_VFS, self.free(self.src))
        self.assertEqual([(models.COMPLETED, self.src, self.dst)],
                         self.migrations(self.server))


class TestReattachFailureRetry(ReattachFailureBase):
    POLICY = 'retry'

    def test_retried_then_instance_in_error_on_destination(self):
        attempts = self.refuse(VFPOOL_VFS)

        server = self._live_migrate(self.server, 'error', 'ERROR')

        self.assertEqual(self.dst, server['OS-EXT-SRV-ATTR:host'])
        [dest_vf] = self.owned(self.dst, server)
        self.assertEqual([dest_vf] * self.ATTEMPTS, attempts)
        self.assertIsNone(self.vfpool_vf(self.dst, server))
        self.assertEqual('failed',
                         self.attach_state(self.dst, dest_vf, server))
        self.assert_source_freed()


class TestReattachFailureError(ReattachFailureBase):
    POLICY = 'error'

    def test_one_attempt_then_instance_in_error_on_destination(self):
        attempts = self.refuse(VFPOOL_VFS)

        server = self._live_migrate(self.server, 'error', 'ERROR')

        self.assertEqual(self.dst, server['OS-EXT-SRV-ATTR:host'])
        [dest_vf] = self.owned(self.dst, server)
        self.assertEqual([dest_vf], attempts)
        self.assertIsNone(self.vfpool_vf(self.dst, server))
        self.assertEqual('failed',
                         self.attach_state(self.dst, dest_vf, server))
        self.assert_source_freed()


class TestReattachFailureSwap(ReattachFailureBase):
    POLICY = 'swap'

    def test_broken_vf_swapped_instance_active_with_another(self):
        # Claims take the lowest free VF first: the first one is broken.
        attempts = self.refuse(VFPOOL_VFS[:1])

        server = self._live_migrate(self.server)

        self.assertEqual(self.dst, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual([VFPOOL_VFS[0]] * self.ATTEMPTS, attempts)
        [dest_vf] = self.owned(self.dst, server)
        self.assertNotEqual(VFPOOL_VFS[0], dest_vf)
        self.assertEqual((dest_vf, MAC, VLAN),
                         self.vfpool_vf(self.dst, server))
        self.assertIn(VFPOOL_VFS[0], self.free(self.dst))
        self.assert_source_freed()


class TestReattachFailureDegrade(ReattachFailureBase):
    POLICY = 'degrade'

    def test_instance_active_on_its_standby_vf_recorded_detached(self):
        attempts = self.refuse(VFPOOL_VFS)

        server = self._live_migrate(self.server)

        self.assertEqual(self.dst, server['OS-EXT-SRV-ATTR:host'])
        [dest_vf] = self.owned(self.dst, server)
        self.assertEqual([dest_vf], attempts)
        self.assertIsNone(self.vfpool_vf(self.dst, server))
        self.assertTrue(self.neutron_port_plugged(self.dst, server))
        self.assertEqual('detached',
                         self.attach_state(self.dst, dest_vf, server))
        self.assert_source_freed()


class TestDisjointDevices(VfpoolLiveMigrationBase):

    def test_compute_refuses_to_start_on_a_vf_nova_also_manages(self):
        self.flags(device_spec=[jsonutils.dumps({
            'vendor_id': fakelibvirt.PCI_VEND_ID,
            'product_id': fakelibvirt.VF_PROD_ID,
            # A regex address: Nova reads sysfs for a plain one.
            'address': {'domain': '0000', 'bus': '81', 'slot': '01',
                        'function': '[23]'},
            'physical_network': 'physnet4',
        })], group='pci')

        exc = self.assertRaises(nova_exception.InvalidConfiguration,
                                self.start_vfpool_compute, 'overlap')

        self.assertIn('VF 0000:81:01.2 is managed by vfpool', str(exc))
        self.assertNotIn('0000:81:01.1', str(exc))

    def test_compute_refuses_to_start_on_a_pf_nova_passes_through(self):
        self.flags(device_spec=[jsonutils.dumps({
            'vendor_id': fakelibvirt.PCI_VEND_ID,
            'product_id': fakelibvirt.PF_PROD_ID,
        })], group='pci')

        exc = self.assertRaises(nova_exception.InvalidConfiguration,
                                self.start_vfpool_compute, 'overlap')

        self.assertIn('PF %s is in Nova\'s [pci] device_spec' % VFPOOL_PF,
                      str(exc))
