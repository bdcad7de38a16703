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

"""Small helpers shared by the server and its clients."""

import datetime
import hashlib
import json
import typing


@typing.overload
def isotime(value: datetime.datetime) -> str:
    ...


@typing.overload
def isotime(value: None) -> None:
    ...


def isotime(value: datetime.datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, from the naive UTC times in the DB."""
    if value is None:
        return None
    return value.replace(tzinfo=None).isoformat() + 'Z'


def reclaim_request_id(migration_uuid: str) -> str:
    """The request id of VFs claimed anew for an expired migration.

    ``complete_migration(reclaim=True)`` allocates under it, so that a
    retry of the reclaim (from either host, or ``vfpool-manage``) gets
    the same VFs.  Compute plugins before issue 22 sent it with their own
    ``allocate`` when capped below RPC 1.2.
    """
    return 'reclaim-%s' % migration_uuid


def snapshot_digest(pfs: list) -> str:
    """SHA-256 of an inventory snapshot as the agent sends it (RPC 1.4).

    The agent sends it with every report and the server computes it again
    from the ``pfs`` it received: the server only skips the work of a
    report whose snapshot is byte for byte the one it last applied for
    that host, whatever the agent claims.
    """
    # default=repr: never raises; what is not JSON fails validation later.
    text = json.dumps(pfs, sort_keys=True, separators=(',', ':'),
                      default=repr)
    return hashlib.sha256(text.encode()).hexdigest()
