"""The limits cps_engine puts on its input, in one place (README: "Limits and hostile input").

Everything outside them is refused at the boundary (event parsing, policy and statement loading, CLI
options) with a typed :class:`~cps_engine.errors.CpsError` naming the record and field, so the
engine, the ledger and the databases never see a value they could overflow on.

- :data:`MAX_JSON_DEPTH`: arrays/objects nested in any JSON (or TOML) document cps_engine reads.
- :data:`MAX_ID_LENGTH`: characters in an id (event, user, share, order, sku, payee).
- :data:`MIN_TIME` .. :data:`MAX_TIME`: the supported times (years 1970 to 8999, any zone).  Event
  times, ``--as-of``, ``--from``/``--to`` and periods outside are refused.
- :data:`MAX_DAYS`: a day count added to a time (hold days, binding expiry); with :data:`MAX_TIME`
  it keeps every sum far below year 9999, where ``datetime`` overflows.
- :data:`~cps_engine.money.MAX_EVENT_MINOR` (re-exported here): the largest amount of one event, in
  minor units, so sums over millions of events stay below 2**63 (a BIGINT column).

>>> check_time(datetime(2026, 3, 1, tzinfo=UTC)).year
2026
>>> check_time(datetime(9999, 12, 31, tzinfo=UTC), record="o1")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
cps_engine.errors.ValueOutOfRange: record 'o1', field 'at': time 9999-12-31T00:00:00+00:00 is outside ...
>>> add_days(datetime(2026, 3, 1, tzinfo=UTC), 7).day
8
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from cps_engine.errors import ValueOutOfRange
from cps_engine.money import MAX_EVENT_MINOR

__all__ = [
    "MAX_DAYS",
    "MAX_EVENT_MINOR",
    "MAX_ID_LENGTH",
    "MAX_JSON_DEPTH",
    "MAX_TIME",
    "MIN_TIME",
    "add_days",
    "check_days",
    "check_time",
]

#: deepest nesting of arrays and objects in a JSON or TOML document (an event line has 3)
MAX_JSON_DEPTH: Final = 64
#: longest id, in characters
MAX_ID_LENGTH: Final = 256
#: earliest supported time (inclusive)
MIN_TIME: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: end of the supported times (exclusive): year 9000, leaving room for day arithmetic below 9999
MAX_TIME: Final = datetime(9000, 1, 1, tzinfo=UTC)
#: largest day count (hold days, expiry days) added to a time: 100 years
MAX_DAYS: Final = 36_600

_RANGE_TEXT: Final = "1970-01-01T00:00:00Z .. 9000-01-01T00:00:00Z"


def check_time(at: datetime, *, field: str | None = "at", record: str | None = None) -> datetime:
    """``at`` itself when it is aware and within [:data:`MIN_TIME`, :data:`MAX_TIME`), else
    :class:`~cps_engine.errors.ValueOutOfRange` naming ``field``."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueOutOfRange(f"time {at.isoformat()} has no time zone", field=field, record=record)
    if not MIN_TIME <= at < MAX_TIME:  # aware comparison: exact, never overflows
        raise ValueOutOfRange(f"time {at.isoformat()} is outside the supported range {_RANGE_TEXT}",
                              field=field, record=record)
    return at


def check_days(days: int, *, field: str = "days") -> int:
    """``days`` itself when it is an int in ``[0, MAX_DAYS]``."""
    if type(days) is not int or not 0 <= days <= MAX_DAYS:
        raise ValueOutOfRange(f"{days!r} days is outside 0 .. {MAX_DAYS}", field=field)
    return days


def add_days(at: datetime, days: int, *, field: str = "days") -> datetime:
    """``at + days`` for ``|days| <= MAX_DAYS``; a typed error rather than an ``OverflowError`` when the
    count is larger or the sum leaves ``datetime`` (a time within the supported range plus
    :data:`MAX_DAYS` never does)."""
    if type(days) is not int or abs(days) > MAX_DAYS:
        raise ValueOutOfRange(f"{days!r} days is outside -{MAX_DAYS} .. {MAX_DAYS}", field=field)
    try:
        return at + timedelta(days=days)
    except OverflowError:
        raise ValueOutOfRange(f"{at.isoformat()} + {days} days is beyond the supported range {_RANGE_TEXT}",
                              field=field) from None
