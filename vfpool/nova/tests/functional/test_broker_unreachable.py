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

"""vfpool's message broker unreachable: calls fail, none hangs (issue 20, 3).

The computes (or the scheduler) read a vfpool configuration whose
``transport_url`` names a closed local port, while Nova and the rest of
vfpool run as usual.  oslo.messaging's rabbit driver would retry that
connection forever; every call of the driver and the filter must instead
end with a typed error.  Nothing here measures time: a call that hangs
is caught by the test's own timeout (OS_TEST_TIMEOUT).
"""

import os
import socket

import fixtures
from nova.tests.functional.api import client

from vfpool.nova import scheduler
from vfpool.nova.tests.functional import base
from vfpool.nova.tests.functional import test_lifecycle as lc
from vfpool.nova.tests.functional import test_scheduler


class BrokerUnreachableMixin:

    def unreachable_config(self) -> str:
        """The computes' vfpool file, its broker a closed local port."""
        sock = socket.socket()
        # Bound, never listening: connections to it are refused, and no
        # other process can take the port during the test.
        sock.bind(('127.0.0.1', 0))
        self.addCleanup(sock.close)
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'unreachable.conf')
        return base.driver_config(
            self.vfpool.config_file, path,
            dict(base.DRIVER_OPTIONS, **self.VFPOOL_OPTIONS,
                 transport_url='rabbit://guest:guest@127.0.0.1:%d/'
                               % sock.getsockname()[1]))


class TestCompute(BrokerUnreachableMixin, lc.LifecycleBase):

    def test_vf_spawn_fails_saying_why_vfless_spawn_goes_on(self):
        self.flags(config_file=self.unreachable_config(), group='vfpool')
        host = self.start_vfpool_compute('host')

        server = self.boot(host, self.vf_flavor(), expected_state='ERROR')

        fault = self.api.get_server(server['id'])['fault']['message']
        self.assertIn("cannot reach vfpool's message broker", fault)
        self.assertEqual([], self.allocations(server))
        server = self.boot(host, self._create_flavor())
        self.assertEqual('ACTIVE', server['status'])

    def test_live_migration_pre_check_fails(self):
        src = self.start_vfpool_compute('src')
        server = self.boot(src, self.vf_flavor())
        before = self.allocations(server)
        self.flags(config_file=self.unreachable_config(), group='vfpool')
        dst = self.start_vfpool_compute('dst')

        # The only destination refused: Nova answers NoValidHost.
        exc = self.assertRaises(client.OpenStackApiException,
                                self._live_migrate, server, host=dst)

        self.assertIn('NoValidHost', str(exc))
        self._wait_for_migration_status(server, ['error'])
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual(src, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(before, self.allocations(server))
        self.assertIn("vfpool-server could not claim VFs on %s: cannot "
                      "reach vfpool's message broker" % dst,
                      self.stdlog.logger.output)


class TestFilter(BrokerUnreachableMixin, test_scheduler.SchedulerBase):

    def test_fails_closed(self):
        self.start_vfpool_compute('host')
        scheduler.VfpoolFilter.reset()
        self.flags(config_file=self.unreachable_config(), group='vfpool')

        server = self._create_server(flavor_id=self.vf_flavor(),
                                     networks='none', expected_state='ERROR')

        self.assertIn('No valid host', server['fault']['message'])
        self.assertIn('failing closed', self.stdlog.logger.output)
        self.assertIn("cannot reach vfpool's message broker",
                      self.stdlog.logger.output)
