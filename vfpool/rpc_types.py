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

"""The shapes of the RPC results (doc/source/reference/rpc-api.rst).

One definition for the client (:mod:`vfpool.rpcapi`), the server
(:mod:`vfpool.server.manager`) and the objects that build the answers,
so the type checker (``tox -e mypy``) holds all three to the contract.
They are plain dicts on the wire: adding a key is a minor RPC version.
"""

import typing


class Allocation(typing.TypedDict):
    """A VF held for an instance."""

    address: str
    pf_address: str
    physical_network: str
    vendor_id: str
    product_id: str
    numa_node: int | None
    mac: str | None
    vlan: int | None
    port_id: str | None


class AttachStateAllocation(Allocation):
    """``set_attach_state``'s answer: the allocation and what was recorded."""

    attach_state: str


class InstanceAllocation(Allocation):
    """An allocation as ``get_instance`` answers it."""

    host: str
    state: str
    attach_state: str | None


class MigrationPair(typing.TypedDict):
    """A source allocation and the destination VF claimed for it."""

    source: Allocation
    dest: Allocation


class Migration(typing.TypedDict):
    uuid: str
    instance_uuid: str
    source_host: str
    dest_host: str
    state: str
    lease_expires_at: str
    vfs: list[MigrationPair]


class Instance(typing.TypedDict):
    """``get_instance``: its allocations and its latest migration."""

    allocations: list[InstanceAllocation]
    migration: Migration | None


class InventoryCounts(typing.TypedDict):
    """``report_inventory``: what the snapshot changed."""

    added: int
    removed: int
    updated: int
    unchanged: int


def unchanged_counts(pfs: list[dict]) -> InventoryCounts:
    """What ``report_inventory`` answers for the snapshot it had."""
    return InventoryCounts(added=0, removed=0, updated=0,
                           unchanged=sum(len(pf['vfs']) for pf in pfs))


class Capacity(typing.TypedDict):
    """``get_capacity`` (1.3): whether each known host could take it all."""

    hosts: dict[str, bool]


class Ping(typing.TypedDict):
    host: str
    version: str
    # Which worker process answered (1.4); older servers leave it out.
    pid: typing.NotRequired[int]
