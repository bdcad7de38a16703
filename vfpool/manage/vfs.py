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

"""``vfpool-manage vf``: look at VFs and hold them back from claims."""

from oslo_config import cfg

from vfpool.manage import cli
from vfpool.objects import admin
from vfpool import states
from vfpool import validation as v

_LIST_COLUMNS = ['Host', 'Address', 'PF', 'Physical network', 'Device',
                 'NUMA', 'State', 'Instance', 'Migration', 'MAC', 'VLAN',
                 'Attach', 'Reserved for']
_SHOW_KEYS = ['host', 'address', 'pf_address', 'vf_index', 'netdev',
              'physical_network', 'vendor_id', 'product_id', 'numa_node',
              'state', 'prior_state', 'instance_uuid', 'request_id',
              'migration_uuid', 'migration_state', 'lease_expires_at',
              'mac', 'vlan', 'port_id', 'attach_state', 'reserved_reason',
              'generation', 'updated_at']


def _row(vf: dict) -> list:
    state = vf['state']
    if vf['prior_state']:
        state = '%s (was %s)' % (state, vf['prior_state'])
    return [vf['host'], vf['address'], vf['pf_address'],
            vf['physical_network'],
            '%s:%s' % (vf['vendor_id'], vf['product_id']), vf['numa_node'],
            state, vf['instance_uuid'], vf['migration_uuid'], vf['mac'],
            vf['vlan'], vf['attach_state'], vf['reserved_reason']]


def _show_vf(conf: cfg.ConfigOpts, vf: dict) -> None:
    cli.show(conf, vf, cli.properties(vf, _SHOW_KEYS))


def _target(conf: cfg.ConfigOpts) -> tuple[str, str]:
    return (cli.check(v.name, 'host', conf.command.host_name),
            cli.check(v.pci_address, 'address', conf.command.address))


def list_vfs(conf: cfg.ConfigOpts) -> int:
    command = conf.command
    filters = dict(
        host=cli.check(v.name, 'host', command.host_name),
        physical_network=cli.check(v.name, 'physical_network',
                                   command.physical_network),
        state=command.state,
        instance_uuid=cli.check(v.uuid, 'instance', command.instance))
    cli.configure_db(conf)
    vfs = admin.list_vfs(cli.admin_context(), **filters)
    cli.show(conf, vfs, cli.table(_LIST_COLUMNS, [_row(vf) for vf in vfs]))
    return cli.EXIT_OK


def show_vf(conf: cfg.ConfigOpts) -> int:
    host, address = _target(conf)
    cli.configure_db(conf)
    _show_vf(conf, admin.get_vf(cli.admin_context(), host, address))
    return cli.EXIT_OK


def reserve_vf(conf: cfg.ConfigOpts) -> int:
    host, address = _target(conf)
    reason = cli.check(v.name, 'reason', conf.command.reason)
    cli.configure_db(conf)
    context = cli.admin_context()
    vf = admin.get_vf(context, host, address)
    if vf['state'] != states.AVAILABLE:
        raise cli.CommandError(
            'VF %s on host %s is %s: only an available VF can be reserved'
            % (address, host, vf['state']), cli.EXIT_CONFLICT)
    cli.confirm(conf, ['Reserve VF %s on host %s%s: no claim will take it '
                       'until it is unreserved.'
                       % (address, host, ' (%s)' % reason if reason
                          else '')])
    _show_vf(conf, admin.reserve(context, host, address, reason))
    return cli.EXIT_OK


def unreserve_vf(conf: cfg.ConfigOpts) -> int:
    host, address = _target(conf)
    cli.configure_db(conf)
    _show_vf(conf, admin.unreserve(cli.admin_context(), host, address))
    return cli.EXIT_OK


def _add_target(parser) -> None:
    parser.add_argument('host_name', metavar='HOST', help='Host name.')
    parser.add_argument('address', help='PCI address of the VF, like '
                                        '0000:05:10.1.')


def add_parsers(subparsers) -> None:
    actions = cli.add_category(subparsers, 'vf', 'Virtual functions.')
    parser = cli.add_action(actions, 'list', list_vfs,
                            'List VFs; filters combine.')
    parser.add_argument('--host', dest='host_name', metavar='HOST',
                        help='Only VFs of this host.')
    parser.add_argument('--physical-network',
                        help='Only VFs on this physical network.')
    parser.add_argument('--state', choices=states.VF_STATES,
                        help='Only VFs in this state.')
    parser.add_argument('--instance', metavar='UUID',
                        help='Only VFs held by this instance.')
    _add_target(cli.add_action(actions, 'show', show_vf,
                               'Show one VF with its owner.'))
    parser = cli.add_action(
        actions, 'reserve', reserve_vf, destructive=True,
        help='Hold an available VF back from every claim.')
    _add_target(parser)
    parser.add_argument('--reason', help='Why, for other operators.')
    _add_target(cli.add_action(actions, 'unreserve', unreserve_vf,
                               'Give a reserved VF back to the pool.'))
