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

"""vfpool-manage: operator commands, as oslo.config sub-commands.

Like nova-manage, it talks to the database directly, so it works while
no vfpool-server runs.  Exit codes (doc/source/admin/cli.rst):

* 0 - done, or nothing was wrong;
* 1 - a check or the audit found problems (or a database statement
  failed);
* 2 - bad arguments, usage or configuration, including a refused
  confirmation;
* 3 - not found, or the change conflicts with the current state;
* 4 - cannot run: the database driver is missing, the database cannot
  be reached or its schema is not synced.

Every error is one line on stderr (vfpool/cmd/errors.py).
"""

import sys

from oslo_config import cfg
from oslo_db import exception as db_exc

from vfpool.cmd import errors
from vfpool import conf as vfpool_conf
from vfpool import config
from vfpool.db import migration
from vfpool import exception
from vfpool.manage import audit
from vfpool.manage import cli
from vfpool.manage import hosts
from vfpool.manage import instances
from vfpool.manage import migrations
from vfpool.manage import vfs


class DbCommands:
    def __init__(self, conf):
        self.conf = conf

    def sync(self) -> int:
        cli.configure_db(self.conf, schema=False)
        migration.upgrade(self.conf.command.version or 'head')
        print('Database is at revision %s' % migration.version())
        return cli.EXIT_OK

    def version(self) -> int:
        cli.configure_db(self.conf, schema=False)
        print(migration.version() or 'None')
        return cli.EXIT_OK


def _add_db_parsers(subparsers):
    parser = subparsers.add_parser('db', help='Database schema.')
    cli.one_line_errors(parser)
    db = parser.add_subparsers(dest='action', parser_class=cli.Parser)
    db.required = True
    sync = db.add_parser('sync', help='Upgrade the schema (to head).')
    sync.add_argument('version', nargs='?', help='Target revision.')
    sync.set_defaults(func=lambda c: DbCommands(c).sync())
    version = db.add_parser('version', help='Print the schema revision.')
    version.set_defaults(func=lambda c: DbCommands(c).version())


_PARSER_ADDERS = [_add_db_parsers, hosts.add_parsers, vfs.add_parsers,
                  migrations.add_parsers, instances.add_parsers,
                  audit.add_parsers]


def add_parsers(subparsers):
    for add in _PARSER_ADDERS:
        add(subparsers)


def _exit_code(exc: Exception) -> int:
    if isinstance(exc, (cfg.Error, exception.ConfigInvalid)):
        return cli.EXIT_USAGE
    if isinstance(exc, (exception.CannotRun, db_exc.DBConnectionError)):
        return cli.EXIT_CANNOT_RUN
    if isinstance(exc, exception.VfpoolException):
        return cli.exit_code(exc)
    return cli.EXIT_PROBLEMS


def _run(conf: cfg.ConfigOpts, argv: list[str]) -> int:
    try:
        config.parse_args(argv, conf=conf, setup_logging=False)
    except SystemExit as e:     # argparse: --help (0) or a usage error (2)
        return int(e.code or 0)
    try:
        return conf.command.func(conf)
    except cli.CommandError as e:
        print('vfpool-manage: %s' % e, file=sys.stderr)
        return e.code


def main(argv: list[str] | None = None) -> int:
    conf = vfpool_conf.new_conf()
    conf.register_cli_opt(cfg.SubCommandOpt(
        'command', title='Commands', handler=add_parsers,
        help='Available commands'))
    return errors.run(
        'vfpool-manage',
        lambda: _run(conf, sys.argv[1:] if argv is None else argv),
        _exit_code, conf)
