"""Times as the library keeps them: exact integer microseconds since the Unix epoch (UTC), and their
ISO text.  One place for the conversions every layer needs (no floats: ``datetime.fromtimestamp(us /
1e6)`` can be a microsecond off for far dates).

>>> from datetime import timedelta, timezone
>>> us = to_micros(datetime(2026, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=8))))
>>> us, iso_micros(us), from_micros(us + 1).microsecond
(1772330400000000, '2026-03-01T02:00:00Z', 1)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = ["EPOCH", "from_micros", "iso_micros", "to_micros"]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)


def to_micros(at: datetime) -> int:
    """Exact integer microseconds since the Unix epoch of an aware datetime."""
    return (at - EPOCH) // _US


def from_micros(us: int) -> datetime:
    """The aware UTC datetime of ``us`` microseconds since the epoch (exact)."""
    return EPOCH + timedelta(microseconds=us)


def iso_micros(us: int) -> str:
    """ISO text of ``us`` in UTC with ``Z`` (microseconds shown only when there are some)."""
    return from_micros(us).isoformat().replace("+00:00", "Z")
