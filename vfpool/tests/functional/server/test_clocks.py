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

"""Two real servers whose clocks disagree by an hour share one database.

Leases must be set and reaped by the database's clock (issue 9 item 12):
the server whose clock runs ahead (libfaketime, from bindep.txt) must
neither write leases an hour too long nor reap the other's fresh claims.
"""

import datetime
import json
import os
import re
import subprocess
import time

import oslo_messaging as messaging
import sqlalchemy as sa
import testscenarios

from vfpool.db import models
from vfpool.objects import leases
from vfpool import rpc
from vfpool.tests import api_cases
from vfpool.tests.functional import base
from vfpool.tests import inventory as inv

load_tests = testscenarios.load_tests_apply_scenarios

SKEW = datetime.timedelta(hours=1)
_LIBFAKETIME = [path for path in (
    '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1',
    '/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1',
    '/usr/lib64/faketime/libfaketime.so.1',
    '/usr/lib/faketime/libfaketime.so.1') if os.path.exists(path)]
_SHIM = os.path.join(os.path.dirname(os.path.dirname(__file__)),
                     'faketime')
# Preloaded, not through the faketime command: that forks the server into
# a session of its own, out of reach of the fixture's stop.  The wall
# clock only: timers and heartbeats, which run on the monotonic clock,
# keep their pace (faketime/sitecustomize.py works around the time.sleep
# bug of that mode).
AHEAD = ['env', 'LD_PRELOAD=%s' % (_LIBFAKETIME or ['libfaketime'])[0],
         'FAKETIME=+1h', 'FAKETIME_DONT_FAKE_MONOTONIC=1',
         'PYTHONPATH=%s' % _SHIM]
REAPER_INTERVAL = 1
_LOG_TIME = re.compile(r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)')


class TestSkewedClocks(testscenarios.WithScenarios, base.FunctionalTestCase):
    scenarios = base.backend_scenarios(base.SHARED_BACKENDS)

    def setUp(self):
        super().setUp()
        self.assertTrue(_LIBFAKETIME, 'libfaketime is not installed '
                        '(bindep.txt: libfaketime)')
        self.stack = self.useFixture(base.ServiceStack(
            self.backend, servers=2, wrappers={1: AHEAD},
            **{'pool.reaper_interval': REAPER_INTERVAL}))
        self.assert_server_runs_ahead('server-1')
        client = self.stack.client
        client.report_inventory(None, 'src', [inv.pf(5, 2)])
        client.report_inventory(None, 'dst', [inv.pf(6, 2)])
        self.instance = inv.new_uuid()
        client.allocate(None, self.instance, 'src',
                        [inv.request(mac=inv.mac(1))], 'req-1')

    def assert_server_runs_ahead(self, name: str) -> None:
        """The skew really reached the server (its log's timestamps)."""
        proc = [p for p in self.stack.procs if p.name == name][0]
        with open(proc.log_path) as log:
            stamps = [_LOG_TIME.match(line) for line in log]
        logged = datetime.datetime.strptime(
            [m for m in stamps if m][-1].group(1), '%Y-%m-%d %H:%M:%S')
        ahead = logged - datetime.datetime.now()
        self.assertGreater(ahead, SKEW - datetime.timedelta(minutes=5))

    def call(self, server: str, method: str, **kwargs):
        """Call ``method`` on that one server."""
        client = messaging.get_rpc_client(
            self.stack.client.transport,
            rpc.get_target(self.stack.conf, server=server), timeout=60)
        return client.prepare(version='1.2').call({}, method, **kwargs)

    def lease_left(self, migration_uuid: str) -> float:
        """Seconds until the lease lapses, by the database's clock."""
        with self.stack.engine.connect() as conn:
            now = conn.execute(sa.select(leases.now())).scalar_one()
        lease = api_cases.migration_row(self.stack.engine,
                                        migration_uuid).lease_expires_at
        return (lease - now).total_seconds()

    def prepare(self, server: str, lease_seconds: int) -> str:
        migration = inv.new_uuid()
        self.call(server, 'prepare_migration', migration_uuid=migration,
                  instance_uuid=self.instance, source_host='src',
                  dest_host='dst', lease_seconds=lease_seconds)
        return migration

    def test_leases_run_on_the_database_clock(self):
        # Set by the true server, and not reaped by the one ahead, by
        # whose clock the lease lapsed an hour ago: several passes of both
        # reapers later the claim is still held.
        migration = self.prepare('server-0', lease_seconds=30)
        time.sleep(3 * REAPER_INTERVAL + 1)
        row = api_cases.migration_row(self.stack.engine, migration)
        self.assertEqual(models.IN_PROGRESS, row.state)
        self.assertEqual(['claimed'], [
            s for (h, _a), (s, _i, _m) in api_cases.vf_table(
                self.stack.engine).items() if h == 'dst' and s != 'available'])
        self.call('server-0', 'abort_migration', migration_uuid=migration)
        # Set by the server ahead: as long as asked, not an hour longer.
        migration = self.prepare('server-1', lease_seconds=600)
        self.assertTrue(560 < self.lease_left(migration) <= 600,
                        self.lease_left(migration))
        expiry = self.call('server-1', 'begin_migration',
                           migration_uuid=migration, lease_seconds=300)
        self.assertTrue(260 < self.lease_left(migration) <= 300,
                        self.lease_left(migration))
        self.assertEqual(api_cases.migration_row(
            self.stack.engine, migration).lease_expires_at,
            datetime.datetime.fromisoformat(expiry.rstrip('Z')))

    def test_status_reads_lapsed_leases_by_the_database_clock(self):
        # vfpool-status an hour ahead: by its own clock the fresh lease
        # lapsed long ago, by the database's it has most of a minute left.
        self.prepare('server-0', lease_seconds=60)
        done = subprocess.run(
            AHEAD + ['vfpool-status', '--config-file', self.stack.config_file,
                     'upgrade', 'check', '--json'],
            capture_output=True, text=True, timeout=120)
        checks = {c['check']: c for c in json.loads(done.stdout)['checks']}
        self.assertEqual(0, checks['Lapsed leases']['result'],
                         checks['Lapsed leases']['details'])
