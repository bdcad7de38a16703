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

"""``python tools/bench [options]`` (see the package's docstring), or
``python tools/bench plugin|load|capacity|guest-network [options]``: that
family alone."""

import os
import sys

_TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (os.path.dirname(_TOOLS), _TOOLS):
    if _path not in sys.path:
        sys.path.insert(0, _path)

if sys.argv[1:2] == ['guest-network']:
    # On Nova's real tier: Nova decides between eventlet and threads when
    # it is first imported, before anything (bench itself) imports eventlet.
    os.environ['OS_NOVA_DISABLE_EVENTLET_PATCHING'] = 'True'
    import vfpool.nova.tests.functional  # noqa: E402,F401
    from bench import guest_network  # noqa: E402,H306
    sys.exit(guest_network.main(sys.argv[2:]))

from bench import capacity  # noqa: E402
from bench import cli  # noqa: E402
from bench import load  # noqa: E402
from bench import plugin  # noqa: E402

#: Families that also run alone: ``python tools/bench <name> [options]``.
ALONE = {'plugin': plugin.main, 'load': load.main, 'capacity': capacity.main}

if __name__ == '__main__':
    if sys.argv[1:2] and sys.argv[1] in ALONE:
        sys.exit(ALONE[sys.argv[1]](sys.argv[2:]))
    sys.exit(cli.main())
