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

"""Builders and parsers of VF interface XML."""

import functools
from xml.etree import ElementTree as ET

import testtools

from vfpool.compute import guest
from vfpool.compute import vf_xml
from vfpool import exception
from vfpool.tests.unit import test_validation

DOMAIN_XML = """<domain type='qemu' id='3'>
  <name>guest1</name>
  <uuid>6c2b1d2e-8f2a-4c1b-9a55-0d5e2f7c1a11</uuid>
  <devices>
    <controller type='pci' index='0' model='pcie-root'>
      <alias name='pcie.0'/>
    </controller>
    <interface type='user'>
      <mac address='52:54:00:AA:00:01'/>
      <model type='virtio'/>
      <teaming type='persistent'/>
      <alias name='ua-standby'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00'
               function='0x0'/>
    </interface>
    <interface type='hostdev' managed='yes'>
      <mac address='52:54:00:aa:00:01'/>
      <driver name='vfio'/>
      <source>
        <address type='pci' domain='0x0000' bus='0x81' slot='0x10'
                 function='0x3'/>
      </source>
      <vlan><tag id='42'/></vlan>
      <teaming type='transient' persistent='ua-standby'/>
      <alias name='ua-vf-port1'/>
      <address type='pci' domain='0x0000' bus='0x02' slot='0x00'
               function='0x0'/>
    </interface>
    <interface type='user'>
      <mac address='52:54:00:bb:00:02'/>
      <model type='e1000e'/>
      <alias name='net2'/>
    </interface>
    <serial type='file'><alias name='serial0'/></serial>
  </devices>
</domain>
"""


class TestAlias(testtools.TestCase):
    """One alias rule: what a VF is called, and what libvirt accepts."""

    def test_vf_alias_from_mac_or_address(self):
        self.assertEqual('ua-vf-fa163e000001',
                         guest.vf_alias({'mac': 'FA:16:3E:00:00:01',
                                         'address': '0000:05:10.1'}))
        self.assertEqual('ua-vf-000005101',
                         guest.vf_alias({'address': '0000:05:10.1'}))

    def test_every_vf_alias_is_a_user_alias(self):
        for alloc in ({'mac': 'fa:16:3e:00:00:01'},
                      {'mac': None, 'address': '0000:05:10.1'}):
            alias = guest.vf_alias(alloc)
            self.assertTrue(vf_xml.is_user_alias(alias), alias)
            vf_xml.hostdev_interface_xml('0000:05:10.1',
                                         'fa:16:3e:00:00:01', alias=alias)

    def test_user_alias_drops_what_libvirt_refuses(self):
        self.assertEqual('ua-port1_-a', vf_xml.user_alias('port:1_-a.'))
        self.assertFalse(vf_xml.is_user_alias('net1'))
        self.assertFalse(vf_xml.is_user_alias('ua-'))


class TestHostdevInterfaceXML(testtools.TestCase):

    def test_minimal(self):
        xml = vf_xml.hostdev_interface_xml('0000:81:10.3',
                                           '52:54:00:12:34:56')
        iface = ET.fromstring(xml)
        self.assertEqual('interface', iface.tag)
        self.assertEqual({'type': 'hostdev', 'managed': 'yes'}, iface.attrib)
        self.assertEqual(
            {'type': 'pci', 'domain': '0x0000', 'bus': '0x81',
             'slot': '0x10', 'function': '0x3'},
            iface.find('source/address').attrib)
        self.assertEqual('52:54:00:12:34:56',
                         iface.find('mac').get('address'))
        for absent in ('vlan', 'alias', 'teaming'):
            self.assertIsNone(iface.find(absent), absent)

    def test_full(self):
        xml = vf_xml.hostdev_interface_xml(
            '0000:81:10.3', '52:54:00:12:34:56', vlan=42,
            alias='ua-vf-port1', teaming_persistent_alias='ua-standby')
        iface = ET.fromstring(xml)
        self.assertEqual('42', iface.find('vlan/tag').get('id'))
        self.assertEqual('ua-vf-port1', iface.find('alias').get('name'))
        self.assertEqual({'type': 'transient', 'persistent': 'ua-standby'},
                         iface.find('teaming').attrib)

    def test_vlan_zero_is_kept(self):
        iface = ET.fromstring(vf_xml.hostdev_interface_xml(
            '0000:81:10.3', '52:54:00:12:34:56', vlan=0))
        self.assertEqual('0', iface.find('vlan/tag').get('id'))

    def test_upper_case_input_is_canonicalised(self):
        iface = ET.fromstring(vf_xml.hostdev_interface_xml(
            '0000:AF:1F.7', '52:54:00:AB:CD:EF'))
        self.assertEqual('0xaf', iface.find('source/address').get('bus'))
        self.assertEqual('0x1f', iface.find('source/address').get('slot'))
        self.assertEqual('52:54:00:ab:cd:ef',
                         iface.find('mac').get('address'))

    def test_round_trip_through_parser(self):
        xml = vf_xml.hostdev_interface_xml(
            '0001:3b:02.5', '52:54:00:12:34:56', vlan=4095,
            alias='ua-x_1', teaming_persistent_alias='ua-standby')
        (info,) = vf_xml.parse_interfaces(
            '<domain><devices>%s</devices></domain>' % xml)
        self.assertEqual(
            vf_xml.InterfaceInfo(
                type='hostdev', mac='52:54:00:12:34:56', alias='ua-x_1',
                pci_address='0001:3b:02.5', vlan=4095,
                teaming_type='transient', teaming_persistent='ua-standby'),
            info)
        self.assertEqual(xml, info.xml)

    def test_invalid_input(self):
        good = dict(address='0000:81:10.3', mac='52:54:00:12:34:56')
        for bad in (dict(address='81:10.3'), dict(address='0000:81:10.8'),
                    dict(address='0000:81:10.3x'), dict(address=''),
                    dict(mac='52:54:00:12:34'), dict(mac='52-54-00-12-34-56'),
                    dict(mac="52:54:00:12:34:5'"),
                    dict(vlan=4096), dict(vlan=-1), dict(vlan='42'),
                    dict(vlan=True),
                    dict(alias='net0'), dict(alias='ua-'),
                    dict(alias="ua-a'b"), dict(alias='ua-a b'),
                    dict(teaming_persistent_alias='standby')):
            kwargs = dict(good, **bad)
            for builder in (vf_xml.hostdev_interface_xml,
                            vf_xml.emulated_interface_xml):
                self.assertRaises(exception.InvalidInput, builder, **kwargs)

    def test_same_edges_as_the_server(self):
        # A slot is 0x00-0x1f: the server refuses 0000:05:20.0, so the
        # compute side must not build XML for it either.
        good = dict(address='0000:81:10.3', mac='52:54:00:12:34:56')
        edges = {'address': test_validation.PCI_EDGES,
                 'mac': test_validation.MAC_EDGES,
                 'vlan': test_validation.VLAN_EDGES}
        for key, (accepted, refused) in edges.items():
            for builder in (vf_xml.hostdev_interface_xml,
                            vf_xml.emulated_interface_xml):
                for value in accepted:
                    builder(**dict(good, **{key: value}))
                for value in refused:
                    self.assertRaises(exception.InvalidInput, builder,
                                      **dict(good, **{key: value}))


class TestEmulatedInterfaceXML(testtools.TestCase):

    def test_virtio_default(self):
        iface = ET.fromstring(vf_xml.emulated_interface_xml(
            '0000:81:10.3', '52:54:00:12:34:56', vlan=42, alias='ua-vf0',
            teaming_persistent_alias='ua-standby'))
        self.assertEqual({'type': 'user'}, iface.attrib)
        self.assertEqual('virtio', iface.find('model').get('type'))
        self.assertEqual('52:54:00:12:34:56',
                         iface.find('mac').get('address'))
        self.assertEqual('ua-vf0', iface.find('alias').get('name'))
        # libvirt refuses a VLAN, a PCI source and a transient teaming on
        # a user-mode interface, so the stand-in carries none of them.
        for absent in ('vlan', 'teaming', 'source'):
            self.assertIsNone(iface.find(absent), absent)

    def test_e1000e_through_partial_keeps_the_signature(self):
        builder: vf_xml.VFXMLBuilder = functools.partial(
            vf_xml.emulated_interface_xml, model='e1000e')
        iface = ET.fromstring(builder('0000:81:10.3', '52:54:00:12:34:56',
                                      None, 'ua-vf0', None))
        self.assertEqual('e1000e', iface.find('model').get('type'))

    def test_on_a_bridge_is_a_tap_there(self):
        iface = ET.fromstring(vf_xml.emulated_interface_xml(
            '0000:81:10.3', '52:54:00:12:34:56', alias='ua-vf0',
            model='e1000e', bridge='br0'))
        self.assertEqual({'type': 'bridge'}, iface.attrib)
        self.assertEqual({'bridge': 'br0'}, iface.find('source').attrib)
        info = vf_xml.find_interface_by_mac(
            '<domain><devices>%s</devices></domain>'
            % ET.tostring(iface, encoding='unicode'), '52:54:00:12:34:56')
        self.assertEqual(('bridge', 'e1000e', 'ua-vf0', None),
                         (info.type, info.model, info.alias,
                          info.pci_address))

    def test_unknown_model(self):
        self.assertRaises(exception.InvalidInput,
                          vf_xml.emulated_interface_xml,
                          '0000:81:10.3', '52:54:00:12:34:56', model='rtl')

    def test_round_trip_through_parser(self):
        xml = vf_xml.emulated_interface_xml(
            '0000:81:10.3', '52:54:00:12:34:56', alias='ua-vf0',
            model='e1000e')
        info = vf_xml.find_interface_by_mac(
            '<domain><devices>%s</devices></domain>' % xml,
            '52:54:00:12:34:56')
        self.assertEqual(('user', 'e1000e', 'ua-vf0', None),
                         (info.type, info.model, info.alias,
                          info.pci_address))

    def test_builders_share_the_protocol(self):
        builders: list[vf_xml.VFXMLBuilder] = [
            vf_xml.hostdev_interface_xml, vf_xml.emulated_interface_xml]
        for builder in builders:
            xml = builder(address='0000:81:10.3', mac='52:54:00:12:34:56',
                          vlan=7, alias='ua-vf0',
                          teaming_persistent_alias=None)
            info = vf_xml.find_interface_by_mac(
                '<domain><devices>%s</devices></domain>' % xml,
                '52:54:00:12:34:56')
            self.assertEqual('ua-vf0', info.alias)


class TestEscaping(testtools.TestCase):
    """Values are validated, and the XML layer escapes whatever remains."""

    def test_validation_keeps_markup_out(self):
        for alias in ('ua-"/><x y="', 'ua-<b>', 'ua-&amp;'):
            self.assertRaises(exception.InvalidInput,
                              vf_xml.hostdev_interface_xml,
                              '0000:81:10.3', '52:54:00:12:34:56',
                              alias=alias)

    def test_parser_unescapes_attribute_values(self):
        xml = ("<domain><devices><interface type='user'>"
               "<mac address='52:54:00:12:34:56'/>"
               "<alias name='ua-a&amp;&lt;&apos;&quot;b'/>"
               "</interface></devices></domain>")
        (info,) = vf_xml.parse_interfaces(xml)
        self.assertEqual('ua-a&<\'"b', info.alias)
        # And the element is serialised back well-formed and escaped.
        again = ET.fromstring(info.xml)
        self.assertEqual('ua-a&<\'"b', again.find('alias').get('name'))

    def test_unparsable_domain_xml(self):
        self.assertRaises(exception.InvalidInput, vf_xml.parse_interfaces,
                          '<domain><devices>')


class TestDomainParsing(testtools.TestCase):

    def test_parse_interfaces(self):
        infos = vf_xml.parse_interfaces(DOMAIN_XML)
        self.assertEqual(['ua-standby', 'ua-vf-port1', 'net2'],
                         [i.alias for i in infos])
        self.assertEqual(['user', 'hostdev', 'user'],
                         [i.type for i in infos])
        self.assertEqual('52:54:00:aa:00:01', infos[0].mac)
        self.assertIsNone(infos[0].pci_address)  # guest address, not host
        self.assertEqual('0000:81:10.3', infos[1].pci_address)
        self.assertEqual(42, infos[1].vlan)

    def test_find_by_mac_prefers_the_vf_over_its_standby(self):
        info = vf_xml.find_interface_by_mac(DOMAIN_XML, '52:54:00:AA:00:01')
        self.assertEqual(('hostdev', 'ua-vf-port1', '0000:81:10.3'),
                         (info.type, info.alias, info.pci_address))
        self.assertEqual('ua-standby', info.teaming_persistent)

    def test_find_by_mac_falls_back_to_the_standby(self):
        root = ET.fromstring(DOMAIN_XML)
        devices = root.find('devices')
        devices.remove(devices.findall('interface')[1])
        info = vf_xml.find_interface_by_mac(root, '52:54:00:aa:00:01')
        self.assertEqual('ua-standby', info.alias)

    def test_find_by_mac_missing(self):
        self.assertIsNone(vf_xml.find_interface_by_mac(DOMAIN_XML,
                                                       '52:54:00:00:00:99'))

    def test_find_persistent_teaming_interface(self):
        info = vf_xml.find_persistent_teaming_interface(DOMAIN_XML)
        self.assertEqual(('ua-standby', 'virtio', 'persistent'),
                         (info.alias, info.model, info.teaming_type))
        self.assertIsNone(vf_xml.find_persistent_teaming_interface(
            '<domain><devices/></domain>'))

    def test_teaming_pair_round_trip(self):
        standby = vf_xml.find_persistent_teaming_interface(DOMAIN_XML)
        xml = vf_xml.hostdev_interface_xml(
            '0000:82:00.2', standby.mac, alias='ua-vf-port2',
            teaming_persistent_alias=standby.alias)
        info = vf_xml.find_interface_by_mac(
            '<domain><devices>%s</devices></domain>' % xml, standby.mac)
        self.assertEqual(('transient', 'ua-standby'),
                         (info.teaming_type, info.teaming_persistent))

    def test_aliases(self):
        self.assertEqual({'pcie.0', 'ua-standby', 'ua-vf-port1', 'net2',
                          'serial0'}, vf_xml.device_aliases(DOMAIN_XML))
        self.assertTrue(vf_xml.has_device_alias(DOMAIN_XML, 'ua-vf-port1'))
        self.assertFalse(vf_xml.has_device_alias(DOMAIN_XML, 'ua-vf'))
        self.assertEqual(set(), vf_xml.device_aliases('<domain/>'))
