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

from vfpool import config
from vfpool.server import service

LOG = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    conf = config.parse_args(sys.argv[1:] if argv is None else argv)
    conf.log_opt_values(LOG, logging.DEBUG)
    launcher = service.launch(conf)
    launcher.wait()
