"""Version capping of the client, for rolling upgrades."""

import oslo_messaging as messaging
import testtools

from vfpool import rpcapi
from vfpool.server import manager
from vfpool.tests import fixtures
from vfpool.tests import inventory as inv


class OldManager(manager.Manager):
    """A server still on RPC 1.0, as during a rolling upgrade."""

    target = messaging.Target(version='1.0')


class TestVersionCap(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(fixtures.Conf()).conf
        self.useFixture(fixtures.Database())

    def test_uncapped_client_sends_newest_version(self):
        client = self.useFixture(fixtures.FakeRPC(self.conf)).client
        self.assertEqual(rpcapi.RPC_API_VERSION, client.version_cap)
        self.assertTrue(client.can_send_version('1.1'))
        self.assertEqual('1.1', client.ping(None)['version'])

    def test_capped_client_keeps_working_with_old_server(self):
        self.conf.set_override('vfpool', '1.0', group='upgrade_levels')
        rpc = fixtures.FakeRPC(self.conf)
        rpc.manager_class = OldManager
        client = self.useFixture(rpc).client
        self.assertFalse(client.can_send_version('1.1'))
        # 1.1 methods fail locally, before anything is sent.
        self.assertRaises(rpcapi.VersionTooNew, client.ping, None)
        self.assertRaises(rpcapi.VersionTooNew, client.replace_allocation,
                          None, inv.new_uuid(), 'h1', '0000:05:10.0')
        # 1.0 methods work against the 1.0 server.
        counts = client.report_inventory(None, 'h1', [inv.pf(5, 1)])
        self.assertEqual(1, counts['added'])
        allocs = client.allocate(None, inv.new_uuid(), 'h1',
                                 [inv.request()], 'req-1')
        self.assertEqual('0000:05:10.0', allocs[0]['address'])

    def test_old_server_refuses_newer_calls(self):
        rpc = fixtures.FakeRPC(self.conf)
        rpc.manager_class = OldManager
        client = self.useFixture(rpc).client
        self.assertRaises(messaging.UnsupportedVersion, client.ping, None)
