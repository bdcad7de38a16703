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

libvirt_group = cfg.OptGroup(
    'libvirt', title='Compute plugin libvirt options',
    help='How the compute plugin detaches and attaches VFs.')

libvirt_opts = [
    cfg.StrOpt(
        'connection_uri',
        default='qemu:///system',
        help='libvirt URI of the local hypervisor, used by the compute '
             'plugin when the driver does not hand it a connection.'),
    cfg.IntOpt(
        'device_detach_timeout',
        default=20,
        min=1,
        help='Seconds to wait for libvirt\'s DEVICE_REMOVED event after '
             'each detach request (as Nova\'s option of the same name).'),
    cfg.IntOpt(
        'device_detach_attempts',
        default=8,
        min=1,
        help='How many times a detach is requested before the migration '
             'is aborted (as Nova\'s option of the same name).'),
]


def register_opts(conf):
    conf.register_group(libvirt_group)
    conf.register_opts(libvirt_opts, group=libvirt_group)


def list_opts():
    return {libvirt_group: libvirt_opts}
