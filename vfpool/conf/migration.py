from oslo_config import cfg

migration_group = cfg.OptGroup(
    'migration', title='Live migration options',
    help='What the compute plugin does when a live migration goes wrong.')

migration_opts = [
    cfg.StrOpt(
        'reattach_failure_policy',
        default='retry',
        choices=[
            ('retry', 'Try to attach the same destination VF again, up to '
                      'reattach_attempts times, then behave as "error".'),
            ('swap', 'Free the VF that failed, claim another equivalent VF '
                     'on the same host and attach that one.'),
            ('degrade', 'Leave the guest on its virtio standby; the '
                        'allocation is recorded as not attached so that '
                        'operators see it.'),
            ('error', 'Record the allocation as failed and raise to the '
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
]


def register_opts(conf):
    conf.register_group(migration_group)
    conf.register_opts(migration_opts, group=migration_group)


def list_opts():
    return {migration_group: migration_opts}
