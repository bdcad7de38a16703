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

"""discover() against libvirt's test driver loaded with tests/data/hosts."""

import json
import logging
import os

import fixtures
import libvirt
import testtools

from vfpool.agent import device_spec
from vfpool.agent import discovery

HOSTS = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..',
                                     'data', 'hosts'))
NODEDEV = os.path.abspath(os.path.join(HOSTS, '..', 'nodedev'))
PF_KEYS = {'address', 'netdev', 'vendor_id', 'product_id', 'numa_node',
           'physical_network', 'vfs'}
VF_KEYS = {'address', 'vf_index', 'vendor_id', 'product_id', 'numa_node',
           'netdev'}
ANY = ['{"physical_network": "physnet0"}']


def _vfs(pf):
    """(address, vf_index, netdev, numa_node) of each reported VF."""
    return [(vf['address'], vf['vf_index'], vf['netdev'], vf['numa_node'])
            for vf in pf['vfs']]


def _pfs(pfs):
    """(address, physical_network, netdev, numa_node, VF count) per PF."""
    return [(pf['address'], pf['physical_network'], pf['netdev'],
             pf['numa_node'], len(pf['vfs'])) for pf in pfs]


class DiscoveryTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger(
            name=discovery.__name__, level=logging.DEBUG,
            format='%(levelname)s %(message)s'))

    def open_host(self, name):
        conn = libvirt.open('test://' + os.path.join(HOSTS, name))
        self.addCleanup(conn.close)
        return conn

    def discover(self, host, specs, **kwargs):
        conn = host if not isinstance(host, str) else self.open_host(host)
        return discovery.discover(conn, device_spec.parse_specs(specs),
                                  **kwargs)

    def warnings(self):
        return [line for line in self.log.output.splitlines()
                if line.startswith('WARNING ')]


class TestHostsLoad(testtools.TestCase):

    def test_every_host_loads_in_the_test_driver(self):
        names = sorted(n for n in os.listdir(HOSTS) if n.endswith('.xml'))
        self.assertEqual(['compute_2numa.xml', 'fixtures_intel.xml',
                          'fixtures_mlx_x540.xml', 'odd.xml'], names)
        for name in names:
            conn = libvirt.open('test://' + os.path.join(HOSTS, name))
            self.addCleanup(conn.close)
            self.assertGreater(len(conn.listAllDevices(0)), 10, name)


class TestComputeHost(DiscoveryTestCase):
    """A two-NUMA host: E810 on node 0, ConnectX-6 Dx on node 1."""

    SPECS = [
        '{"vendor_id": "8086", "product_id": "1889", '
        '"physical_network": "physnet0"}',
        '{"devname": "ens2f0np0", "physical_network": "physnet1"}',
        '{"address": "0000:af:00.1", "physical_network": "physnet2"}',
    ]

    def test_report_follows_the_rpc_contract(self):
        pfs = self.discover('compute_2numa.xml', self.SPECS)
        self.assertEqual(4, len(pfs))
        for pf in pfs:
            self.assertEqual(PF_KEYS, set(pf))
            for vf in pf['vfs']:
                self.assertEqual(VF_KEYS, set(vf))
        self.assertEqual(pfs, json.loads(json.dumps(pfs)))

        def vf(address, index, netdev):
            return {'address': address, 'vf_index': index,
                    'vendor_id': '15b3', 'product_id': '101e',
                    'numa_node': 1, 'netdev': netdev}
        self.assertEqual(
            {'address': '0000:af:00.1', 'netdev': 'ens2f1np1',
             'vendor_id': '15b3', 'product_id': '101d', 'numa_node': 1,
             'physical_network': 'physnet2',
             'vfs': [vf('0000:af:01.2', 0, 'ens2f1v0'),
                     vf('0000:af:01.3', 1, 'ens2f1v1'),
                     vf('0000:af:01.4', 2, None),
                     vf('0000:af:01.5', 3, None)]},
            pfs[3])

    def test_specs_select_and_tag_per_pf(self):
        pfs = self.discover('compute_2numa.xml', self.SPECS)
        self.assertEqual(
            [('0000:3b:00.0', 'physnet0', 'ens1f0', 0, 8),
             ('0000:3b:00.1', 'physnet0', 'ens1f1', 0, 4),
             ('0000:af:00.0', 'physnet1', 'ens2f0np0', 1, 6),
             ('0000:af:00.1', 'physnet2', 'ens2f1np1', 1, 4)],
            _pfs(pfs))
        self.assertEqual([], self.warnings())

    def test_vfio_vfs_have_no_netdev(self):
        pfs = self.discover('compute_2numa.xml', self.SPECS)
        self.assertEqual(
            [('0000:3b:01.%d' % i, i, 'ens1f0v%d' % i if i < 4 else None, 0)
             for i in range(8)],
            _vfs(pfs[0]))
        self.assertEqual(
            ['ens2f0v0', 'ens2f0v1', 'ens2f0v2', None, None, None],
            [vf['netdev'] for vf in pfs[2]['vfs']])

    def test_no_spec_reports_nothing(self):
        self.assertEqual([], self.discover('compute_2numa.xml', []))

    def test_one_vf_by_address_dict(self):
        pfs = self.discover('compute_2numa.xml', [
            '{"address": {"bus": "3b", "slot": "11", "function": "2"}, '
            '"physical_network": "physnet0"}'])
        self.assertEqual([('0000:3b:00.1', 'physnet0', 'ens1f1', 0, 1)],
                         _pfs(pfs))
        self.assertEqual([('0000:3b:11.2', 2, 'ens1f1v2', 0)], _vfs(pfs[0]))

    def test_vf_address_glob(self):
        pfs = self.discover('compute_2numa.xml', [
            '{"address": "*:af:01.*", "physical_network": "p"}'])
        # af:01.* holds all VFs of af:00.1 and none of af:00.0's.
        self.assertEqual(['0000:af:00.1'], [pf['address'] for pf in pfs])
        self.assertEqual(4, len(pfs[0]['vfs']))

    def test_pf_ids_select_its_vfs(self):
        pfs = self.discover('compute_2numa.xml', [
            '{"vendor_id": "15b3", "product_id": "101d", '
            '"physical_network": "p"}'])
        self.assertEqual(
            [('0000:af:00.0', 'p', 'ens2f0np0', 1, 6),
             ('0000:af:00.1', 'p', 'ens2f1np1', 1, 4)], _pfs(pfs))

    def test_non_sriov_devices_are_ignored(self):
        pfs = self.discover('compute_2numa.xml', ANY)
        self.assertEqual(['0000:3b:00.0', '0000:3b:00.1', '0000:af:00.0',
                          '0000:af:00.1'], [pf['address'] for pf in pfs])
        self.assertEqual([], self.warnings())

    def test_deterministic_whatever_libvirt_order(self):
        first = self.discover('compute_2numa.xml', self.SPECS)
        conn = self.open_host('compute_2numa.xml')
        self.assertEqual(first, self.discover(_Reversed(conn), self.SPECS))
        self.assertEqual(first, self.discover(conn, self.SPECS))


class _Reversed:
    """Stand-in for a libvirt connection listing devices backwards."""

    def __init__(self, conn):
        self._conn = conn

    def listAllDevices(self, flags):
        return list(reversed(self._conn.listAllDevices(flags)))


class TestFixtureHosts(DiscoveryTestCase):
    """Hosts built from the real dumps of tests/data/nodedev."""

    def test_intel_host(self):
        pfs = self.discover('fixtures_intel.xml', ANY)
        self.assertEqual(
            [('0000:04:00.3', 'physnet0', None, None, 4),
             ('0000:05:00.1', 'physnet0', 'enp5s0f1', 1, 7),
             # Node device pci_8086_10fb: netdev found by name, not address.
             ('0000:81:00.1', 'physnet0', 'eth3', None, 4)],
            _pfs(pfs))
        self.assertEqual(
            [('0000:04:10.3', 0, None, None),
             ('0000:04:10.7', 1, 'enp2s1', None),
             ('0000:04:11.3', 2, None, None),
             ('0000:04:11.7', 3, None, None)],
            _vfs(pfs[0]))
        # Stride-2 VFs over two slots; 05:10.1 has no <numa> and takes
        # the PF's; 05:10.7 onwards have no netdev.
        self.assertEqual(
            [('0000:05:10.1', 0, 'enp5s16f1', 1),
             ('0000:05:10.3', 1, 'enp5s16f3', 1),
             ('0000:05:10.5', 2, 'enp5s16f5', 1),
             ('0000:05:10.7', 3, None, 1),
             ('0000:05:11.1', 4, None, 1),
             ('0000:05:11.3', 5, None, 1),
             ('0000:05:11.5', 6, None, 1)],
            _vfs(pfs[1]))
        self.assertEqual(
            [('0000:81:10.1', 0, 'eth10', None),
             ('0000:81:10.3', 1, 'eth11', None),
             ('0000:81:10.5', 2, None, None),
             ('0000:81:10.7', 3, None, None)],
            _vfs(pfs[2]))
        self.assertEqual('1520', pfs[0]['vfs'][1]['product_id'])
        self.assertEqual([], self.warnings())

    def test_mellanox_and_x540_host(self):
        pfs = self.discover('fixtures_mlx_x540.xml', ANY)
        # 03:00.1 is SR-IOV capable with 0 VFs: not reported.  82:00.0
        # parents its uplink and two representors: the uplink is reported.
        self.assertEqual(
            [('0000:03:00.0', 'physnet0', 'enp3s0f0', 0, 4),
             ('0000:81:00.0', 'physnet0', 'enp129s0f0', 0, 1),
             ('0000:82:00.0', 'physnet0', 'enp130s0f0np0', 1, 8)],
            _pfs(pfs))
        self.assertEqual(
            [('0000:03:00.2', 0, 'enp3s0f0v0', 0),
             ('0000:03:00.3', 1, 'enp3s0f0v1', 0),
             ('0000:03:00.4', 2, None, 0),
             ('0000:03:00.5', 3, None, 0)],
            _vfs(pfs[0]))
        self.assertEqual([('0000:81:00.1', 0, None, 0)], _vfs(pfs[1]))
        # The VF list crosses from slot 00 to slot 01.
        self.assertEqual(
            ['0000:82:00.3', '0000:82:00.4', '0000:82:00.5', '0000:82:00.6',
             '0000:82:00.7', '0000:82:01.0', '0000:82:01.1', '0000:82:01.2'],
            [vf['address'] for vf in pfs[2]['vfs']])
        self.assertEqual(list(range(8)),
                         [vf['vf_index'] for vf in pfs[2]['vfs']])
        self.assertEqual('enp130s0f0v0', pfs[2]['vfs'][0]['netdev'])
        self.assertEqual([], self.warnings())

    def test_vf_devname_selects_only_that_vf(self):
        pfs = self.discover('fixtures_intel.xml', [
            '{"devname": "enp2s1", "physical_network": "p"}'])
        self.assertEqual([('0000:04:00.3', 'p', None, None, 1)], _pfs(pfs))
        self.assertEqual([('0000:04:10.7', 1, 'enp2s1', None)], _vfs(pfs[0]))

    def test_pf_devname_with_vf_product(self):
        pfs = self.discover('fixtures_intel.xml', [
            '{"devname": "eth3", "product_id": "10ed", '
            '"physical_network": "p"}'])
        self.assertEqual([('0000:81:00.1', 'p', 'eth3', None, 4)], _pfs(pfs))
        self.assertEqual([], self.discover('fixtures_intel.xml', [
            '{"devname": "eth3", "product_id": "10ca", '
            '"physical_network": "p"}']))

    def test_uplink_devname_selects_all_vfs(self):
        pfs = self.discover('fixtures_mlx_x540.xml', [
            '{"devname": "enp130s0f0np0", "physical_network": "p"}'])
        self.assertEqual([('0000:82:00.0', 'p', 'enp130s0f0np0', 1, 8)],
                         _pfs(pfs))


class TestPhysicalNetworkPerPf(DiscoveryTestCase):
    """Specs that give VFs of one PF different networks."""

    VF_SPEC = '{"address": "0000:05:10.3", "physical_network": "b"}'
    PF_SPEC = '{"address": "0000:05:00.1", "physical_network": "a"}'

    def test_earliest_spec_wins_and_others_are_left_out(self):
        pfs = self.discover('fixtures_intel.xml',
                            [self.VF_SPEC, self.PF_SPEC])
        self.assertEqual([('0000:05:00.1', 'b', 'enp5s0f1', 1, 1)],
                         _pfs(pfs))
        self.assertEqual([('0000:05:10.3', 1, 'enp5s16f3', 1)], _vfs(pfs[0]))
        warnings = self.warnings()
        self.assertEqual(1, len(warnings))
        for text in ('PF 0000:05:00.1', "'b'", 'spec #0', self.VF_SPEC,
                     '0000:05:10.1, 0000:05:10.5, 0000:05:10.7, '
                     '0000:05:11.1, 0000:05:11.3, 0000:05:11.5'):
            self.assertIn(text, warnings[0])

    def test_pf_spec_first_takes_every_vf(self):
        pfs = self.discover('fixtures_intel.xml',
                            [self.PF_SPEC, self.VF_SPEC])
        self.assertEqual([('0000:05:00.1', 'a', 'enp5s0f1', 1, 7)],
                         _pfs(pfs))
        self.assertEqual([], self.warnings())

    def test_same_network_from_two_specs_is_no_conflict(self):
        pfs = self.discover('fixtures_intel.xml', [
            self.VF_SPEC.replace('"b"', '"a"'), self.PF_SPEC])
        self.assertEqual([('0000:05:00.1', 'a', 'enp5s0f1', 1, 7)],
                         _pfs(pfs))
        self.assertEqual([], self.warnings())

    def test_different_pfs_on_different_networks(self):
        pfs = self.discover('fixtures_intel.xml', [
            '{"address": "*:05:*.*", "physical_network": "a"}',
            '{"physical_network": "b"}'])
        self.assertEqual(['b', 'a', 'b'],
                         [pf['physical_network'] for pf in pfs])
        self.assertEqual([], self.warnings())


class TestOddHost(DiscoveryTestCase):
    """Broken and inconsistent devices cost one warning each."""

    def test_usable_part_is_reported(self):
        pfs = self.discover('odd.xml', ANY)
        self.assertEqual([('0000:02:00.0', 'physnet0', 'enp2s0f0', None, 3)],
                         _pfs(pfs))
        # 02:10.4 is absent: 02:10.6 keeps its kernel VF number 3.
        self.assertEqual([('0000:02:10.0', 0, None, None),
                          ('0000:02:10.2', 1, None, None),
                          ('0000:02:10.6', 3, None, None)], _vfs(pfs[0]))

    def test_warnings(self):
        self.discover('odd.xml', ANY)
        expected = [
            'Skipping node device pci_0000_02_11_0: product id '
            "'0x123456' out of range",
            'Skipping node device pci_bad_bus: PCI bus 0x12c out of range',
            'Skipping node device pci_bad_function: PCI function 0x9 out '
            'of range',
            'Skipping node device pci_0000_02_10_0_dup: node device '
            'pci_0000_02_10_0 already has PCI address 0000:02:10.0',
            'Skipping VF 0000:02:11.2 (pci_0000_02_11_2): PF 0000:02:00.0 '
            'lists it but its phys_function is 0000:09:00.0',
            'Skipping VFs 0000:02:10.4, 0000:02:11.0, 0000:02:11.4 of PF '
            '0000:02:00.0 (pci_0000_02_00_0): no usable node device',
            'Skipping VFs 0000:02:11.6: their PF is 0000:02:00.0 but PF '
            'pci_0000_02_00_0 does not list them',
            'Skipping VFs 0000:07:10.0: their PF is 0000:07:00.0 but '
            'libvirt lists no usable PF there',
        ]
        warnings = self.warnings()
        self.assertEqual(len(expected), len(warnings), warnings)
        for text in expected:
            self.assertEqual(1, sum(text in w for w in warnings), text)

    def test_no_spec_still_warns_about_broken_devices(self):
        self.assertEqual([], self.discover('odd.xml', []))
        self.assertIn('pci_bad_bus', self.log.output)


class _FakeDevice:
    def __init__(self, name, xml=None, error=None):
        self._name, self._xml, self._error = name, xml, error

    def name(self):
        return self._name

    def XMLDesc(self, flags=0):
        if self._error:
            raise self._error
        return self._xml


class _FakeConnection:
    """Stand-in for libvirt where the test driver cannot go."""

    def __init__(self, devices=(), error=None):
        self.devices, self.error, self.flags = list(devices), error, []

    def listAllDevices(self, flags=0):
        self.flags.append(flags)
        if self.error:
            raise self.error
        return self.devices


def _fixture(name):
    with open(os.path.join(NODEDEV, name)) as f:
        return f.read()


class TestFakeConnection(DiscoveryTestCase):

    def _conn(self):
        return _FakeConnection([
            _FakeDevice('pci_0000_81_00_0', _fixture('intel_x540_pf_1.xml')),
            _FakeDevice('pci_0000_81_00_1', _fixture('intel_x540_vf_1.xml')),
            _FakeDevice('pci_garbage', '<device><name>pci_garbage'),
            _FakeDevice('vdpa_vdpa0',
                        _fixture('mellanox_mlx5gen_vdpa_1.xml')),
            _FakeDevice('pci_gone', error=libvirt.libvirtError(
                'Node device not found')),
        ])

    def test_asks_for_pci_and_net_devices(self):
        conn = self._conn()
        self.discover(conn, ANY)
        self.assertEqual(
            [libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV |
             libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_NET], conn.flags)

    def test_unusable_devices_are_skipped_with_one_line_each(self):
        pfs = self.discover(self._conn(), ANY)
        self.assertEqual([('0000:81:00.0', 'physnet0', None, 0, 1)],
                         _pfs(pfs))
        warnings = self.warnings()
        self.assertEqual(3, len(warnings), warnings)
        self.assertIn('Skipping node device pci_garbage: not well-formed',
                      warnings[0])
        self.assertIn('Skipping node device pci_gone: libvirt cannot '
                      'describe it: Node device not found', warnings[1])
        self.assertIn("Skipping node device vdpa_vdpa0: device vdpa_vdpa0 "
                      "has capabilities ['vdpa']", warnings[2])

    def test_listing_errors_propagate(self):
        conn = _FakeConnection(error=libvirt.libvirtError('no connection'))
        self.assertRaises(libvirt.libvirtError, self.discover, conn, ANY)

    def test_custom_logger(self):
        log = self.useFixture(fixtures.FakeLogger(
            name='test.discovery', level=logging.WARNING))
        self.discover(self._conn(), ANY,
                      log=logging.getLogger('test.discovery'))
        self.assertIn('pci_garbage', log.output)
        self.assertEqual([], self.warnings())
