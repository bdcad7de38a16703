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

agent_group = cfg.OptGroup(
    'agent', title='vfpool-agent options',
    help='How the per-host agent discovers and reports VFs.')

agent_opts = [
    cfg.StrOpt(
        'libvirt_uri',
        default='qemu:///system',
        help='libvirt connection URI the agent reads node devices from.'),
    cfg.IntOpt(
        'report_interval',
        default=60,
        min=1,
        help='Seconds between two full inventory reports.'),
    cfg.MultiStrOpt(
        'device_spec',
        default=[],
        help='JSON object selecting VFs to inventory and tagging them with '
             'a physical network, in the spirit of Nova\'s '
             '[pci] device_spec. Keys: vendor_id, product_id, address '
             '(a PCI address with "*" wildcards, or a dict of domain, '
             'bus, slot, function), devname (the PF\'s or VF\'s netdev), '
             'and physical_network (required). Repeat the option for '
             'several specs; the first spec that matches a VF wins. With '
             'no spec, nothing is reported.'),
    cfg.IntOpt(
        'max_backoff',
        default=60,
        min=1,
        help='Longest wait, in seconds, between two attempts to reach '
             'libvirt or the server after a failure.'),
]


def register_opts(conf):
    conf.register_group(agent_group)
    conf.register_opts(agent_opts, group=agent_group)


def list_opts():
    return {agent_group: agent_opts}
