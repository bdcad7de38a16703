"""``python tools/bench [options]`` (see the package's docstring), or
``python tools/bench plugin [options]``: the plugin family alone."""

import os
import sys

_TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (os.path.dirname(_TOOLS), _TOOLS):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from bench import cli  # noqa: E402
from bench import plugin  # noqa: E402

if __name__ == '__main__':
    if sys.argv[1:2] == ['plugin']:
        sys.exit(plugin.main(sys.argv[2:]))
    sys.exit(cli.main())
