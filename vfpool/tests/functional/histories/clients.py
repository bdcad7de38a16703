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

"""Clients that act as the compute plugin and the Nova driver do.

Each operation is a generator: it makes the calls of one Nova operation
in the order Nova's hooks make them, updates the model from the answers
as a compute would (what it plugs, where the guest runs), and yields
between hooks so that the runner can interleave operations.  The retry
rules are the plugin's: ``MessagingTimeout`` is sent again (three
attempts, ``vfpool.compute.recovery.call_idempotent``), a typed
``vfpool.exception`` error is final and recorded, and the calls that
settle (complete, abort, release) are sent until answered, within a
bound, as the plugin's background settler and a user's repeated delete
do.  Any typed error is a recorded failure, never a violation by itself:
a newer server may refuse a stale call with an error this code does not
know by name.

The RPC 1.6 fence is sent where the plugin and the driver send it:
``begin_migration`` names the source and Nova's destination; renew,
complete and abort name the caller's side; a destination whose prepare
failed gives up with ``abort_migration(dest_host=...)``; an evacuation's
prepare names the VFs it read (``expected_sources``); ``release``
names the request id of its allocate on that host (``request_ids``).
"""

import inspect
import threading
import time
import uuid

import oslo_messaging as messaging

from vfpool import exception
from vfpool.tests.functional.histories import model as model_mod

ATTEMPTS = 3
#: How long a settling call is sent again before the client gives up.
SETTLE_BOUND = 60
#: The plugin's [migration] complete_timeout.
COMPLETE_TIMEOUT = 10
FINAL = (exception.VfpoolException,)


def call(api, method: str, *args, **kwargs):
    """``api.method``, with only the arguments its RPC version knows.

    A defect patch (defects.py) may take the client API back to before
    an optional argument (RPC 1.6's beliefs); the plugin of that tree
    could not send it either, so it is left out rather than a TypeError.
    """
    bound = getattr(api, method)
    known = inspect.signature(bound).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in known.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in known}
    return bound(None, *args, **kwargs)


class GaveUp(Exception):
    """A settling call got no answer within SETTLE_BOUND."""


def _failure(error: Exception) -> str:
    return '%s: %s' % (type(error).__name__, str(error)[:160])


class Renewer(threading.Thread):
    """The lease renewers of every compute, in one thread.

    Renews each registered migration every ``interval`` seconds, as the
    plugin's LeaseRenewer does every third of the lease; ``pause`` is
    the nemesis letting a lease lapse.
    """

    def __init__(self, api, lease: int, interval: float = 1.0):
        super().__init__(daemon=True)
        self.api = api
        self.lease = lease
        self.interval = interval
        #: migration uuid -> the RPC 1.6 beliefs of the sides renewing.
        self.active: dict[str, list[dict[str, str]]] = {}
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.renewals = 0

    def add(self, migration_uuid: str, **side: str) -> None:
        """Renew as the plugin's renewer on ``side`` (``dest_host=H``)."""
        with self.lock:
            self.active.setdefault(migration_uuid, []).append(side)

    def pause(self, migration_uuid: str) -> None:
        with self.lock:
            self.active.pop(migration_uuid, None)

    stop_one = pause

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            with self.lock:
                todo = sorted(self.active.items())
            for migration_uuid, sides in todo:
                for side in sides:
                    try:
                        call(self.api, 'renew_migration',
                             migration_uuid, self.lease, **side)
                        self.renewals += 1
                    except FINAL:
                        self.pause(migration_uuid)
                    except messaging.MessagingException:
                        pass

    def stop(self) -> None:
        self.halt.set()
        self.join(30)


class World:
    """What the operations share: the model, the APIs, the system."""

    def __init__(self, model: model_mod.Model, make_api, renewer: Renewer,
                 system, lease: int, nemesis):
        self.model = model
        self.make_api = make_api
        self.renewer = renewer
        self.system = system
        self.lease = lease
        self.nemesis = nemesis
        self.skipped = 0

    def rpc(self, api, method: str, *args, attempts: int = ATTEMPTS,
            **kwargs):
        """As call_idempotent: a timeout is sent again, typed is final."""
        for attempt in range(1, attempts + 1):
            try:
                return call(api, method, *args, **kwargs)
            except messaging.MessagingTimeout:
                if attempt == attempts:
                    raise

    def settle(self, api, method: str, *args, **kwargs):
        """Until answered (typed errors are answers), within a bound."""
        deadline = time.monotonic() + SETTLE_BOUND
        while True:
            try:
                return call(api, method, *args, **kwargs)
            except messaging.MessagingTimeout as e:
                if time.monotonic() > deadline:
                    raise GaveUp('%s: %s' % (method, e))
            except exception.ServiceError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def release(self, api, guest: model_mod.Guest, host: str) -> None:
        guest.release_pending = True
        try:
            # As the Nova driver: name the id of its allocate there.
            self.settle(api, 'release', guest.uuid, host,
                        request_ids=[request_id(guest, host)])
        except exception.HostNotFound:
            pass
        except (GaveUp, exception.VfpoolException) as e:
            guest.failures.append('release: %s' % _failure(e))
            return
        guest.release_pending = False

    def xml_vfs(self, api, guest: model_mod.Guest, host: str) -> set:
        """What a guest XML built on ``host`` carries (as guest_vfs)."""
        info = self.rpc(api, 'get_instance', guest.uuid)
        migration = info.get('migration')
        if (migration and migration['state'] in ('in_progress', 'moving')
                and migration['dest_host'] == host):
            return {(host, p['dest']['address']) for p in migration['vfs']}
        return {(host, a['address']) for a in info['allocations']
                if a.get('host') == host}


def migration_uuid(model: model_mod.Model, op: dict, what: str = '') -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, 'vfpool-history/%d/%d/%s' % (
        model.seed, op['n'], what)))


def request_id(guest: model_mod.Guest, host: str) -> str:
    return 'nova-%s-%s-%d' % (guest.uuid, host, guest.generation)


# -- the operations ------------------------------------------------------

def boot(world: World, op: dict, api):
    guest = world.model.guest(op['instance'], op['vfs'])
    if guest.alive or guest.deleted:
        world.skipped += 1
        return
    host = op['host']
    guest.vfs = op['vfs']
    try:
        held = {a['host'] for a in world.rpc(
            api, 'get_instance', guest.uuid)['allocations']}
        yield
        if held:
            # Its uuid never booted: vfpool holds nothing for it.
            raise exception.Conflict('vfpool holds VFs for a new instance')
        if guest.vfs:
            world.rpc(api, 'allocate', guest.uuid, host,
                      [{'physical_network': 'physnet1'}] * guest.vfs,
                      request_id(guest, host))
            yield
        plugged = world.xml_vfs(api, guest, host)
    except (exception.VfpoolException, messaging.MessagingException) as e:
        # BuildAbortException: the instance goes to ERROR and its user
        # deletes it, which releases whatever it may hold here.
        guest.failures.append('boot: %s' % _failure(e))
        guest.deleted = True
        yield
        world.release(api, guest, host)
        return
    guest.alive, guest.host, guest.plugged = True, host, plugged


def delete(world: World, op: dict, api):
    guest = world.model.guest(op['instance'])
    if not guest.alive:
        world.skipped += 1
        return
    host = guest.host
    guest.alive, guest.deleted, guest.plugged = False, True, set()
    if host is not None:
        world.release(api, guest, host)
    yield


def live_migrate(world: World, op: dict, api):
    guest = world.model.guest(op['instance'])
    if not guest.alive or guest.host is None:
        world.skipped += 1
        return
    source = guest.host
    migration = migration_uuid(world.model, op)
    pairs = None
    dest = None
    # The conductor's destination checks, host after host, one uuid.
    for candidate in [d for d in op['dests'] if d != source]:
        try:
            pairs = world.rpc(api, 'prepare_migration', migration,
                              guest.uuid, source, candidate, world.lease)
        except (exception.VfpoolException, messaging.MessagingException):
            # The destination gives up for good (RPC 1.6): a late copy
            # of its prepare cannot take the migration back.
            if 'dest_host' in inspect.signature(
                    api.abort_migration).parameters:
                try:
                    world.rpc(api, 'abort_migration', migration,
                              dest_host=candidate)
                except (exception.VfpoolException,
                        messaging.MessagingException):
                    pass
            yield
            continue
        dest = candidate
        break
    if dest is None:
        return
    at_source = {'source_host': source}
    at_dest = {'dest_host': dest}
    if pairs:
        world.renewer.add(migration, **at_dest)
    yield
    if op.get('lapse') and pairs:
        world.renewer.pause(migration)
        world.nemesis.count('lapse')
        world.system.wait_not_in_progress(migration, world.lease)
    if op['outcome'] == 'abandon':
        # The conductor gives up after the claim (port binding refused);
        # no hook runs, nothing renews the claim: the reaper must end it.
        world.renewer.stop_one(migration)
        return
    # Source: detach_source_vfs begins the migration, then unplugs.
    if pairs:
        try:
            world.rpc(api, 'begin_migration', migration, source_host=source,
                      dest_host=dest)
        except (exception.VfpoolException,
                messaging.MessagingException) as e:
            guest.failures.append('live migration begin: %s' % _failure(e))
            world.renewer.stop_one(migration)
            try:
                world.settle(api, 'abort_migration', migration, **at_source)
            except (GaveUp, exception.VfpoolException):
                pass
            return
        # The source's renewer too, from begin on.
        world.renewer.add(migration, **at_source)
    sources = {(source, p['source']['address']) for p in pairs}
    detached = guest.plugged & sources
    guest.plugged -= sources
    yield
    if op['outcome'] == 'fail':
        # The memory copy failed: both rollback hooks.
        world.renewer.stop_one(migration)
        try:
            world.settle(api, 'abort_migration', migration, **at_source)
        except (GaveUp, exception.VfpoolException) as e:
            guest.failures.append('rollback: %s' % _failure(e))
        guest.plugged |= detached
        yield
        try:
            world.settle(api, 'abort_migration', migration, **at_dest)
        except (GaveUp, exception.VfpoolException):
            pass
        return
    # The guest runs on the destination now.
    guest.host = dest
    try:
        world.rpc(api, 'complete_migration', migration, reclaim=True,
                  **at_source)
    except (exception.VfpoolException, messaging.MessagingException):
        pass
    yield
    try:
        try:
            allocs = world.rpc(api, 'complete_migration', migration,
                               attempts=1, timeout=COMPLETE_TIMEOUT,
                               reclaim=True, **at_dest)
        except messaging.MessagingTimeout:
            # The plugin plugs its claims, its settler completes later.
            allocs = world.settle(api, 'complete_migration', migration,
                                  reclaim=True, **at_dest)
    except (GaveUp, exception.VfpoolException) as e:
        guest.failures.append('live migration complete: %s' % _failure(e))
        allocs = []
    world.renewer.stop_one(migration)
    # A destination plugs only VFs of its own host: an answer that names
    # another host (a newer server may say) is refused, not plugged.
    foreign = [a for a in allocs if a.get('host', dest) != dest]
    if foreign:
        guest.failures.append('live migration complete: VF(s) of %s'
                              % ', '.join(sorted({a['host']
                                                  for a in foreign})))
    allocs = [a for a in allocs if a not in foreign]
    guest.plugged = {(dest, a['address']) for a in allocs}
    if len(allocs) < len(pairs or []):
        guest.failures.append('ReattachFailed: %d of %d VFs'
                              % (len(allocs), len(pairs)))


def resize(world: World, op: dict, api):
    guest = world.model.guest(op['instance'])
    source, dest = guest.host, op['dest']
    if not guest.alive or source is None or dest == source:
        world.skipped += 1
        return
    migration = migration_uuid(world.model, op)
    # migrate_disk_and_power_off on the source.
    try:
        pairs = world.rpc(api, 'prepare_migration', migration, guest.uuid,
                          source, dest)
        yield
        if pairs:
            world.rpc(api, 'begin_migration', migration)
    except (exception.VfpoolException, messaging.MessagingException) as e:
        # InstanceFaultRollback: the instance stays ACTIVE here.
        guest.failures.append('resize: %s' % _failure(e))
        return
    guest.plugged = set()       # powered off
    yield
    # finish_migration on the destination builds the guest there.
    try:
        guest.plugged = world.xml_vfs(api, guest, dest)
        guest.host = dest
    except (exception.VfpoolException, messaging.MessagingException) as e:
        guest.failures.append('resize finish: %s' % _failure(e))
    yield
    if op['outcome'] == 'confirm':
        try:
            world.settle(api, 'complete_migration', migration)
        except (GaveUp, exception.VfpoolException) as e:
            guest.failures.append('resize confirm: %s' % _failure(e))
        return
    # Revert: destroy on the destination aborts, then finish_revert on
    # the source aborts again and builds the guest there.
    guest.plugged = set()
    for _ in range(2):
        try:
            world.settle(api, 'abort_migration', migration)
        except exception.MigrationNotFound:
            pass
        except (GaveUp, exception.VfpoolException) as e:
            guest.failures.append('resize revert: %s' % _failure(e))
        yield
    try:
        guest.plugged = world.xml_vfs(api, guest, source)
        guest.host = source
    except (exception.VfpoolException, messaging.MessagingException) as e:
        guest.failures.append('resize revert finish: %s' % _failure(e))


def evacuate(world: World, op: dict, api):
    guest = world.model.guest(op['instance'])
    dead, dest = guest.host, op['dest']
    if not guest.alive or dead is None or dest == dead:
        world.skipped += 1
        return
    # The host dies, and its guests with it.
    guest.plugged, guest.host = set(), None
    evacuation = migration_uuid(world.model, op, 'evacuation')
    steps = ['read', 'claim', 'spawn']
    steps.insert(op['returns_at'], 'return')
    held: list[str] = []
    read: list[dict] = []
    try:
        for step in steps:
            if step == 'return':
                # The dead compute comes back and destroys the guest it
                # no longer owns: the driver releases its VFs there.
                world.release(api, guest, dead)
                guest.release_pending = False
            elif step == 'read':
                read = world.rpc(api, 'get_instance',
                                 guest.uuid)['allocations']
                held = sorted({a['host'] for a in read})
            elif step == 'claim':
                if dest in held:
                    pass
                elif held:
                    for source in held:
                        m = str(uuid.uuid5(uuid.NAMESPACE_URL, '%s:%s:%s' % (
                            evacuation, source, dest)))
                        # RPC 1.6: the VFs read, else SourcesChanged.
                        world.rpc(api, 'prepare_migration', m, guest.uuid,
                                  source, dest, expected_sources=[
                                      a['address'] for a in read
                                      if a.get('host') == source])
                        world.rpc(api, 'complete_migration', m)
                elif guest.vfs:
                    world.rpc(api, 'allocate', guest.uuid, dest,
                              [{'physical_network': 'physnet1'}] * guest.vfs,
                              request_id(guest, dest))
            else:
                guest.plugged = world.xml_vfs(api, guest, dest)
                guest.host = dest
            yield
    except (exception.VfpoolException, messaging.MessagingException) as e:
        guest.failures.append('evacuate: %s' % _failure(e))
        guest.host = dest


def restart_db(world: World, op: dict, api):
    if not world.system.can_restart_db:
        world.skipped += 1
        return
    world.system.restart_db()
    world.nemesis.count('restart-db')
    yield


OPERATIONS = {'boot': boot, 'delete': delete, 'live_migrate': live_migrate,
              'resize': resize, 'evacuate': evacuate,
              'restart_db': restart_db}
