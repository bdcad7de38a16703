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

"""Nova's functional framework on two real libvirtd daemons and QEMU/TCG.

Everything of Nova runs in the test process as in Nova's own functional
tests (API, conductor, scheduler, Placement), but the two computes run
:class:`vfpool.nova.driver.VfpoolLibvirtDriver` on real libvirtd daemons
(:class:`vfpool.tests.functional.libvirt_hosts.LibvirtHost`), inside a
network namespace of the test with a bridge (:mod:`.netlab`): guests boot
the tiny Linux of ``tools/build-tiny-guest.sh`` and their NICs are taps on
that bridge.  vfpool is real and out of process, as in the other Nova
functional tests (:func:`vfpool.nova.tests.functional.base.shared_stack`).

What it takes, beyond :class:`_IntegratedTestBase` (not
``libvirt.base.ServersTestBase``, whose fixture swaps the libvirt module):

- undo the poisons of Nova's TestCase that keep tests off the host
  (``Host._init_events``, ``os.uname``, ``psutil.net_if_addrs``, /sys
  reads); privsep in-process (root);
- one libvirt event loop per process (:func:`events.start_event_loop`);
  Nova's connection-event thread as a daemon thread;
- per compute, ``[libvirt] connection_uri`` set before it starts; daemon
  folders named after the Nova host, so that one ``live_migration_uri``
  reaches each destination; ``Host.get_hostname`` per daemon;
- the guest's XML (:meth:`RealLibvirtTestBase.lab_guest_xml`): no disk
  (the tiny guest's kernel and initrd; libvirt refuses a migration without
  shared storage as unsafe otherwise), a serial log the destination
  appends to, the virtio standby on the lab's bridge, and the guest's
  network on its kernel command line;
- the VF stand-in: no VFIO here, so the compute plugin's ``xml_builder``
  is an e1000e on the lab's bridge with the VF's MAC and alias.

Only where ``VFPOOL_REAL_TIER`` is set (``tox -e nova-functional-real``),
as root, with libvirtd, QEMU and the tiny guest; skipped with the reason
otherwise.
"""

import builtins
import functools
import glob
import json
import os
import pathlib
import threading
import time
import uuid
from xml.etree import ElementTree as ET

import fixtures
import libvirt
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional import integrated_helpers
from nova import thread_pool_factory
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import host as libvirt_host
import psutil
from testtools import content

from vfpool.compute import events
from vfpool.compute import guest as vf_guest
from vfpool.compute import vf_xml
from vfpool.nova.tests.functional import base
from vfpool.nova.tests.functional.real import netlab
from vfpool.nova import virt_alias
from vfpool.tests import api_cases
from vfpool.tests.functional import libvirt_hosts
from vfpool.tests import inventory as inv

ENABLE_VAR = 'VFPOOL_REAL_TIER'
PHYSNET = 'physnet1'
VFS_PER_HOST = 4
#: The computes' vfpool options: a real detach takes ~0.1 s, but TCG on a
#: busy machine can be slow to answer.
REAL_OPTIONS = {
    'libvirt.device_detach_timeout': 15,
    'libvirt.device_detach_attempts': 2,
    'migration.reattach_retry_delay': 0,
    'rpc_response_timeout': 10,
}
#: How long a boot or a migration may take under TCG on a busy machine.
WAIT_SECONDS = 240
#: Server metadata keys: how the lab wires the guest's network.
NET_KEY = 'lab-net'      # standby | bond | plain
ADDR_KEY = 'lab-addr'    # its address in the lab
ARGS_KEY = 'lab-kernel-args'   # more of the guest kernel's command line

# The real functions Nova's TestCase poisons, taken before any test runs.
_REAL = {
    'os.uname': os.uname,
    'psutil.net_if_addrs': psutil.net_if_addrs,
    'builtins.open': builtins.open,
    'os.path.isdir': os.path.isdir,
    'os.listdir': os.listdir,
    'glob.glob': glob.glob,
    'glob.iglob': glob.iglob,
}
_ORIGINAL_GET_GUEST_XML = libvirt_driver.LibvirtDriver._get_guest_xml


def skip_reason() -> str | None:
    """Why the real tier cannot run here, or None."""
    if not os.environ.get(ENABLE_VAR):
        return ('the real libvirt tier runs only in tox -e '
                'nova-functional-real (%s unset)' % ENABLE_VAR)
    try:
        libvirt_hosts.check_prerequisites()
    except libvirt_hosts.HarnessPrerequisiteMissing as exc:
        return str(exc)
    for tool in ('ip', 'bridge'):
        if libvirt_hosts._which(tool) is None:
            return '%s (iproute2) is missing' % tool
    return None


def _start_event_handler(handler) -> None:
    # One default libvirt event loop for the process, whichever Host asks.
    events.start_event_loop()


#: Nova's delayed lifecycle-event executors, shut down by each test.
_DELAYED: list = []


def _init_events(host) -> None:
    """Nova's Host._init_events, its connection-event thread a daemon.

    In Nova's executor that thread, which never ends, hangs the cleanup
    of Nova's fixtures.
    """
    host._delayed_executor = (
        thread_pool_factory.StaticallyDelayingCancellableTaskExecutorWrapper(
            delay=15, executor=thread_pool_factory.get_executor(
                thread_pool_factory.ExecutorType.DEFAULT)))
    _DELAYED.append(host._delayed_executor)
    host._event_handler.start()
    threading.Thread(target=host._conn_event_thread, daemon=True,
                     name='nova-conn-events').start()


def standby_mac(instance_uuid: str) -> str:
    """The MAC of an instance's virtio standby (one per instance)."""
    h = uuid.UUID(instance_uuid).hex
    return '52:54:00:%s:%s:%s' % (h[0:2], h[2:4], h[4:6])


def _shutdown_delayed() -> None:
    while _DELAYED:
        _DELAYED.pop().shutdown(wait=True)


class RealLibvirtTestBase(integrated_helpers._IntegratedTestBase):
    """Two real computes, ``self.src`` and ``self.dst``, in a network lab."""

    ADMIN_API = True
    microversion = 'latest'
    VFPOOL_OPTIONS: dict = {}

    def setUp(self):
        reason = skip_reason()
        if reason:
            self.skipTest(reason)
        self.vfpool = base.shared_stack()
        self.tag = uuid.uuid4().hex[:6]
        self.workdir = pathlib.Path(
            self.useFixture(fixtures.TempDir()).path)
        self.vfpool_config = base.driver_config(
            self.vfpool.config_file, str(self.workdir / 'vfpool.conf'),
            dict(REAL_OPTIONS, **self.VFPOOL_OPTIONS))
        virt_alias.install()
        super().setUp()
        self._undo_host_poisons()
        self.flags(config_file=self.vfpool_config, group='vfpool')
        self._configure_nova()
        self.lab = self.useFixture(netlab.NetworkLab())
        self.guest_dir = libvirt_hosts.default_guest_dir()
        self.daemon: dict[str, libvirt_hosts.LibvirtHost] = {}
        self.driver: dict = {}
        self.src = self.start_real_compute('src')
        self.dst = self.start_real_compute('dst')

    # -- Nova on the host ---------------------------------------------------

    def _setup_compute_service(self):
        # The computes start once the host poisons are gone (setUp).
        return None

    def _undo_host_poisons(self) -> None:
        for name, real in _REAL.items():
            self.useFixture(fixtures.MonkeyPatch(name, real))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.host.Host._init_events', _init_events))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.host._ThreadingLibvirtEventHandler.start',
            _start_event_handler))
        self.useFixture(nova_fixtures.PrivsepFixture())
        self.addCleanup(_shutdown_delayed)
        hostnames = self._hostnames = {}
        real_get_hostname = libvirt_host.Host.get_hostname
        real_get_node_uuid = libvirt_host.Host.get_node_uuid

        # Both daemons run on this machine: each is its own Nova node.
        def get_hostname(host):
            return hostnames.get(host._uri) or real_get_hostname(host)

        def get_node_uuid(host):
            name = hostnames.get(host._uri)
            return (str(uuid.uuid5(uuid.NAMESPACE_DNS, name)) if name
                    else real_get_node_uuid(host))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.host.Host.get_hostname', get_hostname))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.host.Host.get_node_uuid', get_node_uuid))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.driver.LibvirtDriver._get_guest_xml',
            functools.partialmethod(_lab_guest_xml, self)))

    def _configure_nova(self) -> None:
        self.daemons = self.workdir / 'hosts'
        self.daemons.mkdir()
        (self.workdir / 'instances').mkdir()
        self.flags(compute_driver=virt_alias.COMPUTE_DRIVER,
                   use_cow_images=False,
                   instances_path=str(self.workdir / 'instances'))
        self.flags(virt_type='qemu', images_type='raw', cpu_mode='none',
                   num_pcie_ports=8, hw_machine_type=['x86_64=q35'],
                   live_migration_uri='qemu+unix:///system?socket=%s'
                   % (self.daemons / '%s' / 'run' / 'libvirt-sock'),
                   group='libvirt')
        self.flags(enabled=False, group='vnc')
        self.flags(enabled=False, group='spice')

    def start_real_compute(self, name: str) -> str:
        """A libvirtd in the lab and a vfpool compute on it; its host name."""
        hostname = '%s-%s' % (name, self.tag)
        daemon = self.useFixture(libvirt_hosts.LibvirtHost(
            hostname, self.daemons,
            caps_cache_dir=self.guest_dir / 'qemu-caps-cache',
            netns=self.lab.name, migration_host=self.lab.gateway))
        self._hostnames[daemon.uri] = hostname
        self.flags(connection_uri=daemon.uri, group='libvirt')
        service = self.start_service('compute', host=hostname)
        driver = service.manager.driver
        self.addCleanup(driver.cleanup_vfpool)
        driver.vfpool.xml_builder = functools.partial(
            vf_xml.emulated_interface_xml, model='e1000e',
            bridge=self.lab.BRIDGE)
        self.vfpool.client.report_inventory(
            None, hostname, [inv.pf(5, VFS_PER_HOST, PHYSNET)])
        self.daemon[hostname] = daemon
        self.driver[hostname] = driver
        self.computes[hostname] = service
        return hostname

    # -- waiting (QEMU/TCG on a shared machine: minutes, not seconds) -------

    def _wait_for_state_change(self, server, expected_status,
                               max_retries=WAIT_SECONDS * 2,
                               wait_for_fault_key=True):
        return super()._wait_for_state_change(
            server, expected_status, max_retries,
            wait_for_fault_key=wait_for_fault_key)

    def _wait_for_migration_status(self, server, expected_statuses):
        deadline = time.monotonic() + WAIT_SECONDS
        wanted = [status.lower() for status in expected_statuses]
        actual = None
        while time.monotonic() < deadline:
            for migration in self.admin_api.api_get(
                    '/os-migrations').body['migrations']:
                if migration['instance_uuid'] == server['id']:
                    actual = migration['status']
                    if actual.lower() in wanted:
                        return migration
            time.sleep(0.5)
        self.fail('migration of %s not %s within %d s (last: %s)'
                  % (server['id'], expected_statuses, WAIT_SECONDS, actual))

    # -- servers ------------------------------------------------------------

    def lab_flavor(self, vfs: bool) -> str:
        """A tiny flavor, with one vfpool VF on PHYSNET or none."""
        specs = {'vfpool:vfs': PHYSNET} if vfs else {}
        return self._create_flavor(memory_mb=128, vcpu=1, disk=0,
                                   ephemeral=0, extra_spec=specs)

    def boot(self, host: str, net: str, vfs: bool, index: int = 1,
             kernel_args: str = ''):
        """An ACTIVE server on ``host`` whose guest network is ``net``.

        ``net``: ``standby`` (the address on the virtio standby), ``bond``
        (an active-backup bond over the VF and the standby) or ``plain``
        (the address on the VF itself).  ``kernel_args`` go on the
        guest kernel's command line.
        """
        address = self.lab.address(index)
        body = {'server': {
            'name': 'lab-%s' % net, 'flavorRef': self.lab_flavor(vfs),
            'imageRef': '155d900f-4e14-4e4c-a73d-069cbf4541e6',
            'networks': 'none', 'host': host,
            'metadata': {NET_KEY: net, ADDR_KEY: address,
                         ARGS_KEY: kernel_args},
        }}
        server = self.api.post_server(body)
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.wait_guest_ready(server)
        return server

    # -- the guest ----------------------------------------------------------

    def serial_path(self, server) -> pathlib.Path:
        return self.workdir / ('serial-%s.log' % server['id'])

    def serial(self, server) -> str:
        try:
            return self.serial_path(server).read_text(errors='replace')
        except FileNotFoundError:
            return ''

    def wait_guest_ready(self, server, timeout: float = 180) -> None:
        self._wait_serial(server, lambda text: libvirt_hosts.READY_LINE
                          in text, timeout, 'its ready line')

    def guest_net_lines(self, server) -> list[str]:
        """The guest's reports of its network, oldest first (see vfnet)."""
        return [line.split(':', 1)[1].strip()
                for line in self.serial(server).splitlines()
                if line.startswith('VFPOOL-GUEST-NET:')]

    def guest_net(self, server) -> str | None:
        """The guest's last report of its network."""
        lines = self.guest_net_lines(server)
        return lines[-1] if lines else None

    def wait_guest_net(self, server, predicate, timeout: float = 60,
                       after: int = 0) -> str:
        """Wait for a last network report that satisfies ``predicate``.

        Only a report past the ``after`` first ones counts, so that one
        from before a migration is not taken for one after it.
        """
        def done(_text):
            lines = self.guest_net_lines(server)
            return len(lines) > after and predicate(lines[-1])
        self._wait_serial(server, done, timeout,
                          'network report as expected after #%d' % after)
        return self.guest_net(server)

    def _wait_serial(self, server, done, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.serial(server)
            if done(text):
                return True
            time.sleep(0.2)
        raise AssertionError('guest of %s: no %s within %s s; serial:\n%s'
                             % (server['id'], what, timeout,
                                self.serial(server)[-6000:]))

    def domain(self, hostname: str, server) -> libvirt.virDomain:
        return self.daemon[hostname].conn.lookupByUUIDString(server['id'])

    def interfaces(self, hostname: str, server) -> list:
        return vf_xml.parse_interfaces(
            self.domain(hostname, server).XMLDesc(0))

    def tap_of(self, hostname: str, server, mac: str) -> str | None:
        """The tap (target dev) of the guest's NIC with ``mac`` there."""
        root = ET.fromstring(self.domain(hostname, server).XMLDesc(0))
        for iface in root.iter('interface'):
            found = iface.find('mac')
            target = iface.find('target')
            if (found is not None and target is not None and
                    found.get('address', '').lower() == mac.lower()):
                return target.get('dev')
        return None

    def vf_rows(self, hostname: str) -> dict:
        """address -> (state, instance, migration) of vfpool's VFs there."""
        return {a: row for (h, a), row in
                api_cases.vf_table(self.vfpool.engine).items()
                if h == hostname}

    def vf_allocations(self, server) -> list[dict]:
        return self.vfpool.client.get_instance(
            None, server['id'])['allocations']

    # -- migrations under the prober ----------------------------------------

    def probe_migration(self, server):
        """Live-migrate ``server`` to dst under the prober.

        Returns the server and the prober's result; ``self.net_mark`` is
        the number of the guest's network reports before the migration.
        """
        self.net_mark = len(self.guest_net_lines(server))
        prober = self.useFixture(netlab.Prober(
            self.lab, server['metadata'][ADDR_KEY], str(self.workdir)))
        prober.wait_first_reply()
        server = self._live_migrate(server, host=self.dst)
        # The guest's reaction (bond fail-back, address on the new NIC)
        # runs after Nova is done: give the prober a moment of it.
        self.assertTrue(self.lab.answers(server['metadata'][ADDR_KEY],
                                         str(self.workdir)))
        result = prober.stop()
        summary = dict(result, lost=len(result['lost']))
        self.addDetail('probe', content.text_content(json.dumps(summary)))
        self.assertEqual(self.dst, server['OS-EXT-SRV-ATTR:host'])
        return server, result

    def boot_with_vf(self, net: str, index: int = 1, kernel_args: str = ''):
        server = self.boot(self.src, net, vfs=True, index=index,
                           kernel_args=kernel_args)
        [alloc] = self.vf_allocations(server)
        self.assertEqual(self.src, alloc['host'])
        # The stand-in is in the guest with the VF's MAC and alias.
        vf = self.vf_interface(self.src, server, alloc['mac'])
        self.assertEqual(('bridge', 'e1000e', vf_guest.vf_alias(alloc)),
                         (vf.type, vf.model, vf.alias))
        self.assertTrue(self.lab.answers(server['metadata'][ADDR_KEY],
                                         str(self.workdir)))
        return server, alloc

    def vf_interface(self, hostname: str, server, mac: str):
        found = [i for i in self.interfaces(hostname, server)
                 if i.mac == mac and i.model == 'e1000e']
        return found[0] if found else None

    def assert_moved(self, server, alloc) -> dict:
        """vfpool moved the VF: the same MAC on dst, the source's freed."""
        [moved] = self.vf_allocations(server)
        self.assertEqual((self.dst, alloc['mac']),
                         (moved['host'], moved['mac']))
        self.assertIsNone(self.vf_interface(self.src, server, alloc['mac'])
                          if self._on(self.src, server) else None)
        vf = self.vf_interface(self.dst, server, alloc['mac'])
        self.assertIsNotNone(vf, 'the VF is not in the guest on %s'
                             % self.dst)
        self.assertEqual(vf_guest.vf_alias(moved), vf.alias)
        return moved

    def _on(self, hostname: str, server) -> bool:
        try:
            self.domain(hostname, server)
            return True
        except libvirt.libvirtError:
            return False

    def assert_answers_through_vf(self, server, mac: str,
                                  hostname: str | None = None) -> None:
        """The guest's replies come from the VF's tap there (dst)."""
        self.assertTrue(self.lab.answers(server['metadata'][ADDR_KEY],
                                         str(self.workdir)))
        self.assertEqual(self.tap_of(hostname or self.dst, server, mac),
                         self.lab.fdb_port(mac))


def _lab_guest_xml(driver, test: RealLibvirtTestBase, context, instance,
                   *args, **kwargs) -> str:
    """Nova's guest XML made into a tiny guest of the lab (see module)."""
    xml = _ORIGINAL_GET_GUEST_XML(driver, context, instance, *args,
                                  **kwargs)
    root = ET.fromstring(xml)
    devices = root.find('devices')
    for tag in ('disk', 'serial', 'console', 'graphics', 'video',
                'input'):
        for elem in devices.findall(tag):
            devices.remove(elem)
    os_elem = root.find('os')
    for tag in ('kernel', 'initrd', 'cmdline', 'boot'):
        for elem in os_elem.findall(tag):
            os_elem.remove(elem)
    guest_dir = test.guest_dir
    ET.SubElement(os_elem, 'kernel').text = str(guest_dir / 'vmlinuz')
    ET.SubElement(os_elem, 'initrd').text = str(guest_dir / 'initrd.img')
    cmdline = 'console=ttyS0 rdinit=/init panic=-1 quiet'
    meta = instance.metadata or {}
    net = meta.get(NET_KEY)
    if net:
        standby = standby_mac(instance.uuid)
        devices.append(ET.fromstring(vf_xml.emulated_interface_xml(
            '0000:00:00.0', standby, alias='ua-standby',
            bridge=netlab.NetworkLab.BRIDGE)))
        address = '%s/24' % meta[ADDR_KEY]
        vf_macs = [a['mac'] for a in test.vf_allocations(
            {'id': instance.uuid}) if a.get('host') == instance.host]
        if net == 'standby':
            cmdline += ' vfpool.net=plain,%s,%s' % (address, standby)
        elif net == 'bond':
            cmdline += ' vfpool.net=bond,%s,%s,%s' % (address, vf_macs[0],
                                                      standby)
        elif net == 'plain':
            cmdline += ' vfpool.net=plain,%s,%s' % (address, vf_macs[0])
    if meta.get(ARGS_KEY):
        cmdline += ' ' + meta[ARGS_KEY]
    ET.SubElement(os_elem, 'cmdline').text = cmdline
    serial = ET.SubElement(devices, 'serial', type='file')
    # append: after a migration the destination QEMU reopens the same file.
    ET.SubElement(serial, 'source', path=str(test.serial_path(
        {'id': instance.uuid})), append='on')
    ET.SubElement(serial, 'target', port='0')
    return ET.tostring(root, encoding='unicode')
