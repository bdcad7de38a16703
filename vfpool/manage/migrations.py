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

"""``vfpool-manage migration``: migrations and their claims.

A ``moving`` migration whose lease lapsed is *stalled*: its guest may run
on either host, so no server ever frees anything of it; an operator who
knows where the guest runs finishes it here (``complete`` if it runs on
the destination, ``abort`` if it runs on the source).
"""

from oslo_config import cfg

from vfpool.manage import cli
from vfpool import notifications
from vfpool.objects import migration as migration_obj
from vfpool.objects import migration_view
from vfpool import states
from vfpool import validation as v

_LIST_COLUMNS = ['UUID', 'Instance', 'Source', 'Destination', 'State',
                 'Lease expires', 'Stalled', 'VFs (source -> destination)']


def _pairs(migration: dict) -> str:
    return '\n'.join('%s -> %s' % (pair['source']['address'],
                                   pair['dest']['address'])
                     for pair in migration['vfs'])


def _row(migration: dict) -> list:
    return [migration['uuid'], migration['instance_uuid'],
            migration['source_host'], migration['dest_host'],
            migration['state'], migration['lease_expires_at'],
            migration['stalled'], _pairs(migration)]


def list_migrations(conf: cfg.ConfigOpts) -> int:
    host = cli.check(v.name, 'host', conf.command.host_name)
    cli.configure_db(conf)
    migrations = migration_view.list_migrations(
        cli.admin_context(), state=conf.command.state, host=host,
        only_stalled=conf.command.stalled)
    cli.show(conf, migrations, cli.table(
        _LIST_COLUMNS, [_row(m) for m in migrations]))
    return cli.EXIT_OK


def _where(migration: dict) -> str:
    return 'instance %s (%s -> %s)' % (
        migration['instance_uuid'], migration['source_host'],
        migration['dest_host'])


def _moving_warning(migration: dict, runs_on: str) -> list[str]:
    if migration['state'] != states.MOVING:
        return []
    return ['The migration is moving: its VFs may have been detached '
            'already. Only do this if the guest runs on %s.'
            % migration[runs_on]]


def abort_migration(conf: cfg.ConfigOpts) -> int:
    migration_uuid = cli.check(v.uuid, 'uuid', conf.command.uuid)
    cli.configure_db(conf)
    context = cli.admin_context()
    migration = migration_view.get(context, migration_uuid)
    state = migration['state']
    result = {'migration_uuid': migration_uuid, 'freed': 0}
    if state == states.COMPLETED:
        raise cli.CommandError(
            'migration %s is completed; it cannot be aborted'
            % migration_uuid, cli.EXIT_CONFLICT)
    if state not in states.IN_FLIGHT:
        cli.note('Migration %s is already %s; nothing to do.'
                 % (migration_uuid, state))
        cli.show(conf, result, 'Freed 0 claim(s).')
        return cli.EXIT_OK
    cli.confirm(conf, [
        'Abort migration %s of %s: free its %d destination claim(s); the '
        'source allocations stay. A compute host still migrating this '
        'instance will fail to complete it.'
        % (migration_uuid, _where(migration), len(migration['vfs']))]
        + _moving_warning(migration, 'source_host'))
    result['freed'] = migration_obj.abort(context, migration_uuid)
    cli.notifier(conf).emit(context, notifications.MIGRATION_ABORT, **result)
    cli.show(conf, result, 'Freed %d claim(s).' % result['freed'])
    return cli.EXIT_OK


def complete_migration(conf: cfg.ConfigOpts) -> int:
    migration_uuid = cli.check(v.uuid, 'uuid', conf.command.uuid)
    reclaim = conf.command.reclaim
    cli.configure_db(conf)
    context = cli.admin_context()
    migration = migration_view.get(context, migration_uuid)
    if migration['state'] == states.ABORTED:
        raise cli.CommandError(
            'migration %s is aborted; it cannot be completed'
            % migration_uuid, cli.EXIT_CONFLICT)
    if migration['state'] == states.COMPLETED:
        cli.note('Migration %s is already completed; nothing to do.'
                 % migration_uuid)
    else:
        cli.confirm(conf, [
            'Complete migration %s of %s: its %d destination VF(s) become '
            'the allocations of the instance and its VFs on %s are freed.'
            % (migration_uuid, _where(migration), len(migration['vfs']),
               migration['source_host'])]
            + _moving_warning(migration, 'dest_host')
            + (['The lease expired: VFs taken since are replaced by '
                'equivalent free ones where there are any.']
               if reclaim and migration['state'] == states.EXPIRED else []))
    allocations = migration_obj.complete(context, migration_uuid,
                                         reclaim=reclaim)
    result = {'migration_uuid': migration_uuid, 'allocations': allocations}
    if migration['state'] != states.COMPLETED:
        cli.notifier(conf).emit(context, notifications.MIGRATION_COMPLETE,
                                **result)
    cli.show(conf, result, cli.table(
        ['Destination VF', 'MAC', 'VLAN'],
        [[a['address'], a['mac'], a['vlan']] for a in allocations]))
    return cli.EXIT_OK


def add_parsers(subparsers) -> None:
    actions = cli.add_category(subparsers, 'migration',
                               'Live migrations and their leases.')
    parser = cli.add_action(actions, 'list', list_migrations,
                            'List migrations, oldest first.')
    parser.add_argument('--state', choices=states.MIGRATION_STATES,
                        help='Only migrations in this state.')
    parser.add_argument('--host', dest='host_name', metavar='HOST',
                        help='Only migrations from or to this host.')
    parser.add_argument('--stalled', action='store_true',
                        help='Only stalled migrations: moving, with a '
                             'lease that lapsed. Nothing frees them; '
                             'complete or abort each one.')
    parser = cli.add_action(
        actions, 'abort', abort_migration, destructive=True,
        help='Abort a migration in flight: free its destination claims.')
    parser.add_argument('uuid', help='Migration UUID.')
    parser = cli.add_action(
        actions, 'complete', complete_migration, destructive=True,
        help='Complete a migration whose guest runs on the destination: '
             'its claims become allocations, its source VFs are freed.')
    parser.add_argument('uuid', help='Migration UUID.')
    parser.add_argument('--reclaim', action='store_true',
                        help='After a lapsed lease, stand in an equivalent '
                             'free VF for each destination VF taken '
                             'since, instead of refusing.')
