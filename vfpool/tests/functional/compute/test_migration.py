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

"""The compute plugin end to end: real QEMU, real libvirtd, real vfpool.

Two libvirtd "hosts" (libvirt_hosts.TwoHosts) run tiny Linux guests under
TCG and really live-migrate them; a real vfpool-server process (the
functional ServiceStack: RabbitMQ, a scratch database) holds the
inventory of both hosts, reported through the real ``report_inventory``
RPC.  Each guest starts with a virtio standby and a stand-in for its VF
(an emulated NIC with the allocation's MAC: no VFIO here) and the plugin
drives every hook as a compute driver would.  Attach failures on the
destination are real too: ``hostdev_interface_xml`` asks this machine for
PCI passthrough, which libvirt refuses.

One TwoHosts and one server stack per test class; every test boots and
removes its own guests.  Prerequisites: tools/setup-libvirt-qemu.sh and
tools/build-tiny-guest.sh .tiny-guest.
"""

import itertools
import time

import fixtures
import libvirt
import testtools
from testtools import content

from vfpool.compute import events
from vfpool.compute import plugin as vf_plugin
from vfpool.compute import vf_xml
from vfpool import exception
from vfpool.tests.api_cases import vf_table
from vfpool.tests.functional import base
from vfpool.tests.functional import libvirt_hosts
from vfpool.tests import inventory as inv

STANDBY_MAC = '52:54:00:00:00:01'
VFS_PER_HOST = 8
_counter = itertools.count(1)


def _start_class_fixture(fixture: fixtures.Fixture) -> None:
    """setUp a class-level fixture, re-raising its own first error."""
    try:
        fixture.setUp()
    except fixtures.MultipleExceptions as exc:
        raise exc.args[0][1] from None


def _selective_builder(broken: str) -> vf_xml.VFXMLBuilder:
    """Real hostdev XML (refused here) for ``broken``, a stand-in else."""
    def build(address: str, mac: str, vlan: int | None = None,
              alias: str | None = None,
              teaming_persistent_alias: str | None = None) -> str:
        builder = (vf_xml.hostdev_interface_xml if address == broken
                   else vf_xml.emulated_interface_xml)
        return builder(address, mac, vlan=vlan, alias=alias,
                       teaming_persistent_alias=teaming_persistent_alias)
    return build


def _counting(builder: vf_xml.VFXMLBuilder) -> vf_xml.VFXMLBuilder:
    calls: list = []

    def build(**kwargs) -> str:
        calls.append(kwargs['address'])
        return builder(**kwargs)
    build.calls = calls
    return build


class MigrationTestCase(testtools.TestCase):
    """Shared harness; subclasses pick the database backend."""

    backend = 'sqlite'
    #: Options of the server stack (``group.name`` keys).
    stack_options: dict = {}
    hosts: libvirt_hosts.TwoHosts
    stack: base.ServiceStack

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.hosts = libvirt_hosts.TwoHosts()
        _start_class_fixture(cls.hosts)
        try:
            cls.stack = base.ServiceStack(cls.backend, **cls.stack_options)
            _start_class_fixture(cls.stack)
        except BaseException:
            cls.hosts.cleanUp()
            raise
        client = cls.stack.client
        client.report_inventory(None, cls.hosts.source.name,
                                [inv.pf(5, VFS_PER_HOST)])
        client.report_inventory(None, cls.hosts.dest.name,
                                [inv.pf(6, VFS_PER_HOST)])

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            cls.stack.cleanUp()
        finally:
            cls.hosts.cleanUp()
            super().tearDownClass()

    def setUp(self) -> None:
        super().setUp()
        self.useFixture(fixtures.Timeout(180, gentle=True))
        self.src, self.dst = self.hosts.source, self.hosts.dest
        self.client = self.stack.client
        self.conf = self.stack.conf
        self.override(libvirt={'device_detach_timeout': 10,
                               'device_detach_attempts': 2},
                      migration={'reattach_retry_delay': 0})
        # A registry per test: events for one test never reach another.
        self.registry = events.DeviceEventRegistry()
        for host in self.hosts.hosts:
            self.registry.watch(host.conn)
            self.addCleanup(self.registry.unwatch, host.conn)
        self.instance = inv.new_uuid()
        self.migration = inv.new_uuid()
        self.mac = inv.mac(next(_counter))
        # One plugin per host for the whole migration, as in a compute
        # service (it remembers what it detached).
        self.src_plugin = self.plugin(self.src)
        self.dst_plugin = self.plugin(self.dst)

    def override(self, **groups: dict) -> None:
        for group, values in groups.items():
            for name, value in values.items():
                self.conf.set_override(name, value, group=group)
                self.addCleanup(self.conf.clear_override, name, group=group)

    def plugin(self, host: libvirt_hosts.LibvirtHost,
               builder: vf_xml.VFXMLBuilder = vf_xml.emulated_interface_xml
               ) -> vf_plugin.VFMigrationPlugin:
        plugin = vf_plugin.VFMigrationPlugin(
            self.conf, host.name, client=self.client, xml_builder=builder,
            registry=self.registry)
        # Its lease renewers end with the test, not at their next renewal.
        self.addCleanup(plugin.close)
        return plugin

    # -- state --------------------------------------------------------------

    def row(self, host: libvirt_hosts.LibvirtHost | str, address: str
            ) -> tuple:
        name = host if isinstance(host, str) else host.name
        return vf_table(self.stack.engine)[(name, address)]

    def attach_state(self, address: str) -> str | None:
        for alloc in self.client.get_instance(
                None, self.instance)['allocations']:
            if alloc['address'] == address:
                return alloc['attach_state']
        raise AssertionError('%s is not allocated to %s'
                             % (address, self.instance))

    def vf_interface(self, dom: libvirt.virDomain, inactive: bool = False
                     ) -> vf_xml.InterfaceInfo | None:
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
        return vf_plugin.find_vf_interface(dom.XMLDesc(flags),
                                           {'mac': self.mac})

    def elapsed(self, name: str, started: float) -> None:
        self.addDetail(name, content.text_content(
            '%.2f s' % (time.monotonic() - started)))

    # -- steps ----------------------------------------------------------------

    def guest_with_vf(self, with_os: bool = True) -> tuple:
        """A guest on the source holding a VF allocated through RPC."""
        (alloc,) = self.client.allocate(
            None, self.instance, self.src.name,
            [inv.request(mac=self.mac, vlan=100, port_id='port-1')],
            'boot-%s' % self.instance)
        started = time.monotonic()
        dom = self.hosts.start_guest(self.src, with_os=with_os,
                                     standby_mac=STANDBY_MAC)
        self.addCleanup(self.hosts.remove_guest, dom.UUIDString())
        self.elapsed('guest-boot', started)
        with self.registry.expect(dom.UUIDString(), 'ua-port-1',
                                  [events.DEVICE_ADDED]) as waiter:
            dom.attachDeviceFlags(
                vf_xml.emulated_interface_xml(
                    alloc['address'], self.mac, alias='ua-port-1'),
                libvirt.VIR_DOMAIN_AFFECT_LIVE |
                libvirt.VIR_DOMAIN_AFFECT_CONFIG)
            self.assertEqual(events.DEVICE_ADDED, waiter.wait(10))
        if with_os:
            self.hosts.wait_guest_nic(dom, self.mac)
        return alloc, dom

    def claim_and_detach(self, dest: libvirt_hosts.LibvirtHost | None = None
                         ) -> tuple:
        """A booted guest, a destination claim and its VF detached."""
        dest = dest or self.dst
        alloc, dom = self.guest_with_vf()
        dest_plugin = (self.dst_plugin if dest is self.dst
                       else self.plugin(dest))
        pairs = dest_plugin.pre_live_migration(
            None, self.instance, self.migration, self.src.name, dest.name)
        self.assertEqual(('claimed', self.instance, self.migration),
                         self.row(dest, pairs[0]['dest']['address']))
        self.assertEqual(('allocated', self.instance, self.migration),
                         self.row(self.src, alloc['address']))
        with self.registry.expect(dom.UUIDString(), 'ua-port-1') as waiter:
            detached = self.src_plugin.detach_source_vfs(
                None, self.instance, self.migration, dom)
            self.assertEqual([events.DEVICE_REMOVED],
                             [e.kind for e in waiter.pending()])
        self.assertEqual([alloc['address']],
                         [a['address'] for a in detached])
        self.assertIsNone(self.vf_interface(dom))
        self.assertIsNone(self.vf_interface(dom, inactive=True))
        self.hosts.wait_guest_nic(dom, self.mac, present=False)
        return alloc, pairs[0], dom

    def migrated_guest(self) -> tuple:
        alloc, pair, dom = self.claim_and_detach()
        started = time.monotonic()
        moved = self.hosts.migrate(dom, self.src, self.dst)
        self.elapsed('migration', started)
        self.assertEqual(self.dst, self.hosts.find_guest(
            moved.UUIDString())[0])
        return alloc, pair, moved

    def assert_source_freed(self, alloc: dict) -> None:
        self.assertEqual(('available', None, None),
                         self.row(self.src, alloc['address']))
        self.assertEqual('completed', self.client.get_instance(
            None, self.instance)['migration']['state'])

    # -- scenarios ------------------------------------------------------------

    def check_successful_migration(self) -> None:
        alloc, pair, moved = self.migrated_guest()
        dest_addr = pair['dest']['address']

        result = self.dst_plugin.post_live_migration_at_destination(
            None, self.instance, self.migration, moved)
        self.src_plugin.post_live_migration(None, self.instance,
                                            self.migration)

        self.assertEqual([(dest_addr, 'attached')],
                         [(r['address'], r['attach_state']) for r in result])
        vf = self.vf_interface(moved)
        self.assertEqual('ua-vf-' + self.mac.replace(':', ''), vf.alias)
        self.assertIsNotNone(self.vf_interface(moved, inactive=True))
        # The guest kernel, now on the destination, sees the MAC again.
        self.hosts.wait_guest_nic(moved, self.mac)
        self.assertEqual(('allocated', self.instance, None),
                         self.row(self.dst, dest_addr))
        self.assert_source_freed(alloc)
        self.assertEqual({self.dst.name}, {a['host'] for a in
                                           self.client.get_instance(
                                               None, self.instance)[
                                               'allocations']})


class TestMigration(MigrationTestCase):

    def test_live_migration_moves_the_vf(self):
        self.check_successful_migration()

    def test_detach_timeout_aborts_and_leaks_nothing(self):
        self.override(libvirt={'device_detach_timeout': 1,
                               'device_detach_attempts': 1})
        alloc, dom = self.guest_with_vf(with_os=False)
        pairs = self.dst_plugin.pre_live_migration(
            None, self.instance, self.migration, self.src.name,
            self.dst.name)
        dest_addr = pairs[0]['dest']['address']

        started = time.monotonic()
        self.assertRaises(exception.DeviceDetachFailed,
                          self.src_plugin.detach_source_vfs, None,
                          self.instance, self.migration, dom)
        self.elapsed('detach-timeout', started)

        self.assertEqual(('available', None, None),
                         self.row(self.dst, dest_addr))
        self.assertEqual(('allocated', self.instance, None),
                         self.row(self.src, alloc['address']))
        self.assertEqual('aborted', self.client.get_instance(
            None, self.instance)['migration']['state'])
        self.assertEqual('ua-port-1', self.vf_interface(dom).alias)
        self.assertEqual('ua-port-1',
                         self.vf_interface(dom, inactive=True).alias)
        self.assertTrue(dom.isActive())
        # The destination's rollback afterwards is harmless.
        self.assertEqual(0, self.dst_plugin.
                         rollback_live_migration_at_destination(
                             None, self.instance, self.migration))

    def test_destination_down_rolls_back_at_source(self):
        extra = libvirt_hosts.LibvirtHost('dest2', self.hosts.workdir,
                                          self.hosts.caps_cache_dir)
        _start_class_fixture(extra)
        stopped = []

        def stop() -> None:
            if not stopped:
                stopped.append(True)
                extra.cleanUp()
        self.addCleanup(stop)
        self.client.report_inventory(None, extra.name, [inv.pf(7, 2)])
        alloc, pair, dom = self.claim_and_detach(dest=extra)

        stop()   # the destination's libvirtd goes away mid-migration
        self.assertRaises(libvirt.libvirtError, self.hosts.migrate, dom,
                          self.src, extra)
        back = self.src_plugin.rollback_live_migration_at_source(
            None, self.instance, self.migration, dom)

        self.assertEqual([alloc['address']], [a['address'] for a in back])
        self.assertEqual('ua-port-1', self.vf_interface(dom).alias)
        self.assertIsNotNone(self.vf_interface(dom, inactive=True))
        self.hosts.wait_guest_nic(dom, self.mac)
        self.assertEqual(('available', None, None),
                         self.row(extra.name, pair['dest']['address']))
        self.assertEqual(('allocated', self.instance, None),
                         self.row(self.src, alloc['address']))
        self.assertEqual(self.src, self.hosts.find_guest(
            dom.UUIDString())[0])

    def test_policy_retry_then_error(self):
        self.override(migration={'reattach_failure_policy': 'retry',
                                 'reattach_attempts': 3,
                                 'reattach_retry_delay': 0.2})
        alloc, pair, moved = self.migrated_guest()
        builder = _counting(vf_xml.hostdev_interface_xml)

        self.dst_plugin.xml_builder = builder
        error = self.assertRaises(
            exception.ReattachFailed,
            self.dst_plugin.post_live_migration_at_destination,
            None, self.instance, self.migration, moved)

        self.assertIn('passthrough', str(error))
        dest_addr = pair['dest']['address']
        self.assertEqual([dest_addr] * 3, builder.calls)
        self.assertIsNone(self.vf_interface(moved))
        self.assertEqual('failed', self.attach_state(dest_addr))
        self.assertEqual(('allocated', self.instance, None),
                         self.row(self.dst, dest_addr))
        self.assert_source_freed(alloc)

    def test_policy_swap_attaches_another_vf(self):
        self.override(migration={'reattach_failure_policy': 'swap',
                                 'reattach_attempts': 1})
        alloc, pair, moved = self.migrated_guest()
        broken = pair['dest']['address']

        self.dst_plugin.xml_builder = _selective_builder(broken)
        result = self.dst_plugin.post_live_migration_at_destination(
            None, self.instance, self.migration, moved)

        new = result[0]['address']
        self.assertNotEqual(broken, new)
        self.assertEqual(('attached', broken),
                         (result[0]['attach_state'],
                          result[0]['swapped_from']))
        self.assertEqual(('available', None, None),
                         self.row(self.dst, broken))
        self.assertEqual(('allocated', self.instance, None),
                         self.row(self.dst, new))
        self.assertEqual('ua-vf-' + self.mac.replace(':', ''),
                         self.vf_interface(moved).alias)
        self.hosts.wait_guest_nic(moved, self.mac)
        self.assert_source_freed(alloc)

    def test_policy_degrade_keeps_the_guest_on_its_standby(self):
        self.override(migration={'reattach_failure_policy': 'degrade'})
        alloc, pair, moved = self.migrated_guest()

        self.dst_plugin.xml_builder = vf_xml.hostdev_interface_xml
        result = self.dst_plugin.post_live_migration_at_destination(
            None, self.instance, self.migration, moved)

        dest_addr = pair['dest']['address']
        self.assertEqual('detached', result[0]['attach_state'])
        self.assertEqual('detached', self.attach_state(dest_addr))
        self.assertIsNone(self.vf_interface(moved))
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, moved.state()[0])
        standby = vf_xml.find_persistent_teaming_interface(moved.XMLDesc(0))
        self.assertEqual('ua-standby', standby.alias)
        self.hosts.wait_guest_nic(moved, STANDBY_MAC)
        self.assertNotIn(self.mac, self.hosts.guest_nics(moved))
        self.assert_source_freed(alloc)

    def test_policy_error_raises_and_records(self):
        self.override(migration={'reattach_failure_policy': 'error',
                                 'reattach_attempts': 3})
        alloc, pair, moved = self.migrated_guest()
        builder = _counting(vf_xml.hostdev_interface_xml)

        self.dst_plugin.xml_builder = builder
        self.assertRaises(
            exception.ReattachFailed,
            self.dst_plugin.post_live_migration_at_destination,
            None, self.instance, self.migration, moved)

        dest_addr = pair['dest']['address']
        self.assertEqual([dest_addr], builder.calls)
        self.assertEqual('failed', self.attach_state(dest_addr))
        self.assertIsNone(self.vf_interface(moved))
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, moved.state()[0])
        self.assert_source_freed(alloc)


class TestMigrationMySQL(MigrationTestCase):
    """The success path once with MariaDB behind the server."""

    backend = 'mysql'

    def test_live_migration_moves_the_vf(self):
        self.check_successful_migration()
