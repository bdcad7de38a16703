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
