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
