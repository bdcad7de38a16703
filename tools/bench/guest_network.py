#!/usr/bin/env python3
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

"""What a guest sees while Nova live-migrates it: lost pings, longest gap.

Runs on the real tier (``vfpool/nova/tests/functional/real``: Nova's
functional framework on two real libvirtd daemons in a network lab, the
tiny guest under QEMU/TCG) three guests booted through Nova's API:

a. ``standby``: no VF, its address on the virtio NIC (stock migration,
   the hypervisor's pause: the baseline);
b. ``bond``: a vfpool VF (e1000e stand-in) and the virtio standby in an
   active-backup bond (vfpool's migration as it is meant to be used);
c. ``plain``: the same VF, its address on it, no bond (the outage the
   bond exists to hide);

and live-migrates them ``--rounds`` times each, alternating a, b, c, back
and forth between the two hosts.  During each migration a prober in the
lab pings the guest every ``--interval`` seconds, until the guest has
recovered (its bond's active slave is the VF again, or its address is
back up on the VF) and answers again.  Per scenario: packets sent and
lost, the longest gap (p50, max), the ratio of the gap to a's, and the
share of the migration's wall time (Nova's API call to the migration's
``completed``) spent in vfpool's hooks (claim, detach and its wait,
attach, complete).  Target: b's longest gap p50 within 1.5x of a's.

Run as root in the nova-functional env (it needs Nova)::

    .tox/nova-functional/bin/python tools/bench guest-network --rounds 3

Figures under TCG on a shared machine are what they are: compare ratios
taken in the same run, not absolute values between machines.
"""

import argparse
import json
import os
import sys
import time
import unittest

from bench.results import percentile

#: b's longest gap (p50) over a's.
TARGET_B_OVER_A = 1.5
SCENARIOS = (('a', 'standby', False), ('b', 'bond', True),
             ('c', 'plain', True))
#: The vfpool hooks a compute's plugin runs for a live migration.
HOOKS = ('pre_live_migration', 'detach_source_vfs',
         'post_live_migration_at_destination', 'post_live_migration')


def summarize(rows: list[dict]) -> list[dict]:
    """One line per scenario from the per-migration rows."""
    lines = []
    base_gap = None
    for key, _net, _vf in SCENARIOS:
        mine = [r for r in rows if r['scenario'] == key]
        if not mine:
            continue
        gaps = [r['longest_gap'] for r in mine]
        lost = [r['lost'] for r in mine]
        line = {
            'scenario': key, 'migrations': len(mine),
            'sent': sum(r['sent'] for r in mine), 'lost': sum(lost),
            'lost_p50': percentile(lost, 50), 'lost_max': max(lost),
            'gap_p50': percentile(gaps, 50), 'gap_max': max(gaps),
            'wall_p50': percentile([r['wall'] for r in mine], 50),
            'vfpool_share_p50': percentile(
                [r['vfpool'] / r['wall'] for r in mine], 50),
        }
        if key == 'a':
            base_gap = line['gap_p50']
        line['gap_ratio_to_a'] = (line['gap_p50'] / base_gap
                                  if base_gap else None)
        lines.append(line)
    return lines


def print_table(lines: list[dict], interval: float) -> None:
    print('\nGuest network during Nova live migration (real libvirtd + '
          'QEMU/TCG, ping every %d ms)' % round(interval * 1000))
    header = ('scenario', 'migr', 'sent', 'lost', 'lost p50/max',
              'gap p50/max ms', 'gap / a', 'wall p50 s', 'vfpool share')
    print('%-10s %5s %6s %5s %12s %15s %7s %10s %12s' % header)
    for line in lines:
        ratio = line['gap_ratio_to_a']
        print('%-10s %5d %6d %5d %12s %15s %7s %10.2f %11.0f%%' % (
            line['scenario'], line['migrations'], line['sent'],
            line['lost'], '%g/%d' % (line['lost_p50'], line['lost_max']),
            '%d/%d' % (line['gap_p50'] * 1000, line['gap_max'] * 1000),
            '%.2f' % ratio if ratio is not None else '-',
            line['wall_p50'], 100 * line['vfpool_share_p50']))
    ratios = {line['scenario']: line['gap_ratio_to_a'] for line in lines}
    if ratios.get('b') is not None:
        verdict = 'met' if ratios['b'] <= TARGET_B_OVER_A else 'MISSED'
        print('target: b within %.1fx of a (longest gap p50): %.2fx, %s'
              % (TARGET_B_OVER_A, ratios['b'], verdict))


def _bench_case(rounds: int, interval: float, rows: list):
    """A real-tier test case whose one test runs the benchmark."""
    from vfpool.nova.tests.functional.real import base
    from vfpool.nova.tests.functional.real import netlab

    class GuestNetworkBench(base.RealLibvirtTestBase):

        def test_bench(self):
            timings = self._time_hooks()
            guests = {}
            for index, (key, net, vf) in enumerate(SCENARIOS, 1):
                server = (self.boot_with_vf(net, index=index)[0] if vf
                          else self.boot(self.src, net, vfs=False,
                                         index=index))
                self.wait_recovered(key, server, 0)
                guests[key] = server
            for number in range(rounds):
                for key, _net, _vf in SCENARIOS:
                    guests[key], row = self.migrate(key, guests[key],
                                                    timings)
                    row['round'] = number + 1
                    rows.append(row)
                    print('%s round %d: %s' % (key, number + 1,
                                               json.dumps(row)),
                          file=sys.stderr, flush=True)

        def _time_hooks(self) -> list:
            timings: list[float] = []
            for driver in self.driver.values():
                plugin = driver.vfpool
                for name in HOOKS:
                    setattr(plugin, name,
                            _timed(getattr(plugin, name), timings))
            return timings

        def wait_recovered(self, key: str, server, after: int) -> None:
            if key == 'b':
                self.wait_guest_net(server, lambda net: net.startswith(
                    'bond active=e1000e:') and 'virtio_net:' in net,
                    after=after)
            elif key == 'c':
                self.wait_guest_net(server, lambda net: net.startswith(
                    'plain up=e1000e:'), after=after)
            address = server['metadata'][base.ADDR_KEY]
            self.assertTrue(
                self.lab.answers(address, str(self.workdir)),
                'scenario %s: %s does not answer; guest serial:\n%s'
                % (key, address, self.serial(server)[-3000:]))

        def migrate(self, key: str, server, timings: list):
            source = server['OS-EXT-SRV-ATTR:host']
            dest = self.dst if source == self.src else self.src
            mark = len(self.guest_net_lines(server))
            prober = self.useFixture(netlab.Prober(
                self.lab, server['metadata'][base.ADDR_KEY],
                str(self.workdir), interval=interval))
            prober.wait_first_reply()
            del timings[:]
            started = time.monotonic()
            self.admin_api.post_server_action(server['id'], {
                'os-migrateLive': {'host': dest,
                                   'block_migration': 'auto'}})
            self.wait_newest_migration(server, 'completed')
            wall = time.monotonic() - started
            timeline = {'api_at': round(started - prober.started_at, 3),
                        'completed_at': round(started + wall -
                                              prober.started_at, 3)}
            vfpool_time = sum(timings)
            server = self._wait_for_server_parameter(
                server, {'status': 'ACTIVE',
                         'OS-EXT-SRV-ATTR:host': dest},
                max_retries=base.WAIT_SECONDS * 2)
            self.wait_recovered(key, server, mark)
            # A second of steady replies after the recovery.
            time.sleep(1)
            result = prober.stop()
            return server, {
                'scenario': key, 'to': dest, 'sent': result['sent'],
                'lost': len(result['lost']),
                'longest_gap': result['longest_gap'],
                'outages': result['outages'], **timeline,
                'wall': round(wall, 3), 'vfpool': round(vfpool_time, 3)}

        def wait_newest_migration(self, server, status: str) -> None:
            deadline = time.monotonic() + base.WAIT_SECONDS
            while time.monotonic() < deadline:
                mine = [m for m in self.admin_api.api_get(
                    '/os-migrations').body['migrations']
                    if m['instance_uuid'] == server['id']]
                if mine:
                    newest = max(mine, key=lambda m: m['id'])
                    if newest['status'] == status:
                        return
                    if newest['status'] in ('error', 'failed'):
                        self.fail('migration %s: %s' % (newest['id'],
                                                        newest['status']))
                time.sleep(0.1)
            self.fail('no %s migration of %s' % (status, server['id']))

    return GuestNetworkBench('test_bench')


def _timed(method, timings: list):
    def timed(*args, **kwargs):
        started = time.monotonic()
        try:
            return method(*args, **kwargs)
        finally:
            timings.append(time.monotonic() - started)
    return timed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='tools/bench guest-network',
        description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=3,
                        help='migrations per scenario (default 3)')
    parser.add_argument('--interval', type=float, default=0.02,
                        help='seconds between two pings (default 0.02)')
    parser.add_argument('--json', metavar='FILE',
                        help='also write the rows and summary there')
    args = parser.parse_args(argv)
    # Nova is already imported, in its threading mode (see __main__).
    os.environ['VFPOOL_REAL_TIER'] = '1'
    os.environ.setdefault('OS_TEST_TIMEOUT', '3600')

    rows: list[dict] = []
    case = _bench_case(args.rounds, args.interval, rows)
    result = unittest.TestResult()
    case.run(result)
    problems = result.errors + result.failures
    for _test, text in problems:
        print(text, file=sys.stderr)
    for _test, reason in result.skipped:
        print('skipped: %s' % reason, file=sys.stderr)
    lines = summarize(rows)
    if lines:
        print_table(lines, args.interval)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'rows': rows, 'summary': lines}, f, indent=2)
    return 1 if problems or result.skipped or not rows else 0
