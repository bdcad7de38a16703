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

from oslo_config import cfg

from vfpool import states

migration_group = cfg.OptGroup(
    'migration', title='Live migration options',
    help='What the compute plugin does when a live migration goes wrong.')

migration_opts = [
    cfg.StrOpt(
        'reattach_failure_policy',
        default=states.RETRY,
        choices=[
            (states.RETRY,
             'Try to attach the same destination VF again, up to '
             'reattach_attempts times, then behave as "error".'),
            (states.SWAP,
             'Free the VF that failed, claim another equivalent VF '
             'on the same host and attach that one.'),
            (states.DEGRADE,
             'Leave the guest on its virtio standby; the '
             'allocation is recorded as not attached so that '
             'operators see it.'),
            (states.ERROR,
             'Record the allocation as failed and raise to the '
             'caller.'),
        ],
        help='What to do when the guest already runs on the destination '
             'but its VF cannot be attached there. The source VF is freed '
             'whatever the policy: the guest has left the source.'),
    cfg.IntOpt(
        'reattach_attempts',
        default=3,
        min=1,
        help='Attach attempts with the "retry" policy, and per VF with '
             'the "swap" policy.'),
    cfg.FloatOpt(
        'reattach_retry_delay',
        default=1.0,
        min=0,
        help='Seconds between two attach attempts.'),
    cfg.FloatOpt(
        'complete_timeout',
        default=10.0,
        min=0.1,
        help='Seconds the post-migration hooks wait for vfpool-server to '
             'complete a migration (one attempt). Without an answer the '
             'destination plugs the VFs it claimed all the same (the guest '
             'already runs there) and a background settler keeps trying '
             'to complete the migration.'),
    cfg.FloatOpt(
        'settle_initial_delay',
        default=2.0,
        min=0.01,
        help='Seconds before the background settler first retries '
             'complete_migration after the post-migration hooks could not '
             'reach vfpool-server; the delay doubles after each failed '
             'attempt, up to settle_max_delay.'),
    cfg.FloatOpt(
        'settle_max_delay',
        default=60.0,
        min=0.01,
        help='Longest pause between two attempts of the background '
             'settler.'),
    cfg.FloatOpt(
        'settle_max_time',
        default=3600.0,
        min=0,
        help='Seconds the background settler keeps retrying before it '
             'gives up. The migration then stays "moving" and, once its '
             'lease lapses, "vfpool-manage migration list --stalled" shows '
             'it; "vfpool-manage migration complete" finishes it. A '
             'restart of the compute service also ends the settler.'),
    cfg.IntOpt(
        'claim_max_seconds',
        default=21600,
        min=1,
        help='Longest a compute keeps renewing the lease of one '
             'migration, counted from the claim on the destination (from '
             'the detach on the source). Renewal also stops as soon as the '
             'owner of the migration (Nova\'s Migration record, with the '
             'Nova driver) shows it is over. Once renewal stops the lease '
             'lapses: the reaper frees the claims of a migration still '
             '"in_progress" within [pool] lease_seconds plus [pool] '
             'reaper_interval, and "vfpool-manage audit" lists them as '
             'lapsed_claim until then; a "moving" migration is never '
             'freed by a lapse, "vfpool-manage migration list --stalled" '
             'shows it. Keep it above the longest a live migration may '
             'take from the destination check to its end: its wait in the '
             'source\'s queue (Nova\'s [DEFAULT] '
             'max_concurrent_live_migrations) plus Nova\'s [libvirt] '
             'live_migration_completion_timeout times the GiB it copies.'),
    cfg.FloatOpt(
        'reconcile_interval',
        default=60.0,
        min=0.1,
        help='Seconds between two reconciliations of the Nova driver: '
             'each vfpool migration in flight on this host is compared '
             'with Nova\'s Migration record, and one Nova has given up '
             '(cancelled, failed, error) is rolled back here. The first '
             'runs when nova-compute starts.'),
]


def register_opts(conf):
    conf.register_group(migration_group)
    conf.register_opts(migration_opts, group=migration_group)


def list_opts():
    return {migration_group: migration_opts}
