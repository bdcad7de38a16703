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

"""The names of every state vfpool records, and nothing else.

One home, importable without SQLAlchemy: the compute plugin, the Nova
driver and the configuration read them as the server writes them.  What
each means and how one becomes another is
doc/source/contributor/state-machine.rst, held to
``vfpool.objects.vf.TRANSITIONS`` and
``vfpool.objects.migration.TRANSITIONS`` by
vfpool/tests/unit/test_state_machine.py.
"""

# VF states (doc/source/admin/operations.rst, "How vfpool holds VFs").
AVAILABLE = 'available'
CLAIMED = 'claimed'
ALLOCATED = 'allocated'
RESERVED = 'reserved'
MISSING = 'missing'
VF_STATES = (AVAILABLE, CLAIMED, ALLOCATED, RESERVED, MISSING)

# Migration states.
IN_PROGRESS = 'in_progress'
MOVING = 'moving'
COMPLETED = 'completed'
ABORTED = 'aborted'
EXPIRED = 'expired'
MIGRATION_STATES = (IN_PROGRESS, MOVING, COMPLETED, ABORTED, EXPIRED)
#: The states of a migration in flight: its claims and marks are held.
IN_FLIGHT = (IN_PROGRESS, MOVING)

# Whether an allocated VF is really plugged into its guest, as the compute
# plugin last recorded it (NULL: never reported).
ATTACHED = 'attached'
DETACHED = 'detached'
ATTACH_FAILED = 'failed'
ATTACH_STATES = (ATTACHED, DETACHED, ATTACH_FAILED)

# [migration] reattach_failure_policy: what the compute plugin does when
# a VF cannot be attached on the destination after the guest moved.
RETRY = 'retry'
SWAP = 'swap'
DEGRADE = 'degrade'
ERROR = 'error'
REATTACH_POLICIES = (RETRY, SWAP, DEGRADE, ERROR)
