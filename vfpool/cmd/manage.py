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
* 1 - a check or the audit found problems (or the database failed);
* 2 - bad arguments or usage, including a refused confirmation;
* 3 - not found, or the change conflicts with the current state.
"""

import sys

from oslo_config import cfg
from oslo_db import exception as db_exc

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
        cli.configure_db(self.conf)
        migration.upgrade(self.conf.command.version or 'head')
        print('Database is at revision %s' % migration.version())
        return cli.EXIT_OK

    def version(self) -> int:
        cli.configure_db(self.conf)
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


def _fail(message: str, code: int) -> int:
    print('vfpool-manage: %s' % message, file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    conf = vfpool_conf.new_conf()
    conf.register_cli_opt(cfg.SubCommandOpt(
        'command', title='Commands', handler=add_parsers,
        help='Available commands'))
    try:
        config.parse_args(sys.argv[1:] if argv is None else argv,
                          conf=conf, setup_logging=False)
    except SystemExit as e:     # argparse: --help (0) or a usage error (2)
        return int(e.code or 0)
    except cfg.Error as e:
        return _fail(str(e), cli.EXIT_USAGE)
    try:
        return conf.command.func(conf)
    except cli.CommandError as e:
        return _fail(str(e), e.code)
    except exception.VfpoolException as e:
        return _fail(str(e), cli.exit_code(e))
    except db_exc.DBError as e:
        return _fail('database error: %s' % e, cli.EXIT_PROBLEMS)
