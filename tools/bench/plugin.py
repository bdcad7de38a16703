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

"""Benchmark of the compute plugin's own overhead per live migration.

The plugin's whole hook sequence runs against a real vfpool-server over
RabbitMQ, as a compute driver would run it::

    pre_live_migration -> detach_source_vfs ->
    post_live_migration_at_destination -> post_live_migration

and its time is split into three parts:

* libvirt/QEMU/guest: time inside calls on the domain object (wrapped to
  accumulate it) plus time spent waiting for the guest's device events;
* RPC: time inside the vfpool client's calls (wrapped the same way);
* the plugin's own work: the rest (XML parsing and building, policy
  logic, bookkeeping).

"Plugin overhead" is everything that is not libvirt/QEMU/guest time,
i.e. RPC plus own work, and is printed as a ratio to a no-op RPC
(``ping``) measured in the same run against the same server::

    plugin overhead per migration: p50 X ms, p99 Y ms (RPC share Z ms)

The domain is a real tiny guest under QEMU (the functional tests'
harness; ``--plugin-libvirt qemu``, needs root and
tools/setup-libvirt-qemu.sh && tools/build-tiny-guest.sh .tiny-guest) or,
where that harness is missing, an in-memory stand-in for libvirt
(``stand-in``; ``auto`` picks).  No live migration is performed: the
guest stays on one libvirtd while the inventory moves it between two
host names, which is all the plugin sees.

Standalone: ``python tools/bench plugin [--backend sqlite] [--calls N]``.
The benchmark runs :data:`EXTRA_SECTIONS` for each of its backends and
inventories (with its ``SectionContext``).
"""

import argparse
import atexit
import threading
import time
import types
import uuid

from bench.results import percentile

#: Migrations measured per run when the caller does not say (each costs
#: ~0.1-0.2 s of real guest time under QEMU/TCG).
DEFAULT_MIGRATIONS = 50
DEFAULT_WARMUP = 5
STANDBY_MAC = '52:54:00:00:00:01'
#: Informational target: the plugin's own work per migration, in pings.
OWN_WORK_VS_PING = 2.0


class Clock:
    """Accumulates seconds per category, for the calling thread's run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.seconds = {'libvirt': 0.0, 'guest': 0.0, 'rpc': 0.0}
            self.calls = {'libvirt': 0, 'guest': 0, 'rpc': 0}
            #: RPC (seconds, calls) by method name.
            self.methods: dict[str, tuple[float, int]] = {}

    def add(self, kind: str, seconds: float, name: str = '') -> None:
        with self._lock:
            self.seconds[kind] += seconds
            self.calls[kind] += 1
            if kind == 'rpc':
                total, count = self.methods.get(name, (0.0, 0))
                self.methods[name] = (total + seconds, count + 1)

    def timed(self, kind: str, func, name: str = ''):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.add(kind, time.perf_counter() - started, name)
        return wrapper


class TimedProxy:
    """Times every method call on ``target``; attributes pass through.

    ``connect()`` of a domain returns the real connection: the event
    registry keys its subscriptions by the connection object.
    """

    _UNTIMED = frozenset(('connect', 'can_send_version'))

    def __init__(self, target, clock: Clock, kind: str) -> None:
        self._target = target
        self._clock = clock
        self._kind = kind

    def __getattr__(self, name: str):
        value = getattr(self._target, name)
        if callable(value) and name not in self._UNTIMED:
            return self._clock.timed(self._kind, value, name)
        return value


def timed_registry(clock: Clock):
    """A device event registry whose waits count as guest time."""
    from vfpool.compute import events

    class TimedRegistry(events.DeviceEventRegistry):
        def expect(self, domain_uuid, alias, kinds=events.ALL_KINDS):
            waiter = super().expect(domain_uuid, alias, kinds)
            waiter.wait = clock.timed('guest', waiter.wait)
            return waiter
    return TimedRegistry()


# ---------------------------------------------------------------------------
# guests


class _QemuGuests:
    """The functional harness, started once per process, stopped at exit."""

    _instance = None
    _lock = threading.Lock()

    @classmethod
    def get(cls):
        with cls._lock:
            if cls._instance is None:
                from vfpool.tests.functional import libvirt_hosts
                hosts = libvirt_hosts.TwoHosts()
                hosts.setUp()
                atexit.register(hosts.cleanUp)
                cls._instance = hosts
            return cls._instance


def qemu_available() -> bool:
    from vfpool.tests.functional import libvirt_hosts
    try:
        libvirt_hosts.check_prerequisites()
    except libvirt_hosts.HarnessPrerequisiteMissing:
        return False
    return True


def start_guest(mode: str, alloc: dict, alias: str):
    """(domain, cleanup) with the VF stand-in of ``alloc`` plugged in."""
    import libvirt

    from vfpool.compute import libvirt_ops
    from vfpool.compute import vf_xml
    device = vf_xml.emulated_interface_xml(alloc['address'], alloc['mac'],
                                           alias=alias)
    if mode == 'qemu':
        hosts = _QemuGuests.get()
        dom = hosts.start_guest(hosts.source, standby_mac=STANDBY_MAC)
        libvirt_ops.attach_device(dom, device, alias)
        hosts.wait_guest_nic(dom, alloc['mac'])
        return dom, (lambda: hosts.remove_guest(dom.UUIDString()))
    from vfpool.tests import libvirt_standins
    standby = ('<interface type="user"><mac address="%s"/>'
               '<model type="virtio"/><teaming type="persistent"/>'
               '<alias name="ua-standby"/></interface>' % STANDBY_MAC)
    dom = libvirt_standins.StandInDomain(
        libvirt_standins.StandInConnection(), [standby])
    dom.attachDeviceFlags(device, libvirt.VIR_DOMAIN_AFFECT_LIVE |
                          libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    return dom, (lambda: None)


# ---------------------------------------------------------------------------
# the section


def _inventory(bus: int, vfs: int) -> dict:
    from vfpool.tests import inventory
    return inventory.pf(bus, vfs)


def plugin_overhead(ctx) -> list[str]:
    """The EXTRA_SECTIONS entry: time the hooks of N migrations.

    ``ctx`` is bench.sections.SectionContext or any namespace with
    ``stack`` (a running ServiceStack), ``client``, ``ctxt`` and ``args``
    (``calls``, ``warmup``; optional ``plugin_migrations`` and
    ``plugin_libvirt``).  Prints and returns its lines; adds rows to the
    report when ``ctx`` can (``add_result``).
    """
    from vfpool.compute import plugin as vf_plugin
    from vfpool.compute import vf_xml

    args = ctx.args
    count = (getattr(args, 'plugin_migrations', None)
             or min(getattr(args, 'calls', None) or DEFAULT_MIGRATIONS,
                    DEFAULT_MIGRATIONS))
    warmup = min(getattr(args, 'warmup', None) or DEFAULT_WARMUP,
                 DEFAULT_WARMUP)
    mode = getattr(args, 'plugin_libvirt', None) or 'auto'
    if mode == 'auto':
        mode = 'qemu' if qemu_available() else 'stand-in'
    client, rpc_ctxt = ctx.client, ctx.ctxt
    conf = ctx.stack.conf

    for _ in range(warmup):
        client.ping(rpc_ctxt)
    pings = []

    tag = uuid.uuid4().hex[:8]
    names = ('bench-plugin-a-%s' % tag, 'bench-plugin-b-%s' % tag)
    client.report_inventory(rpc_ctxt, names[0], [_inventory(0x70, 2)])
    client.report_inventory(rpc_ctxt, names[1], [_inventory(0x71, 2)])
    instance = str(uuid.uuid4())
    mac = 'fa:16:3e:be:%02x:%02x' % (int(tag[:2], 16), int(tag[2:4], 16))
    (alloc,) = client.allocate(rpc_ctxt, instance, names[0],
                               [{'physical_network': 'physnet1', 'mac': mac,
                                 'vlan': 100}], 'bench-%s' % tag)
    alias = 'ua-vf-' + mac.replace(':', '')
    dom, remove_guest = start_guest(mode, alloc, alias)
    clock = Clock()
    timed_dom = TimedProxy(dom, clock, 'libvirt')
    timed_client = TimedProxy(client, clock, 'rpc')
    registry = timed_registry(clock)
    plugins = {name: vf_plugin.VFMigrationPlugin(
        conf, name, client=timed_client,
        xml_builder=vf_xml.emulated_interface_xml, registry=registry)
        for name in names}

    samples = []
    errors = []
    try:
        for i in range(warmup + count):
            src, dst = names[i % 2], names[(i + 1) % 2]
            migration = str(uuid.uuid4())
            clock.reset()
            started = time.perf_counter()
            try:
                pairs = plugins[dst].pre_live_migration(
                    rpc_ctxt, instance, migration, src, dst)
                # Handed over as Nova's migrate_data would: no lookup.
                plugins[src].detach_source_vfs(rpc_ctxt, instance,
                                               migration, timed_dom,
                                               pairs=pairs)
                plugins[dst].post_live_migration_at_destination(
                    rpc_ctxt, instance, migration, timed_dom)
                plugins[src].post_live_migration(rpc_ctxt, instance,
                                                 migration)
            except Exception as exc:
                errors.append('%s: %s' % (type(exc).__name__, exc))
                break
            total = time.perf_counter() - started
            # The no-op RPC baseline: same server, same moment, same load
            # (a QEMU guest under TCG takes its share of the CPUs).
            ping_started = time.perf_counter()
            client.ping(rpc_ctxt)
            ping = time.perf_counter() - ping_started
            if i >= warmup:
                pings.append(ping)
                samples.append((total, dict(clock.seconds),
                                dict(clock.calls), dict(clock.methods)))
    finally:
        registry.close()
        remove_guest()
        client.release(rpc_ctxt, instance)
    return _report(ctx, mode, pings, samples, errors)


def _report(ctx, mode: str, pings: list, samples: list,
            errors: list) -> list[str]:
    label = '[%s/%s]' % (getattr(ctx, 'backend', '?'),
                         getattr(getattr(ctx, 'inventory', None), 'label',
                                 'standalone'))
    if not samples:
        lines = ['%s plugin overhead: no migration completed: %s'
                 % (label, '; '.join(errors) or 'none measured')]
        print('\n'.join(lines), flush=True)
        return lines
    overhead = [total - s['libvirt'] - s['guest']
                for total, s, _c, _m in samples]
    rpc = [s['rpc'] for _t, s, _c, _m in samples]
    own = [o - r for o, r in zip(overhead, rpc)]
    outside = [s['libvirt'] + s['guest'] for _t, s, _c, _m in samples]
    calls = samples[-1][2]
    ping50 = percentile(pings, 50)
    ms = 1000.0
    p50, p99 = percentile(overhead, 50), percentile(overhead, 99)
    lines = [
        '%s plugin overhead per migration: p50 %.1f ms, p99 %.1f ms '
        '(RPC share %.1f ms) over %d migrations, libvirt: %s'
        % (label, p50 * ms, p99 * ms, percentile(rpc, 50) * ms,
           len(samples), mode),
        '%s   = %.1f x the no-op RPC baseline (ping p50 %.2f ms); '
        '%d RPCs per migration = %.1f pings' % (
            label, p50 / ping50, ping50 * ms, calls['rpc'],
            percentile(rpc, 50) / ping50),
        '%s   plugin\'s own work p50 %.2f ms, p99 %.2f ms; '
        'libvirt + guest p50 %.1f ms (%d libvirt calls, %d event waits) '
        'not counted' % (label, percentile(own, 50) * ms,
                         percentile(own, 99) * ms,
                         percentile(outside, 50) * ms, calls['libvirt'],
                         calls['guest']),
    ]
    methods = sorted({name for *_x, m in samples for name in m})
    lines.append('%s   RPC time per migration by method, p50: %s' % (
        label, ', '.join('%s %.1f ms (%d call(s))' % (
            name, percentile([m.get(name, (0.0, 0))[0]
                              for *_x, m in samples], 50) * ms,
            samples[-1][3].get(name, (0.0, 0))[1])
            for name in methods)))
    if errors:
        lines.append('%s   stopped early: %s' % (label, errors[0]))
    print('\n'.join(lines), flush=True)
    if hasattr(ctx, 'add_result'):
        ctx.add_result('plugin overhead', 1, overhead,
                       sum(t for t, _s, _c, _m in samples), errors=len(errors))
        ctx.add_result('plugin own work', 1, own,
                       sum(t for t, _s, _c, _m in samples),
                       baseline_phase=None)
    if hasattr(ctx, 'add_target'):
        # The RPCs cost what the server makes them cost; the plugin's own
        # share should stay below a couple of no-op round trips.
        ctx.add_target('plugin own work p50 / ping p50',
                       percentile(own, 50) / ping50, OWN_WORK_VS_PING,
                       informational=True)
    return lines


#: Picked up by bench.sections: callables taking its SectionContext.
EXTRA_SECTIONS = [plugin_overhead]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--backend', default='sqlite',
                        choices=('mysql', 'postgresql', 'sqlite'))
    parser.add_argument('--calls', dest='plugin_migrations', type=int,
                        default=DEFAULT_MIGRATIONS,
                        help='measured migrations (default %(default)s)')
    parser.add_argument('--warmup', type=int, default=DEFAULT_WARMUP)
    parser.add_argument('--plugin-libvirt', default='auto',
                        choices=('auto', 'qemu', 'stand-in'),
                        help='the domain: a real QEMU tiny guest or an '
                             'in-memory stand-in (auto: QEMU when the '
                             'harness is set up)')
    args = parser.parse_args(argv)
    from vfpool import context
    from vfpool.tests.functional import base
    stack = base.ServiceStack(args.backend)
    stack.setUp()
    try:
        ctx = types.SimpleNamespace(
            stack=stack, client=stack.client,
            ctxt=context.get_admin_context(), args=args,
            backend=args.backend)
        lines = plugin_overhead(ctx)
    finally:
        stack.cleanUp()
    return 1 if any('stopped early' in line or 'no migration' in line
                    for line in lines) else 0
