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

"""vfpool-server: the RPC service that owns the VF inventory."""

import sys

from oslo_log import log as logging

from vfpool.cmd import errors
from vfpool import config
from vfpool.db import api as db_api
from vfpool.db import migration
from vfpool.server import service

LOG = logging.getLogger(__name__)

#: The exit status when the server cannot start (one line on stderr).
EXIT_CANNOT_START = 1


def _serve(argv: list[str]) -> int:
    conf = config.parse_args(argv)
    conf.log_opt_values(LOG, logging.DEBUG)
    # Before any fork, so that a database this release cannot use stops
    # the server with one line and a status for the init system, rather
    # than workers that fail and are restarted forever.  The wait for a
    # database still starting is [database] max_retries x retry_interval.
    db_api.configure(conf)
    migration.require_head()
    # The check's connection must not be shared with the workers forked
    # next: each makes its own.
    db_api.get_engine().dispose()
    launcher = service.launch(conf)
    launcher.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    return errors.run('vfpool-server',
                      lambda: _serve(sys.argv[1:] if argv is None else argv),
                      lambda exc: EXIT_CANNOT_START)
