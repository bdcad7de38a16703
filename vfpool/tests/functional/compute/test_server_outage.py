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

"""vfpool-server unreachable at the post-migration hooks (issue 9 item 6).

The harness of test_migration (real QEMU guests really live-migrated
between two libvirtd, a real vfpool-server process on RabbitMQ); here
the server process is stopped after the guest moved and before the
post-migration hooks run.  The hooks must still plug the destination VF
(same MAC) from what the plugin remembers, leave the completion to the
background settler, and the settler must complete once the server is
back, or give up after ``[migration] settle_max_time`` and leave a
stalled migration that ``vfpool-manage migration complete`` finishes.
"""

import json
import subprocess
import sys
import threading
import time

from vfpool.compute import plugin as vf_plugin
from vfpool.compute import vf_xml
from vfpool import context as vfpool_context
from vfpool.objects import admin
from vfpool import rpcapi
from vfpool.tests.functional.compute import test_migration
from vfpool.tests.functional import libvirt_hosts

#: How long a plugin waits for one answer: an unreachable server costs
#: seconds, not rpc_response_timeout's minute.
RPC_TIMEOUT = 2


def plugin_threads(migration_uuid: str) -> list:
    """The renewer and settler threads of a migration still running."""
    return [t.name for t in threading.enumerate() if t.is_alive() and
            t.name in ('vfpool-renew-' + migration_uuid,
                       'vfpool-settle-' + migration_uuid)]


class ServerOutageTestCase(test_migration.MigrationTestCase):

    #: Short enough for a migration to be seen stalled within a test.
    stack_options = {'pool.lease_seconds': 6}

    def setUp(self) -> None:
        super().setUp()
        self.override(migration={'complete_timeout': 1,
                                 'settle_initial_delay': 0.5,
                                 'settle_max_delay': 2})
        self.server = self.stack.procs[0]
        # Whatever a test did, the next one finds the server running.
        self.addCleanup(self.server_back)

    def plugin(self, host: libvirt_hosts.LibvirtHost,
               builder: vf_xml.VFXMLBuilder = vf_xml.emulated_interface_xml
               ) -> vf_plugin.VFMigrationPlugin:
        client = rpcapi.VfpoolAPI(self.conf, transport=self.client.transport,
                                  timeout=RPC_TIMEOUT)
        plugin = vf_plugin.VFMigrationPlugin(
            self.conf, host.name, client=client, xml_builder=builder,
            registry=self.registry, rpc_attempts=1)
        self.addCleanup(plugin.close)
        return plugin

    def server_down(self) -> None:
        self.server.kill()

    def server_back(self) -> None:
        if not self.server.alive():
            self.server.start()
            self.stack.wait_ready()

    def wait_for(self, what, timeout: float, message):
        """``what()`` once true; ``message`` (or its call) if it never is."""
        deadline = time.monotonic() + timeout
        while True:
            value = what()
            if value or time.monotonic() > deadline:
                self.assertTrue(value, message() if callable(message)
                                else message)
                return value
            time.sleep(0.2)

    def migration_row(self) -> dict:
        return self.client.get_instance(None, self.instance)['migration']

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, '-c', 'import sys; from vfpool.cmd import '
             'manage; sys.exit(manage.main())',
             '--config-file', self.stack.config_file] + list(args),
            capture_output=True, text=True, timeout=60)
        self.assertEqual(0, result.returncode,
                         'stdout: %s\nstderr: %s' % (result.stdout,
                                                     result.stderr))
        return result.stdout

    def hooks_without_server(self) -> tuple:
        """Migrate, stop the server, run both post hooks; what they knew."""
        alloc, pair, moved = self.migrated_guest()
        dest_addr = pair['dest']['address']
        self.server_down()

        started = time.monotonic()
        result = self.dst_plugin.post_live_migration_at_destination(
            None, self.instance, self.migration, moved)
        self.assertEqual([], self.src_plugin.post_live_migration(
            None, self.instance, self.migration))
        self.elapsed('hooks-without-server', started)

        # The guest has its VF, with its MAC, before vfpool knows.
        self.assertEqual([(dest_addr, 'attached')],
                         [(r['address'], r['attach_state']) for r in result])
        self.assertEqual('ua-vf-' + self.mac.replace(':', ''),
                         self.vf_interface(moved).alias)
        self.hosts.wait_guest_nic(moved, self.mac)
        # Nothing changed in vfpool: both sides held.
        self.assertEqual(('claimed', self.instance, self.migration),
                         self.row(self.dst, dest_addr))
        self.assertEqual(('allocated', self.instance, self.migration),
                         self.row(self.src, alloc['address']))
        return alloc, dest_addr, moved

    def assert_settled(self, alloc: dict, dest_addr: str) -> None:
        self.assert_source_freed(alloc)
        self.assertEqual(('allocated', self.instance, None),
                         self.row(self.dst, dest_addr))
        self.assertEqual([], admin.leaks(vfpool_context.get_admin_context()))


class TestServerOutage(ServerOutageTestCase):

    def test_server_back_within_the_bound(self):
        self.override(migration={'settle_max_time': 120})
        alloc, dest_addr, moved = self.hooks_without_server()
        time.sleep(2)
        self.server_back()

        self.wait_for(lambda: not plugin_threads(self.migration), 60,
                      lambda: 'the settlers and renewers did not end: %s'
                      % plugin_threads(self.migration))
        self.assertEqual('completed', self.migration_row()['state'])
        self.assert_settled(alloc, dest_addr)
        self.assertIsNotNone(self.vf_interface(moved))
        self.hosts.wait_guest_nic(moved, self.mac)

    def test_server_back_after_the_bound(self):
        self.override(migration={'settle_max_time': 3})
        alloc, dest_addr, moved = self.hooks_without_server()
        self.wait_for(lambda: not plugin_threads(self.migration), 60,
                      lambda: 'the settlers did not give up: %s'
                      % plugin_threads(self.migration))
        # Their last calls expire in the queue (RabbitMQ drops a call
        # after its timeout): the server finds none of them.
        time.sleep(RPC_TIMEOUT + 1)
        self.server_back()
        # Still moving; stalled once the lease lapses (the renewers ended
        # with the settlers).
        self.assertEqual('moving', self.migration_row()['state'])
        self.assertEqual(('allocated', self.instance, self.migration),
                         self.row(self.src, alloc['address']))
        lease = self.conf.pool.lease_seconds
        stalled = self.wait_for(
            lambda: json.loads(self.manage('migration', 'list', '--stalled',
                                           '--format', 'json')),
            lease + 10, 'the migration is not listed as stalled')
        self.assertEqual([self.migration], [m['uuid'] for m in stalled])

        self.manage('migration', 'complete', self.migration, '--yes')

        self.assert_settled(alloc, dest_addr)
        self.assertEqual([], json.loads(self.manage(
            'migration', 'list', '--stalled', '--format', 'json')))
        self.assertIsNotNone(self.vf_interface(moved))
