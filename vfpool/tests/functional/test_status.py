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

"""vfpool-status upgrade check against real databases."""

import json
import os
import subprocess

import fixtures
import sqlalchemy as sa

from vfpool.cmd import status
from vfpool.db import api as db_api
from vfpool.db import migration
from vfpool.objects import host as host_obj
from vfpool.objects import migration as migration_obj
from vfpool.tests.functional import base
from vfpool.tests.functional.cluster import backends
from vfpool.tests.functional import operator_base as ob
from vfpool.tests import inventory as inv

SUCCESS, WARNING, FAILURE = 0, 1, 2
SCHEMA = 'Database schema'
LAPSED = 'Lapsed leases'
SQLITE = 'SQLite and several hosts'
HOSTS = 'Hosts'
GALERA = 'Galera'
RABBITMQ = 'RabbitMQ'
CHECKS = [SCHEMA, LAPSED, SQLITE, HOSTS, GALERA, RABBITMQ]


def run_console_script(config_file: str) -> dict:
    """vfpool-status as installed: {check name: (result, details)}."""
    done = subprocess.run(
        ['vfpool-status', '--config-file', config_file, 'upgrade',
         'check', '--json'], capture_output=True, text=True, timeout=120)
    checks = json.loads(done.stdout)['checks']
    return {c['check']: (c['result'], c['details']) for c in checks}


class StatusTestCase(ob.OperatorTestCase):

    def check(self, expected_code: int | None = None) -> dict:
        """Run the check with --json: {check name: (result, details)}."""
        code, out, err = self.run_main(status.main,
                                       ['upgrade', 'check', '--json'])
        report = json.loads(out)
        results = {c['check']: (c['result'], c['details'])
                   for c in report['checks']}
        self.assertEqual(max(r for r, _d in results.values()), code,
                         err)
        if expected_code is not None:
            self.assertEqual(expected_code, code, results)
        return results


class TestSchema(StatusTestCase):

    sync = False

    def test_no_schema_fails_and_skips_the_rest(self):
        results = self.check(FAILURE)
        self.assertEqual(FAILURE, results[SCHEMA][0])
        self.assertIn('vfpool-manage db sync', results[SCHEMA][1])
        for name in (LAPSED, HOSTS):
            self.assertEqual(WARNING, results[name][0])
            self.assertIn('Skipped', results[name][1])

    def test_at_head(self):
        migration.upgrade(engine=db_api.get_engine())
        results = self.check(SUCCESS)
        self.assertIn(migration.head(), results[SCHEMA][1])

    def test_other_revision_fails(self):
        migration.upgrade(engine=db_api.get_engine())
        with db_api.get_engine().begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET "
                                 "version_num = '0123456789ab'"))
        result, details = self.check(FAILURE)[SCHEMA]
        self.assertEqual(FAILURE, result)
        self.assertIn('0123456789ab', details)
        self.assertIn(migration.head(), details)


class TestLeases(StatusTestCase):

    def setUp(self):
        super().setUp()
        self.report('host-a', inv.pf(0x05, 2))
        self.report('host-b', inv.pf(0x81, 2), ago=1)
        self.allocate(ob.INSTANCE, 'host-a')
        self.allocate(ob.INSTANCE_2, 'host-a')

    def test_fresh_claim_is_fine(self):
        self.prepare(ob.MIGRATION, ob.INSTANCE, 'host-a', 'host-b')
        self.assertEqual(SUCCESS, self.check()[LAPSED][0])

    def test_lease_lapsed_within_grace_is_fine(self):
        # [pool] reaper_interval is 30 s: a lease that lapsed 20 s ago may
        # just be waiting for the next pass.
        self.prepare(ob.MIGRATION, ob.INSTANCE, 'host-a', 'host-b',
                     lease_seconds=10, ago=30)
        self.assertEqual(SUCCESS, self.check()[LAPSED][0])

    def test_lapsed_lease_warns_until_reaped(self):
        self.prepare(ob.MIGRATION, ob.INSTANCE, 'host-a', 'host-b',
                     lease_seconds=1, ago=3600)
        self.prepare(ob.STRANGER, ob.INSTANCE_2, 'host-a', 'host-b',
                     lease_seconds=1, ago=600)
        result, details = self.check()[LAPSED]
        self.assertEqual(WARNING, result)
        self.assertIn('2 migration(s)', details)
        self.assertIn(ob.MIGRATION, details)
        self.assertIn(ob.STRANGER, details)
        migration_obj.reap_expired(self.context)
        self.assertEqual(SUCCESS, self.check()[LAPSED][0])


class TestHosts(StatusTestCase):

    def test_no_hosts(self):
        result, details = self.check(SUCCESS)[HOSTS]
        self.assertIn('No host', details)

    def test_reporting_hosts(self):
        self.report('host-a', inv.pf(0x05, 1))
        results = self.check()
        self.assertEqual((SUCCESS, '1 host(s), all enabled and reporting.'),
                         results[HOSTS])
        self.assertEqual(SUCCESS, results[SQLITE][0])

    def test_disabled_and_silent_hosts_warn(self):
        self.report('host-a', inv.pf(0x05, 1))
        self.report('host-b', inv.pf(0x81, 1), ago=3600)
        self.report('host-c', inv.pf(0x07, 1))
        host_obj.set_disabled(self.context, 'host-c', True, 'new PSU')
        result, details = self.check()[HOSTS]
        self.assertEqual(WARNING, result)
        self.assertIn('1 host(s) disabled: host-c (new PSU)', details)
        self.assertIn('have not reported for more than 180 s', details)
        self.assertIn('host-b', details)
        self.assertNotIn('host-a', details)

    def test_sqlite_with_several_reporting_hosts(self):
        self.report('host-a', inv.pf(0x05, 1))
        self.report('host-b', inv.pf(0x81, 1))
        self.report('host-old', inv.pf(0x07, 1), ago=3600)
        results = self.check()
        result, details = results[SQLITE]
        if self.backend == 'sqlite':
            self.assertEqual(FAILURE, result)
            self.assertIn('SQLite is for one machine', details)
            self.assertIn('host-a, host-b', details)
            self.assertNotIn('host-old', details)
        else:
            self.assertEqual((SUCCESS, 'Database backend: %s.'
                              % self.backend), (result, details))

    def test_table_output(self):
        self.report('host-a', inv.pf(0x05, 1), ago=3600)
        code, out, _err = self.run_main(status.main, ['upgrade', 'check'])
        self.assertEqual(WARNING, code)
        self.assertIn('Check: Hosts', out)
        self.assertIn('Result: Warning', out)
        self.assertIn('Result: Success', out)


class TestConsoleScript(StatusTestCase):

    def test_installed_script(self):
        self.report('host-a', inv.pf(0x05, 1))
        done = subprocess.run(
            ['vfpool-status', '--config-file', self.config_file, 'upgrade',
             'check', '--json'], capture_output=True, text=True, timeout=120)
        self.assertEqual(0, done.returncode, done.stdout + done.stderr)
        checks = json.loads(done.stdout)['checks']
        self.assertEqual(CHECKS, [c['check'] for c in checks])
        self.assertEqual({SUCCESS}, {c['result'] for c in checks})


class TestOneDatabaseOneBroker(StatusTestCase):

    def test_no_cluster_checks_apply(self):
        results = self.check()
        result, details = results[GALERA]
        self.assertEqual(SUCCESS, result)
        self.assertTrue(details.startswith('Not a Galera cluster'), details)
        self.assertEqual((SUCCESS, '1 RabbitMQ node(s), classic queues, '
                                   'heartbeat timeout 60 s.'),
                         results[RABBITMQ])


class TestRabbitMQ(StatusTestCase):
    """Only the configuration is read: one backend is enough."""

    scenarios = [('sqlite', {'backend': 'sqlite'})]
    CLUSTER = ('rabbit://vfpool:secret@mq1:5672,vfpool:secret@mq2:5672,'
               'vfpool:secret@mq3:5672/')

    def test_cluster_without_quorum_queues_warns(self):
        self.configure('DEFAULT', transport_url=self.CLUSTER)
        result, details = self.check()[RABBITMQ]
        self.assertEqual(WARNING, result)
        self.assertIn('names 3 RabbitMQ nodes', details)
        self.assertIn('rabbit_quorum_queue = true', details)
        self.assertNotIn('secret', details)

    def test_cluster_with_quorum_queues(self):
        self.configure('DEFAULT', transport_url=self.CLUSTER)
        self.configure('oslo_messaging_rabbit', rabbit_quorum_queue='true',
                       heartbeat_timeout_threshold=10)
        self.assertEqual((SUCCESS, '3 RabbitMQ node(s), quorum queues, '
                                   'heartbeat timeout 10 s.'),
                         self.check()[RABBITMQ])

    def test_heartbeats_off_warn_even_for_one_broker(self):
        self.configure('oslo_messaging_rabbit',
                       heartbeat_timeout_threshold=0)
        result, details = self.check()[RABBITMQ]
        self.assertEqual(WARNING, result)
        self.assertIn('heartbeats are off', details)
        self.assertNotIn('rabbit_quorum_queue', details)

    def test_other_drivers_are_not_checked(self):
        self.configure('DEFAULT', transport_url='fake:/')
        self.assertEqual((SUCCESS, 'Not RabbitMQ (fake).'),
                         self.check()[RABBITMQ])


class TestGalera(base.FunctionalTestCase):
    """Against a Galera cluster of the test's own, as installed."""

    def test_sync_wait_and_cluster_size(self):
        cluster = self.useFixture(backends.GaleraCluster(3))
        workdir = self.useFixture(fixtures.TempDir()).path
        config = os.path.join(workdir, 'vfpool.conf')
        sections = {'DEFAULT': {'state_path': workdir},
                    'database': {'connection': cluster.urls[0]}}
        base.write_config(config, sections)

        result, details = run_console_script(config)[GALERA]
        self.assertEqual(WARNING, result)
        self.assertIn('wsrep_sync_wait = 0', details)
        self.assertIn('Set [database] mysql_wsrep_sync_wait = 1', details)
        self.assertNotIn('node(s)', details)

        # What the admin guide says to set reaches vfpool's sessions.
        sections['database']['mysql_wsrep_sync_wait'] = 1
        base.write_config(config, sections)
        self.assertEqual((SUCCESS, 'Galera cluster of 3 nodes (Primary); '
                                   'sessions wait for causality '
                                   '(wsrep_sync_wait = 1).'),
                         run_console_script(config)[GALERA])

        cluster.kill(2)
        cluster.survivors_synced(2)
        result, details = run_console_script(config)[GALERA]
        self.assertEqual(WARNING, result)
        self.assertEqual('The Galera cluster has 2 node(s); with fewer '
                         'than 3, the loss of one node leaves no primary '
                         'component and stops every write.', details)
