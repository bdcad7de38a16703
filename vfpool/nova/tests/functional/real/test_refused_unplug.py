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

"""Scenario g: a guest that never answers the unplug of its VF.

The guest boots with ``acpiphp.disable=1``: its kernel ignores the ACPI
eject request, so libvirt's detach times out with no DEVICE_REMOVED.
vfpool must not migrate: Nova rolls the migration back, the guest keeps
its VF on the source (live and in its persistent definition), its claim
on the destination is freed and it keeps answering through the VF.
"""

import libvirt

from vfpool.db import models
from vfpool.nova.tests.functional.real import base


class RefusedUnplugTest(base.RealLibvirtTestBase):

    # Seconds, not the default's 15 s twice: nothing will answer.
    VFPOOL_OPTIONS = {'libvirt.device_detach_timeout': 3,
                      'libvirt.device_detach_attempts': 1}

    def test_g_refused_unplug_rolls_back_vf_kept(self):
        server, alloc = self.boot_with_vf('bond',
                                          kernel_args='acpiphp.disable=1')
        self.wait_guest_net(server, lambda net: net.startswith(
            'bond active=e1000e:'))

        # Nova's rollback through recover_method: migration "failed".
        server = self._live_migrate(server, 'failed')

        self.assertEqual(self.src, server['OS-EXT-SRV-ATTR:host'])
        self.assertFalse(self._on(self.dst, server))
        # The VF is still the guest's, on the source, live and persistent.
        [held] = self.vf_allocations(server)
        self.assertEqual((self.src, alloc['address'], alloc['mac']),
                         (held['host'], held['address'], held['mac']))
        self.assertNotIn(held['attach_state'],
                         (models.DETACHED, models.ATTACH_FAILED))
        self.assertIsNotNone(self.vf_interface(self.src, server,
                                               alloc['mac']))
        inactive = self.domain(self.src, server).XMLDesc(
            libvirt.VIR_DOMAIN_XML_INACTIVE)
        self.assertIn(alloc['mac'], inactive)
        # Nothing stays claimed on the destination.
        self.assertEqual({}, {a: row for a, row in
                              self.vf_rows(self.dst).items()
                              if row[0] != models.AVAILABLE})
        self.assertTrue(self.guest_net(server).startswith(
            'bond active=e1000e:'), self.guest_net(server))
        self.assertTrue(self.lab.answers(server['metadata'][base.ADDR_KEY],
                                         str(self.workdir)))
