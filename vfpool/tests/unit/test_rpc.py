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
