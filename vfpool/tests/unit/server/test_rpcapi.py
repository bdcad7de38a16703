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

"""Version capping of the client, for rolling upgrades."""

import oslo_messaging as messaging
import testtools

from vfpool import exception
from vfpool import rpcapi
from vfpool.server import manager
from vfpool.tests import fixtures
from vfpool.tests import inventory as inv
from vfpool import utils


class OldManager(manager.Manager):
    """A server still on RPC 1.0, as during a rolling upgrade."""

    target = messaging.Target(version='1.0')


class Manager11(manager.Manager):
    """A server still on RPC 1.1, as during the upgrade to 1.2."""

    target = messaging.Target(version='1.1')


class Manager12(manager.Manager):
    """A server still on RPC 1.2, as during the upgrade to 1.3."""

    target = messaging.Target(version='1.2')


class Manager13(manager.Manager):
    """A server still on RPC 1.3, as during the upgrade to 1.4."""

    target = messaging.Target(version='1.3')


class Manager14(manager.Manager):
    """A server still on RPC 1.4, as during the upgrade to 1.5."""

    target = messaging.Target(version='1.4')


class TestVersionCap(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(fixtures.Conf()).conf
        self.useFixture(fixtures.Database())

    def test_uncapped_client_sends_newest_version(self):
        client = self.useFixture(fixtures.FakeRPC(self.conf)).client
        self.assertEqual(rpcapi.RPC_API_VERSION, client.version_cap)
        self.assertTrue(client.can_send_version('1.6'))
        self.assertEqual('1.6', client.ping(None)['version'])

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


class _OldServerTestCase(testtools.TestCase):
    """A client, capped or not, against a server of an older version."""

    #: The older server's manager.
    server_manager: type = Manager11

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(fixtures.Conf()).conf
        self.useFixture(fixtures.Database())

    def old_server(self, cap=None):
        if cap is not None:
            self.conf.set_override('vfpool', cap, group='upgrade_levels')
        rpc = fixtures.FakeRPC(self.conf)
        rpc.manager_class = self.server_manager
        return self.useFixture(rpc).client


class TestVersionCap12(_OldServerTestCase):
    """``[upgrade_levels] vfpool = 1.1`` against a 1.1 server."""

    server_manager = Manager11

    def test_capped_client_keeps_working_with_a_1_1_server(self):
        client = self.old_server(cap='1.1')
        self.assertFalse(client.can_send_version('1.2'))
        migration = inv.new_uuid()
        # 1.2 things fail locally, before anything is sent.
        self.assertRaises(rpcapi.VersionTooNew, client.begin_migration,
                          None, migration)
        self.assertRaises(rpcapi.VersionTooNew, client.complete_migration,
                          None, migration, reclaim=True)
        # Everything of 1.0 and 1.1 goes through, at the version it was.
        client.report_inventory(None, 'src', [inv.pf(5, 1)])
        client.report_inventory(None, 'dst', [inv.pf(6, 1)])
        instance = inv.new_uuid()
        client.allocate(None, instance, 'src',
                        [inv.request(mac=inv.mac(1))], 'req-1')
        pairs = client.prepare_migration(None, migration, instance, 'src',
                                         'dst')
        self.assertEqual('0000:06:10.0', pairs[0]['dest']['address'])
        client.renew_migration(None, migration)
        done = client.complete_migration(None, migration)
        self.assertEqual(['0000:06:10.0'], [a['address'] for a in done])
        self.assertIn('version', client.ping(None))

    def test_1_1_server_refuses_what_it_would_answer_differently(self):
        # An uncapped client sends prepare_migration and allocate at 1.2,
        # so a server that cannot retarget or assign MACs says so instead
        # of answering the 1.1 way.
        client = self.old_server()
        self.assertRaises(messaging.UnsupportedVersion,
                          client.prepare_migration, None, inv.new_uuid(),
                          inv.new_uuid(), 'src', 'dst')
        self.assertRaises(messaging.UnsupportedVersion, client.allocate,
                          None, inv.new_uuid(), 'src', [inv.request()], 'r')
        self.assertRaises(messaging.UnsupportedVersion,
                          client.begin_migration, None, inv.new_uuid())


class TestVersionCap13(_OldServerTestCase):
    """``get_capacity`` (1.3) during the upgrade from 1.2."""

    server_manager = Manager12

    def test_capped_client_keeps_working_with_a_1_2_server(self):
        client = self.old_server(cap='1.2')
        self.assertFalse(client.can_send_version('1.3'))
        self.assertRaises(rpcapi.VersionTooNew, client.get_capacity,
                          None, ['h1'], [inv.request()])
        client.report_inventory(None, 'h1', [inv.pf(5, 1)])
        instance = inv.new_uuid()
        [alloc] = client.allocate(None, instance, 'h1', [inv.request()],
                                  'req-1')
        # Sent at 1.2: the 1.2 server assigned the MAC.
        self.assertTrue(alloc['mac'])
        self.assertEqual(1, client.release(None, instance))

    def test_1_2_server_refuses_get_capacity(self):
        client = self.old_server()
        self.assertRaises(messaging.UnsupportedVersion, client.get_capacity,
                          None, ['h1'], [inv.request()])


class _ReportingTestCase(_OldServerTestCase):
    """An agent's snapshot and its digest, for the report methods."""

    def setUp(self):
        super().setUp()
        self.pfs = [inv.pf(5, 2)]
        self.digest = utils.snapshot_digest(self.pfs)


class TestVersionCap14(_ReportingTestCase):
    """``report_inventory(digest=...)`` (1.4) during the upgrade from 1.3."""

    server_manager = Manager13

    def test_capped_client_reports_in_full_to_a_1_3_server(self):
        client = self.old_server(cap='1.3')
        self.assertFalse(client.can_send_version('1.4'))
        self.assertEqual(2, client.report_inventory(
            None, 'h1', self.pfs, digest=self.digest)['added'])
        self.assertEqual(2, client.report_inventory(
            None, 'h1', self.pfs, digest=self.digest)['unchanged'])
        self.assertIn('version', client.ping(None))

    def test_1_3_server_refuses_a_digest(self):
        client = self.old_server()
        self.assertRaises(messaging.UnsupportedVersion,
                          client.report_inventory, None, 'h1', self.pfs,
                          digest=self.digest)
        # Without one the report is a 1.0 call, which it takes.
        self.assertEqual(2, client.report_inventory(
            None, 'h1', self.pfs)['added'])


class TestVersionCap15(_ReportingTestCase):
    """``report_unchanged`` (1.5) during the upgrade from 1.4."""

    server_manager = Manager14

    def test_capped_client_answers_false_without_a_call(self):
        client = self.old_server(cap='1.4')
        client.report_inventory(None, 'h1', self.pfs, digest=self.digest)
        self.assertFalse(client.can_send_version('1.5'))
        self.assertFalse(client.report_unchanged(None, 'h1', self.digest))
        # The full report still costs the 1.4 server one statement.
        self.assertEqual(2, client.report_inventory(
            None, 'h1', self.pfs, digest=self.digest)['unchanged'])

    def test_1_4_server_refuses_report_unchanged(self):
        client = self.old_server()
        self.assertRaises(messaging.UnsupportedVersion,
                          client.report_unchanged, None, 'h1', self.digest)


class Manager15(manager.Manager):
    """A server still on RPC 1.5, as during the upgrade to 1.6."""

    target = messaging.Target(version='1.5')


class TestVersionCap16(_OldServerTestCase):
    """The fence's arguments (1.6) during the upgrade from 1.5."""

    server_manager = Manager15

    def migrate(self, client) -> tuple:
        client.report_inventory(None, 'src', [inv.pf(5, 1)])
        client.report_inventory(None, 'dst', [inv.pf(6, 1)])
        instance, migration = inv.new_uuid(), inv.new_uuid()
        [alloc] = client.allocate(None, instance, 'src',
                                  [inv.request(mac=inv.mac(1))], 'req-1')
        return instance, migration, alloc

    def test_capped_client_sends_the_calls_of_1_5(self):
        client = self.old_server(cap='1.5')
        self.assertFalse(client.can_send_version('1.6'))
        instance, migration, alloc = self.migrate(client)
        pairs = client.prepare_migration(
            None, migration, instance, 'src', 'dst',
            expected_sources=[alloc['address']])
        self.assertEqual('0000:06:10.0', pairs[0]['dest']['address'])
        beliefs = dict(source_host='src', dest_host='dst')
        client.begin_migration(None, migration, **beliefs)
        client.renew_migration(None, migration, **beliefs)
        done = client.complete_migration(None, migration, reclaim=True,
                                         **beliefs)
        self.assertEqual(['0000:06:10.0'], [a['address'] for a in done])
        # Without 1.6 an abort ends the migration whatever its host.
        other = inv.new_uuid()
        client.prepare_migration(None, other, instance, 'dst', 'src')
        self.assertEqual(1, client.abort_migration(None, other,
                                                   dest_host='elsewhere'))

    def test_1_5_server_refuses_the_fence_arguments(self):
        client = self.old_server()
        instance, migration, alloc = self.migrate(client)
        self.assertRaises(messaging.UnsupportedVersion,
                          client.prepare_migration, None, migration,
                          instance, 'src', 'dst',
                          expected_sources=[alloc['address']])
        client.prepare_migration(None, migration, instance, 'src', 'dst')
        for call in (client.begin_migration, client.renew_migration,
                     client.complete_migration, client.abort_migration):
            self.assertRaises(messaging.UnsupportedVersion, call, None,
                              migration, dest_host='dst')
        # Without them each call is the one of 1.5, which it takes.
        client.begin_migration(None, migration)
        client.complete_migration(None, migration)


class TestFenceFrom15Client(_OldServerTestCase):
    """A client capped at 1.5 against the 1.6 server."""

    server_manager = manager.Manager

    def test_a_1_5_client_migrates_and_is_refused_a_left_host(self):
        client = self.old_server(cap='1.5')
        client.report_inventory(None, 'src', [inv.pf(5, 1)])
        client.report_inventory(None, 'dst', [inv.pf(6, 1)])
        client.report_inventory(None, 'third', [inv.pf(7, 1)])
        instance, migration = inv.new_uuid(), inv.new_uuid()
        client.allocate(None, instance, 'src', [inv.request()], 'req-1')
        client.prepare_migration(None, migration, instance, 'src', 'dst')
        client.prepare_migration(None, migration, instance, 'src', 'third')
        # The server fences dst for every client: typed for those that
        # know the class, a MigrationStateConflict for code catching that.
        self.assertRaises(exception.MigrationStateConflict,
                          client.prepare_migration, None, migration,
                          instance, 'src', 'dst')
        client.begin_migration(None, migration)
        done = client.complete_migration(None, migration)
        self.assertEqual(['0000:07:10.0'], [a['address'] for a in done])


class TestVersionCap16Release(_OldServerTestCase):
    """``release(request_ids=...)`` (1.6) during the upgrade from 1.5."""

    server_manager = Manager15

    def test_capped_client_releases_without_request_ids(self):
        client = self.old_server(cap='1.5')
        client.report_inventory(None, 'h1', [inv.pf(5, 2)])
        instance = inv.new_uuid()
        client.allocate(None, instance, 'h1', [inv.request()], 'r1')
        self.assertFalse(client.can_send_version('1.6'))
        # The ids are left out: what was recorded is freed as before.
        self.assertEqual(1, client.release(None, instance, 'h1',
                                           request_ids=['r1', 'r2']))
        self.assertEqual(1, len(client.allocate(
            None, instance, 'h1', [inv.request()], 'r2')))

    def test_1_5_server_refuses_request_ids(self):
        client = self.old_server()
        client.report_inventory(None, 'h1', [inv.pf(5, 1)])
        self.assertRaises(messaging.UnsupportedVersion, client.release,
                          None, inv.new_uuid(), 'h1', request_ids=['r1'])
