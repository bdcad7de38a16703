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

"""The sample configuration documents what the services really read."""

import os
import tempfile

from oslo_config import cfg
from oslo_config import generator
from oslo_db import options as db_options
import testtools

from vfpool.tests import fixtures as vfpool_fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
#: Options oslo.config registers on every ConfigOpts itself.
OSLO_CONFIG_OWN = ('config_file', 'config_dir', 'config_source',
                   'shell_completion')
GENERATOR_CONF = os.path.join(ROOT, 'etc', 'vfpool',
                              'vfpool-config-generator.conf')


def _sample() -> str:
    """The sample as ``tox -e genconfig`` writes it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'vfpool.conf.sample')
        conf = cfg.ConfigOpts()
        generator.register_cli_opts(conf)
        conf(['--config-file', GENERATOR_CONF, '--output-file', path])
        generator.generate(conf)
        with open(path) as f:
            return f.read()


class TestSampleConfig(testtools.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sample = _sample()

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(vfpool_fixtures.Conf()).conf
        db_options.set_defaults(self.conf)

    def _groups(self) -> list:
        return [g for g in self.conf
                if isinstance(self.conf[g], cfg.ConfigOpts.GroupAttr)]

    def test_every_registered_group_is_in_the_sample(self):
        # Includes oslo.messaging's tracing and metrics groups, which its
        # own generator namespace does not list.
        missing = [group for group in self._groups()
                   if '\n[%s]\n' % group not in self.sample]
        self.assertEqual([], missing)

    def test_every_registered_option_is_in_the_sample(self):
        groups = self._groups()
        options = {'DEFAULT': [name for name in self.conf
                               if name not in groups]}
        options.update((group, list(self.conf[group])) for group in groups)
        missing = []
        for group, names in options.items():
            section = self.sample.split('\n[%s]\n' % group, 1)[-1].split(
                '\n[', 1)[0]
            missing += ['%s.%s' % (group, name) for name in names
                        if name not in OSLO_CONFIG_OWN
                        and '\n#%s =' % name not in section]
        self.assertEqual([], missing)
