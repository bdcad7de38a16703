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

"""vfpool inside Nova: a libvirt compute driver and its command.

Needs Nova (the ``nova`` extra: ``pip install '.[nova]'`` in a checkout);
vfpool's servers and agents never import this package.
:mod:`vfpool.nova.driver` is the driver, :mod:`vfpool.nova.cmd` the
``vfpool-nova-compute`` program that makes it loadable,
:mod:`vfpool.nova.config` how it reads vfpool's configuration.
"""
