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

"""The one enginefacade of vfpool.

Queries live beside the entity they serve (``vfpool/objects``) and use
``@context_manager.reader`` / ``@context_manager.writer``.  Writers are
wrapped in :func:`retry_on_deadlock` so that a lost row-lock race,
a Galera certification failure, a busy SQLite file or a database that
went away for a moment is retried rather than surfaced to the caller.
"""

import functools
import threading

from oslo_config import cfg
from oslo_db import api as oslo_db_api
from oslo_db import exception as db_exc
from oslo_db.sqlalchemy import enginefacade
from oslo_log import log as logging
import sqlalchemy

from vfpool import exception

LOG = logging.getLogger(__name__)

context_manager = enginefacade.transaction_context()

_MAX_RETRIES = 20


def _is_retriable(exc: Exception) -> bool:
    if isinstance(exc, (db_exc.DBDeadlock, db_exc.RetryRequest)):
        # DBDeadlock includes oslo.db's DBConsistencyError (17.4.0 on):
        # MariaDB's error 1020, a row changed since this transaction's
        # snapshot, which innodb_snapshot_isolation=ON (the default from
        # MariaDB 11.6.2) raises where a lost compare-and-swap would
        # otherwise match no row.
        return True
    if isinstance(exc, db_exc.DBDuplicateEntry):
        # Two first-time requests raced for one unique key (a request id,
        # a migration uuid, a host name); the retry finds the winner's row.
        return True
    if isinstance(exc, db_exc.DBConnectionError) or _not_connected(exc):
        # The database restarted, or a Galera node left or is not ready
        # yet.  Nothing was committed; or, if the COMMIT itself was cut
        # off, the retry finds what it did: every writer is keyed by an
        # id or guarded by compare-and-swap.
        return True
    if isinstance(exc, (db_exc.DBError, sqlalchemy.exc.OperationalError)):
        # Errors raised where oslo.db does not translate them (in engine
        # events, such as SQLite's BEGIN IMMEDIATE) come here raw.
        inner = getattr(exc, 'inner_exception', None)
        text = str(inner or exc)
        # PostgreSQL: deadlock_detected (40P01), serialization_failure
        # (40001); MariaDB: 1213 deadlock, 1020 snapshot conflict;
        # SQLite: another writer holds the file.
        return ('deadlock detected' in text
                or 'could not serialize access' in text
                or 'Deadlock found' in text
                or 'Record has changed since last read' in text
                or 'database is locked' in text)
    return False


def _not_connected(exc: Exception) -> bool:
    """A connection could not be opened (no statement had run).

    oslo.db passes such errors through untranslated when the driver does
    not call them a disconnect, e.g. PostgreSQL's "the database system
    is shutting down".
    """
    inner = getattr(exc, 'inner_exception', None) or exc
    return (isinstance(inner, sqlalchemy.exc.OperationalError)
            and inner.statement is None)


# SQLite allows one writer at a time and makes the others poll with
# sleeps; queueing this process's writers on a lock instead keeps the
# embedded single-server setup fast under concurrent calls.
_SQLITE_WRITERS = threading.Lock()

# How deep the current thread is in writer transactions (see
# _sqlite_begin_immediate).
_WRITING = threading.local()


def _serialised_on_sqlite(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if get_engine().dialect.name != 'sqlite':
            return func(*args, **kwargs)
        with _SQLITE_WRITERS:
            _WRITING.depth = getattr(_WRITING, 'depth', 0) + 1
            try:
                return func(*args, **kwargs)
            finally:
                _WRITING.depth -= 1
    return wrapper


def retry_on_deadlock(func):
    """Retry a whole writer transaction when the database says so.

    Must wrap the outermost transaction, so that every attempt starts
    from a clean snapshot.  On SQLite it also makes the transaction a
    writer from its first statement (:func:`_sqlite_begin_immediate`).
    """
    wrapped = oslo_db_api.wrap_db_retry(
        max_retries=_MAX_RETRIES, retry_interval=0.01,
        inc_retry_interval=True, max_retry_interval=0.5,
        exception_checker=_is_retriable)(_serialised_on_sqlite(func))
    return functools.wraps(func)(wrapped)


def _sqlite_begin_immediate(engine: sqlalchemy.engine.Engine) -> None:
    """Make SQLite take its write lock when a writer transaction starts.

    A deferred SQLite transaction that reads and then writes cannot
    wait for another writer: it fails with "database is locked".  Taking
    the lock up front makes writers in other processes (vfpool-manage,
    a second server on the same machine) queue instead.  oslo.db opens
    every SQLite transaction itself with a plain ``BEGIN`` from a
    ``begin`` listener that always runs before any listener added later,
    so the statement it sends is rewritten here, for the transactions of
    :func:`retry_on_deadlock` writers only: readers keep a shared lock.
    """
    if engine.dialect.name != 'sqlite':
        return

    @sqlalchemy.event.listens_for(engine, 'before_cursor_execute',
                                  retval=True)
    def _immediate(conn, cursor, statement, parameters, context,
                   executemany):
        if statement == 'BEGIN' and getattr(_WRITING, 'depth', 0):
            statement = 'BEGIN IMMEDIATE'
        return statement, parameters


def _skip_idle_rollback(engine: sqlalchemy.engine.Engine) -> None:
    """No ROLLBACK round trip for a MySQL connection just committed.

    The pool rolls back every connection it takes back (reset on
    return), also right after a COMMIT; oslo.db does not expose
    ``pool_reset_on_return``.  A connection whose last act was a COMMIT
    or a ROLLBACK, with no statement since, has nothing to roll back: the
    rollback is skipped for it only.  A connection that ran anything
    after (a reader that never committed, an error mid-way) is still
    rolled back: MariaDB's status flags do not tell a read-only snapshot,
    so the flag is kept here.  psycopg2 already skips the round trip when
    idle, and SQLite has none.
    """
    if engine.dialect.name != 'mysql':
        return
    dialect = engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def _raw(connection):
        # The pool hands its proxy; statements see the DBAPI connection.
        return getattr(connection, 'dbapi_connection', connection)

    def do_commit(dbapi_connection) -> None:
        commit(dbapi_connection)
        _raw(dbapi_connection).vfpool_idle = True

    def do_rollback(dbapi_connection) -> None:
        raw = _raw(dbapi_connection)
        if not getattr(raw, 'vfpool_idle', False):
            rollback(dbapi_connection)
            raw.vfpool_idle = True

    @sqlalchemy.event.listens_for(engine, 'before_cursor_execute')
    def _busy(conn, cursor, statement, parameters, context, executemany):
        conn.connection.dbapi_connection.vfpool_idle = False

    # On this engine's own dialect instance only.
    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign]


def _tune(engine: sqlalchemy.engine.Engine) -> None:
    """What every engine of vfpool gets on top of oslo.db's."""
    _sqlite_begin_immediate(engine)
    _skip_idle_rollback(engine)


#: How the command-line tools (vfpool-manage, vfpool-status) connect: a
#: few quick attempts instead of ``[database] max_retries`` x
#: ``retry_interval`` (100 s by default, right for a service that starts
#: before its database), each bounded by a connect timeout.  Documented in
#: doc/source/admin/cli.rst.
CLI_CONNECT_ATTEMPTS = 3
CLI_RETRY_INTERVAL = 1
CLI_CONNECT_TIMEOUT = 5

#: The dialects whose drivers take a ``connect_timeout`` (seconds).
_CONNECT_TIMEOUT_DIALECTS = ('mysql', 'postgresql')


def _engine_options(conf: cfg.ConfigOpts, cli: bool = False) -> dict:
    db = conf.database
    options = dict(
        connection=db.connection,
        slave_connection=db.slave_connection,
        sqlite_fk=True,
        mysql_sql_mode=db.mysql_sql_mode,
        mysql_wsrep_sync_wait=db.mysql_wsrep_sync_wait,
        connection_recycle_time=db.connection_recycle_time,
        connection_debug=db.connection_debug,
        max_pool_size=db.max_pool_size,
        max_overflow=db.max_overflow,
        pool_timeout=db.pool_timeout,
        connection_trace=db.connection_trace,
        max_retries=db.max_retries,
        retry_interval=db.retry_interval,
    )
    if cli:
        options.update(max_retries=CLI_CONNECT_ATTEMPTS,
                       retry_interval=CLI_RETRY_INTERVAL)
        if (_dialect(db.connection) in _CONNECT_TIMEOUT_DIALECTS
                and 'connect_timeout' not in db.connection):
            options['connection_parameters'] = (
                'connect_timeout=%d' % CLI_CONNECT_TIMEOUT)
    return options


def _dialect(url: str) -> str:
    return url.split(':', 1)[0].split('+', 1)[0]


def shown_url(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(
            hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return repr(url)


def reason(exc: BaseException) -> str:
    """The driver's own words, on one line, without SQLAlchemy's link."""
    inner = getattr(exc, 'inner_exception', None) or exc
    inner = getattr(inner, 'orig', None) or inner
    text = str(inner).split('\n')[0].strip()
    return text or type(inner).__name__


_configured = False


def configure(conf: cfg.ConfigOpts, cli: bool = False) -> None:
    """Point the facade at ``[database]``; a second call is a no-op.

    Connects once, so that a wrong URL, a missing driver or a database
    that cannot be reached raise here as a typed one-line
    :class:`~vfpool.exception.CannotRun` error, not later mid-request.
    ``cli`` bounds the wait for the database (``CLI_CONNECT_ATTEMPTS``).
    """
    global _configured
    # Tests and tools that called use_connection() have started it already.
    if _configured or context_manager.is_started:
        return
    options = _engine_options(conf, cli=cli)
    url = shown_url(options['connection'])
    context_manager.configure(**options)
    try:
        engine = context_manager.writer.get_engine()
    except ImportError as exc:
        raise exception.DatabaseDriverMissing(url=url, reason=exc) from exc
    except (sqlalchemy.exc.ArgumentError,
            sqlalchemy.exc.NoSuchModuleError) as exc:
        raise exception.DatabaseUrlInvalid(url=url,
                                           reason=reason(exc)) from exc
    except db_exc.DBConnectionError as exc:
        raise exception.DatabaseUnreachable(
            url=url, reason='%s (%s attempt(s), %s s apart)' % (
                reason(exc), options['max_retries'],
                options['retry_interval'])) from exc
    except (db_exc.DBError, sqlalchemy.exc.OperationalError) as exc:
        # Reached, but refused (a wrong password, an unknown database), or
        # a refusal oslo.db does not call a disconnect (newer libpq's
        # "connection to server ... failed"), so did not retry.
        raise exception.DatabaseUnreachable(url=url,
                                            reason=reason(exc)) from exc
    _tune(engine)
    _configured = True


def get_engine() -> sqlalchemy.engine.Engine:
    return context_manager.writer.get_engine()


def use_connection(url: str, **options):
    """Point the facade at ``url`` instead of ``[database]`` (tests, tools).

    Returns the callable that undoes it.
    """
    factory = enginefacade._TransactionFactory()
    factory.configure(connection=url, sqlite_fk=True, **options)
    reset = context_manager.patch_factory(factory)
    engine = context_manager.writer.get_engine()
    _tune(engine)

    def _reset():
        engine.dispose()
        reset()
    return _reset
