"""vfpool-manage: operator commands, as oslo.config sub-commands."""

import sys

from oslo_config import cfg

from vfpool import config
from vfpool import conf as vfpool_conf
from vfpool.db import api as db_api
from vfpool.db import migration


class DbCommands:
    def __init__(self, conf):
        self.conf = conf

    def sync(self) -> int:
        db_api.configure(self.conf)
        migration.upgrade(self.conf.command.version or 'head')
        print('Database is at revision %s' % migration.version())
        return 0

    def version(self) -> int:
        db_api.configure(self.conf)
        print(migration.version() or 'None')
        return 0


def _add_db_parsers(subparsers):
    parser = subparsers.add_parser('db', help='Database schema.')
    db = parser.add_subparsers(dest='action')
    db.required = True
    sync = db.add_parser('sync', help='Upgrade the schema (to head).')
    sync.add_argument('version', nargs='?', help='Target revision.')
    sync.set_defaults(func=lambda c: DbCommands(c).sync())
    version = db.add_parser('version', help='Print the schema revision.')
    version.set_defaults(func=lambda c: DbCommands(c).version())


_PARSER_ADDERS = [_add_db_parsers]


def add_parsers(subparsers):
    for add in _PARSER_ADDERS:
        add(subparsers)


def main(argv: list[str] | None = None) -> int:
    conf = vfpool_conf.new_conf()
    conf.register_cli_opt(cfg.SubCommandOpt(
        'command', title='Commands', handler=add_parsers,
        help='Available commands'))
    config.parse_args(sys.argv[1:] if argv is None else argv, conf=conf,
                      setup_logging=False)
    return conf.command.func(conf)
