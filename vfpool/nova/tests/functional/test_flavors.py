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

"""Nova's flavor API refuses a ``vfpool:`` extra spec vfpool cannot read.

Through the validator vfpool registers under Nova's
``nova.api.extra_spec_validators`` entry point (setup.cfg): nothing of
vfpool runs here, only Nova's API.
"""

from nova.tests.functional.api import client
from nova.tests.functional import integrated_helpers


class TestFlavorExtraSpecs(integrated_helpers._IntegratedTestBase):

    ADMIN_API = True
    microversion = 'latest'

    def setUp(self):
        super().setUp()
        self.flavor_id = self._create_flavor(name='vf-flavor')

    def set_spec(self, key: str, value: str):
        return self.api.post_extra_spec(self.flavor_id,
                                        {'extra_specs': {key: value}})

    def test_good_spec_is_kept(self):
        value = 'physnet1:2;vlan=100,physnet2;vendor=8086;numa=0'
        self.set_spec('vfpool:vfs', value)
        self.assertEqual({'vfpool:vfs': value},
                         self.api.get_extra_specs(self.flavor_id))

    def test_bad_value_is_refused_naming_the_key(self):
        for value, why in (('physnet1:0', 'count of physnet1 must be 1-64'),
                           ('physnet1;vlan=5000', 'vlan of physnet1'),
                           ('physnet1;colour=red', "'colour=red'")):
            exc = self.assertRaises(client.OpenStackApiException,
                                    self.set_spec, 'vfpool:vfs', value)
            self.assertEqual(400, exc.response.status_code, value)
            self.assertIn('vfpool:vfs', str(exc), value)
            self.assertIn(why, str(exc), value)
        self.assertEqual({}, self.api.get_extra_specs(self.flavor_id))

    def test_unknown_key_of_the_namespace_is_refused(self):
        exc = self.assertRaises(client.OpenStackApiException,
                                self.set_spec, 'vfpool:count', '2')
        self.assertEqual(400, exc.response.status_code)
        self.assertIn('vfpool:count', str(exc))
        self.assertEqual({}, self.api.get_extra_specs(self.flavor_id))
