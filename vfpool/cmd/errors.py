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

"""The one place where vfpool's programs turn an error into one line.

A person running vfpool-manage or vfpool-status, or starting
vfpool-server or vfpool-agent, gets ``PROGRAM: what is wrong and what to
do`` on stderr and a documented exit status (doc/source/admin/cli.rst),
not a traceback.  An error this module does not know is a bug and keeps
its traceback.  ``VFPOOL_DEBUG=1`` in the environment (or ``--debug``,
once the command line is parsed) adds the traceback to known errors too.
"""

import os
import sys
import traceback
import typing

from oslo_config import cfg
from oslo_db import exception as db_exc

from vfpool.db import api as db_api
from vfpool import exception

#: Set to 1 to see the traceback behind a one-line error.
DEBUG_ENV = 'VFPOOL_DEBUG'


def one_line(exc: BaseException) -> str | None:
    """What to tell a person about ``exc``, or None if it is a bug."""
    if isinstance(exc, exception.VfpoolException):
        return str(exc)
    if isinstance(exc, cfg.Error):
        # A config file not found or unreadable, a required option unset.
        return 'bad configuration: %s' % str(exc).strip()
    if isinstance(exc, db_exc.DBConnectionError):
        return 'lost the database: %s' % db_api.reason(exc)
    if isinstance(exc, db_exc.DBError):
        return 'database error: %s' % db_api.reason(exc)
    return None


def _debugging(conf: cfg.ConfigOpts | None) -> bool:
    if os.environ.get(DEBUG_ENV, '') not in ('', '0'):
        return True
    try:
        return bool(conf is not None and conf.debug)
    except cfg.Error:
        # Not registered, or not parsed yet.
        return False


def run(program: str, func: typing.Callable[[], int],
        exit_code: typing.Callable[[Exception], int],
        conf: cfg.ConfigOpts | None = None) -> int:
    """``func()``, with known errors printed as one line and mapped.

    ``exit_code`` gives the status for a known error; unknown errors
    propagate with their traceback.
    """
    try:
        return func()
    except Exception as exc:
        message = one_line(exc)
        if message is None:
            raise
        if _debugging(conf):
            traceback.print_exc()
        print('%s: %s' % (program, message), file=sys.stderr)
        return exit_code(exc)
