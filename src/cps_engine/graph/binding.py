"""Persistent upline bindings (分销员 / 推广关系) and their modes, kept as a full history.

A :class:`BindEvent` asks to make ``user`` a downline of ``upline``.  What happens depends on the
:class:`BindingConfig` mode:

- ``first_wins`` (locked, the default): the first accepted binding is permanent;
- ``overwrite`` (last touch wins): every new upline replaces the current one;
- ``registration_only``: only binds flagged ``registration`` (made at sign-up) count, the first wins;
- ``expiring``: a binding lasts ``expire_days`` days, then the user is free and the next bind wins.

Every user keeps the intervals during which each upline held (``[start, end)`` in microseconds since
the epoch), so the upline "as it stood" at any time is one binary search.  A bind that would close a
cycle at its time is refused with :class:`CycleError`.
"""

from __future__ import annotations

import enum
from bisect import bisect_right, insort
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cps_engine.errors import CycleError, SelfReferralError
from cps_engine.times import to_micros

__all__ = ["BindingConfig", "BindingMode", "BindingRecord", "BindingStore", "to_micros"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
FOREVER = 2**62


class BindingMode(enum.StrEnum):
    FIRST_WINS = "first_wins"
    OVERWRITE = "overwrite"
    REGISTRATION_ONLY = "registration_only"
    EXPIRING = "expiring"


class BindingConfig(BaseModel):
    """How bind events turn into upline relations.

    >>> BindingConfig(mode="expiring", expire_days=30).mode
    <BindingMode.EXPIRING: 'expiring'>
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: BindingMode = BindingMode.FIRST_WINS
    expire_days: int | None = Field(default=None, ge=1, le=36500)

    @model_validator(mode="after")
    def _days(self) -> BindingConfig:
        if (self.mode is BindingMode.EXPIRING) != (self.expire_days is not None):
            raise ValueError("expire_days is required by, and only allowed with, mode 'expiring'")
        return self

    @classmethod
    def of(cls, binding: BindingConfig | BindingMode | str, expire_days: int | None = None) -> BindingConfig:
        """A config from a config, a mode or a mode's name (the one conversion every API accepts).

        >>> BindingConfig.of("overwrite").mode, BindingConfig.of(BindingConfig()).mode.value
        (<BindingMode.OVERWRITE: 'overwrite'>, 'first_wins')
        """
        if isinstance(binding, BindingConfig):
            return binding
        return cls(mode=BindingMode(binding), expire_days=expire_days)


@dataclass(frozen=True, slots=True)
class BindingRecord:
    """One bind event as the history keeps it."""

    bind_id: str
    user: str
    upline: str
    at: datetime
    status: Literal["accepted", "ignored"]
    #: when the binding stopped holding (replaced or expired); None while it holds
    until: datetime | None = None
    reason: str = ""


class BindingStore:
    """Upline intervals per user, built from bind events in time order."""

    __slots__ = ("_ends", "_first_down", "_ids", "_records", "_starts", "_ups", "changes", "config")

    def __init__(self, config: BindingConfig) -> None:
        self.config = config
        self._starts: dict[int, list[int]] = {}
        self._ends: dict[int, list[int]] = {}
        self._ups: dict[int, list[int]] = {}
        self._ids: dict[int, list[str]] = {}
        self._records: dict[int, list[BindingRecord]] = {}
        #: time (µs) each upline first got an accepted downline: participation starts then
        self._first_down: dict[int, int] = {}
        #: sorted times (µs) at which any upline relation started or ended
        self.changes: list[int] = []

    def upline(self, user: int, t: int) -> int:
        """Upline of ``user`` at time ``t`` (µs), or -1."""
        starts = self._starts.get(user)
        if starts is None:
            return -1
        i = bisect_right(starts, t) - 1
        if i >= 0 and t < self._ends[user][i]:
            return self._ups[user][i]
        return -1

    def bind_id(self, user: int, t: int) -> str:
        starts = self._starts[user]
        return self._ids[user][bisect_right(starts, t) - 1]

    def add(self, user: int, upline: int, t: int, at: datetime, bind_id: str, registration: bool,
            names: list[str]) -> BindingRecord:
        """Apply one bind (events must come in time order).  Returns its history record."""
        if user == upline:
            raise SelfReferralError("a user cannot be bound to themselves", record=bind_id, field="upline")
        mode = self.config.mode
        current = self.upline(user, t)
        uname, upname = names[user], names[upline]
        records = self._records.setdefault(user, [])

        def ignored(reason: str) -> BindingRecord:
            rec = BindingRecord(bind_id, uname, upname, at, "ignored", reason=reason)
            records.append(rec)
            return rec

        ever = user in self._starts
        if mode is BindingMode.FIRST_WINS and ever:
            return ignored("already bound (first binding wins)")
        if mode is BindingMode.REGISTRATION_ONLY and (not registration or ever):
            return ignored("not a registration bind" if not registration else "already bound at registration")
        if mode is BindingMode.EXPIRING and current >= 0:
            return ignored("bound until the current binding expires")
        if mode is BindingMode.OVERWRITE and current == upline:
            return ignored("already bound to this upline")
        if user in self._first_down:
            # only a user with downlines can close a loop: walk the new upline's chain at t
            a = upline
            while a >= 0:
                if a == user:
                    raise CycleError(f"binding {uname!r} under {upname!r} would make a cycle",
                                     record=bind_id, field="upline")
                a = self.upline(a, t)
        end = FOREVER
        if mode is BindingMode.EXPIRING:
            assert self.config.expire_days is not None
            end = t + self.config.expire_days * 86_400_000_000
        starts = self._starts.setdefault(user, [])
        ends = self._ends.setdefault(user, [])
        if current >= 0:  # overwrite: close the running interval
            old = records_index_last_accepted(records)
            if old is not None:
                records[old] = _until(records[old], at)
            if starts[-1] == t:  # replaced at the very instant it began: it never held
                for col in (starts, ends, self._ups[user], self._ids[user]):
                    col.pop()
            else:
                ends[-1] = t
        starts.append(t)
        ends.append(end)
        self._ups.setdefault(user, []).append(upline)
        self._ids.setdefault(user, []).append(bind_id)
        if t < self._first_down.get(upline, FOREVER):
            self._first_down[upline] = t
        insort(self.changes, t)  # at the end for a bind later than every change: O(log n)
        if end != FOREVER:
            insort(self.changes, end)
        rec = BindingRecord(bind_id, uname, upname, at, "accepted",
                            until=_EPOCH + end * _US if end != FOREVER else None)
        records.append(rec)
        return rec

    def has_downline(self, user: int, t: int | None = None) -> bool:
        """Whether ``user`` has (had) a bound downline, ever or by time ``t`` (µs)."""
        first = self._first_down.get(user)
        return first is not None and (t is None or first <= t)

    def first_downlines(self) -> dict[int, int]:
        """Per upline, the time (µs) of its first accepted downline."""
        return dict(self._first_down)

    def reset(self, users: set[int]) -> None:
        """Forget the history of ``users`` (a late bind replays it); call :meth:`rebuild_changes` after."""
        for col in (self._starts, self._ends, self._ups, self._ids, self._records):
            for u in users:
                col.pop(u, None)

    def rebuild_changes(self) -> None:
        """Recompute the change times and first-downline times from the intervals held."""
        changes: list[int] = []
        first: dict[int, int] = {}
        for u, starts in self._starts.items():
            changes += starts
            changes += [e for e in self._ends[u] if e != FOREVER]
            for s, up in zip(starts, self._ups[u], strict=True):
                if s < first.get(up, FOREVER):
                    first[up] = s
        changes.sort()
        self.changes = changes
        self._first_down = first

    def history(self, user: int) -> list[BindingRecord]:
        return list(self._records.get(user, ()))

    def users(self) -> list[int]:
        return list(self._starts)

    def intervals(self, user: int) -> list[tuple[int, int, int, str]]:
        """``(start, end, upline, bind_id)`` for each accepted binding of ``user``."""
        return list(zip(self._starts.get(user, ()), self._ends.get(user, ()), self._ups.get(user, ()),
                        self._ids.get(user, ()), strict=True))


def records_index_last_accepted(records: list[BindingRecord]) -> int | None:
    for i in range(len(records) - 1, -1, -1):
        if records[i].status == "accepted":
            return i
    return None


def _until(rec: BindingRecord, at: datetime) -> BindingRecord:
    return BindingRecord(rec.bind_id, rec.user, rec.upline, rec.at, rec.status, until=at, reason="replaced")
