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
