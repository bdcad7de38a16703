"""Small helpers shared by the server and its clients."""

import datetime
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

    The server's ``complete(reclaim=True)`` and the compute plugin's
    fallback for servers older than RPC 1.2 use the same one, so that
    either answers a retry of the other the same way.
    """
    return 'reclaim-%s' % migration_uuid
