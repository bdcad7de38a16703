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

"""Nova's own SR-IOV live-migration tests, on the vfpool driver.

The classes of ``nova/tests/functional/libvirt/test_pci_sriov_servers.py``
that live-migrate, with nothing changed but the compute driver (and the
vfpool-server the driver talks to): their test bodies are Nova's.  Only
their live-migration tests are loaded (:func:`load_tests`); the driver
must leave Nova's own SR-IOV (flavor PCI aliases, Neutron direct, direct
physical, VDPA and remote-managed ports) working as it does on
``LibvirtDriver``.  None of these servers has a vfpool VF, and vfpool
knows none of these hosts: every migration claims and settles through
vfpool-server all the same, and each test ends by checking that vfpool's
tables are exactly as before it (nothing recorded, nothing held).
"""

import re
import unittest

from nova.tests.functional.libvirt import test_pci_sriov_servers as nova

from vfpool.nova.tests.functional import base
from vfpool.tests import api_cases

#: Which of Nova's tests are the live-migration ones.
LIVE_MIGRATION = re.compile(r'\.test_[^.]*live_migrat[^.]*$')


class OnVfpool(base.VfpoolDriverMixin):

    def setUp(self):
        super().setUp()
        before = api_cases.table_dump(self.vfpool.engine)
        self.addCleanup(lambda: self.assertEqual(
            before, api_cases.table_dump(self.vfpool.engine)))


class SRIOVServersTest(OnVfpool, nova.SRIOVServersTest):
    pass


class VDPAServersTest(OnVfpool, nova.VDPAServersTest):
    pass


class PCIServersTest(OnVfpool, nova.PCIServersTest):
    pass


class RemoteManagedServersTest(OnVfpool, nova.RemoteManagedServersTest):
    pass


def load_tests(loader: unittest.TestLoader, standard_tests, pattern):
    """Only the live-migration tests of these classes."""
    suite = unittest.TestSuite()
    for cls in (SRIOVServersTest, VDPAServersTest, PCIServersTest,
                RemoteManagedServersTest):
        for test in loader.loadTestsFromTestCase(cls):
            if LIVE_MIGRATION.search(test.id()):
                suite.addTest(test)
    return suite
