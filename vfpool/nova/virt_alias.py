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

"""Make the driver importable as ``nova.virt.vfpool``.

``nova.virt.driver.load_compute_driver`` imports ``'nova.virt.' +
compute_driver`` and nothing else, so a driver that lives outside Nova's
tree must appear under ``nova.virt``.  :func:`install` puts
:mod:`vfpool.nova.driver` there under the name :data:`MODULE`, which makes
:data:`COMPUTE_DRIVER` a valid ``[DEFAULT] compute_driver``.
"""

import sys

MODULE = 'nova.virt.vfpool'
#: The ``[DEFAULT] compute_driver`` value of the vfpool driver.
COMPUTE_DRIVER = 'vfpool.VfpoolLibvirtDriver'


def install() -> None:
    """Idempotent; imports Nova's libvirt driver."""
    import nova.virt

    from vfpool.nova import driver

    sys.modules.setdefault(MODULE, driver)
    nova.virt.vfpool = sys.modules[MODULE]
