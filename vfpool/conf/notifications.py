from oslo_config import cfg

notifications_group = cfg.OptGroup(
    'notifications', title='Notification options',
    help='Versioned notifications about claims, migrations and failures.')

notifications_opts = [
    cfg.BoolOpt(
        'enabled',
        default=False,
        help='Emit versioned notifications through oslo.messaging\'s '
             'notifier. The driver and topics come from '
             '[oslo_messaging_notifications]; nothing is sent unless '
             'this is true and a driver is configured there.'),
]


def register_opts(conf):
    conf.register_group(notifications_group)
    conf.register_opts(notifications_opts, group=notifications_group)


def list_opts():
    return {notifications_group: notifications_opts}
