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

"""Reports with a digest (RPC 1.4): unchanged ones cost one UPDATE.

Shared, like :mod:`vfpool.tests.api_cases`, by the unit tests (in-process,
SQLite) and the functional tests (real servers, all three databases).  A
subclass provides ``self.client`` and ``self.engine``.
"""

import datetime

import sqlalchemy as sa

from vfpool import context as vfpool_context
from vfpool.db import models
from vfpool import exception
from vfpool.objects import admin
from vfpool.tests.api_cases import table_dump
from vfpool.tests.api_cases import vf_table
from vfpool.tests import inventory as inv
from vfpool import utils

Host = models.Host
VF = models.VirtualFunction
LONG_AGO = datetime.datetime(2000, 1, 1)


class ReportDigestBehaviour:

    def send(self, host: str, pfs: list, digest: str | None = None):
        """Report with ``digest``, by default the snapshot's own."""
        return self.client.report_inventory(
            None, host, pfs,
            digest=utils.snapshot_digest(pfs) if digest is None else digest)

    def host_row(self, host: str):
        with self.engine.connect() as conn:
            return conn.execute(sa.select(Host).where(
                Host.name == host)).one()

    def set_vf(self, host: str, address: str, **values) -> None:
        """An edit behind vfpool's back (a restore, a hand-made fix)."""
        with self.engine.begin() as conn:
            host_id = conn.execute(sa.select(Host.id).where(
                Host.name == host)).scalar_one()
            conn.execute(sa.update(VF).where(
                VF.host_id == host_id, VF.address == address).values(
                    **values))

    def vf_netdev(self, host: str, address: str):
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(VF.netdev).join(Host, Host.id == VF.host_id)
                .where(Host.name == host, VF.address == address)
            ).scalar_one()

    def backdate(self, host: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.update(Host).where(Host.name == host).values(
                last_report_at=LONG_AGO))

    def reported_long_ago(self, host: str, pfs: list) -> dict:
        """Report ``pfs`` in full, long ago; the tables as they are then."""
        self.send(host, pfs)
        self.backdate(host)
        return table_dump(self.engine)

    def assertOnlyReportTimeMoved(self, host: str, before: dict) -> None:
        after = table_dump(self.engine)
        self.assertGreater(self.host_row(host).last_report_at, LONG_AGO)
        column = list(Host.__table__.columns.keys()).index('last_report_at')

        def without_report_time(dump):
            return dict(dump, hosts=[row[:column] + row[column + 1:]
                                     for row in dump['hosts']])
        self.assertEqual(without_report_time(before),
                         without_report_time(after))
        self.assertNotEqual(before['hosts'], after['hosts'])

    def test_unchanged_report_changes_nothing_but_the_report_time(self):
        pfs = [inv.pf(5, 4)]
        self.assertEqual(4, self.send('h1', pfs)['added'])
        self.assertEqual(utils.snapshot_digest(pfs),
                         self.host_row('h1').report_digest)
        self.client.allocate(None, inv.new_uuid(), 'h1',
                             [inv.request(mac=inv.mac(1))], 'r1')
        self.backdate('h1')
        before = table_dump(self.engine)
        self.assertEqual({'added': 0, 'removed': 0, 'updated': 0,
                          'unchanged': 4}, self.send('h1', pfs))
        self.assertOnlyReportTimeMoved('h1', before)

    def test_report_unchanged_records_the_report_time_only(self):
        pfs = [inv.pf(5, 4)]
        before = self.reported_long_ago('h1', pfs)
        self.assertTrue(self.client.report_unchanged(
            None, 'h1', utils.snapshot_digest(pfs)))
        self.assertOnlyReportTimeMoved('h1', before)

    def test_report_unchanged_asks_for_the_full_report_otherwise(self):
        pfs = [inv.pf(5, 2)]
        digest = utils.snapshot_digest(pfs)
        before = self.reported_long_ago('h1', pfs)
        other = utils.snapshot_digest([inv.pf(5, 3)])
        # Another snapshot's digest; a host vfpool does not know.
        self.assertFalse(self.client.report_unchanged(None, 'h1', other))
        self.assertFalse(self.client.report_unchanged(None, 'h2', digest))
        self.assertEqual(before, table_dump(self.engine))
        # No digest stored (an operator's change, a report without one).
        self.client.report_inventory(None, 'h1', pfs)
        self.assertFalse(self.client.report_unchanged(None, 'h1', digest))
        for host, bad in [('h1', 'not-a-digest'), ('h1', None),
                          ('', digest), (None, digest)]:
            self.assertRaises(exception.InvalidInput,
                              self.client.report_unchanged, None, host, bad)
        self.assertIsNone(self.host_row('h1').report_digest)

    def test_changed_snapshot_with_a_stale_digest_is_applied(self):
        pfs = [inv.pf(5, 4)]
        stale = utils.snapshot_digest(pfs)
        self.send('h1', pfs)
        gone = pfs[0]['vfs'].pop()
        pfs[0]['vfs'][0]['netdev'] = 'ens5v0'
        self.assertEqual({'added': 0, 'removed': 1, 'updated': 1,
                          'unchanged': 2}, self.send('h1', pfs, stale))
        self.assertEqual(('missing', None, None),
                         vf_table(self.engine)[('h1', gone['address'])])
        # The digest stored is the snapshot's, not the one the agent sent.
        self.assertEqual(utils.snapshot_digest(pfs),
                         self.host_row('h1').report_digest)

    def test_missing_vfs_stay_missing_through_unchanged_reports(self):
        pfs = [inv.pf(5, 3)]
        self.send('h1', pfs)
        gone = pfs[0]['vfs'].pop()
        self.assertEqual(1, self.send('h1', pfs)['removed'])
        self.assertEqual(2, self.send('h1', pfs)['unchanged'])
        self.assertEqual('missing', vf_table(self.engine)[
            ('h1', gone['address'])][0])
        pfs[0]['vfs'].append(gone)
        counts = self.send('h1', pfs)
        self.assertEqual((1, 2), (counts['updated'], counts['unchanged']))
        self.assertEqual('available', vf_table(self.engine)[
            ('h1', gone['address'])][0])

    def test_an_operator_change_makes_the_next_report_full(self):
        pfs = [inv.pf(5, 2)]
        self.send('h1', pfs)
        address = pfs[0]['vfs'][0]['address']
        # What only a full report repairs: an edit behind vfpool's back.
        self.set_vf('h1', address, netdev='wrong')
        self.assertEqual(2, self.send('h1', pfs)['unchanged'])
        self.assertEqual('wrong', self.vf_netdev('h1', address))
        # Any vfpool-manage VF command forgets the host's digest ...
        admin.reserve(vfpool_context.get_admin_context(), 'h1',
                      pfs[0]['vfs'][1]['address'], reason='test')
        self.assertIsNone(self.host_row('h1').report_digest)
        # ... so the next report is applied in full, and repairs.
        self.assertEqual(1, self.send('h1', pfs)['updated'])
        self.assertIsNone(self.vf_netdev('h1', address))
        self.assertEqual('reserved', vf_table(self.engine)[
            ('h1', pfs[0]['vfs'][1]['address'])][0])
        self.assertIsNotNone(self.host_row('h1').report_digest)

    def test_a_report_without_digest_forgets_it(self):
        pfs = [inv.pf(5, 2)]
        self.send('h1', pfs)
        self.client.report_inventory(None, 'h1', pfs)
        self.assertIsNone(self.host_row('h1').report_digest)

    def test_a_matching_digest_does_not_excuse_bad_input(self):
        bad = [{'address': 'nonsense', 'vfs': []}]
        self.assertRaises(exception.InvalidInput, self.send, 'h1', bad)
        self.assertRaises(exception.InvalidInput, self.send, 'h1',
                          [inv.pf(5, 1)], 'not-a-digest')
        self.assertEqual({}, {h: a for (h, a) in vf_table(self.engine)})
        with self.engine.connect() as conn:
            self.assertEqual(0, conn.execute(sa.select(
                sa.func.count()).select_from(Host)).scalar_one())
