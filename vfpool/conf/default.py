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

import os
import socket

from oslo_config import cfg

default_opts = [
    cfg.HostAddressOpt(
        'host',
        default=socket.gethostname(),
        sample_default='<current_hostname>',
        help='Name of this node. Servers use it as their RPC server name; '
             'agents and compute plugins use it as the host name under '
             'which VFs are inventoried. It must match the name the '
             'compute service uses for the host.'),
    cfg.StrOpt(
        'state_path',
        default=os.path.join(os.path.expanduser('~'), '.vfpool'),
        sample_default='$HOME/.vfpool',
        help='Directory where vfpool keeps local state, such as the '
             'embedded SQLite database.'),
    cfg.StrOpt(
        'rpc_topic',
        default='vfpool',
        help='RPC topic the servers listen on. Every server, agent and '
             'compute plugin of one deployment must use the same topic.'),
    cfg.IntOpt(
        'workers',
        min=1,
        sample_default='<number of CPUs>',
        help='vfpool-server only: worker processes, each consuming from '
             'the RPC topic with its own broker and database '
             'connections. The default is the number of CPUs of the '
             'host, as for nova-conductor, and 1 on SQLite, whose '
             'writers take turns anyway. Any number of workers and '
             'servers may share one database.'),
]


def register_opts(conf):
    conf.register_opts(default_opts)


def list_opts():
    return {'DEFAULT': default_opts}
