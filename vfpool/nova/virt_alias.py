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
