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

"""Which devices vfpool and Nova would both manage (no Nova needed)."""

import os

import fixtures
import libvirt
import testtools

from vfpool.nova import config as vf_config
from vfpool.nova import devices
from vfpool.tests.functional import base as vf_base

HOSTS = os.path.join(os.path.dirname(__file__), '..', '..', 'data', 'hosts')


class TestManagedVFs(testtools.TestCase):

    def managed(self, *specs: str) -> dict:
        tmp = self.useFixture(fixtures.TempDir()).path
        conf = vf_config.load(vf_base.write_config(
            os.path.join(tmp, 'vfpool.conf'),
            {'agent': {'device_spec': list(specs)}}))
        conn = libvirt.open('test://' + os.path.abspath(
            os.path.join(HOSTS, 'compute_2numa.xml')))
        self.addCleanup(conn.close)
        return devices.managed_vfs(conn, conf)

    def test_the_agent_specs_on_the_hosts_devices(self):
        vfs = self.managed('{"address": "0000:af:00.1", '
                           '"physical_network": "physnet2"}')
        self.assertEqual({'0000:af:01.%d' % i: '0000:af:00.1'
                          for i in range(2, 6)}, vfs)

    def test_no_spec_manages_nothing(self):
        self.assertEqual({}, self.managed())


class TestConflicts(testtools.TestCase):

    VFS = {'0000:81:01.1': '0000:81:01.0', '0000:81:01.2': '0000:81:01.0'}

    def test_disjoint(self):
        self.assertEqual([], devices.conflicts(
            self.VFS, ['0000:81:00.1', '0000:81:00.0']))

    def test_a_shared_vf_is_named(self):
        [problem] = devices.conflicts(self.VFS, ['0000:81:01.2'])
        self.assertIn('VF 0000:81:01.2', problem)

    def test_a_pf_nova_may_pass_through_names_its_vfs(self):
        [problem] = devices.conflicts(self.VFS, ['0000:81:01.0'])
        self.assertIn('PF 0000:81:01.0', problem)
        self.assertIn('0000:81:01.1, 0000:81:01.2', problem)
