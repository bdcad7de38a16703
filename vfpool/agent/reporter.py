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

"""vfpool-agent: report this host's VF inventory to vfpool-server.

:class:`Reporter` does one round at a time (connect to libvirt if needed,
discover, report) and answers how long to wait before the next one, so
that tests drive it round by round; :class:`AgentService` runs it on an
oslo.service dynamic timer.

Failures never stop the loop.  Whatever went wrong (libvirt unreachable
or restarted, broker or server down, the server refusing the report),
the round is logged and the next one comes after an exponential backoff
of 1, 2, 4... seconds capped at ``[agent] max_backoff``; the first
success goes back to ``[agent] report_interval``.  A snapshot is only
sent when discovery completed on a live connection: a half-read host
would mark every VF it missed as ``missing`` on the server.

While the broker is unreachable before the first call, oslo.messaging
itself keeps reconnecting inside that call (its reply queue cannot be
created with a bounded retry); the round then simply lasts until the
broker is back.  Sends afterwards use a bounded retry so that a broker
outage ends the round and a fresh snapshot is taken on the next one.
"""

import collections
import logging as py_logging
import threading
import typing
from typing import Callable

from oslo_config import cfg
from oslo_log import log as logging
import oslo_messaging as messaging
from oslo_service import service

from vfpool.agent import device_spec
from vfpool.agent import discovery
from vfpool import context as vfpool_context
from vfpool import exception
from vfpool.libvirt_import import libvirt
from vfpool import rpc
from vfpool import rpc_types
from vfpool import rpcapi
from vfpool import utils

LOG = logging.getLogger(__name__)

#: Connection attempts of one send before the round gives up (the rabbit
#: driver waits 1, 3, 5... seconds between them).
SEND_RETRIES = 3
#: Seconds that stopping the agent waits for its broker connections to
#: close when no report is on its way (then closing takes no time).
CLEANUP_TIMEOUT = 3

Logger = py_logging.Logger | py_logging.LoggerAdapter
Opener = Callable[[str], libvirt.virConnect]


class ConnectionLost(Exception):
    """libvirt went away while the host was being read."""


def backoff(failures: int, cap: int) -> int:
    """Seconds to wait after ``failures`` consecutive failed rounds."""
    return min(cap, 2 ** min(failures - 1, 30))


def _is_alive(conn: libvirt.virConnect) -> bool:
    """False when libvirt is gone (daemon restarted, connection closed).

    ``isAlive`` alone only reflects what the client last saw of the
    socket; ``getLibVersion`` is a round trip on remote drivers.
    """
    try:
        return bool(conn.isAlive()) and conn.getLibVersion() > 0
    except libvirt.libvirtError:
        return False


class Reporter:
    """The agent's loop body: one discovery and one report per round.

    ``open_connection`` is ``libvirt.openReadOnly`` in production; tests
    may pass a stand-in where libvirt's test driver cannot show a case.
    """

    def __init__(self, conf: cfg.ConfigOpts,
                 specs: list[device_spec.DeviceSpec],
                 api: rpcapi.VfpoolAPI,
                 open_connection: Opener = libvirt.openReadOnly,
                 log: Logger = LOG):
        self.conf = conf
        self.specs = specs
        self.api = api
        self.open_connection = open_connection
        self.log = log
        self.conn = None
        self.failures = 0
        #: utils.snapshot_digest of the last snapshot the server took.
        self.reported_digest: str | None = None
        #: Set while a report is on its way to the server: the transport
        #: is busy (perhaps reconnecting to a dead broker) until it ends.
        self.sending = threading.Event()

    @property
    def uri(self) -> str:
        return self.conf.agent.libvirt_uri

    def close(self) -> None:
        """Drop the libvirt connection; the next round opens a new one."""
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError:
                # Already dead: nothing left to release.
                pass

    def _connection(self) -> libvirt.virConnect:
        if self.conn is not None and not _is_alive(self.conn):
            self.log.warning('The libvirt connection to %s is dead '
                             '(libvirt restarted?); reconnecting', self.uri)
            self.close()
        if self.conn is None:
            self.conn = self.open_connection(self.uri)
            self.log.info('Connected to libvirt at %s', self.uri)
        return self.conn

    def discover(self) -> list[dict]:
        """This host's ``pfs`` snapshot, read on a live connection.

        Any libvirt failure drops the connection, so that the next round
        starts from a fresh one.
        """
        try:
            conn = self._connection()
            pfs = discovery.discover(conn, self.specs, self.log)
            if not _is_alive(conn):
                raise ConnectionLost('the connection to %s died during '
                                     'discovery' % self.uri)
        except (libvirt.libvirtError, ConnectionLost):
            self.close()
            raise
        return pfs

    def report(self) -> rpc_types.InventoryCounts:
        """Discover and report once; the server's counts.  Errors raise."""
        pfs = self.discover()
        # A new request id per round, also in this thread's log lines.
        context = vfpool_context.RequestContext(is_admin=True)
        digest = utils.snapshot_digest(pfs)
        self.sending.set()
        try:
            # The snapshot the server took last time: its digest alone
            # says so (1.5); the server answers False if it has another.
            if (digest == self.reported_digest and
                    self._report_unchanged(context, digest)):
                counts = rpc_types.unchanged_counts(pfs)
            else:
                counts = self.api.report_inventory(
                    context, self.conf.host, pfs, digest=digest)
            self.reported_digest = digest
        finally:
            self.sending.clear()
        per_network: collections.Counter[str] = collections.Counter()
        for pf in pfs:
            per_network[pf['physical_network']] += len(pf['vfs'])
        self.log.info(
            'Reported %d PFs and %d VFs of host %s (%s); server: '
            'added=%s removed=%s updated=%s unchanged=%s',
            len(pfs), sum(per_network.values()), self.conf.host,
            ', '.join('%s: %d' % item for item in sorted(
                per_network.items())) or 'no physical network',
            counts.get('added'), counts.get('removed'),
            counts.get('updated'), counts.get('unchanged'))
        return counts

    def _report_unchanged(self, context, digest: str) -> bool:
        try:
            return self.api.report_unchanged(context, self.conf.host, digest)
        except messaging.UnsupportedVersion:
            # A server older than 1.5 and an uncapped agent: report in
            # full rather than fail every round until the server is new.
            self.log.warning('The server does not know report_unchanged '
                             '(RPC 1.5): reporting in full; set '
                             '[upgrade_levels] vfpool to its version')
            return False

    def run_once(self) -> int:
        """One round that never raises; seconds until the next round."""
        error = None
        try:
            self.report()
        except Exception as exc:
            error = exc
        if error is not None:
            # Logged outside the handler: oslo.log would otherwise append
            # the exception to lines that already quote it.
            self.failures += 1
            delay = backoff(self.failures, self.conf.agent.max_backoff)
            self._log_failure(error, delay)
            return delay
        if self.failures:
            self.log.info('Reporting works again after %d failed rounds',
                          self.failures)
            self.failures = 0
        return self.conf.agent.report_interval

    def _log_failure(self, exc: Exception, delay: int) -> None:
        retry = ('failure %d in a row; retrying in %d s'
                 % (self.failures, delay))
        if isinstance(exc, (libvirt.libvirtError, ConnectionLost)):
            self.log.error('Cannot read node devices from libvirt at %s: '
                           '%s (%s)', self.uri, exc, retry)
        elif isinstance(exc, messaging.MessagingTimeout):
            self.log.warning('No vfpool-server answered the inventory '
                             'report in time; is one running on this '
                             'topic and exchange? (%s)', retry)
        elif isinstance(exc, exception.VfpoolException):
            self.log.error('vfpool-server refused the inventory of host '
                           '%s: %s: %s (%s)', self.conf.host,
                           type(exc).__name__, exc, retry)
        elif isinstance(exc, messaging.MessagingException):
            self.log.error('Cannot send the inventory report: %s: %s (%s)',
                           type(exc).__name__, exc, retry)
        else:
            self.log.error('Unexpected error while reporting the '
                           'inventory (%s)', retry, exc_info=exc)


def _ignore_libvirt_error(_ctxt, _error) -> None:
    """Keep libvirt from printing errors on stderr.

    The agent logs the errors it gets as exceptions instead.
    """


def report_timeout(conf) -> int:
    """How long to wait for the server's answer to one report.

    A report sent before any server has declared the topic's queue is
    dropped by the broker and only a timeout tells; waiting the default
    minute would delay the first inventory of a host started together
    with its server by that much.  Tied to the report interval, within
    bounds that leave a busy server time to answer.
    """
    rpc_timeout = conf.rpc_response_timeout
    return max(10, min(rpc_timeout, conf.agent.report_interval))


class AgentService(service.Service):
    """Runs :class:`Reporter` on a dynamic timer.

    Device specs are parsed here, in the launching process, so that a
    bad one stops the program before it forks (``DeviceSpecError``).
    They are not re-read on SIGHUP: changing them needs a restart.
    The libvirt connection and the RPC transport are made in ``start``,
    in the worker process.
    """

    def __init__(self, conf: cfg.ConfigOpts):
        super().__init__()
        self.conf = conf
        self.specs = device_spec.parse_specs(conf.agent.device_spec)
        # oslo.messaging's transport, once started.
        self.transport: typing.Any = None
        self.reporter: Reporter | None = None

    def start(self):
        super().start()
        if not self.specs:
            LOG.warning('[agent] device_spec selects nothing: host %s will '
                        'be reported without VFs, and VFs already known '
                        'to vfpool will turn missing', self.conf.host)
        libvirt.registerErrorHandler(_ignore_libvirt_error, None)
        self.transport = rpc.get_transport(self.conf)
        api = rpcapi.VfpoolAPI(self.conf, transport=self.transport,
                               retry=SEND_RETRIES,
                               timeout=report_timeout(self.conf))
        self.reporter = reporter = Reporter(self.conf, self.specs, api)
        self.tg.add_dynamic_timer_args(reporter.run_once,
                                       stop_on_exception=False)
        LOG.info('vfpool-agent %s reporting every %d s from %s with %d '
                 'device specs', self.conf.host,
                 self.conf.agent.report_interval,
                 self.conf.agent.libvirt_uri, len(self.specs))

    def stop(self, graceful=False):
        # A round blocked in an RPC call is not worth waiting for: the
        # next agent sends a complete snapshot anyway.
        super().stop(graceful=False)
        if self.reporter is not None:
            self.reporter.close()
        if self.transport is not None and not self._close_transport():
            LOG.warning('Leaving without closing the connections to the '
                        'message broker: a report is still waiting for it')

    def _close_transport(self) -> bool:
        """Close the broker connections; False when that cannot be done.

        A round stuck reconnecting to a dead broker holds a lock that
        cleanup needs: with a report on its way, waiting would only delay
        the exit, so the agent leaves at once.
        """
        if self.reporter is not None and self.reporter.sending.is_set():
            return False
        cleanup = threading.Thread(target=self.transport.cleanup,
                                   daemon=True)
        cleanup.start()
        cleanup.join(CLEANUP_TIMEOUT)
        return not cleanup.is_alive()


def launch(conf: cfg.ConfigOpts, agent: AgentService):
    return service.launch(conf, agent, workers=1, restart_method='mutate')
