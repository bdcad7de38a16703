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


"""vfpool.pci, and the readers of libvirt's ``<address>`` agreeing on it."""

from xml.etree import ElementTree as ET

import testtools

from vfpool.agent import nodedev
from vfpool.compute import vf_xml
from vfpool import exception
from vfpool.manage import domains
from vfpool import pci
from vfpool import validation


def _address(attrs: str) -> str:
    return '<address %s/>' % attrs


class TestAddress(testtools.TestCase):

    def test_format_and_parse_round_trip(self):
        for text in ('0000:00:00.0', '000a:0b:1f.7', 'ffff:ff:1f.7'):
            self.assertEqual(text, str(pci.parse(text)))
        self.assertEqual('000a:0b:1f.7', pci.format_address(10, 11, 31, 7))

    def test_limits(self):
        for fields, why in (((0x10000, 0, 0, 0), 'domain 0x10000'),
                            ((0, 0x100, 0, 0), 'bus 0x100'),
                            ((0, 0, 0x20, 0), 'slot 0x20'),
                            ((0, 0, 0, 8), 'function 0x8'),
                            ((0, -1, 0, 0), 'bus -0x1')):
            exc = self.assertRaises(pci.InvalidAddress,
                                    pci.format_address, *fields)
            self.assertIn(why, str(exc))

    def test_only_the_canonical_form_parses(self):
        for text in ('0000:05:10.1 ', '0000:05:20.0', '0000:05:10.8',
                     '0000:5:10.1', '05:10.1', '0000:05:10.A', 5):
            self.assertRaises(pci.InvalidAddress, pci.parse, text)

    def test_validation_uses_the_same_rule(self):
        self.assertEqual('0000:05:1f.7',
                         validation.pci_address('a', '0000:05:1F.7'))
        self.assertRaises(exception.InvalidInput, validation.pci_address, 'a',
                          '0000:05:20.0')

    def test_xml_attributes(self):
        self.assertEqual({'domain': '0x0000', 'bus': '0x05', 'slot': '0x10',
                          'function': '0x1'},
                         pci.parse('0000:05:10.1').xml_attributes())


class TestElement(testtools.TestCase):

    def test_forms_libvirt_writes(self):
        for attrs in ("domain='0x0000' bus='0x05' slot='0x10' "
                      "function='0x1'",
                      "bus='0x5' slot='0x10' function='0x1'",
                      "domain='0' bus='5' slot='16' function='1'",
                      "domain='0X0000' bus=' 0x05' slot='0x10' "
                      "function='0x1'"):
            self.assertEqual('0000:05:10.1', pci.parse_element(
                ET.fromstring(_address(attrs))), attrs)

    def test_refused(self):
        for attrs, why in (
                ("domain='0' slot='0x10' function='0x1'", 'without bus'),
                ("bus='0x05' slot='0x20' function='0x1'", 'slot 0x20'),
                ("bus='-1' slot='0x10' function='0x1'", 'invalid PCI bus'),
                ("bus='0o5' slot='0x10' function='0x1'", 'invalid PCI bus'),
                ("bus='1_0' slot='0x10' function='0x1'", 'invalid PCI bus')):
            exc = self.assertRaises(pci.InvalidAddress, pci.parse_element,
                                    ET.fromstring(_address(attrs)))
            self.assertIn(why, str(exc))

    def test_source_address(self):
        def device(source: str) -> ET.Element:
            return ET.fromstring("<interface type='hostdev'>%s</interface>"
                                 % source)
        self.assertEqual('0000:05:10.1', pci.source_address(device(
            "<source><address type='pci' bus='0x05' slot='0x10' "
            "function='0x1'/></source>")))
        self.assertIsNone(pci.source_address(device('')))
        self.assertIsNone(pci.source_address(device(
            "<source><address type='usb' bus='1' device='2'/></source>")))
        self.assertIsNone(pci.source_address(device(
            "<source><address bus='0x05' slot='0x30' function='0x1'/>"
            "</source>")))


class TestReadersAgree(testtools.TestCase):
    """The agent, the compute side and the audit read one address alike.

    Before issue 22 each had its own reader: the audit skipped an address
    without a domain (libvirt's default is 0), the compute side read a
    missing bus as 0 and took ``0o5`` or ``-1``.
    """

    CASES = [
        "domain='0x0000' bus='0x05' slot='0x10' function='0x1'",
        "bus='0x05' slot='0x10' function='0x1'",
        "domain='0' bus='5' slot='16' function='1'",
        "domain='0x0000' slot='0x10' function='0x1'",
        "domain='0x0000' bus='0o5' slot='0x10' function='0x1'",
        "domain='0x0000' bus='-1' slot='0x10' function='0x1'",
        "domain='0x0000' bus='0x05' slot='0x20' function='0x1'",
    ]

    @staticmethod
    def agent(attrs: str) -> str | None:
        try:
            return nodedev.parse_address_element(
                ET.fromstring(_address(attrs)))
        except nodedev.NodeDeviceParseError:
            return None

    @staticmethod
    def domain_xml(attrs: str) -> str:
        return ("<domain><devices><interface type='hostdev'><source>"
                "<address type='pci' %s/></source>"
                "<mac address='fa:16:3e:00:00:01'/></interface>"
                "</devices></domain>" % attrs)

    def compute(self, attrs: str) -> str | None:
        [info] = vf_xml.parse_interfaces(self.domain_xml(attrs))
        return info.pci_address

    def audit(self, attrs: str) -> str | None:
        found = domains.pci_sources(self.domain_xml(attrs))
        return found.pop() if found else None

    def test_same_answer(self):
        for attrs in self.CASES:
            expected = self.agent(attrs)
            self.assertEqual(expected, self.compute(attrs), attrs)
            self.assertEqual(expected, self.audit(attrs), attrs)
        self.assertEqual(['0000:05:10.1'] * 3 + [None] * 4,
                         [self.agent(a) for a in self.CASES])
