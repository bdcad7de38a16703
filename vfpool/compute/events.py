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

"""libvirt domain device events for the compute plugin.

A detach is only finished when the guest has let go of the device, which
libvirt reports asynchronously with DEVICE_REMOVED (or DEVICE_REMOVAL_FAILED)
events.  Those events only flow when a libvirt event loop implementation is
registered *before* the connection is opened and something keeps running it,
so this module owns the one process-wide default event loop
(:func:`start_event_loop`) and a :class:`DeviceEventRegistry` that turns the
callbacks into waitable objects keyed by (domain UUID, device alias).

Inside a process that already receives libvirt's device events (nova-compute:
Nova's ``nova.virt.libvirt.host.Host`` registers for them on its connection
and runs the only event loop), a registry built with ``host_fed=True``
subscribes to nothing and is handed each event through
:meth:`DeviceEventRegistry.dispatch` instead.

Waiters are registered before the action that causes the event, so an event
that fires while the libvirt call is still returning is queued, not lost::

    registry.watch(conn)
    with registry.expect(dom.UUIDString(), 'ua-vf0') as waiter:
        dom.detachDeviceFlags(xml, flags)
        kind = waiter.wait(timeout)
"""

import collections
import dataclasses
import threading
import time
import typing

from oslo_log import log as logging

from vfpool.libvirt_import import libvirt

LOG = logging.getLogger(__name__)

DEVICE_ADDED = 'device-added'
DEVICE_REMOVED = 'device-removed'
DEVICE_REMOVAL_FAILED = 'device-removal-failed'
ALL_KINDS = frozenset((DEVICE_ADDED, DEVICE_REMOVED, DEVICE_REMOVAL_FAILED))

_EVENT_IDS = {
    DEVICE_ADDED: libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED,
    DEVICE_REMOVED: libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
    DEVICE_REMOVAL_FAILED: libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVAL_FAILED,
}

_loop_lock = threading.Lock()
_loop_thread: threading.Thread | None = None


_host_loop = False


def start_event_loop() -> None:
    """Register libvirt's default event loop and run it in a daemon thread.

    Idempotent and thread-safe.  It must run before the connections whose
    events we want are opened: libvirt only wires a connection to the event
    loop that is registered when the connection is created.
    """
    global _loop_thread
    with _loop_lock:
        if _loop_thread is not None:
            return
        libvirt.virEventRegisterDefaultImpl()
        thread = threading.Thread(target=_run_event_loop,
                                  name='libvirt-event-loop', daemon=True)
        thread.start()
        _loop_thread = thread
        LOG.info('Started the libvirt default event loop thread')


def use_host_event_loop() -> None:
    """Declare that the embedding process already runs libvirt's loop.

    Nova's libvirt driver registers and runs libvirt's default event
    implementation itself; a second runner thread would compete with it.
    After this call :func:`start_event_loop` leaves the loop to the host
    process, and vfpool's callbacks are dispatched by the host's thread.
    """
    global _loop_thread, _host_loop
    with _loop_lock:
        _host_loop = True
        _loop_thread = _loop_thread or threading.current_thread()


def event_loop_running() -> bool:
    if _host_loop:
        return True
    return _loop_thread is not None and _loop_thread.is_alive()


def _run_event_loop() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except Exception:
            # A failing iteration must not kill the only event thread.
            LOG.exception('libvirt event loop iteration failed')
            time.sleep(0.1)


@dataclasses.dataclass(frozen=True)
class DeviceEvent:
    kind: str
    domain_uuid: str
    alias: str
    received_at: float


class DeviceEventWaiter:
    """Queue of the device events of one (domain, alias) pair.

    Created by :meth:`DeviceEventRegistry.expect`; events are queued from
    the moment it exists until it is closed, whether or not anybody is
    waiting yet.
    """

    def __init__(self, registry: 'DeviceEventRegistry', domain_uuid: str,
                 alias: str, kinds: frozenset[str]) -> None:
        self.domain_uuid = domain_uuid
        self.alias = alias
        self.kinds = kinds
        self._registry = registry
        self._cond = threading.Condition()
        self._events: collections.deque[DeviceEvent] = collections.deque()

    def _deliver(self, event: DeviceEvent) -> None:
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()

    def wait(self, timeout: float | None) -> str | None:
        """Return the kind of the next queued event, or None on timeout.

        Consumes the event, so each call sees every event at most once.
        """
        event = self.wait_event(timeout)
        return event.kind if event is not None else None

    def wait_event(self, timeout: float | None) -> DeviceEvent | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._events:
                remaining = (None if deadline is None
                             else deadline - time.monotonic())
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._events.popleft()

    def pending(self) -> list[DeviceEvent]:
        with self._cond:
            return list(self._events)

    def close(self) -> None:
        self._registry._remove(self)

    def __enter__(self) -> 'DeviceEventWaiter':
        return self

    def __exit__(self, *exc_info: typing.Any) -> None:
        self.close()


class DeviceEventRegistry:
    """Fan libvirt device events out to the waiters that expect them.

    Thread-safe: callbacks arrive on the event loop thread while waiters
    are created and consumed on any other thread.
    """

    def __init__(self, host_fed: bool = False) -> None:
        """``host_fed``: the embedding process delivers every event.

        Then :meth:`watch` subscribes to nothing and starts no event loop;
        the process calls :meth:`dispatch` for each device event it gets
        from its own libvirt connection.
        """
        self.host_fed = host_fed
        # _lock guards the waiters and is the only lock the event thread
        # takes; _watch_lock serialises watch/unwatch, which call into
        # libvirt, so the event thread never waits behind a libvirt call.
        self._lock = threading.Lock()
        self._watch_lock = threading.Lock()
        self._waiters: dict[tuple[str, str], list[DeviceEventWaiter]] = (
            collections.defaultdict(list))
        # id(conn) -> (conn, callback ids); holding the connection keeps
        # its id from being reused while the callbacks are registered.
        self._watched: dict[int, tuple[libvirt.virConnect, list[int]]] = {}

    def watch(self, conn: libvirt.virConnect) -> None:
        """Subscribe to the device events of every domain on ``conn``.

        Idempotent per connection object.  Starts the event loop if needed,
        but that only helps connections opened after it started.  A
        host-fed registry does neither: its events come from the host.
        """
        if self.host_fed:
            return
        start_event_loop()
        with self._watch_lock:
            if id(conn) in self._watched:
                return
            callback_ids = []
            try:
                for kind, event_id in _EVENT_IDS.items():
                    callback_ids.append(conn.domainEventRegisterAny(
                        None, event_id, self._on_event, kind))
            except libvirt.libvirtError:
                for callback_id in callback_ids:
                    _deregister(conn, callback_id)
                raise
            self._watched[id(conn)] = (conn, callback_ids)

    def unwatch(self, conn: libvirt.virConnect) -> None:
        """Drop the callbacks on ``conn``; call before closing it."""
        with self._watch_lock:
            entry = self._watched.pop(id(conn), None)
            if entry is not None:
                for callback_id in entry[1]:
                    _deregister(conn, callback_id)

    def close(self) -> None:
        """Drop the callbacks on every watched connection.

        libvirt refuses a second subscription of the same event on one
        connection, so a registry that is done must let go before another
        one watches the same connection.
        """
        with self._watch_lock:
            entries = list(self._watched.values())
            self._watched.clear()
        for conn, callback_ids in entries:
            for callback_id in callback_ids:
                _deregister(conn, callback_id)

    def is_watching(self, conn: libvirt.virConnect) -> bool:
        with self._watch_lock:
            return id(conn) in self._watched

    def expect(self, domain_uuid: str, alias: str,
               kinds: typing.Iterable[str] = ALL_KINDS
               ) -> DeviceEventWaiter:
        """Start queueing events for (domain, alias); use as a context."""
        kinds = frozenset(kinds)
        unknown = kinds - ALL_KINDS
        if unknown:
            raise ValueError('unknown device event kinds: %s'
                             % ', '.join(sorted(unknown)))
        waiter = DeviceEventWaiter(self, domain_uuid.lower(), alias, kinds)
        with self._lock:
            self._waiters[(waiter.domain_uuid, alias)].append(waiter)
        return waiter

    def _remove(self, waiter: DeviceEventWaiter) -> None:
        key = (waiter.domain_uuid, waiter.alias)
        with self._lock:
            waiters = self._waiters.get(key)
            if waiters and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[key]

    def dispatch(self, kind: str, domain_uuid: str, alias: str) -> bool:
        """Hand one device event to the waiters expecting it.

        For a host-fed registry, called from the host's event thread: it
        never blocks.  Returns whether any waiter took the event.
        """
        event = DeviceEvent(kind, domain_uuid.lower(), alias,
                            time.monotonic())
        LOG.debug('libvirt event %s for device %s of domain %s',
                  kind, alias, event.domain_uuid)
        with self._lock:
            targets = [w for w in self._waiters.get(
                (event.domain_uuid, alias), ()) if kind in w.kinds]
        for waiter in targets:
            waiter._deliver(event)
        return bool(targets)

    def _on_event(self, conn: libvirt.virConnect, dom: libvirt.virDomain,
                  alias: str, kind: str) -> None:
        # Runs on the event loop thread: never block, never raise.
        try:
            self.dispatch(kind, dom.UUIDString(), alias)
        except Exception:
            LOG.exception('Failed to dispatch libvirt device event %s', kind)


def _deregister(conn: libvirt.virConnect, callback_id: int) -> None:
    try:
        conn.domainEventDeregisterAny(callback_id)
    except libvirt.libvirtError as exc:
        # The connection may already be closed or broken; nothing to undo.
        LOG.debug('Could not deregister libvirt callback %s: %s',
                  callback_id, exc)


_default_registry: DeviceEventRegistry | None = None
_default_registry_lock = threading.Lock()


def default_registry() -> DeviceEventRegistry:
    """The process-wide registry, mirroring the process-wide event loop."""
    global _default_registry
    with _default_registry_lock:
        if _default_registry is None:
            _default_registry = DeviceEventRegistry()
        return _default_registry
