"""``vfpool-manage migration``: migrations and their claims."""

from oslo_config import cfg

from vfpool.db import models
from vfpool.manage import cli
from vfpool.objects import migration as migration_obj
from vfpool import validation as v

_LIST_COLUMNS = ['UUID', 'Instance', 'Source', 'Destination', 'State',
                 'Lease expires', 'VFs (source -> destination)']


def _pairs(migration: dict) -> str:
    return '\n'.join('%s -> %s' % (pair['source']['address'],
                                   pair['dest']['address'])
                     for pair in migration['vfs'])


def _row(migration: dict) -> list:
    return [migration['uuid'], migration['instance_uuid'],
            migration['source_host'], migration['dest_host'],
            migration['state'], migration['lease_expires_at'],
            _pairs(migration)]


def list_migrations(conf: cfg.ConfigOpts) -> int:
    host = cli.check(v.name, 'host', conf.command.host_name)
    cli.configure_db(conf)
    migrations = migration_obj.list_migrations(
        cli.admin_context(), state=conf.command.state, host=host)
    cli.show(conf, migrations, cli.table(
        _LIST_COLUMNS, [_row(m) for m in migrations]))
    return cli.EXIT_OK


def abort_migration(conf: cfg.ConfigOpts) -> int:
    migration_uuid = cli.check(v.uuid, 'uuid', conf.command.uuid)
    cli.configure_db(conf)
    context = cli.admin_context()
    migration = migration_obj.get(context, migration_uuid)
    state = migration['state']
    result = {'migration_uuid': migration_uuid, 'freed': 0}
    if state == models.COMPLETED:
        raise cli.CommandError(
            'migration %s is completed; it cannot be aborted'
            % migration_uuid, cli.EXIT_CONFLICT)
    if state != models.IN_PROGRESS:
        cli.note('Migration %s is already %s; nothing to do.'
                 % (migration_uuid, state))
        cli.show(conf, result, 'Freed 0 claim(s).')
        return cli.EXIT_OK
    cli.confirm(conf, [
        'Abort migration %s of instance %s (%s -> %s): free its %d '
        'destination claim(s); the source allocations stay. A compute '
        'host still migrating this instance will fail to complete it.'
        % (migration_uuid, migration['instance_uuid'],
           migration['source_host'], migration['dest_host'],
           len(migration['vfs']))])
    result['freed'] = migration_obj.abort(context, migration_uuid)
    cli.notifier(conf).emit(context, 'vfpool.migration.abort', result)
    cli.show(conf, result, 'Freed %d claim(s).' % result['freed'])
    return cli.EXIT_OK


def add_parsers(subparsers) -> None:
    actions = cli.add_category(subparsers, 'migration',
                               'Live migrations and their leases.')
    parser = cli.add_action(actions, 'list', list_migrations,
                            'List migrations, oldest first.')
    parser.add_argument('--state', choices=models.MIGRATION_STATES,
                        help='Only migrations in this state.')
    parser.add_argument('--host', dest='host_name', metavar='HOST',
                        help='Only migrations from or to this host.')
    parser = cli.add_action(
        actions, 'abort', abort_migration, destructive=True,
        help='Abort a migration in progress: free its destination claims.')
    parser.add_argument('uuid', help='Migration UUID.')
