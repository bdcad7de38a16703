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

"""``vfpool-manage instance``: what an instance holds, and freeing it."""

from oslo_config import cfg

from vfpool.manage import cli
from vfpool import notifications
from vfpool.objects import admin
from vfpool.objects import allocation as allocation_obj
from vfpool.objects import instance as instance_obj
from vfpool import validation as v

_COLUMNS = ['Host', 'Address', 'PF', 'Physical network', 'State', 'MAC',
            'VLAN', 'Port', 'Attach', 'Migration']


def _row(vf: dict) -> list:
    return [vf['host'], vf['address'], vf['pf_address'],
            vf['physical_network'], vf['state'], vf['mac'], vf['vlan'],
            vf['port_id'], vf['attach_state'], vf['migration_uuid']]


def show_instance(conf: cfg.ConfigOpts) -> int:
    instance_uuid = cli.check(v.uuid, 'uuid', conf.command.uuid)
    cli.configure_db(conf)
    context = cli.admin_context()
    result = instance_obj.get_instance(context, instance_uuid)
    vfs = admin.list_vfs(context, instance_uuid=instance_uuid)
    if not vfs and result['migration'] is None:
        raise cli.CommandError('instance %s holds no VF and has no '
                               'migration' % instance_uuid,
                               cli.EXIT_CONFLICT)
    result = dict(result, instance_uuid=instance_uuid, vfs=vfs)
    migration = result['migration']
    summary = ('Migration: none' if migration is None else
               'Migration: %s %s (%s -> %s), lease expires %s'
               % (migration['uuid'], migration['state'],
                  migration['source_host'], migration['dest_host'],
                  migration['lease_expires_at']))
    cli.show(conf, result, cli.table(_COLUMNS, [_row(vf) for vf in vfs]),
             summary)
    return cli.EXIT_OK


def release_instance(conf: cfg.ConfigOpts) -> int:
    instance_uuid = cli.check(v.uuid, 'uuid', conf.command.uuid)
    host = cli.check(v.name, 'host', conf.command.host_name)
    cli.configure_db(conf)
    context = cli.admin_context()
    vfs = admin.list_vfs(context, host=host, instance_uuid=instance_uuid)
    result = {'instance_uuid': instance_uuid, 'host': host, 'freed': 0}
    where = ' on host %s' % host if host else ''
    if not vfs:
        cli.note('Instance %s holds no VF%s; nothing to release.'
                 % (instance_uuid, where))
        cli.show(conf, result, 'Freed 0 VF(s).')
        return cli.EXIT_OK
    cli.confirm(conf, [
        'Release the %d VF(s) instance %s holds%s (%s); its migrations in '
        'flight end as aborted. Only do this once the instance no longer '
        'uses them.' % (len(vfs), instance_uuid, where, ', '.join(
            '%s %s' % (vf['host'], vf['address']) for vf in vfs))])
    result['freed'] = allocation_obj.release(context, instance_uuid, host)
    if result['freed']:
        cli.notifier(conf).emit(context, notifications.ALLOCATION_RELEASE,
                                **result)
    cli.show(conf, result, 'Freed %d VF(s).' % result['freed'])
    return cli.EXIT_OK


def add_parsers(subparsers) -> None:
    actions = cli.add_category(subparsers, 'instance',
                               'The VFs an instance holds.')
    parser = cli.add_action(actions, 'show', show_instance,
                            'Show the VFs and migration of an instance.')
    parser.add_argument('uuid', help='Instance UUID.')
    parser = cli.add_action(
        actions, 'release', release_instance, destructive=True,
        help='Free every VF of an instance (e.g. after it was deleted '
             'while vfpool was unreachable).')
    parser.add_argument('uuid', help='Instance UUID.')
    parser.add_argument('--host', dest='host_name', metavar='HOST',
                        help='Only its VFs on this host.')
