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

"""How the Nova driver reads vfpool's configuration (no Nova needed)."""

import os

import fixtures
from oslo_messaging import opts as messaging_opts
from oslo_messaging import transport
import testtools

from vfpool.nova import config as vf_config
from vfpool import rpcapi
from vfpool.tests.functional import base as vf_base


def _exchange_default() -> str:
    for group, opts in messaging_opts.list_opts():
        for opt in opts:
            if group is None and opt.name == 'control_exchange':
                return opt.default


class TestLoad(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        # The process-wide default is what is under test: put it back.
        self.addCleanup(transport.set_transport_defaults,
                        _exchange_default())

    def write(self, sections: dict) -> str:
        return vf_base.write_config(os.path.join(self.tmp, 'vfpool.conf'),
                                    sections)

    def test_options_come_from_the_vfpool_file(self):
        path = self.write({
            'DEFAULT': {'transport_url': 'rabbit://u:p@broker:5672/',
                        'rpc_topic': 'vfpool-east'},
            'upgrade_levels': {'vfpool': '1.0'},
            'migration': {'reattach_failure_policy': 'degrade'},
            'agent': {'device_spec': '{"address": "0000:81:01.0", '
                                     '"physical_network": "p1"}'},
        })
        conf = vf_config.load(path)
        self.assertEqual('rabbit://u:p@broker:5672/', conf.transport_url)
        self.assertEqual('vfpool-east', conf.rpc_topic)
        self.assertEqual('1.0', conf.upgrade_levels.vfpool)
        self.assertEqual('degrade', conf.migration.reattach_failure_policy)
        self.assertEqual(1, len(conf.agent.device_spec))
        self.assertEqual('vfpool', conf.control_exchange)

    def test_nova_keeps_its_control_exchange_default(self):
        # What nova.config.parse_args sets in nova-compute.
        transport.set_transport_defaults(control_exchange='nova')
        path = self.write({'DEFAULT': {'transport_url': 'fake://'}})
        conf = vf_config.load(path)
        client = rpcapi.VfpoolAPI(conf)
        self.addCleanup(client.transport.cleanup)
        self.assertEqual('nova', _exchange_default())
        self.assertEqual('vfpool', conf.control_exchange)

    def test_an_explicit_exchange_in_the_file_wins(self):
        path = self.write({'DEFAULT': {'control_exchange': 'vfpool-b'}})
        self.assertEqual('vfpool-b', vf_config.load(path).control_exchange)

    def test_missing_or_broken_file_is_a_config_error(self):
        missing = os.path.join(self.tmp, 'nope.conf')
        exc = self.assertRaises(vf_config.ConfigError, vf_config.load,
                                missing)
        self.assertIn(missing, str(exc))
        broken = os.path.join(self.tmp, 'broken.conf')
        with open(broken, 'w') as f:
            f.write('[DEFAULT\nhost = x\n')
        self.assertRaises(vf_config.ConfigError, vf_config.load, broken)


class TestCheckHost(testtools.TestCase):

    def load(self, sections: dict):
        tmp = self.useFixture(fixtures.TempDir()).path
        return vf_config.load(vf_base.write_config(
            os.path.join(tmp, 'vfpool.conf'), sections))

    def test_default_host_follows_nova(self):
        vf_config.check_host(self.load({}), 'compute-7')

    def test_same_explicit_host_is_fine(self):
        vf_config.check_host(self.load({'DEFAULT': {'host': 'compute-7'}}),
                             'compute-7')

    def test_other_explicit_host_is_refused(self):
        conf = self.load({'DEFAULT': {'host': 'cmp7.example.org'}})
        exc = self.assertRaises(vf_config.ConfigError, vf_config.check_host,
                                conf, 'compute-7')
        self.assertIn('cmp7.example.org', str(exc))
        self.assertIn('compute-7', str(exc))
