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

"""vfpool's driver in Nova's functional framework (``tox -e nova-functional``).

Nova's functional package comes first: it decides between eventlet and
native threads (``OS_NOVA_DISABLE_EVENTLET_PATCHING=True``, the threading
mode of Nova 34's nova-compute) and forbids eventlet, before anything
here imports futurist, which would import eventlet.
"""

import nova.tests.functional  # noqa: F401
