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

"""Nova's functional framework with the vfpool driver and a real vfpool.

Everything of Nova runs in the test process as Nova's own functional tests
run it (API, conductor, scheduler, placement, computes on fakelibvirt);
vfpool is real and out of process: ``vfpool-server`` processes on a
scratch SQLite database and a private RabbitMQ topic
(:class:`vfpool.tests.functional.base.ServiceStack`).  Each compute runs
:class:`vfpool.nova.driver.VfpoolLibvirtDriver`, loaded by Nova through
``compute_driver`` as ``vfpool-nova-compute`` makes possible, and reads a
vfpool configuration file of the test through ``[vfpool] config_file``.

Starting and stopping the servers costs seconds, so the tests of one test
process share them (:func:`shared_stack`, stopped when the process exits);
a class whose tests break them (kill them) sets ``PRIVATE_VFPOOL``.  Tests
that share servers use host names of their own
(:meth:`VfpoolDriverMixin.host_name`), so one test's inventory is never
another's, and a configuration file of their own for the computes.
"""

import atexit
import configparser
import os
import uuid

import fixtures

from vfpool.nova import config as vf_config
from vfpool.nova.tests.functional import fakelibvirt_gaps
from vfpool.nova import virt_alias
from vfpool.tests.functional import base as vf_base

#: What the computes' vfpool configuration adds to the servers' file: fast
#: detach, no retry delay, and short RPC timeouts so that an unreachable
#: server costs seconds.
DRIVER_OPTIONS = {
    'libvirt.device_detach_timeout': 1,
    'libvirt.device_detach_attempts': 1,
    'migration.reattach_retry_delay': 0,
    'rpc_response_timeout': 3,
}


def driver_config(server_config: str, path: str, options: dict) -> str:
    """The servers' configuration file plus the computes' ``options``."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(server_config)
    defaults = dict(parser.defaults())
    sections = {'DEFAULT': defaults}
    for name in parser.sections():
        sections[name] = {key: value for key, value in
                          parser.items(name, raw=True)
                          if defaults.get(key) != value}
    for key, value in options.items():
        group, _, name = key.rpartition('.')
        sections.setdefault(group or 'DEFAULT', {})[name] = value
    return vf_base.write_config(path, sections)


_shared: vf_base.ServiceStack | None = None


def shared_stack() -> vf_base.ServiceStack:
    """The vfpool-server processes of this test process, started once."""
    global _shared
    if _shared is None:
        stack = vf_base.ServiceStack()
        stack.setUp()
        atexit.register(stack.cleanUp)
        _shared = stack
    return _shared


class VfpoolDriverMixin:
    """Put before a ``nova.tests.functional.libvirt.base.ServersTestBase``.

    Switches the compute driver to vfpool's and gives the computes a real
    vfpool to talk to; nothing else of the Nova test changes.
    ``VFPOOL_OPTIONS`` adds to the computes' vfpool configuration
    (``group.name`` keys).
    """

    VFPOOL_OPTIONS: dict = {}
    PRIVATE_VFPOOL = False

    def setUp(self):
        self.vfpool = (self.useFixture(vf_base.ServiceStack())
                       if self.PRIVATE_VFPOOL else shared_stack())
        self.tag = uuid.uuid4().hex[:6]
        tmp = self.useFixture(fixtures.TempDir()).path
        self.vfpool_config = driver_config(
            self.vfpool.config_file, os.path.join(tmp, 'vfpool.conf'),
            dict(DRIVER_OPTIONS, **self.VFPOOL_OPTIONS))
        virt_alias.install()
        self.useFixture(fakelibvirt_gaps.FakeLibvirtModule())
        super().setUp()
        self.flags(config_file=self.vfpool_config, group='vfpool')

    def host_name(self, name: str) -> str:
        """A host name no other test of the shared servers uses."""
        return '%s-%s' % (name, self.tag)

    def vfpool_conf(self):
        """The computes' vfpool configuration, as the driver reads it."""
        return vf_config.load(self.vfpool_config)

    def _setup_compute_service(self):
        # The one change to Nova's tests: which driver the computes load.
        self.flags(compute_driver=virt_alias.COMPUTE_DRIVER)

    def start_service(self, name, *args, **kwargs):
        service = super().start_service(name, *args, **kwargs)
        # Close the driver's vfpool transport before Nova's fixture stops
        # the service: its cleanup_host then runs in a thread the fixture
        # does not wait for, and a slow one races with the fixture's
        # restoring of thread_pool_factory.shutdown_all_executors (the
        # real one then shuts the process's executors for every later
        # test).  A benchmark also starts computes on the stock driver.
        driver = getattr(service.manager, 'driver', None)
        cleanup = getattr(driver, 'cleanup_vfpool', None)
        if cleanup is not None:
            self.addCleanup(cleanup)
        return service
