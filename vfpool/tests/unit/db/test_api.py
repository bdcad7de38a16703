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

"""The enginefacade's transactions, on SQLite, across processes."""

import subprocess
import sys

import sqlalchemy as sa
import testtools

from vfpool import context as vfpool_context
from vfpool.db import api as db_api
from vfpool.tests import fixtures

# A second process asks SQLite for the write lock without waiting.
_TRY_WRITE_LOCK = '''
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
try:
    conn.execute('BEGIN IMMEDIATE')
except sqlite3.OperationalError as e:
    print(e)
    sys.exit(1)
conn.execute('ROLLBACK')
'''


def _other_process_writes(path: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, '-c', _TRY_WRITE_LOCK, path],
                          capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout.strip()


@db_api.retry_on_deadlock
@db_api.context_manager.writer
def _writer_that_has_only_read(context, path: str) -> tuple[int, str]:
    context.session.execute(sa.text('SELECT count(*) FROM hosts'))
    return _other_process_writes(path)


@db_api.context_manager.reader
def _reader(context, path: str) -> tuple[int, str]:
    context.session.execute(sa.text('SELECT count(*) FROM hosts'))
    return _other_process_writes(path)


class TestSQLiteBeginImmediate(testtools.TestCase):
    """Issue 9 item 10: a writer holds SQLite's write lock from BEGIN."""

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Conf())
        database = self.useFixture(fixtures.Database())
        self.path = database.url[len('sqlite:///'):]
        self.context = vfpool_context.get_admin_context()

    def test_writer_locks_other_processes_out_from_its_start(self):
        # Only a read so far: with a deferred BEGIN the other process
        # would get the lock, and one of the two would later fail on
        # "database is locked" instead of waiting its turn.
        self.assertEqual((1, 'database is locked'),
                         _writer_that_has_only_read(self.context,
                                                    self.path))
        # Committed: the lock is free again.
        self.assertEqual((0, ''), _other_process_writes(self.path))

    def test_reader_leaves_the_write_lock_alone(self):
        self.assertEqual((0, ''), _reader(self.context, self.path))
