"""vfpool's driver in Nova's functional framework (``tox -e nova-functional``).

Nova's functional package comes first: it decides between eventlet and
native threads (``OS_NOVA_DISABLE_EVENTLET_PATCHING=True``, the threading
mode of Nova 34's nova-compute) and forbids eventlet, before anything
here imports futurist, which would import eventlet.
"""

import nova.tests.functional  # noqa: F401
