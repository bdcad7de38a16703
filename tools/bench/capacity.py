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

"""Benchmark of ``get_capacity`` (RPC 1.3) at scheduler scale.

What the Nova scheduler filter (``vfpool.nova.scheduler.VfpoolFilter``)
costs per scheduling pass: one ``get_capacity`` call naming every
candidate host, here 10,000 hosts of 64 VFs (640,000 VFs), against real
vfpool-server processes over RabbitMQ, as a ratio to the no-op ``ping``
of the same run.  Calls alternate (ping, get_capacity, ping, ...) so that
the machine's load weighs on both alike.  Target: p50 within 10x ping.

A family of the benchmark (``bench.sections.FAMILIES``): the full run
measures it on both inventories of every backend; alone, on one
inventory of ``--hosts`` hosts::

    python tools/bench capacity [--backend sqlite] [--hosts 10000]
        [--calls 200]
"""

import argparse
import time
import types

from bench import inventory
from bench import results

TARGET_CAPACITY_VS_PING = 10.0
#: What a flavor with ``vfpool:vfs = physnet1:2`` asks of each host.
REQUESTS = [{'physical_network': inventory.PHYSNET, 'count': 2}]


def measure(client, ctxt, hosts: list[str], calls: int,
            warmup: int) -> tuple[list, list]:
    """(ping latencies, get_capacity latencies), alternated."""
    pings, capacities = [], []
    for i in range(warmup + calls):
        started = time.perf_counter()
        client.ping(ctxt)
        ping = time.perf_counter() - started
        started = time.perf_counter()
        answer = client.get_capacity(ctxt, hosts, REQUESTS)['hosts']
        capacity = time.perf_counter() - started
        if len(answer) != len(hosts):
            raise RuntimeError('get_capacity answered for %d of %d hosts'
                               % (len(answer), len(hosts)))
        if i >= warmup:
            pings.append(ping)
            capacities.append(capacity)
        if (i + 1) % 10 == 0:
            print('    ... %d / %d calls (last: ping %.2f ms, get_capacity '
                  '%.1f ms)' % (i + 1, warmup + calls, ping * 1000,
                                capacity * 1000), flush=True)
    return pings, capacities


def capacity_section(ctx) -> list[str]:
    """An EXTRA_SECTIONS entry: get_capacity over every host of the run."""
    inv = ctx.inventory
    hosts = [inv.host(i) for i in range(inv.hosts)]
    calls = min(ctx.args.calls or 200, 200)
    pings, capacities = measure(ctx.client, ctx.ctxt, hosts, calls,
                                min(ctx.args.warmup or 10, 10))
    ms = 1000.0
    p50, p99 = (results.percentile(capacities, 50),
                results.percentile(capacities, 99))
    ping50, ping99 = (results.percentile(pings, 50),
                      results.percentile(pings, 99))
    line = ('[%s/%s] get_capacity of %d hosts (%d VFs): p50 %.1f ms, p99 '
            '%.1f ms = %.1f x / %.1f x ping (p50 %.2f ms, p99 %.2f ms), '
            '%d calls' % (getattr(ctx, 'backend', '?'), inv.label,
                          len(hosts), inv.vfs, p50 * ms, p99 * ms,
                          p50 / ping50, p99 / ping99, ping50 * ms,
                          ping99 * ms, len(capacities)))
    print(line, flush=True)
    if hasattr(ctx, 'add_result'):
        ctx.add_result('get_capacity %d hosts' % len(hosts), 1, capacities,
                       sum(capacities))
    if hasattr(ctx, 'add_target'):
        ctx.add_target('get_capacity p50 / ping p50 (%s)' % inv.label,
                       p50 / ping50, TARGET_CAPACITY_VS_PING)
    return [line]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0])
    parser.add_argument('--backend', default='sqlite',
                        choices=('mysql', 'postgresql', 'sqlite'))
    parser.add_argument('--hosts', type=int, default=10000)
    parser.add_argument('--vfs-per-host', type=int, default=64)
    parser.add_argument('--pfs-per-host', type=int, default=2)
    parser.add_argument('--calls', type=int, default=200)
    parser.add_argument('--warmup', type=int, default=10)
    args = parser.parse_args(argv)

    from vfpool import context
    from vfpool.tests.functional import base

    stack = base.ServiceStack(args.backend)
    stack.setUp()
    try:
        stack.wait_ready()
        inv = inventory.Inventory(
            label=inventory.inventory_label(args.hosts * args.vfs_per_host),
            prefix='cap', hosts=args.hosts, vfs_per_host=args.vfs_per_host,
            pfs_per_host=args.pfs_per_host, bulk=True)
        inventory.seed_bulk(stack.engine, inv, results.Report(), args.backend)
        ctx = types.SimpleNamespace(
            inventory=inv, client=stack.client,
            ctxt=context.get_admin_context(), args=args,
            backend=args.backend)
        capacity_section(ctx)
    finally:
        stack.cleanUp()
    return 0


EXTRA_SECTIONS = [capacity_section]
