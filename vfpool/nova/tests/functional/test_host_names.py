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

"""Nova's and vfpool's names of a host must agree (issue 20, 8).

The driver speaks for Nova's ``host``; vfpool-agent reports under
vfpool's ``[DEFAULT] host``, by default ``gethostname()``.  The computes
here are named unlike this machine and their vfpool file sets no host,
so the driver asks vfpool-server which name it knows.
"""

import socket

from nova import exception as nova_exception

from vfpool.nova.tests.functional import test_live_migration as lm


class TestHostNames(lm.VfpoolLiveMigrationBase):

    # The name of this machine is reported: no other test may see it.
    PRIVATE_VFPOOL = True

    def setUp(self):
        super().setUp()
        self.agent_name = socket.gethostname()
        self.nova_name = self.host_name('compute')
        self.assertNotEqual(self.agent_name, self.nova_name)

    def test_refuses_to_start_when_vfpool_knows_only_its_own_name(self):
        self.vfpool.client.report_inventory(None, self.agent_name, [])

        exc = self.assertRaises(nova_exception.InvalidConfiguration,
                                self.start_vfpool_compute, 'compute',
                                report=False)

        self.assertIn('knows this host as %s' % self.agent_name, str(exc))
        self.assertIn('but not as %s' % self.nova_name, str(exc))

    def test_starts_when_vfpool_knows_nova_s_name(self):
        self.vfpool.client.report_inventory(None, self.agent_name, [])
        self.vfpool.client.report_inventory(None, self.nova_name, [])

        self.start_vfpool_compute('compute', report=False)

        self.assertNotIn('vfpool-agent would report',
                         self.stdlog.logger.output)

    def test_warns_when_vfpool_knows_neither_yet(self):
        self.start_vfpool_compute('compute', report=False)

        self.assertIn('Nova calls this host %s but vfpool-agent would '
                      'report it as %s' % (self.nova_name, self.agent_name),
                      self.stdlog.logger.output)
