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

"""vfpool's messaging options leave every other ConfigOpts alone."""

from oslo_config import cfg
from oslo_messaging import transport
import testtools

from vfpool import config
from vfpool import rpc


def _shared_exchange_opt() -> cfg.Opt:
    """The one ``control_exchange`` Opt object every transport registers.

    (``oslo_messaging.opts.list_opts`` hands out copies of it.)
    """
    for opt in transport._transport_opts:
        if opt.name == 'control_exchange':
            return opt
    raise AssertionError('oslo.messaging has no control_exchange option')


class TestControlExchangeDefault(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.opt = _shared_exchange_opt()
        self.before = self.opt.default
        # Put back whatever a broken register_opts would have changed, so
        # that one failure does not spread to other tests.
        self.addCleanup(setattr, self.opt, 'default', self.before)

    def test_vfpool_conf_defaults_to_vfpool(self):
        conf = cfg.ConfigOpts()
        rpc.register_opts(conf)
        conf([])
        self.assertEqual('vfpool', conf.control_exchange)

    def test_other_configopts_keep_their_default(self):
        rpc.register_opts(cfg.ConfigOpts())
        config.parse_args([], conf=None, default_config_files=[],
                          setup_logging=False)
        self.assertEqual(self.before, self.opt.default)
        fresh = cfg.ConfigOpts()
        fresh.register_opt(self.opt)
        fresh([])
        self.assertEqual(self.before, fresh.control_exchange)
        # What nova-compute's global CONF (which oslo.messaging registers
        # the same Opt on) reads when nova.conf sets no exchange.
        cfg.CONF.register_opt(self.opt)
        self.assertEqual(self.before, cfg.CONF.control_exchange)

    def test_an_explicit_default_of_the_caller_stays(self):
        conf = cfg.ConfigOpts()
        rpc.register_opts(conf)
        conf.set_default('control_exchange', 'mine')
        rpc.register_opts(conf)
        conf([])
        self.assertEqual('mine', conf.control_exchange)
