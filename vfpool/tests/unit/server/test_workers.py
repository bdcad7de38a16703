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

"""How many worker processes vfpool-server starts."""

import os

from oslo_config import cfg
import testtools

from vfpool import conf as vfpool_conf
from vfpool.server import service


def _conf(**values) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    vfpool_conf.register_opts(conf)
    conf([], project='vfpool')
    for name, value in values.items():
        group, _, opt = name.rpartition('.')
        conf.set_override(opt, value, group=group or None)
    return conf


class TestWorkers(testtools.TestCase):

    def test_unset_is_one_per_cpu(self):
        conf = _conf(**{'database.connection':
                        'mysql+pymysql://u:p@127.0.0.1/vfpool'})
        self.assertEqual(os.cpu_count() or 1, service.workers(conf))

    def test_unset_on_sqlite_is_one(self):
        # The embedded default database is SQLite.
        self.assertEqual(1, service.workers(_conf()))

    def test_set_wins_everywhere(self):
        self.assertEqual(3, service.workers(_conf(workers=3)))
