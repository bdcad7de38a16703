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

"""The compute plugin's background work for one migration in flight.

Two kinds of thread, each for one migration and plain ``threading`` (no
eventlet: nova-compute runs vfpool in its threading mode):

:class:`LeaseRenewer`
    renews the migration's lease (``renew_migration``) every third of
    what the server's last answer left of it while the migration runs, so
    that a migration longer than its lease keeps its claims
    (``in_progress``) and is not shown stalled (``moving``); but only
    while its owner still wants it, and for ``[migration]
    claim_max_seconds`` at most: no renewal without an end.
:class:`Settler`
    retries ``complete_migration`` with bounded exponential backoff after
    the post-migration hooks could not reach vfpool-server; when the bound
    is exhausted the migration stays ``moving`` (stalled once its lease
    lapses) for ``vfpool-manage migration complete``.

Both wait on their own stop event, never in a blind sleep, so that
:meth:`Worker.stop` ends them after the RPC under way at most.
"""

import datetime
import threading
import time
import typing

from oslo_log import log as logging
import oslo_messaging as messaging

from vfpool import exception

LOG = logging.getLogger(__name__)

#: Shortest pause between two renewals, whatever the lease says.
MIN_RENEW_INTERVAL = 0.1
#: Answers after which renewing a migration is pointless: it is over or
#: its claims are gone.
_RENEW_FINAL = (exception.MigrationNotFound,
                exception.MigrationStateConflict, exception.LeaseExpired)

T = typing.TypeVar('T')


class Worker(threading.Thread):
    """A daemon thread with a stop event it waits on."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._stopping = threading.Event()

    def pause(self, seconds: float) -> bool:
        """Wait ``seconds``; False once :meth:`stop` was called."""
        return not self._stopping.wait(max(0.0, seconds))

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self, timeout: float | None = 0) -> None:
        """Ask the thread to end; wait up to ``timeout`` s (None: forever).

        With the default it only asks: a caller in a hook does not wait
        for an RPC the thread has under way.
        """
        self._stopping.set()
        if (timeout != 0 and self.is_alive()
                and self is not threading.current_thread()):
            self.join(timeout)


def renew_interval(lease_seconds: float, expiry: str | None = None,
                   now: datetime.datetime | None = None) -> float:
    """A third of the lease, or of what is left of it if that is less.

    ``expiry`` is what the server answered (the database's clock); a
    compute clock ahead of it only renews more often, one behind it is
    bounded by ``lease_seconds``.
    """
    left = float(lease_seconds)
    if expiry is not None:
        end = datetime.datetime.fromisoformat(expiry.replace('Z', '+00:00'))
        now = now or datetime.datetime.now(datetime.timezone.utc)
        left = min(left, (end - now).total_seconds())
    return max(MIN_RENEW_INTERVAL, left / 3)


class LeaseRenewer(Worker):
    """Renews one migration's lease, within an end.

    It stops when stopped, when the migration ends (a final answer),
    when ``wanted()`` answers False (the migration's owner, Nova's
    Migration record with the Nova driver, shows it is over) and at the
    latest ``max_seconds`` after it started.  Then the lease lapses: the
    reaper frees an ``in_progress`` migration's claims, a ``moving`` one
    is shown stalled.  ``wanted()`` answering None (cannot tell) or
    raising keeps renewing until the bound.

    Every renewal is paced by the expiry the server last gave, not by
    this host's ``lease_seconds`` (a server with a shorter lease would
    reap the claim before the first renewal): the first by ``expiry``,
    the server's answer to ``begin_migration``, or else what
    ``read_expiry()`` reads of the lease the claim got (None or an error:
    renew at once).
    """

    def __init__(self, migration_uuid: str, renew: typing.Callable[[], str],
                 lease_seconds: float, expiry: str | None = None,
                 max_seconds: float | None = None,
                 wanted: typing.Callable[[], bool | None] | None = None,
                 read_expiry: typing.Callable[[], str | None] | None = None,
                 clock: typing.Callable[[], float] = time.monotonic
                 ) -> None:
        super().__init__('vfpool-renew-%s' % migration_uuid)
        self.migration_uuid = migration_uuid
        self.lease_seconds = lease_seconds
        self.expiry = expiry
        self.max_seconds = max_seconds
        self._renew = renew
        self._wanted = wanted
        self._read_expiry = read_expiry
        self._clock = clock
        self.renewals = 0
        #: Why it ended: 'stopped', 'over', 'abandoned' or 'bound'.
        self.outcome: str | None = None

    def _still_wanted(self) -> bool:
        if self._wanted is None:
            return True
        try:
            return self._wanted() is not False
        except Exception:
            LOG.exception('Cannot tell whether migration %s is still '
                          'wanted; renewing its lease', self.migration_uuid)
            return True

    def _first_interval(self) -> float:
        if self.expiry is None and self._read_expiry is not None:
            try:
                self.expiry = self._read_expiry()
            except Exception as exc:
                LOG.warning('Cannot read the lease of migration %s (%s: '
                            '%s); renewing it at once', self.migration_uuid,
                            type(exc).__name__, exc)
        if self.expiry is None:
            return 0.0
        return renew_interval(self.lease_seconds, self.expiry)

    def _end(self, outcome: str, why: str) -> None:
        self.outcome = outcome
        LOG.info('Stopped renewing the lease of migration %s (%s): its '
                 'lease lapses at %s', self.migration_uuid, why,
                 self.expiry or 'the end of its current lease')

    def run(self) -> None:
        deadline = (None if self.max_seconds is None
                    else self._clock() + self.max_seconds)
        interval = self._first_interval()
        while True:
            if deadline is not None:
                interval = min(interval, max(0.0, deadline - self._clock()))
            if not self.pause(interval):
                self.outcome = 'stopped'
                return
            if deadline is not None and self._clock() >= deadline:
                self._end('bound', 'renewed for [migration] '
                          'claim_max_seconds = %s s' % self.max_seconds)
                return
            if not self._still_wanted():
                self._end('abandoned', 'its owner gave it up')
                return
            try:
                expiry = self._renew()
            except _RENEW_FINAL as exc:
                self.outcome = 'over'
                LOG.info('Stopped renewing the lease of migration %s: %s',
                         self.migration_uuid, exc)
                return
            except (exception.VfpoolException,
                    messaging.MessagingException) as exc:
                # Next time, perhaps; the lease is as long as it was.
                LOG.warning('Could not renew the lease of migration %s: '
                            '%s: %s', self.migration_uuid,
                            type(exc).__name__, exc)
                interval = renew_interval(self.lease_seconds, self.expiry)
                continue
            except Exception:
                LOG.exception('Unexpected error renewing the lease of '
                              'migration %s', self.migration_uuid)
                interval = renew_interval(self.lease_seconds, self.expiry)
                continue
            self.renewals += 1
            self.expiry = expiry
            if self.stopping:
                self.outcome = 'stopped'
                return
            interval = renew_interval(self.lease_seconds, expiry)
            LOG.debug('Renewed the lease of migration %s until %s; next in '
                      '%.1f s', self.migration_uuid, expiry, interval)


class Settler(Worker):
    """Retries ``settle`` with bounded exponential backoff.

    ``settle`` raising a ``MessagingException`` (vfpool-server or its
    broker unreachable) is tried again after ``initial_delay`` seconds,
    doubling up to ``max_delay``, until ``max_time`` seconds passed since
    the settler started; then, or on a typed vfpool error (the server
    answered: retrying cannot change it), ``give_up(error)`` runs.  On
    success ``done(result)`` runs.  Stopped, it runs neither.
    """

    def __init__(self, migration_uuid: str, settle: typing.Callable[[], T],
                 done: typing.Callable[[T], None],
                 give_up: typing.Callable[[Exception], None],
                 initial_delay: float, max_delay: float,
                 max_time: float,
                 clock: typing.Callable[[], float] = time.monotonic
                 ) -> None:
        super().__init__('vfpool-settle-%s' % migration_uuid)
        self.migration_uuid = migration_uuid
        self._settle = settle
        self._done = done
        self._give_up = give_up
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.max_time = max_time
        self._clock = clock
        self.attempts = 0
        self.outcome: str | None = None

    def run(self) -> None:
        deadline = self._clock() + self.max_time
        delay = self.initial_delay
        while self.pause(min(delay, max(0.0, deadline - self._clock()))):
            self.attempts += 1
            try:
                result = self._settle()
            except messaging.MessagingException as exc:
                if self._clock() >= deadline:
                    self._end('gave up', self._give_up, exc)
                    return
                delay = min(self.max_delay, delay * 2)
                LOG.warning('Migration %s: vfpool-server still unreachable '
                            '(attempt %d: %s); next attempt in %.1f s',
                            self.migration_uuid, self.attempts,
                            type(exc).__name__, delay)
                continue
            except exception.VfpoolException as exc:
                self._end('refused', self._give_up, exc)
                return
            self._end('settled', self._done, result)
            return
        self.outcome = 'stopped'

    def _end(self, outcome: str, callback: typing.Callable, arg) -> None:
        self.outcome = outcome
        try:
            callback(arg)
        except Exception:
            LOG.exception('Migration %s: error after it was %s',
                          self.migration_uuid, outcome)
