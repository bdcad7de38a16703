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

#: Nova's own prefix (``[DEFAULT] base_mac`` there): an operator who lets
#: both assign MACs keeps them in one recognisable range.
DEFAULT_MAC_PREFIX = 'fa:16:3e'

#: ``[pool] numa_policy`` values; the objects layer defaults to the
#: option's default.
NUMA_PREFERRED = 'preferred'
NUMA_REQUIRED = 'required'
NUMA_IGNORE = 'ignore'
DEFAULT_NUMA_POLICY = NUMA_PREFERRED

pool_group = cfg.OptGroup(
    'pool', title='VF pool options',
    help='How the server claims VFs and expires leases.')

pool_opts = [
    cfg.IntOpt(
        'lease_seconds',
        default=600,
        min=1,
        help='Default lifetime of a migration claim. A claim that is '
             'neither completed, renewed nor aborted within its lease is '
             'returned to the pool by the reaper.'),
    cfg.IntOpt(
        'reaper_interval',
        default=30,
        min=1,
        help='Seconds between two runs of the lease reaper in each '
             'server. Several servers may reap at once safely.'),
    cfg.BoolOpt(
        'match_device_type',
        default=True,
        help='Whether a destination VF must have the same vendor and '
             'product ID as the source VF it replaces. When false, any '
             'VF on the same physical network matches.'),
    cfg.StrOpt(
        'numa_policy',
        default=DEFAULT_NUMA_POLICY,
        choices=[(NUMA_PREFERRED, 'Prefer a VF on the same NUMA node, '
                                  'fall back to any node.'),
                 (NUMA_REQUIRED, 'Only a VF on the same NUMA node '
                                 'matches.'),
                 (NUMA_IGNORE, 'NUMA placement plays no role.')],
        help='How NUMA affinity of the source VF is honoured when '
             'choosing a destination VF.'),
    cfg.IntOpt(
        'released_request_retention',
        default=7 * 24 * 3600,
        min=60,
        help='Seconds the request id of a released allocation stays '
             'taken. Until then a late duplicate of that allocate call '
             '(a caller\'s retry after the instance was deleted) is '
             'refused with RequestReleased instead of claiming VFs again; '
             'after it the reaper deletes the tombstone. Keep it longer '
             'than any caller keeps retrying.'),
    cfg.StrOpt(
        'mac_prefix',
        default=DEFAULT_MAC_PREFIX,
        # One to five octets, the first one unicast (its lowest bit 0).
        regex=r'^[0-9a-fA-F][02468aceACE](:[0-9a-fA-F]{2}){0,4}$',
        help='The first octets of the MACs the server assigns to '
             'allocations requested without one (the default is '
             "Nova's); the remaining octets are random, and a MAC a VF "
             'holds already is never assigned again. One to five '
             'colon-separated octets, the first one unicast.'),
]


def register_opts(conf):
    conf.register_group(pool_group)
    conf.register_opts(pool_opts, group=pool_group)


def list_opts():
    return {pool_group: pool_opts}
