"""``vfpool-nova-compute``: Nova's nova-compute with the vfpool driver.

The same program as ``nova-compute`` (same arguments, same nova.conf),
run by Nova's own ``nova.cmd.compute.main()``; the only difference is that
the vfpool driver is importable, so that nova.conf can say::

    [DEFAULT]
    compute_driver = vfpool.VfpoolLibvirtDriver

    [vfpool]
    config_file = /etc/vfpool/vfpool.conf
"""

import sys


def main() -> None:
    try:
        # First, as nova-compute does: it decides on eventlet or threads
        # before anything else is imported.
        from nova.cmd import compute
    except ImportError as exc:
        sys.exit('vfpool-nova-compute needs Nova: install vfpool[nova] '
                 '(%s)' % exc)

    from vfpool.nova import virt_alias

    virt_alias.install()
    compute.main()
