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

"""The RPC side of tools/quickstart.sh, as a compute driver would call it.

``demo.py server`` waits until vfpool-server answers, ``demo.py hosts
--since TIME HOST...`` until the agent of every HOST has reported it
after TIME (ISO 8601, UTC).  ``demo.py
round INSTANCE SOURCE
DEST`` makes one claim round for INSTANCE: ``allocate`` a VF on SOURCE,
``prepare_migration`` to DEST (a claim under a lease) and
``complete_migration``; the instance then holds a VF on DEST.  The round
starts by releasing what the instance held, so it can be run again.

Options are read from ``--config-file`` and ``--config-dir`` (the
quickstart's own, so that no other deployment's configuration is read).
Every wait is bounded by the clock: ``--timeout`` (60 s) for the server
and the agents, ``ROUND_TIMEOUT`` for the round; then one line on stderr
says what did not answer (the services' logs say why).
"""

import argparse
import datetime
import logging
import os
import sys
import threading
import time
import uuid

from vfpool import cmd  # noqa: F401 (oslo.service's threading backend)

import oslo_messaging as messaging
from oslo_utils import timeutils

from vfpool import config
from vfpool import exception
from vfpool import rpcapi

MAC = 'fa:16:3e:00:00:a1'
# Resends of a call the broker did not take (oslo.messaging's default,
# None, retries for ever).
RETRY = 3
# The round's five calls (release, allocate, prepare_migration,
# get_instance, complete_migration) time out after 30 s each.
ROUND_TIMEOUT = 180
# What _bound adds to a wait that ends with its own, more precise line.
GRACE = 5
PHYSICAL_NETWORK = 'physnet1'


def _bound(seconds: float, message: str) -> None:
    """Exit with ``message`` after ``seconds``, wherever the process waits.

    A call's timeout and retry do not bound it: oslo.messaging connects
    its reply queue's listener, before the call is sent, retrying for ever
    (a broker port that is open but speaks no AMQP, bad credentials).
    """
    def expire() -> None:
        print(message % seconds, file=sys.stderr, flush=True)
        os._exit(1)
    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def _server(api: rpcapi.VfpoolAPI, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = api.ping(None)
            break
        except (messaging.MessagingTimeout,
                messaging.MessageDeliveryFailure):
            if time.monotonic() > deadline:
                sys.exit('vfpool-server did not answer within %d s; see its '
                         'log' % timeout)
            time.sleep(0.5)
    print('vfpool-server on %(host)s answers, RPC API %(version)s' % answer)


def _reported_since(api: rpcapi.VfpoolAPI, host: str,
                    since: datetime.datetime) -> dict | None:
    try:
        summary = api.get_host(None, host)
    except exception.HostNotFound:
        return None
    last = summary['last_report_at']
    if last is None or timeutils.normalize_time(
            timeutils.parse_isotime(last)) < since:
        return None     # a report of an earlier run
    return summary


def _hosts(api: rpcapi.VfpoolAPI, hosts: list[str],
           since: datetime.datetime, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for host in hosts:
        while (summary := _reported_since(api, host, since)) is None:
            if time.monotonic() > deadline:
                sys.exit('the agent of %s did not report within %d s; see '
                         'its log' % (host, timeout))
            time.sleep(0.2)
        if not summary['vf_count']:
            sys.exit('the agent of %s reported no VF; see its log' % host)
        print('vfpool-agent reported %s: %d PF(s), %d VF(s)'
              % (host, summary['pf_count'], summary['vf_count']))


def _vf(alloc: dict) -> str:
    return '%s (PF %s, %s:%s, NUMA %s)' % (
        alloc['address'], alloc['pf_address'], alloc['vendor_id'],
        alloc['product_id'], alloc['numa_node'])


def _round(api: rpcapi.VfpoolAPI, instance: str, source: str,
           dest: str) -> None:
    freed = api.release(None, instance)
    if freed:
        print('release: freed the %d VF(s) a previous run left to instance '
              '%s' % (freed, instance))
    [alloc] = api.allocate(
        None, instance, source,
        [{'physical_network': PHYSICAL_NETWORK, 'mac': MAC}],
        request_id=str(uuid.uuid4()))
    print('allocate: instance %s holds %s on %s, MAC %s'
          % (instance, _vf(alloc), source, alloc['mac']))
    migration = str(uuid.uuid4())
    [pair] = api.prepare_migration(None, migration, instance, source, dest)
    lease = api.get_instance(None, instance)['migration']['lease_expires_at']
    print('prepare_migration %s: claimed %s on %s, MAC %s, lease until %s'
          % (migration, _vf(pair['dest']), dest, pair['dest']['mac'], lease))
    [done] = api.complete_migration(None, migration)
    print('complete_migration: instance %s now holds %s on %s; %s on %s is '
          'free again' % (instance, done['address'], dest,
                          pair['source']['address'], source))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config-file', required=True)
    parser.add_argument('--config-dir', required=True)
    parser.add_argument('--timeout', type=float, default=60)
    sub = parser.add_subparsers(dest='action', required=True)
    sub.add_parser('server', help='Wait until the server answers.')
    hosts = sub.add_parser('hosts', help='Wait for the agents\' reports.')
    hosts.add_argument('--since', required=True, help='ISO 8601, UTC.')
    hosts.add_argument('hosts', nargs='+', metavar='HOST')
    claim = sub.add_parser('round', help='allocate, prepare, complete.')
    claim.add_argument('instance', metavar='INSTANCE')
    claim.add_argument('source', metavar='SOURCE')
    claim.add_argument('dest', metavar='DEST')
    args = parser.parse_args()
    conf = config.parse_args(['--config-file', args.config_file,
                              '--config-dir', args.config_dir],
                             setup_logging=False)
    # Its own lines say what did not answer; the services' logs have the
    # connection errors oslo.messaging would print here at each retry.
    logging.disable(logging.ERROR)
    if args.action == 'round':
        _bound(ROUND_TIMEOUT, 'the claim round did not end within %d s; '
               'see the logs of vfpool-server and the agents')
    else:
        _bound(args.timeout + GRACE, 'no answer through the broker within '
               '%d s; see the log of vfpool-server')
    api = rpcapi.VfpoolAPI(conf, timeout=2 if args.action == 'server' else 30,
                           retry=RETRY)
    try:
        if args.action == 'server':
            _server(api, args.timeout)
        elif args.action == 'hosts':
            since = timeutils.normalize_time(
                timeutils.parse_isotime(args.since))
            _hosts(api, args.hosts, since, args.timeout)
        else:
            _round(api, args.instance, args.source, args.dest)
    except exception.VfpoolException as exc:
        sys.exit('%s: %s' % (type(exc).__name__, exc))
    except messaging.MessageDeliveryFailure as exc:
        sys.exit('the broker did not take a call: %s'
                 % str(exc).splitlines()[0])
    finally:
        api.transport.cleanup()


if __name__ == '__main__':
    main()
