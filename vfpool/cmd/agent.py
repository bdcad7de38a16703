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

"""vfpool-agent: reports this host's SR-IOV VFs to vfpool-server."""

import sys

from oslo_log import log as logging

from vfpool.cmd import errors
from vfpool import config
from vfpool import libvirt_import

LOG = logging.getLogger(__name__)


#: The exit status when the agent cannot start (one line on stderr).
EXIT_CANNOT_START = 1


def _start(argv: list[str]) -> int:
    try:
        # The agent's modules need libvirt-python, an optional extra:
        # imported here so that its absence is a one-line error.
        from vfpool.agent import device_spec
        from vfpool.agent import reporter
    except libvirt_import.LibvirtMissing as exc:
        return libvirt_import.fail('vfpool-agent', exc)
    conf = config.parse_args(argv)
    conf.log_opt_values(LOG, logging.DEBUG)
    error = None
    try:
        agent = reporter.AgentService(conf)
    except device_spec.DeviceSpecError as exc:
        error = exc
    if error is not None:
        # Before any fork, so the exit status tells the init system.
        LOG.error('vfpool-agent cannot start: %s', error)
        return EXIT_CANNOT_START
    launcher = reporter.launch(conf, agent)
    return launcher.wait()


def main(argv: list[str] | None = None) -> int:
    return errors.run('vfpool-agent',
                      lambda: _start(sys.argv[1:] if argv is None else argv),
                      lambda exc: EXIT_CANNOT_START)
