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

"""vfpool-server down spares the instances that hold no VF (issue 20, 2).

The instance's system metadata says whether it holds vfpool VFs
(``vfpool_holds``): a flavor without ``vfpool:vfs`` asks vfpool nothing
at spawn and leaves '0', after which nothing of its life asks vfpool; an
instance older than the key is looked up once, then remembered.  The
vfpool-server processes are killed (RabbitMQ stays up, so an RPC would
wait for its timeout); what the computes' clients send is recorded on the
real clients.
"""

from vfpool.nova.tests.functional import test_live_migration as lm


class VfpoolDownBase(lm.TwoComputesBase):

    # Its servers are killed: they are its own.
    PRIVATE_VFPOOL = True

    def setUp(self):
        super().setUp()
        self.sent = []
        for host in (self.src, self.dst):
            self.record_rpcs(host)

    def record_rpcs(self, host: str) -> None:
        """Record the methods the compute's vfpool client sends."""
        client = self.computes[host].driver.vfpool.client
        real = client._call

        def recorded(context, version, method, *args, **kwargs):
            self.sent.append((host, method))
            return real(context, version, method, *args, **kwargs)
        client._call = recorded

    def kill_servers(self) -> None:
        for proc in self.vfpool.procs:
            proc.kill()

    def boot_without_vfs(self, host: str):
        return self._create_server(flavor_id=self._create_flavor(),
                                   networks='none', host=host)


class TestVfpoolDown(VfpoolDownBase):

    def test_spawn_and_delete_ask_nothing(self):
        self.kill_servers()

        server = self.boot_without_vfs(self.src)

        self.assertEqual('ACTIVE', server['status'])
        self.assertEqual([], self.sent)
        self.assertEqual('0', self.holds(server))
        self._delete_server(server)
        self.assertEqual([], self.sent)

    def test_live_migration_is_not_refused(self):
        server = self.boot_without_vfs(self.src)
        self.kill_servers()

        server = self._live_migrate(server)

        self.assertEqual(self.dst, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual([], self.sent)


class TestInstanceOlderThanTheKey(VfpoolDownBase):

    def test_looked_up_once_then_remembered(self):
        server = self.boot_without_vfs(self.src)
        self.set_holds(server, None)

        server = self._live_migrate(server)

        self.assertEqual(self.dst, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual('0', self.holds(server))
        self.assertEqual(['get_instance'], [m for _h, m in self.sent])

        self.kill_servers()
        server = self._live_migrate(server)

        self.assertEqual(self.src, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(['get_instance'], [m for _h, m in self.sent])
