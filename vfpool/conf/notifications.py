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
