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

"""vfpool's live migrations in flight, held to Nova's own records.

Nova abandons a live migration without calling a driver hook on a host
that already claimed or detached VFs in several ways: a queued migration
aborted (``nova live-migration-abort``, or nova-compute stopping with
migrations in its queue), the conductor giving up after the only
destination claimed (a port binding refused), a source nova-compute
restarting mid-migration (Nova aborts the job and marks the migration
``error``).  Nova's Migration record is the owner of vfpool's migration
of the same uuid; this module reads it:

* :func:`wanted` answers the compute plugin's lease renewer: renew only
  while Nova's migration is not over;
* :class:`Reconciler`, a thread of the driver, compares each vfpool
  migration in flight on this host with Nova's record at start and every
  ``[migration] reconcile_interval`` seconds, and rolls back here one
  Nova gave up (``cancelled``, ``failed``, ``error``, or a record that
  is gone):

  ``in_progress`` (nothing detached yet)
      aborted: the destination claims are freed, the source VFs stay the
      instance's.  Either host may do it; the abort is idempotent.
  ``moving`` (the source may have detached)
      only on the source, and only while the guest runs there: every
      source VF missing from the guest is re-attached with its MAC, then
      the migration aborted.  A guest that is not there may run on the
      destination: nothing is freed, the migration stays for an operator
      (``vfpool-manage migration list --stalled`` once its lease lapsed).

Resizes and cold migrations settle in their own hooks
(:mod:`vfpool.nova.lifecycle`) and evacuations complete at once: only
live migrations are reconciled.
"""

import datetime
import typing

from nova import context as nova_context
from nova import exception as nova_exception
from nova import objects
from oslo_log import log as logging
import oslo_messaging as messaging
from oslo_utils import timeutils

from vfpool.compute import background
from vfpool.compute import plugin as vf_plugin
from vfpool.compute import recovery
from vfpool import exception
from vfpool.nova import lifecycle
from vfpool import states

LOG = logging.getLogger(__name__)

#: Nova's statuses of a migration it gave up.
GAVE_UP = frozenset({'cancelled', 'failed', 'error'})
#: Nova's statuses of a migration that is over, well or not.
OVER = GAVE_UP | {'completed', 'confirmed', 'reverted', 'done'}
#: vfpool's states of a migration in flight.
IN_PROGRESS = states.IN_PROGRESS
MOVING = states.MOVING
LIVE = 'live-migration'


def nova_migration(context, migration_uuid: str):
    """Nova's Migration of ``migration_uuid``, or None if it has none."""
    try:
        return objects.Migration.get_by_uuid(context, migration_uuid)
    except nova_exception.MigrationNotFound:
        return None


def wanted(context, migration_uuid: str) -> bool:
    """Whether Nova still drives migration ``migration_uuid``.

    False once Nova's record is over or gone; errors reading it propagate
    (the renewer then renews on, within its bound).
    """
    migration = nova_migration(context, migration_uuid)
    return migration is not None and migration.status not in OVER


class Reconciler(background.Worker):
    """Rolls back here the live migrations Nova gave up; see the module.

    ``domain(instance_uuid)`` is the guest's libvirt domain on this host,
    or None.  The candidates of a pass are the migrations this process
    claimed or detached and still remembers, and (for those a restart
    made it forget) Nova's live migrations touching this host that Nova
    gave up within the last ``window`` seconds.
    """

    def __init__(self, plugin: vf_plugin.VFMigrationPlugin,
                 domain: typing.Callable[[str], typing.Any],
                 interval: float, window: float) -> None:
        super().__init__('vfpool-reconcile-%s' % plugin.host)
        self.plugin = plugin
        self.host = plugin.host
        self._domain = domain
        self.interval = interval
        self.window = window
        self.passes = 0
        #: migration uuid -> what the last pass did or saw (for operators
        #: and tests): 'aborted', 'rolled back', 'left'.
        self.outcomes: dict[str, str] = {}

    def run(self) -> None:
        while True:
            try:
                self.reconcile(nova_context.get_admin_context())
            except Exception:
                LOG.exception('vfpool: reconciliation with Nova\'s '
                              'migrations failed; next in %.0f s',
                              self.interval)
            self.passes += 1
            if not self.pause(self.interval):
                return

    # -- one pass -------------------------------------------------------------

    def candidates(self, context) -> set[str]:
        """Instances that may have a vfpool migration in flight here."""
        found = {r.instance_uuid for r in self.plugin.remembered()}
        since = timeutils.utcnow() - datetime.timedelta(seconds=self.window)
        for migration in objects.MigrationList.get_by_filters(context, {
                'host': self.host, 'migration_type': LIVE,
                'status': sorted(GAVE_UP), 'changes-since': since}):
            found.add(migration.instance_uuid)
        return found

    def reconcile(self, context) -> None:
        """One pass over every candidate; each failure is logged alone."""
        remembered = {r.migration_uuid for r in self.plugin.remembered()}
        seen: set[str] = set()
        for instance_uuid in sorted(self.candidates(context)):
            if self.stopping:
                return
            try:
                uuid = self._reconcile_instance(context, instance_uuid,
                                                remembered)
                if uuid is not None:
                    seen.add(uuid)
            except (exception.VfpoolException,
                    messaging.MessagingException) as exc:
                LOG.warning('vfpool: could not reconcile the migration of '
                            'instance %s: %s: %s', instance_uuid,
                            type(exc).__name__, exc)
            except Exception:
                LOG.exception('vfpool: could not reconcile the migration '
                              'of instance %s', instance_uuid)
        # Only what is still in flight here is worth remembering.
        self.outcomes = {uuid: outcome for uuid, outcome
                         in self.outcomes.items() if uuid in seen}

    def _reconcile_instance(self, context, instance_uuid: str,
                            remembered: set[str]) -> str | None:
        """Reconcile the instance's migration; its uuid if in flight here."""
        vctx = lifecycle.vfpool_context(context)
        info = recovery.call_idempotent(
            self.plugin.client, 'get_instance', vctx, instance_uuid,
            attempts=self.plugin.rpc_attempts)
        migration = info.get('migration')
        if (not migration or migration['state'] not in (IN_PROGRESS, MOVING)
                or self.host not in (migration['source_host'],
                                     migration['dest_host'])):
            return None
        uuid = migration['uuid']
        nova = nova_migration(context, uuid)
        if nova is None:
            # Only a migration a live-migration hook of this process made
            # is Nova's for sure (evacuations use uuids of their own).
            if uuid not in remembered:
                return uuid
            status = 'gone'
        elif nova.migration_type != LIVE or nova.status not in GAVE_UP:
            return uuid
        else:
            status = nova.status
        if migration['state'] == IN_PROGRESS:
            self._abort(vctx, instance_uuid, uuid, status)
        elif migration['source_host'] == self.host:
            self._roll_back_source(context, instance_uuid, uuid, status)
        elif self.outcomes.get(uuid) != 'left':
            self.outcomes[uuid] = 'left'
            LOG.info('vfpool: Nova gave up live migration %s of instance '
                     '%s (%s) while it was moving; its source %s rolls it '
                     'back', uuid, instance_uuid, status,
                     migration['source_host'])
        return uuid

    def _abort(self, vctx, instance_uuid: str, uuid: str,
               status: str) -> None:
        """Nothing was detached: free the claims, unmark the sources."""
        freed = self.plugin.rollback_live_migration_at_destination(
            vctx, instance_uuid, uuid)
        self.outcomes[uuid] = 'aborted'
        LOG.warning('vfpool: Nova gave up live migration %s of instance %s '
                    '(%s) after vfpool claimed VFs for it: aborted it, %d '
                    'claim(s) freed', uuid, instance_uuid, status, freed)

    def _roll_back_source(self, context, instance_uuid: str, uuid: str,
                          status: str) -> None:
        """The guest keeps running here: its VFs back, the claims freed."""
        instance = objects.Instance.get_by_uuid(context, instance_uuid)
        dom = self._domain(instance_uuid)
        if instance.host != self.host or dom is None or not dom.isActive():
            if self.outcomes.get(uuid) != 'left':
                self.outcomes[uuid] = 'left'
                LOG.error('vfpool: Nova gave up live migration %s of '
                          'instance %s (%s) after the source detached its '
                          'VFs, and the guest does not run here: it may '
                          'run on the destination, so nothing is freed. '
                          'Finish it with vfpool-manage migration complete '
                          'or abort', uuid, instance_uuid, status)
            return
        try:
            back = self.plugin.rollback_live_migration_at_source(
                lifecycle.vfpool_context(context), instance_uuid, uuid,
                domain=dom)
        except exception.ReattachFailed as exc:
            self.outcomes[uuid] = 'rolled back'
            LOG.error('vfpool: rolled back live migration %s of instance '
                      '%s, which Nova gave up (%s), but: %s', uuid,
                      instance_uuid, status, exc)
            return
        self.outcomes[uuid] = 'rolled back'
        LOG.warning('vfpool: Nova gave up live migration %s of instance %s '
                    '(%s) after the source detached its VFs: re-attached '
                    '%s and aborted it', uuid, instance_uuid, status,
                    ', '.join(a['address'] for a in back) or 'nothing')
