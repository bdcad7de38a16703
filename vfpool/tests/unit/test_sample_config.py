"""The sample configuration documents what the services really read."""

import os

import fixtures
from oslo_config import cfg
from oslo_config import generator
from oslo_db import options as db_options
import testtools

from vfpool.tests import fixtures as vfpool_fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
#: Options oslo.config registers on every ConfigOpts itself.
OSLO_CONFIG_OWN = ('config_file', 'config_dir', 'config_source')
GENERATOR_CONF = os.path.join(ROOT, 'etc', 'vfpool',
                              'vfpool-config-generator.conf')


def _sample(path: str) -> str:
    conf = cfg.ConfigOpts()
    generator.register_cli_opts(conf)
    conf(['--config-file', GENERATOR_CONF, '--output-file', path])
    generator.generate(conf)
    with open(path) as f:
        return f.read()


class TestSampleConfig(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(vfpool_fixtures.Conf()).conf
        db_options.set_defaults(self.conf)
        tmp = self.useFixture(fixtures.TempDir()).path
        self.sample = _sample(os.path.join(tmp, 'vfpool.conf.sample'))

    def test_every_registered_group_is_in_the_sample(self):
        # Includes oslo.messaging's tracing and metrics groups, which its
        # own generator namespace does not list.
        missing = [group for group in self._groups()
                   if '\n[%s]\n' % group not in self.sample]
        self.assertEqual([], missing)

    def _groups(self) -> list:
        return [g for g in self.conf
                if isinstance(self.conf[g], cfg.ConfigOpts.GroupAttr)]

    def test_every_registered_option_is_in_the_sample(self):
        missing = []
        for group in ['DEFAULT'] + self._groups():
            section = self.sample.split('\n[%s]\n' % group, 1)[-1].split(
                '\n[', 1)[0]
            opts = (self.conf._opts if group == 'DEFAULT'
                    else self.conf._groups[group]._opts)
            for name, info in opts.items():
                if info.get('cli') or name in OSLO_CONFIG_OWN:
                    continue    # oslo.config's own options
                if '\n#%s =' % name not in section:
                    missing.append('%s.%s' % (group, name))
        self.assertEqual([], missing)
