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

import testscenarios
import testtools

from vfpool.agent import device_spec

PF = device_spec.PciFunction(address='0000:05:00.1', vendor_id='8086',
                             product_id='10c9', netdevs=('enp5s0f1',))
VF = device_spec.PciFunction(address='0000:05:10.3', vendor_id='8086',
                             product_id='10ca', netdevs=('enp5s16f3',))
VFIO_VF = device_spec.PciFunction(address='0000:05:11.1', vendor_id='8086',
                                  product_id='10ca')


def _spec(**kwargs):
    kwargs.setdefault('physical_network', 'physnet1')
    return device_spec.DeviceSpec(**kwargs)


class TestParse(testtools.TestCase):

    def test_full_spec(self):
        value = ('{"vendor_id": "0x8086", "product_id": "10CA", '
                 '"address": "0000:05:*.*", "devname": "enp5s0f1", '
                 '"physical_network": "physnet1"}')
        spec = device_spec.parse_spec(value)
        self.assertEqual('physnet1', spec.physical_network)
        self.assertEqual(('8086', '10ca'), (spec.vendor_id, spec.product_id))
        self.assertEqual(device_spec.AddressPattern(0, 5, None, None),
                         spec.address)
        self.assertEqual('enp5s0f1', spec.devname)
        self.assertEqual(value, spec.source)

    def test_only_physical_network(self):
        spec = device_spec.parse_spec('{"physical_network": "p"}')
        self.assertEqual(_spec(physical_network='p',
                               source='{"physical_network": "p"}'), spec)

    def test_star_means_any(self):
        spec = device_spec.parse_spec(
            '{"vendor_id": "*", "product_id": "*", "physical_network": "p"}')
        self.assertIsNone(spec.vendor_id)
        self.assertIsNone(spec.product_id)

    def test_short_ids_are_padded(self):
        spec = device_spec.parse_spec(
            '{"vendor_id": "8086", "product_id": "1f", '
            '"physical_network": "p"}')
        self.assertEqual('001f', spec.product_id)

    def test_address_strings(self):
        cases = {
            '0000:05:10.3': (0, 5, 0x10, 3),
            '*:81:00.*': (None, 0x81, 0, None),
            '81:00.1': (None, 0x81, 0, 1),
            'AF:1F.7': (None, 0xaf, 0x1f, 7),
            '*:*:*.*': (None, None, None, None),
            ' 0001:0a:0.0 ': (1, 10, 0, 0),
        }
        for text, fields in cases.items():
            self.assertEqual(device_spec.AddressPattern(*fields),
                             device_spec.AddressPattern.from_string(text),
                             text)

    def test_address_dict(self):
        spec = device_spec.parse_spec(
            '{"address": {"bus": "3b", "slot": "0x11", "function": "*"}, '
            '"physical_network": "p"}')
        self.assertEqual(device_spec.AddressPattern(None, 0x3b, 0x11, None),
                         spec.address)

    def test_parse_specs_keeps_order(self):
        specs = device_spec.parse_specs(['{"physical_network": "b"}',
                                         '{"physical_network": "a"}'])
        self.assertEqual(['b', 'a'], [s.physical_network for s in specs])

    def test_parse_specs_empty(self):
        self.assertEqual([], device_spec.parse_specs([]))

    def test_parse_specs_names_the_bad_value(self):
        exc = self.assertRaises(device_spec.DeviceSpecError,
                                device_spec.parse_specs,
                                ['{"physical_network": "a"}',
                                 '{"physical_network": "b", "bus": "1"}'])
        self.assertIn('"bus": "1"', str(exc))


class TestParseErrors(testscenarios.WithScenarios, testtools.TestCase):
    """Every bad value raises DeviceSpecError quoting it, with a reason."""

    scenarios = [
        ('not_json', {'value': '{vendor_id: 8086}',
                      'reason': 'not valid JSON'}),
        ('empty', {'value': '', 'reason': 'not valid JSON'}),
        ('list', {'value': '[{"physical_network": "p"}]',
                  'reason': 'JSON object'}),
        ('string', {'value': '"physnet1"', 'reason': 'JSON object'}),
        ('unknown_key', {'value': '{"physical_network": "p", '
                                  '"trusted": "true"}',
                         'reason': "unknown keys ['trusted']"}),
        ('duplicate_key', {'value': '{"physical_network": "p", '
                                    '"physical_network": "q"}',
                           'reason': 'duplicate keys'}),
        ('no_physical_network', {'value': '{"vendor_id": "8086"}',
                                 'reason': 'physical_network is required'}),
        ('null_physical_network', {'value': '{"physical_network": null}',
                                   'reason': 'non-empty string'}),
        ('empty_physical_network', {'value': '{"physical_network": " "}',
                                    'reason': 'non-empty string'}),
        ('padded_physical_network', {'value': '{"physical_network": "p "}',
                                     'reason': 'trailing spaces'}),
        ('int_vendor', {'value': '{"vendor_id": 8086, '
                                 '"physical_network": "p"}',
                        'reason': 'hex string'}),
        ('bad_vendor', {'value': '{"vendor_id": "intel", '
                                 '"physical_network": "p"}',
                        'reason': 'not hex'}),
        ('wide_product', {'value': '{"product_id": "12345", '
                                   '"physical_network": "p"}',
                          'reason': 'larger than 0xffff'}),
        ('empty_product', {'value': '{"product_id": "", '
                                    '"physical_network": "p"}',
                           'reason': 'not hex'}),
        ('address_no_function', {'value': '{"address": "0000:05:00", '
                                          '"physical_network": "p"}',
                                 'reason': 'bus:slot.function'}),
        ('address_too_many_parts', {'value': '{"address": "0:0:05:00.1", '
                                             '"physical_network": "p"}',
                                    'reason': 'bus:slot.function'}),
        ('address_slot_too_big', {'value': '{"address": "0000:05:20.1", '
                                           '"physical_network": "p"}',
                                  'reason': 'address slot'}),
        ('address_function_too_big', {'value': '{"address": "05:00.8", '
                                               '"physical_network": "p"}',
                                      'reason': 'address function'}),
        ('address_regex', {'value': '{"address": "05:00.[1-3]", '
                                    '"physical_network": "p"}',
                           'reason': 'not hex'}),
        ('address_partial_glob', {'value': '{"address": "05:1*.1", '
                                           '"physical_network": "p"}',
                                  'reason': 'not hex'}),
        ('address_int', {'value': '{"address": 5, "physical_network": "p"}',
                         'reason': 'string or an object'}),
        ('address_dict_unknown', {'value': '{"address": {"bus": "5", '
                                           '"device": "0"}, '
                                           '"physical_network": "p"}',
                                  'reason': "unknown address keys"}),
        ('address_dict_int', {'value': '{"address": {"bus": 5}, '
                                       '"physical_network": "p"}',
                              'reason': 'hex string'}),
        ('devname_empty', {'value': '{"devname": "", '
                                    '"physical_network": "p"}',
                           'reason': 'devname must be'}),
        ('devname_list', {'value': '{"devname": ["eth0"], '
                                   '"physical_network": "p"}',
                          'reason': 'devname must be'}),
    ]

    def test_error(self):
        exc = self.assertRaises(device_spec.DeviceSpecError,
                                device_spec.parse_spec, self.value)
        self.assertIsInstance(exc, ValueError)
        self.assertIn(repr(self.value), str(exc))
        self.assertIn(self.reason, str(exc))


class TestMatch(testtools.TestCase):

    def test_empty_spec_matches_everything(self):
        self.assertTrue(_spec().match(VF, PF))

    def test_vf_ids(self):
        self.assertTrue(_spec(vendor_id='8086', product_id='10ca')
                        .match(VF, PF))

    def test_pf_ids_select_its_vfs(self):
        self.assertTrue(_spec(vendor_id='8086', product_id='10c9')
                        .match(VF, PF))

    def test_other_ids(self):
        self.assertFalse(_spec(product_id='1520').match(VF, PF))
        self.assertFalse(_spec(vendor_id='15b3').match(VF, PF))

    def test_vf_address(self):
        address = device_spec.AddressPattern.from_string('0000:05:10.3')
        self.assertTrue(_spec(address=address).match(VF, PF))
        self.assertFalse(_spec(address=address).match(VFIO_VF, PF))

    def test_pf_address_selects_all_its_vfs(self):
        address = device_spec.AddressPattern.from_string('05:00.1')
        self.assertTrue(_spec(address=address).match(VF, PF))
        self.assertTrue(_spec(address=address).match(VFIO_VF, PF))

    def test_wildcard_address(self):
        self.assertTrue(_spec(address=device_spec.AddressPattern(
            None, 5, 0x10, None)).match(VF, PF))
        self.assertFalse(_spec(address=device_spec.AddressPattern(
            None, 6, None, None)).match(VF, PF))

    def test_vf_devname_selects_that_vf(self):
        spec = _spec(devname='enp5s16f3')
        self.assertTrue(spec.match(VF, PF))
        self.assertFalse(spec.match(VFIO_VF, PF))

    def test_pf_devname_selects_vfio_vfs_too(self):
        self.assertTrue(_spec(devname='enp5s0f1').match(VFIO_VF, PF))
        self.assertFalse(_spec(devname='eth0').match(VFIO_VF, PF))

    def test_devname_among_several_netdevs(self):
        pf = device_spec.PciFunction('0000:82:00.0', '15b3', 'a2d6',
                                     ('enp130s0f0np0', 'enp130s0f0npf0vf0'))
        self.assertTrue(_spec(devname='enp130s0f0np0').match(VF, pf))

    def test_criteria_may_hold_on_different_functions(self):
        # PF netdev plus VF product, as an operator would write it.
        self.assertTrue(_spec(devname='enp5s0f1', product_id='10ca')
                        .match(VFIO_VF, PF))
        # All criteria must hold somewhere.
        self.assertFalse(_spec(devname='enp5s0f1', product_id='1520')
                         .match(VFIO_VF, PF))

    def test_first_match(self):
        specs = device_spec.parse_specs([
            '{"product_id": "1520", "physical_network": "a"}',
            '{"devname": "enp5s16f3", "physical_network": "b"}',
            '{"physical_network": "c"}',
        ])
        self.assertEqual((1, specs[1]),
                         device_spec.first_match(specs, VF, PF))
        self.assertEqual((2, specs[2]),
                         device_spec.first_match(specs, VFIO_VF, PF))
        self.assertIsNone(device_spec.first_match(specs[:2], VFIO_VF, PF))
        self.assertIsNone(device_spec.first_match([], VF, PF))
