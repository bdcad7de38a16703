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
    renews the migration's lease (``renew_migration``) every third of it
    while the migration runs, so that a migration longer than
    ``[pool] lease_seconds`` keeps its claims (``in_progress``) and is not
    shown stalled (``moving``).
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
    """Renews one migration's lease until stopped or the migration ends."""

    def __init__(self, migration_uuid: str, renew: typing.Callable[[], str],
                 lease_seconds: float) -> None:
        super().__init__('vfpool-renew-%s' % migration_uuid)
        self.migration_uuid = migration_uuid
        self.lease_seconds = lease_seconds
        self._renew = renew
        self.renewals = 0

    def run(self) -> None:
        interval = renew_interval(self.lease_seconds)
        while self.pause(interval):
            try:
                expiry = self._renew()
            except _RENEW_FINAL as exc:
                LOG.info('Stopped renewing the lease of migration %s: %s',
                         self.migration_uuid, exc)
                return
            except (exception.VfpoolException,
                    messaging.MessagingException) as exc:
                # Next time, perhaps; the lease is as long as it was.
                LOG.warning('Could not renew the lease of migration %s: '
                            '%s: %s', self.migration_uuid,
                            type(exc).__name__, exc)
                continue
            except Exception:
                LOG.exception('Unexpected error renewing the lease of '
                              'migration %s', self.migration_uuid)
                continue
            self.renewals += 1
            if self.stopping:
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
