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

"""libvirt_ops and events against two real libvirtd hosts and TCG guests.

No VFIO on test machines: an emulated NIC with the VF's MAC and alias
stands in for the VF (vf_xml.emulated_interface_xml).  One harness (two
daemons) is shared by the class; every test boots and removes its own
guests.  Prerequisites: tools/setup-libvirt-qemu.sh and
tools/build-tiny-guest.sh .tiny-guest (the harness fails, naming them, when
they are missing).
"""

import functools
import time

import fixtures
import libvirt
import testtools
from testtools import content

from vfpool.compute import events
from vfpool.compute import libvirt_ops
from vfpool.compute import vf_xml
from vfpool import exception
from vfpool.tests.functional import libvirt_hosts

VF_ADDRESS = '0000:81:10.3'
VF_MAC = '52:54:00:12:34:56'
VF_ALIAS = 'ua-vf-port1'
STANDBY_MAC = '52:54:00:00:00:01'
# libvirt blocks ~5 s in detachDeviceFlags when the guest does not answer.
LIBVIRT_SYNC_WAIT = 5


def _start_class_fixture(fixture: fixtures.Fixture) -> None:
    """setUp a class-level fixture, re-raising its own error, not a wrapper.

    fixtures cleans up after a failed setUp and raises MultipleExceptions;
    the first one says what is wrong (e.g. which setup script to run).
    """
    try:
        fixture.setUp()
    except fixtures.MultipleExceptions as exc:
        raise exc.args[0][1] from None


class TestLibvirtOps(testtools.TestCase):

    hosts: libvirt_hosts.TwoHosts

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.hosts = libvirt_hosts.TwoHosts()
        _start_class_fixture(cls.hosts)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.hosts.cleanUp()
        super().tearDownClass()

    def setUp(self) -> None:
        super().setUp()
        self.useFixture(fixtures.Timeout(120, gentle=True))
        # A registry per test: events for one test never reach another.
        self.registry = events.DeviceEventRegistry()
        for host in self.hosts.hosts:
            self.registry.watch(host.conn)
            self.addCleanup(self.registry.unwatch, host.conn)
        self.vf_xml = vf_xml.emulated_interface_xml(VF_ADDRESS, VF_MAC,
                                                    alias=VF_ALIAS)

    def _guest(self, host: libvirt_hosts.LibvirtHost,
               **kwargs) -> libvirt.virDomain:
        started = time.monotonic()
        dom = self.hosts.start_guest(host, **kwargs)
        self.addCleanup(self.hosts.remove_guest, dom.UUIDString())
        self.addDetail('guest-start-seconds', content.text_content(
            '%.2f' % (time.monotonic() - started)))
        return dom

    def _aliases(self, dom: libvirt.virDomain, inactive: bool = False
                 ) -> set[str]:
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
        return vf_xml.device_aliases(dom.XMLDesc(flags))

    def _attach(self, dom: libvirt.virDomain) -> None:
        with self.registry.expect(dom.UUIDString(), VF_ALIAS,
                                  [events.DEVICE_ADDED]) as waiter:
            libvirt_ops.attach_device(dom, self.vf_xml, VF_ALIAS)
            self.assertEqual(events.DEVICE_ADDED, waiter.wait(10))

    def test_attach_stand_in_nic_to_running_guest(self):
        dom = self._guest(self.hosts.source)

        self._attach(dom)

        self.assertIn(VF_ALIAS, self._aliases(dom))
        self.assertIn(VF_ALIAS, self._aliases(dom, inactive=True))
        info = vf_xml.find_interface_by_mac(dom.XMLDesc(0), VF_MAC)
        self.assertEqual(('user', VF_ALIAS, 'virtio'),
                         (info.type, info.alias, info.model))
        # The guest kernel itself sees the new NIC.
        self.hosts.wait_guest_nic(dom, VF_MAC)

    def test_attach_e1000e_stand_in(self):
        dom = self._guest(self.hosts.source)
        builder: vf_xml.VFXMLBuilder = functools.partial(
            vf_xml.emulated_interface_xml, model='e1000e')
        libvirt_ops.attach_device(
            dom, builder(VF_ADDRESS, VF_MAC, alias='ua-vf-e1000e'),
            'ua-vf-e1000e')
        self.hosts.wait_guest_nic(dom, VF_MAC)
        self.assertEqual('e1000e', vf_xml.find_interface_by_mac(
            dom.XMLDesc(0), VF_MAC).model)

    def test_attach_failure_raises(self):
        dom = self._guest(self.hosts.source, with_os=False)
        # A real VF needs VFIO, which test machines lack: libvirt refuses.
        hostdev = vf_xml.hostdev_interface_xml(VF_ADDRESS, VF_MAC, vlan=42,
                                               alias=VF_ALIAS)
        error = self.assertRaises(exception.DeviceAttachFailed,
                                  libvirt_ops.attach_device, dom, hostdev,
                                  VF_ALIAS)
        self.assertIn(VF_ADDRESS, str(error))
        self.assertNotIn(VF_ALIAS, self._aliases(dom))

    def test_detach_waits_for_device_removed(self):
        dom = self._guest(self.hosts.source)
        self._attach(dom)
        self.hosts.wait_guest_nic(dom, VF_MAC)

        with self.registry.expect(dom.UUIDString(), VF_ALIAS) as waiter:
            started = time.monotonic()
            libvirt_ops.detach_device(dom, self.vf_xml, VF_ALIAS,
                                      timeout=10, attempts=2,
                                      registry=self.registry)
            elapsed = time.monotonic() - started
            self.assertEqual([events.DEVICE_REMOVED],
                             [e.kind for e in waiter.pending()])

        self.assertLess(elapsed, LIBVIRT_SYNC_WAIT)
        self.assertNotIn(VF_ALIAS, self._aliases(dom))
        self.assertNotIn(VF_ALIAS, self._aliases(dom, inactive=True))
        self.hosts.wait_guest_nic(dom, VF_MAC, present=False)
        # Detaching what is gone is a no-op, not an error.
        started = time.monotonic()
        libvirt_ops.detach_device(dom, self.vf_xml, VF_ALIAS, timeout=10,
                                  attempts=2, registry=self.registry)
        self.assertLess(time.monotonic() - started, 1)

    def test_detach_times_out_when_guest_never_answers(self):
        dom = self._guest(self.hosts.source, with_os=False)
        self._attach(dom)
        timeout, attempts = 1, 2

        started = time.monotonic()
        error = self.assertRaises(
            exception.DeviceDetachFailed, libvirt_ops.detach_device,
            dom, self.vf_xml, VF_ALIAS, timeout=timeout, attempts=attempts,
            registry=self.registry)
        elapsed = time.monotonic() - started

        self.addDetail('detach-timeout-seconds',
                       content.text_content('%.2f' % elapsed))
        self.assertIn(VF_ALIAS, str(error))
        self.assertGreaterEqual(elapsed, attempts * timeout)
        self.assertLess(elapsed,
                        attempts * (timeout + LIBVIRT_SYNC_WAIT) + 10)
        # Still plugged, and the persistent definition still has it.
        self.assertIn(VF_ALIAS, self._aliases(dom))
        self.assertIn(VF_ALIAS, self._aliases(dom, inactive=True))

    def test_live_migration_swapping_the_stand_in(self):
        """The plugin's flow: detach, migrate, attach on the destination."""
        src, dst = self.hosts.source, self.hosts.dest
        dom = self._guest(src, standby_mac=STANDBY_MAC)
        dom_uuid = dom.UUIDString()
        standby = vf_xml.find_persistent_teaming_interface(dom.XMLDesc(0))
        self.assertEqual('ua-standby', standby.alias)
        self._attach(dom)
        self.hosts.wait_guest_nic(dom, VF_MAC)
        libvirt_ops.detach_device(dom, self.vf_xml, VF_ALIAS, timeout=10,
                                  attempts=2, registry=self.registry)

        started = time.monotonic()
        moved = self.hosts.migrate(dom, src, dst)
        self.addDetail('migration-seconds', content.text_content(
            '%.2f' % (time.monotonic() - started)))

        self.assertEqual(dom_uuid, moved.UUIDString())
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, moved.state()[0])
        self.assertTrue(moved.isPersistent())
        self.assertEqual((dst, dom_uuid),
                         (self.hosts.find_guest(dom_uuid)[0],
                          self.hosts.find_guest(dom_uuid)[1].UUIDString()))
        self.assertEqual([], [d.UUIDString()
                              for d in src.conn.listAllDomains(0)
                              if d.UUIDString() == dom_uuid])
        self.assertIn('ua-standby', self._aliases(moved))

        # The new "VF" on the destination; the guest answering both the
        # plug and the unplug proves it really runs there.
        self._attach(moved)
        self.hosts.wait_guest_nic(moved, VF_MAC)
        libvirt_ops.detach_device(moved, self.vf_xml, VF_ALIAS, timeout=10,
                                  attempts=2, registry=self.registry)
        self.hosts.wait_guest_nic(moved, VF_MAC, present=False)
