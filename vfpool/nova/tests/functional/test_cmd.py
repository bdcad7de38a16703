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

"""``vfpool-nova-compute``: Nova's nova-compute that can load the driver."""

import os
import subprocess
import sys

from nova import version
import testtools

from vfpool.nova import virt_alias

_PROBE = '''
from oslo_utils import importutils
from vfpool.nova import virt_alias
name = 'nova.virt.' + virt_alias.COMPUTE_DRIVER
try:
    importutils.import_class(name)
except ImportError:
    print('not loadable')
virt_alias.install()
print(importutils.import_class(name).__module__)
'''


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ,
                                   OS_NOVA_DISABLE_EVENTLET_PATCHING='True'))


class TestConsoleScript(testtools.TestCase):

    def test_it_is_nova_compute(self):
        script = os.path.join(os.path.dirname(sys.executable),
                              'vfpool-nova-compute')
        result = _run(script, '--version')
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual(version.version_string(), result.stdout.strip())

    def test_the_driver_loads_as_nova_loads_drivers_only_once_installed(self):
        # nova.virt.driver.load_compute_driver imports 'nova.virt.' +
        # compute_driver, nothing else.
        result = _run(sys.executable, '-c', _PROBE)
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual(['not loadable', 'vfpool.nova.driver'],
                         result.stdout.splitlines())
        self.assertEqual('vfpool.VfpoolLibvirtDriver',
                         virt_alias.COMPUTE_DRIVER)
