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

"""The clock leases are set and reaped by: the database's, never a server's.

Active-active servers whose clocks disagree would otherwise move each
other's expiries: a server whose clock runs ahead reaps the fresh claims
of the others, one behind keeps claims alive too long.  So every lease
is written as, and compared with, a SQL expression of the database's own
"now" in UTC, compiled per dialect.  (On SQLite the database's clock is
that of the machine the file lives on, which is the one its servers run
on.)
"""

import sqlalchemy as sa
from sqlalchemy.ext import compiler
from sqlalchemy.sql import functions

from vfpool.db import models


class _UTCNow(functions.FunctionElement):
    """The database's current time in UTC, as a naive timestamp."""

    type = models.DateTime
    inherit_cache = True
    name = 'vfpool_utcnow'


class _UTCIn(functions.FunctionElement):
    """The database's time in UTC, ``seconds`` (an integer) from now."""

    type = models.DateTime
    inherit_cache = True
    name = 'vfpool_utc_in'


# SQLite keeps DATETIME as 'YYYY-MM-DD HH:MM:SS.ffffff' text (that is how
# SQLAlchemy writes and reads it, and how the text compares); its %f is
# seconds with milliseconds, so three zeros make the microseconds.
_SQLITE_FORMAT = "'%Y-%m-%d %H:%M:%f000'"


@compiler.compiles(_UTCNow, 'sqlite')
def _now_sqlite(element, compiler, **kw):
    return "strftime(%s, 'now')" % _SQLITE_FORMAT


@compiler.compiles(_UTCIn, 'sqlite')
def _in_sqlite(element, compiler, **kw):
    return "strftime(%s, 'now', %s || ' seconds')" % (
        _SQLITE_FORMAT, compiler.process(element.clauses, **kw))


@compiler.compiles(_UTCNow, 'mysql')
def _now_mysql(element, compiler, **kw):
    return 'UTC_TIMESTAMP(6)'


@compiler.compiles(_UTCIn, 'mysql')
def _in_mysql(element, compiler, **kw):
    return 'TIMESTAMPADD(SECOND, %s, UTC_TIMESTAMP(6))' % (
        compiler.process(element.clauses, **kw))


# statement_timestamp(), not now(): the time of this statement, not of
# the start of its transaction, as on the other backends.
@compiler.compiles(_UTCNow, 'postgresql')
def _now_postgresql(element, compiler, **kw):
    return "(statement_timestamp() AT TIME ZONE 'UTC')"


@compiler.compiles(_UTCIn, 'postgresql')
def _in_postgresql(element, compiler, **kw):
    return ("((statement_timestamp() AT TIME ZONE 'UTC') + "
            "make_interval(secs => %s))" % (
                compiler.process(element.clauses, **kw)))


def now() -> sa.ColumnElement:
    """The time a lease is compared with, as SQL."""
    return _UTCNow()


def expiry(lease_seconds: int | sa.BindParameter) -> sa.ColumnElement:
    """The expiry of a lease of ``lease_seconds`` taken now, as SQL.

    ``lease_seconds`` may be a bind parameter, for a statement built once.
    """
    if not isinstance(lease_seconds, sa.BindParameter):
        lease_seconds = sa.literal(int(lease_seconds), sa.Integer)
    return _UTCIn(lease_seconds)
