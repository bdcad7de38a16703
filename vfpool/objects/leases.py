"""The clock that leases are set and reaped by."""

import datetime

from oslo_utils import timeutils


def now():
    """The time a lease is compared with."""
    return timeutils.utcnow()


def expiry(lease_seconds: int):
    """The expiry of a lease of ``lease_seconds`` taken now."""
    return timeutils.utcnow() + datetime.timedelta(seconds=lease_seconds)
