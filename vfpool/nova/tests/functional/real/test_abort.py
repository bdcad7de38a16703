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

"""Scenario e: a running live migration aborted through Nova's API.

The migration is slowed to 1 MiB/s (``[libvirt]
live_migration_bandwidth``) so that it is still copying memory when the
test aborts it (``DELETE /servers/{id}/migrations/{id}``: Nova's real
``abortJob`` on the source).  vfpool had detached the VF by then: the
rollback plugs it back on the source, frees the destination's claim, and
the guest's bond goes back to it.  (Nova 34 in its threading mode then
reports the migration and the instance in ``error``: see the test.)
"""

import time

import libvirt

from vfpool.db import models
from vfpool.nova.tests.functional.real import base


class AbortTest(base.RealLibvirtTestBase):

    def wait_copying(self, server) -> dict:
        """The running migration, once QEMU is copying the guest."""
        deadline = time.monotonic() + base.WAIT_SECONDS
        dom = self.domain(self.src, server)
        while time.monotonic() < deadline:
            migration = self._wait_for_migration_status(server, ['running'])
            if dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE:
                return migration
            time.sleep(0.1)
        self.fail('the migration of %s never started copying' % server['id'])

    def wait_task_done(self, server):
        deadline = time.monotonic() + base.WAIT_SECONDS
        while time.monotonic() < deadline:
            server = self.admin_api.get_server(server['id'])
            if server['OS-EXT-STS:task_state'] is None:
                return server
            time.sleep(0.5)
        self.fail('%s still %s' % (server['id'],
                                   server['OS-EXT-STS:task_state']))

    def test_e_abort_running_migration_vf_back_on_source(self):
        server, alloc = self.boot_with_vf('bond')
        self.wait_guest_net(server, lambda net: net.startswith(
            'bond active=e1000e:'))
        mark = len(self.guest_net_lines(server))
        self.flags(live_migration_bandwidth=1, group='libvirt')
        self.admin_api.post_server_action(
            server['id'], {'os-migrateLive': {'host': self.dst,
                                              'block_migration': 'auto'}})
        migration = self.wait_copying(server)
        # vfpool detached the VF before Nova started the copy.
        self.assertIsNone(self.vf_interface(self.src, server, alloc['mac']))

        self.admin_api.api_delete('/servers/%s/migrations/%s'
                                  % (server['id'], migration['id']))

        # Nova's rollback marks the migration cancelled; in its threading
        # mode the migration thread's own error ("canceled by client")
        # then reaches _do_live_migration, which sets the migration and
        # the instance to error (stock Nova does the same: not vfpool's).
        self._wait_for_migration_status(server, ['cancelled', 'error'])
        server = self.wait_task_done(server)
        self.assertEqual(self.src, server['OS-EXT-SRV-ATTR:host'])
        [held] = self.vf_allocations(server)
        self.assertEqual((self.src, alloc['address'], alloc['mac']),
                         (held['host'], held['address'], held['mac']))
        self.assertEqual({}, {a: row for a, row in
                              self.vf_rows(self.dst).items()
                              if row[0] != models.AVAILABLE})
        self.assertIsNotNone(self.vf_interface(self.src, server,
                                               alloc['mac']))
        self.wait_guest_net(server, lambda net: net.startswith(
            'bond active=e1000e:') and 'virtio_net:' in net, after=mark)
        self.assert_answers_through_vf(server, alloc['mac'], self.src)
