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

"""What every vfpool-manage command shares: exit codes, output, prompts.

Results go to stdout, as a table for people or as JSON for scripts
(``--format json``: stdout then holds that one JSON document and nothing
else).  Plans, prompts and errors go to stderr.
"""

import argparse
import contextlib
import json
import logging
import sys
from typing import Any, Callable

from oslo_config import cfg
import prettytable

from vfpool import context as vfpool_context
from vfpool.db import api as db_api
from vfpool.db import migration
from vfpool import exception
from vfpool import notifications

#: Exit codes, documented in doc/source/admin/cli.rst.
EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_CONFLICT = 3
EXIT_CANNOT_RUN = 4


class CommandError(Exception):
    """A one-line message for stderr and the exit code that goes with it."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def exit_code(exc: exception.VfpoolException) -> int:
    if isinstance(exc, exception.InvalidInput):
        return EXIT_USAGE
    if isinstance(exc, (exception.NotFound, exception.Conflict,
                        exception.NoAvailableVF)):
        return EXIT_CONFLICT
    return EXIT_PROBLEMS


def _usage_error(parser: argparse.ArgumentParser, message: str):
    print('%s: error: %s (see --help)' % (parser.prog, message),
          file=sys.stderr)
    sys.exit(EXIT_USAGE)


def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Make a usage error one line on stderr (and exit 2), not a page."""
    parser.error = (  # type: ignore[method-assign]
        lambda message: _usage_error(parser, message))


class Parser(argparse.ArgumentParser):
    """An action's parser, whose usage errors are one line."""

    def error(self, message):
        _usage_error(self, message)


def add_category(subparsers, name: str, help: str):
    """A category parser (``host``, ``vf``...) and its actions' parsers."""
    parser = subparsers.add_parser(name, help=help, description=help)
    one_line_errors(parser)
    actions = parser.add_subparsers(dest='action', parser_class=Parser,
                                    metavar='<action>')
    actions.required = True
    return actions


def add_action(actions, name: str, func: Callable[[cfg.ConfigOpts], int],
               help: str, destructive: bool = False, output: bool = True):
    parser = actions.add_parser(name, help=help, description=help)
    parser.set_defaults(func=func)
    if output:
        parser.add_argument(
            '--format', choices=('table', 'json'), default='table',
            help='table (for people, the default) or json (for scripts: '
                 'stdout holds one JSON document and nothing else).')
    if destructive:
        parser.add_argument(
            '--yes', action='store_true',
            help='Do not ask for confirmation (needed without a terminal).')
    return parser


def configure_db(conf: cfg.ConfigOpts, schema: bool = True) -> None:
    """Point the enginefacade at ``[database]``, unless already pointed.

    Connects within the command-line bound (``db_api.CLI_CONNECT_*``)
    and, with ``schema``, requires the schema at head, so that a missing
    driver, an unreachable or an un-synced database is one typed error
    (exit 4) before the command starts.  A started facade was already
    pointed somewhere by its owner (a test through
    ``db_api.use_connection``, or a tool embedding this code);
    configuring it again would raise, and would be wrong.
    """
    if not db_api.context_manager.is_started:
        with _quiet(_RETRY_LOGGER):
            db_api.configure(conf, cli=True)
    if schema:
        migration.require_head()


#: Logs "SQL connection failed. N attempts left." on each retry; the
#: one-line error after the last attempt says it all.
_RETRY_LOGGER = 'oslo_db.sqlalchemy.engines'


@contextlib.contextmanager
def _quiet(name: str, level: int = logging.ERROR):
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


def admin_context() -> vfpool_context.RequestContext:
    return vfpool_context.get_admin_context()


def check(validate: Callable[[str, Any], Any], field: str, value: Any):
    """Run a :mod:`vfpool.validation` check on a command-line value.

    Its ``InvalidInput`` is turned into exit code 2 by ``main``.
    """
    return None if value is None else validate(field, value)


def cell(value: Any) -> str:
    if value is None:
        return '-'
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    return str(value)


def table(columns: list[str], rows: list[list]) -> prettytable.PrettyTable:
    result = prettytable.PrettyTable(columns)
    result.align = 'l'
    for row in rows:
        result.add_row([cell(value) for value in row])
    return result


def properties(data: dict, keys: list[str] | None = None
               ) -> prettytable.PrettyTable:
    return table(['Property', 'Value'],
                 [[key, data[key]] for key in (keys or sorted(data))])


def show(conf: cfg.ConfigOpts, data: Any, *tables) -> None:
    """Print ``data`` as JSON, or ``tables`` (or lines) for people."""
    if conf.command.format == 'json':
        print(json.dumps(data, indent=2, sort_keys=True))
        return
    for item in tables:
        print(item)


def note(message: str) -> None:
    print(message, file=sys.stderr)


def confirm(conf: cfg.ConfigOpts, plan: list[str]) -> None:
    """Say what is about to change, then ask, unless ``--yes``.

    Without ``--yes`` and without a terminal to ask on, refuse: a script
    must say explicitly that it wants the change.
    """
    for line in plan:
        note(line)
    if conf.command.yes:
        return
    if not sys.stdin.isatty():
        raise CommandError('not confirmed: stdin is not a terminal; pass '
                           '--yes to proceed without a prompt', EXIT_USAGE)
    sys.stderr.write('Proceed? [y/N] ')
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer not in ('y', 'yes'):
        raise CommandError('not confirmed; nothing was changed', EXIT_USAGE)


#: Connection retries for one notification from vfpool-manage: a few
#: seconds with an unreachable broker, not oslo.messaging's forever.
NOTIFY_RETRIES = 2


#: oslo.messaging's notification drivers log a failed send (with a
#: traceback and the payload) instead of raising it.
_NOTIFY_LOGGER = 'oslo_messaging.notify'


class _Failures(logging.Handler):
    """Keeps the reasons a notification could not be sent."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        self.reasons.append(str(error or record.getMessage()))


class _Notifier(notifications.Notifier):
    """A notification that cannot be sent is one warning line."""

    def emit(self, context, event_type: str, **data) -> None:
        failures = _Failures()
        logger = logging.getLogger(_NOTIFY_LOGGER)
        logger.addHandler(failures)
        propagate, logger.propagate = logger.propagate, False
        try:
            # oslo.log names oslo.messaging's driver loggers with a dot.
            with _quiet('oslo.messaging._drivers', logging.CRITICAL):
                self.send(context, event_type, **data)
        except Exception as exc:
            failures.reasons.append(str(exc))
        finally:
            logger.removeHandler(failures)
            logger.propagate = propagate
        if failures.reasons:
            note('vfpool-manage: warning: the change is made, but the '
                 'notification %s was not sent: %s'
                 % (event_type, failures.reasons[-1]))


def notifier(conf: cfg.ConfigOpts) -> notifications.Notifier:
    """Tells notification consumers about changes, as the server would.

    A no-op unless ``[notifications] enabled``.  With the broker down,
    the change stands and stderr says which notification was lost.
    """
    return _Notifier(conf, publisher='vfpool-manage', retry=NOTIFY_RETRIES)
