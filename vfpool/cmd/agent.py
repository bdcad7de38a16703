"""vfpool-agent: reports this host's SR-IOV VFs to vfpool-server."""

import sys

from oslo_log import log as logging

from vfpool import config
from vfpool import libvirt_import

LOG = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    try:
        # The agent's modules need libvirt-python, an optional extra:
        # imported here so that its absence is a one-line error.
        from vfpool.agent import device_spec
        from vfpool.agent import reporter
    except libvirt_import.LibvirtMissing as exc:
        return libvirt_import.fail('vfpool-agent', exc)
    conf = config.parse_args(sys.argv[1:] if argv is None else argv)
    conf.log_opt_values(LOG, logging.DEBUG)
    error = None
    try:
        agent = reporter.AgentService(conf)
    except device_spec.DeviceSpecError as exc:
        error = exc
    if error is not None:
        # Before any fork, so the exit status tells the init system.
        LOG.error('vfpool-agent cannot start: %s', error)
        return 1
    launcher = reporter.launch(conf, agent)
    return launcher.wait()
