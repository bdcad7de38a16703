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

"""What the compute plugin does when a VF cannot be (re-)attached.

A failed attach after a live migration cannot be undone by failing the
migration: the guest already runs on the destination.  The operator picks
the answer with ``[migration] reattach_failure_policy``:

``retry``
    attach the same VF up to ``reattach_attempts`` times,
    ``reattach_retry_delay`` seconds apart; then behave as ``error``.
``swap``
    after ``reattach_attempts`` failed attempts on the VF, free it and
    claim another equivalent VF on the same host in one server transaction
    (``replace_allocation``, RPC 1.1) and give that one as many attempts;
    then behave as ``error``.  A client capped below 1.1 behaves as
    ``error`` at once.  A failed attach may still have plugged the VF
    (libvirt's reply lost with its connection), so a VF is only given up
    once the guest's live XML shows it is not there: when the XML cannot
    be read, or the allocation has no MAC to plug another VF with, or the
    server does not answer, the swap is refused and the policy behaves as
    ``error`` for that VF.
``degrade``
    one attempt; the guest stays on its virtio standby, the allocation is
    recorded as ``detached`` for operators and nothing is raised.
``error``
    one attempt; the allocation is recorded as ``failed`` and the caller
    raises :class:`~vfpool.exception.ReattachFailed`.

The work is split in two phases so that callers can put an RPC between
them: :meth:`ReattachPolicy.attempt` (libvirt only: the same VF, as often
as the policy allows) and :meth:`ReattachPolicy.recover` (the policy's
answer to a VF that still failed, which may need the migration settled
first: ``replace_allocation`` and ``set_attach_state`` only act on VFs
that are the instance's allocations, not claims of a migration in flight).
"""

import dataclasses
import time
import typing

from oslo_config import cfg
from oslo_log import log as logging
import oslo_messaging as messaging

from vfpool import exception
from vfpool import rpcapi
from vfpool import states

LOG = logging.getLogger(__name__)

RETRY = states.RETRY
SWAP = states.SWAP
DEGRADE = states.DEGRADE
ERROR = states.ERROR

# The attach states the server records (set_attach_state).
ATTACHED = states.ATTACHED
DETACHED = states.DETACHED
FAILED = states.ATTACH_FAILED


@dataclasses.dataclass(frozen=True)
class AttachFn:
    """How the policy reaches one guest.

    Calling it plugs the VF of one allocation or raises
    DeviceAttachFailed; it must be a no-op when the VF is already there.
    ``plugged(alloc)`` says from the guest's live XML whether that VF is
    in the guest, and raises DeviceAttachFailed when nobody can tell.
    """

    plug: typing.Callable[[dict], None]
    plugged: typing.Callable[[dict], bool]

    def __call__(self, alloc: dict) -> None:
        self.plug(alloc)


def call_idempotent(client: rpcapi.VfpoolAPI, method: str, context,
                    *args: typing.Any, attempts: int = 3,
                    **kwargs: typing.Any) -> typing.Any:
    """Call an RPC method that is safe to repeat, again after a timeout.

    A ``MessagingTimeout`` does not say whether the server acted, so only
    methods whose repetition gives the same answer (keyed by migration or
    request id, or plain reads and state records) may go through here.
    Typed vfpool errors are never retried.
    """
    for attempt in range(1, attempts + 1):
        try:
            return getattr(client, method)(context, *args, **kwargs)
        except messaging.MessagingTimeout:
            if attempt == attempts:
                raise
            LOG.warning('vfpool RPC %s timed out (attempt %d of %d); '
                        'repeating it, which is safe', method, attempt,
                        attempts)


@dataclasses.dataclass
class Outcome:
    """How one VF ended up: attached, or what the policy decided."""

    alloc: dict
    state: str
    attempts: int = 0
    swapped_from: str | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        result = dict(self.alloc, attach_state=self.state)
        if self.swapped_from:
            result['swapped_from'] = self.swapped_from
        return result


class ReattachPolicy:
    """The configured policy, applied to one VF at a time."""

    def __init__(self, conf: cfg.ConfigOpts, client: rpcapi.VfpoolAPI,
                 rpc_attempts: int = 3,
                 sleep: typing.Callable[[float], None] = time.sleep
                 ) -> None:
        self.conf = conf
        self.client = client
        self.rpc_attempts = rpc_attempts
        self._sleep = sleep

    # Read at each use, so that a changed configuration applies to the
    # next migration without a new plugin.

    @property
    def policy(self) -> str:
        return self.conf.migration.reattach_failure_policy

    @property
    def attempts(self) -> int:
        return self.conf.migration.reattach_attempts

    @property
    def delay(self) -> float:
        return self.conf.migration.reattach_retry_delay

    def budget(self) -> int:
        """Attach attempts per VF before the policy's answer."""
        return self.attempts if self.policy in (RETRY, SWAP) else 1

    def attempt(self, alloc: dict, attach: AttachFn,
                budget: int | None = None) -> Outcome:
        """Attach ``alloc``'s VF, as many times as the policy allows."""
        budget = self.budget() if budget is None else budget
        error = None
        for attempt in range(1, budget + 1):
            if attempt > 1 and self.delay:
                self._sleep(self.delay)
            try:
                attach(alloc)
            except exception.DeviceAttachFailed as exc:
                error = str(exc)
                LOG.warning('Attach attempt %d of %d for VF %s (MAC %s) '
                            'failed: %s', attempt, budget, alloc['address'],
                            alloc.get('mac'), error)
                continue
            return Outcome(alloc, ATTACHED, attempts=attempt)
        return Outcome(alloc, FAILED, attempts=budget, error=error)

    def recover(self, context, instance_uuid: str, host: str,
                failed: Outcome, attach: AttachFn) -> Outcome:
        """The policy's answer to a VF that :meth:`attempt` could not plug.

        Only call it once the VF is an allocation of the instance on
        ``host`` (migration completed or aborted).
        """
        if failed.state == ATTACHED:
            return failed
        outcome = failed
        if self.policy == SWAP:
            swapped = self._swap(context, instance_uuid, host, failed,
                                 attach)
            if swapped.state == ATTACHED:
                return swapped
            outcome = swapped
        if self.policy == DEGRADE:
            LOG.warning('Instance %s keeps running on %s without VF %s '
                        '(MAC %s), on its standby interface: policy '
                        '"degrade"', instance_uuid, host,
                        outcome.alloc['address'], outcome.alloc.get('mac'))
            self.record_state(context, instance_uuid, host,
                              outcome.alloc, DETACHED)
            return dataclasses.replace(outcome, state=DETACHED)
        LOG.error('VF %s (MAC %s) of instance %s could not be attached on '
                  '%s after %d attempt(s): %s (policy "%s")',
                  outcome.alloc['address'], outcome.alloc.get('mac'),
                  instance_uuid, host, outcome.attempts, outcome.error,
                  self.policy)
        self.record_state(context, instance_uuid, host, outcome.alloc, FAILED)
        return dataclasses.replace(outcome, state=FAILED)

    def _swap(self, context, instance_uuid: str, host: str,
              failed: Outcome, attach: AttachFn) -> Outcome:
        if not self.client.can_send_version('1.1'):
            LOG.error('Policy "swap" needs vfpool RPC 1.1 '
                      '(replace_allocation) but the client is capped at '
                      '%s ([upgrade_levels] vfpool): behaving as "error" '
                      'for VF %s of instance %s', self.client.version_cap,
                      failed.alloc['address'], instance_uuid)
            return failed
        old = failed.alloc
        if not old.get('mac'):
            return self._no_swap(failed, instance_uuid, host,
                                 'the allocation has no MAC')
        try:
            if attach.plugged(old):
                LOG.warning('VF %s (MAC %s) of instance %s is in the guest '
                            'on %s although its attach reported a failure; '
                            'keeping it', old['address'], old['mac'],
                            instance_uuid, host)
                return dataclasses.replace(failed, state=ATTACHED,
                                           error=None)
        except exception.DeviceAttachFailed as exc:
            # It may be plugged: freeing it could give it to another guest.
            return self._no_swap(failed, instance_uuid, host,
                                 'cannot tell whether it is still in the '
                                 'guest: %s' % exc)
        try:
            new = self._replace(context, instance_uuid, host, old)
        except exception.VfpoolException as exc:
            return self._no_swap(failed, instance_uuid, host, exc)
        except messaging.MessagingException as exc:
            # Whether the server swapped is unknown; either way the old VF
            # is not in the guest, and the caller hears of the failure.
            return self._no_swap(failed, instance_uuid, host,
                                 'vfpool-server did not answer (%s: %s)'
                                 % (type(exc).__name__, exc))
        LOG.info('Swapped VF %s of instance %s on %s for VF %s (same MAC '
                 '%s, VLAN %s); attaching it', old['address'],
                 instance_uuid, host, new['address'], new.get('mac'),
                 new.get('vlan'))
        outcome = self.attempt(new, attach)
        return dataclasses.replace(outcome, swapped_from=old['address'],
                                   attempts=failed.attempts +
                                   outcome.attempts)

    @staticmethod
    def _no_swap(failed: Outcome, instance_uuid: str, host: str,
                 reason: typing.Any) -> Outcome:
        LOG.error('Could not swap VF %s of instance %s on %s for another '
                  'one: %s', failed.alloc['address'], instance_uuid, host,
                  reason)
        return dataclasses.replace(
            failed, error='%s; swap refused: %s' % (failed.error, reason))

    def _replace(self, context, instance_uuid: str, host: str,
                 old: dict) -> dict:
        """replace_allocation, made safe to repeat after a timeout.

        The server swaps in one transaction but the call is not keyed by
        an id: after a lost reply the old VF is no longer ours, so look
        for the allocation with the same MAC on another VF first.
        """
        for attempt in range(1, self.rpc_attempts + 1):
            try:
                return dict(self.client.replace_allocation(
                    context, instance_uuid, host, old['address']))
            except (messaging.MessagingTimeout,
                    exception.AllocationNotFound) as exc:
                done = self._replaced(context, instance_uuid, host, old)
                if done is not None:
                    return done
                if (attempt == self.rpc_attempts or
                        isinstance(exc, exception.AllocationNotFound)):
                    raise
                LOG.warning('replace_allocation timed out and did not '
                            'happen; asking again')
        raise AssertionError('rpc_attempts must be at least 1')

    def _replaced(self, context, instance_uuid: str, host: str,
                  old: dict) -> dict | None:
        info = call_idempotent(self.client, 'get_instance', context,
                               instance_uuid, attempts=self.rpc_attempts)
        for alloc in info['allocations']:
            if (alloc.get('host') == host and alloc['mac'] == old['mac']
                    and alloc['address'] != old['address']):
                return {key: alloc[key] for key in old if key in alloc}
        return None

    def record_state(self, context, instance_uuid: str, host: str,
                     alloc: dict, state: str) -> None:
        """set_attach_state, so operators see what is not plugged."""
        if not self.client.can_send_version('1.1'):
            LOG.warning('Cannot record VF %s of instance %s on %s as %s: '
                        'set_attach_state needs vfpool RPC 1.1 and the '
                        'client is capped at %s', alloc['address'],
                        instance_uuid, host, state, self.client.version_cap)
            return
        try:
            call_idempotent(self.client, 'set_attach_state', context,
                            instance_uuid, host, alloc['address'], state,
                            attempts=self.rpc_attempts)
            LOG.info('Recorded VF %s of instance %s on %s as %s',
                     alloc['address'], instance_uuid, host, state)
        except (exception.VfpoolException, messaging.MessagingException
                ) as exc:
            # The guest's state does not change with the record; never let
            # bookkeeping turn a handled failure into a crash.
            LOG.error('Could not record VF %s of instance %s on %s as %s: '
                      '%s', alloc['address'], instance_uuid, host, state,
                      exc)
