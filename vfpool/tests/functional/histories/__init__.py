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

"""A history checker, Jepsen-style, against real vfpool-servers.

``generator`` makes seeded histories of Nova operations with the faults
they meet; ``clients`` run them as the compute plugin and the Nova
driver do, through ``vfpool.rpcapi.VfpoolAPI``; ``delivery`` is the
nemesis between those clients and the broker (late, repeated, reordered
messages, lost replies, a server killed while it works); ``system``
runs the servers and restarts their database; ``model`` is what the
guests have plugged; ``invariants`` checks it and the tables after each
history; ``shrink`` finds the shortest failing history; ``defects``
puts fixed defects back in a copy of the tree; ``cli`` is the runner
(``python -m vfpool.tests.functional.histories --help``).
"""
