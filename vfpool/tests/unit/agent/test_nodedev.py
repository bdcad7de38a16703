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

import os
from xml.etree import ElementTree

import testscenarios
import testtools

from vfpool.agent import nodedev

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'data',
                        'nodedev')
INTEL = 'Intel Corporation'
MLX = 'Mellanox Technologies'


def _vfs(bus, pairs):
    return tuple('0000:%s:%s' % (bus, p) for p in pairs.split())


# What each fixture holds; SOURCES.md explains the quirks noted here.
EXPECTED = {
    'intel_82576_pf_1.xml': nodedev.PciDevice(
        name='pci_0000_05_00_1', parent='pci_0000_00_09_0',
        address='0000:05:00.1', vendor_id='8086', product_id='10c9',
        vendor_name=INTEL, product_name='82576 Gigabit Network Connection',
        numa_node=1, driver='igb', sriov_capable=True, max_vfs=None,
        vf_addresses=_vfs('05', '10.1 10.3 10.5 10.7 11.1 11.3 11.5')),
    # numa node written with double quotes.
    'intel_82576_vf_1.xml': nodedev.PciDevice(
        name='pci_0000_05_10_7', parent='pci_0000_00_09_0',
        address='0000:05:10.7', vendor_id='8086', product_id='10ca',
        vendor_name=INTEL, product_name='82576 Virtual Function',
        numa_node=1, driver='igbvf', pf_address='0000:05:00.1'),
    # Documentation example: no <numa>, no maxCount.
    'intel_82576_pf_4.xml': nodedev.PciDevice(
        name='pci_0000_02_00_0', parent='pci_0000_00_04_0',
        address='0000:02:00.0', vendor_id='8086', product_id='10c9',
        vendor_name=INTEL, product_name='82576 Gigabit Network Connection',
        numa_node=None, driver='igb', sriov_capable=True,
        vf_addresses=_vfs('02', '10.0 10.2 10.4 10.6 11.0 11.2 11.4')),
    # Node name not derived from the address; bus 129 is 0x81.
    'intel_82599es_pf_1.xml': nodedev.PciDevice(
        name='pci_8086_10fb', parent='pci_0000_80_01_0',
        address='0000:81:00.1', vendor_id='8086', product_id='10fb',
        vendor_name=INTEL,
        product_name='82599ES 10-Gigabit SFI/SFP+ Network Connection',
        driver='ixgbe', sriov_capable=True, max_vfs=63,
        vf_addresses=_vfs('81', '10.1 10.3 10.5 10.7')),
    'intel_82599es_net_1.xml': nodedev.NetDevice(
        name='net_00_1b_21_5a_69_f5', parent='pci_8086_10fb',
        interface='eth3', mac='00:1b:21:5a:69:f5'),
    # Unpadded slot='0x0' in the address attributes.
    'intel_x540_pf_1.xml': nodedev.PciDevice(
        name='pci_0000_81_00_0', parent='pci_0000_80_01_0',
        address='0000:81:00.0', vendor_id='8086', product_id='1528',
        vendor_name=INTEL,
        product_name='Ethernet Controller 10-Gigabit X540-AT2',
        numa_node=0, driver='ixgbe', sriov_capable=True,
        vf_addresses=('0000:81:00.1',)),
    # The VF's parent is the PF; unpadded slot in phys_function.
    'intel_x540_vf_1.xml': nodedev.PciDevice(
        name='pci_0000_81_00_1', parent='pci_0000_81_00_0',
        address='0000:81:00.1', vendor_id='8086', product_id='1515',
        vendor_name=INTEL,
        product_name='X540 Ethernet Controller Virtual Function',
        numa_node=0, driver='ixgbevf', pf_address='0000:81:00.0'),
    'intel_i350_pf_1.xml': nodedev.PciDevice(
        name='pci_0000_04_00_3', parent='pci_0000_00_01_1',
        address='0000:04:00.3', vendor_id='8086', product_id='1521',
        vendor_name=INTEL, product_name='I350 Gigabit Network Connection',
        driver='igb', sriov_capable=True,
        vf_addresses=_vfs('04', '10.3 10.7 11.3 11.7')),
    # Product text spanning a newline; empty virt_functions next to
    # phys_function: still a VF.
    'intel_i350_vf_1.xml': nodedev.PciDevice(
        name='pci_0000_04_10_7', parent='pci_0000_04_00_3',
        address='0000:04:10.7', vendor_id='8086', product_id='1520',
        vendor_name=INTEL,
        product_name='I350 Ethernet Controller Virtual Function',
        driver='igbvf', sriov_capable=True, pf_address='0000:04:00.3'),
    'intel_i350_net_1.xml': nodedev.NetDevice(
        name='net_enp2s1_02_9a_a1_37_be_54', parent='pci_0000_04_10_7',
        interface='enp2s1', mac='02:9a:a1:37:be:54'),
    # VFs on the PF's own slot.
    'mellanox_cx4_pf_1.xml': nodedev.PciDevice(
        name='pci_0000_03_00_0', parent='pci_0000_00_02_0',
        address='0000:03:00.0', vendor_id='15b3', product_id='1013',
        vendor_name=MLX, product_name='MT27700 Family [ConnectX-4]',
        numa_node=0, driver='mlx5_core', sriov_capable=True, max_vfs=16,
        vf_addresses=_vfs('03', '00.2 00.3 00.4 00.5')),
    # SR-IOV capable, 0 VFs enabled.
    'mellanox_cx4_pf_2.xml': nodedev.PciDevice(
        name='pci_0000_03_00_1', parent='pci_0000_00_02_0',
        address='0000:03:00.1', vendor_id='15b3', product_id='1013',
        vendor_name=MLX, product_name='MT27700 Family [ConnectX-4]',
        numa_node=0, driver='mlx5_core', sriov_capable=True, max_vfs=16),
    # VF list crossing from slot 00 to slot 01; a vpd capability.
    'mellanox_bluefield2_pf_2.xml': nodedev.PciDevice(
        name='pci_0000_82_00_0', parent='pci_0000_80_03_0',
        address='0000:82:00.0', vendor_id='15b3', product_id='a2d6',
        vendor_name=MLX,
        product_name='MT42822 BlueField-2 integrated ConnectX-6 Dx '
                     'network controller',
        numa_node=1, driver='mlx5_core', sriov_capable=True, max_vfs=8,
        vf_addresses=_vfs('82', '00.3 00.4 00.5 00.6 00.7 01.0 01.1 01.2')),
    # Same driver as the PF.
    'mellanox_bluefield2_vf_1.xml': nodedev.PciDevice(
        name='pci_0000_82_00_3', parent='pci_0000_80_03_0',
        address='0000:82:00.3', vendor_id='15b3', product_id='101e',
        vendor_name=MLX,
        product_name='ConnectX Family mlx5Gen Virtual Function',
        numa_node=1, driver='mlx5_core', pf_address='0000:82:00.0'),
    'mellanox_bluefield2_net_1.xml': nodedev.NetDevice(
        name='net_enp130s0f0v0_36_33_10_a3_94_64', parent='pci_0000_82_00_3',
        interface='enp130s0f0v0', mac='36:33:10:a3:94:64'),
}

# Files that are not node devices (or not PCI/net ones): the parser
# refuses them, and their PCI <address> elements still parse.
NOT_NODE_DEVICES = {
    'mellanox_mlx5gen_vdpa_1.xml': ('vdpa', []),
    'intel_82576_domain_1.xml': ('<interface>', ['0000:05:10.7']),
    'unknown_ovirtfailover_domain_1.xml': ('<devices>', ['0000:b3:02.3']),
    'libvirt_hostdev_network_1.xml': (
        '<network>', list(_vfs('03', '00.1 00.2 00.3 00.4'))),
}


def _read(filename):
    with open(os.path.join(FIXTURES, filename)) as f:
        return f.read()


class TestFixtures(testscenarios.WithScenarios, testtools.TestCase):
    """One test per file found in tests/data/nodedev."""

    scenarios = [(name, {'filename': name})
                 for name in sorted(os.listdir(FIXTURES))
                 if name.endswith('.xml')]

    def test_parse(self):
        xml = _read(self.filename)
        if self.filename in NOT_NODE_DEVICES:
            reason, addresses = NOT_NODE_DEVICES[self.filename]
            exc = self.assertRaises(nodedev.NodeDeviceParseError,
                                    nodedev.parse_node_device, xml)
            self.assertIn(reason, str(exc))
            root = ElementTree.fromstring(xml)
            self.assertEqual(
                addresses,
                [nodedev.parse_address_element(a)
                 for a in root.iter('address') if a.get('type') == 'pci'])
            return
        self.assertIn(self.filename, EXPECTED,
                      'new fixture: add its expected values to EXPECTED')
        self.assertEqual(EXPECTED[self.filename],
                         nodedev.parse_node_device(xml))


class TestFixtureKinds(testtools.TestCase):

    def _parse(self, filename):
        return nodedev.parse_node_device(_read(filename))

    def test_every_expectation_has_a_file(self):
        files = {n for n in os.listdir(FIXTURES) if n.endswith('.xml')}
        self.assertEqual(files, set(EXPECTED) | set(NOT_NODE_DEVICES))

    def test_pf_and_vf_roles(self):
        roles = {name: (dev.is_pf, dev.is_vf)
                 for name, dev in EXPECTED.items()
                 if isinstance(dev, nodedev.PciDevice)}
        for name, (is_pf, is_vf) in roles.items():
            self.assertEqual('_pf_' in name, is_pf, name)
            self.assertEqual('_vf_' in name, is_vf, name)

    def test_empty_virt_functions_next_to_phys_function_is_a_vf(self):
        vf = self._parse('intel_i350_vf_1.xml')
        self.assertTrue(vf.sriov_capable)
        self.assertTrue(vf.is_vf)
        self.assertFalse(vf.is_pf)

    def test_pf_with_max_count_and_no_vfs_is_a_pf(self):
        pf = self._parse('mellanox_cx4_pf_2.xml')
        self.assertTrue(pf.is_pf)
        self.assertEqual((), pf.vf_addresses)
        self.assertEqual(16, pf.max_vfs)

    def test_unpadded_slot_is_canonical(self):
        self.assertEqual('0000:81:00.0',
                         self._parse('intel_x540_vf_1.xml').pf_address)


def _pci_xml(pci_body='', domain='0', bus='5', slot='16', function='7',
             vendor="<vendor id='0x8086'>Intel</vendor>",
             product="<product id='0x10ca'>VF</product>", extra=''):
    parts = ['<domain>%s</domain>' % domain if domain is not None else '',
             '<bus>%s</bus>' % bus if bus is not None else '',
             '<slot>%s</slot>' % slot if slot is not None else '',
             '<function>%s</function>' % function
             if function is not None else '',
             vendor, product, pci_body]
    return ("<device><name>pci_x</name><parent>p</parent>%s"
            "<capability type='pci'>%s</capability></device>"
            % (extra, ''.join(parts)))


ADDR_PF = "<address domain='0x0000' bus='0x05' slot='0x00' function='0x1'/>"


class TestOddXml(testscenarios.WithScenarios, testtools.TestCase):
    """Garbage raises NodeDeviceParseError with a useful reason."""

    scenarios = [
        ('not_xml', {'xml': 'this is not <xml', 'reason': 'well-formed'}),
        ('empty', {'xml': '', 'reason': 'well-formed'}),
        ('wrong_root', {'xml': '<domain/>', 'reason': '<domain>'}),
        ('no_name', {'xml': "<device><capability type='pci'/></device>",
                     'reason': 'without <name>'}),
        ('no_capability', {'xml': '<device><name>x</name></device>',
                           'reason': 'expected one pci or net'}),
        ('two_capabilities', {
            'xml': "<device><name>x</name><capability type='pci'/>"
                   "<capability type='net'/></device>",
            'reason': "['pci', 'net']"}),
        ('no_bus', {'xml': _pci_xml(bus=None), 'reason': '<bus>'}),
        ('no_function', {'xml': _pci_xml(function=None),
                         'reason': '<function>'}),
        ('bus_hex_garbage', {'xml': _pci_xml(bus='0xzz'),
                             'reason': 'invalid PCI bus'}),
        ('bus_negative', {'xml': _pci_xml(bus='-1'),
                          'reason': 'invalid PCI bus'}),
        ('bus_too_big', {'xml': _pci_xml(bus='256'), 'reason': 'bus 0x100'}),
        ('slot_too_big', {'xml': _pci_xml(slot='32'),
                          'reason': 'slot 0x20'}),
        ('function_too_big', {'xml': _pci_xml(function='8'),
                              'reason': 'function 0x8'}),
        ('domain_too_big', {'xml': _pci_xml(domain='65536'),
                            'reason': 'domain 0x10000'}),
        ('no_vendor', {'xml': _pci_xml(vendor=''), 'reason': 'no vendor'}),
        ('vendor_without_id', {'xml': _pci_xml(vendor='<vendor>I</vendor>'),
                               'reason': 'no vendor'}),
        ('vendor_garbage', {
            'xml': _pci_xml(vendor="<vendor id='intel'/>"),
            'reason': "invalid vendor id 'intel'"}),
        ('product_too_wide', {
            'xml': _pci_xml(product="<product id='0x123456'/>"),
            'reason': 'out of range'}),
        ('numa_garbage', {'xml': _pci_xml("<numa node='zero'/>"),
                          'reason': 'NUMA'}),
        ('numa_negative', {'xml': _pci_xml("<numa node='-2'/>"),
                           'reason': 'NUMA'}),
        ('vf_address_without_slot', {
            'xml': _pci_xml("<capability type='virt_functions'><address "
                            "domain='0x0000' bus='0x05' function='0x1'/>"
                            "</capability>"),
            'reason': 'without slot'}),
        ('vf_listed_twice', {
            'xml': _pci_xml("<capability type='virt_functions'>%s%s"
                            "</capability>" % (ADDR_PF, ADDR_PF)),
            'reason': 'twice'}),
        ('max_count_garbage', {
            'xml': _pci_xml("<capability type='virt_functions' "
                            "maxCount='many'/>"),
            'reason': 'maxCount'}),
        ('phys_function_empty', {
            'xml': _pci_xml("<capability type='phys_function'/>"),
            'reason': '0 addresses'}),
        ('phys_function_two', {
            'xml': _pci_xml("<capability type='phys_function'>%s%s"
                            "</capability>" % (ADDR_PF, ADDR_PF)),
            'reason': '2 addresses'}),
        ('vf_and_pf', {
            'xml': _pci_xml("<capability type='phys_function'>%s"
                            "</capability><capability type='virt_functions'>"
                            "<address domain='0' bus='0x05' slot='0x10' "
                            "function='0x1'/></capability>" % ADDR_PF),
            'reason': 'both a VF'}),
        ('net_without_interface', {
            'xml': "<device><name>net_x</name><capability type='net'>"
                   "<address>00:11:22:33:44:55</address></capability>"
                   "</device>",
            'reason': '<interface>'}),
    ]

    def test_raises(self):
        exc = self.assertRaises(nodedev.NodeDeviceParseError,
                                nodedev.parse_node_device, self.xml)
        self.assertIn(self.reason, str(exc))
        self.assertIsInstance(exc, ValueError)


class TestLenientXml(testtools.TestCase):
    """Variants that real libvirt or other tools produce, all accepted."""

    def test_hex_and_padded_numbers(self):
        dev = nodedev.parse_node_device(_pci_xml(
            domain='0x0001', bus='0x81', slot='010', function='0x7',
            vendor="<vendor id='0X15B3'/>", product="<product id='101e'/>"))
        self.assertEqual('0001:81:0a.7', dev.address)
        self.assertEqual(('15b3', '101e'), (dev.vendor_id, dev.product_id))
        self.assertIsNone(dev.vendor_name)

    def test_numa_minus_one_means_unknown(self):
        dev = nodedev.parse_node_device(_pci_xml("<numa node='-1'/>"))
        self.assertIsNone(dev.numa_node)

    def test_address_without_domain_means_domain_0(self):
        dev = nodedev.parse_node_device(_pci_xml(
            "<capability type='phys_function'><address bus='5' slot='0' "
            "function='1'/></capability>"))
        self.assertEqual('0000:05:00.1', dev.pf_address)
        self.assertTrue(dev.is_vf)

    def test_plain_pci_device_is_neither_pf_nor_vf(self):
        dev = nodedev.parse_node_device(_pci_xml(extra=(
            '<driver><name>vfio-pci</name></driver>')))
        self.assertEqual('vfio-pci', dev.driver)
        self.assertFalse(dev.is_pf)
        self.assertFalse(dev.is_vf)

    def test_net_without_mac(self):
        dev = nodedev.parse_node_device(
            "<device><name>net_lo</name><capability type='net'>"
            "<interface> lo </interface></capability></device>")
        self.assertEqual(nodedev.NetDevice(name='net_lo', parent=None,
                                           interface='lo', mac=None), dev)

    def test_format_address(self):
        self.assertEqual('000a:0b:1f.7', nodedev.format_address(10, 11, 31, 7))
