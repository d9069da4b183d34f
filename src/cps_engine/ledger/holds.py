"""Holds on flagged payees: the ledger's own ``hold`` and ``release`` events.

A **hold** freezes a payee from its time on: their commissions whose hold period ends while they
are held stay **pending** (they become available only when the payee is released), and payouts
dated while they are held are refused (:class:`~cps_engine.ledger.errors.PayeeHeld`, naming the
payee).  Commission already available before the hold stays available (it is only not paid out);
refunds still claw back as usual.  A **release** ends the hold at its time: everything it kept
pending becomes available then.

Both are events of the ledger (not of the programme: the engine, the batch path and the audit
replay never see them), idempotent by ``(type, id)`` like every event, and each applied one posts
one *marker* entry on the hash chain (account ``hold``, currency ``XXX`` -- the ISO-4217 code for
"no currency" --, amount 0, the payee, effective at its time), so the chain commits to when every
hold began and ended; the reason is in the event's payload, which :meth:`Ledger.verify` checks
against its hash and replays.

Whether a payee is held at a time ``T`` is derived, like every state of the ledger: the payee is
held at ``T`` when a hold is dated at or before ``T`` and no release is dated between it and ``T``
(a release and a hold at the same instant: the release wins).  The hold began (``since``) at the
earliest hold after the last release.  So as of ``T`` a commission leg of a held payee is pending
when its hold end ``available`` is after ``T`` (as always) *or* at or after ``since``.

>>> ev = parse_ledger_event({"type": "hold", "id": "h1", "payee": "bob", "reason": "ring",
...                          "at": "2026-03-01T00:00:00Z"})
>>> type(ev).__name__, ev.key, ev.reason
('HoldEvent', ('hold', 'h1'), 'ring')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from pydantic import TypeAdapter, ValidationError

from cps_engine.errors import InvalidEvent
from cps_engine.models import Event, Id, Text, _Event, parse_event

__all__ = ["HOLD_ACCOUNT", "HOLD_CURRENCY", "HOLD_KINDS", "HoldEvent", "LedgerEvent", "PayeeHold", "ReleaseEvent",
           "held_since", "hold_windows", "parse_ledger_event"]

#: the account and currency of the marker entries holds and releases post on the chain
HOLD_ACCOUNT = "hold"
HOLD_CURRENCY = "XXX"
HOLD_KINDS = ("hold", "release")


class HoldEvent(_Event):
    """From ``at`` on, ``payee``'s commissions stay pending and payouts to them are refused."""

    type: Literal["hold"] = "hold"
    payee: Id
    reason: Id


class ReleaseEvent(_Event):
    """Ends ``payee``'s hold at ``at``: what it kept pending becomes available."""

    type: Literal["release"] = "release"
    payee: Id
    reason: Text | None = None


#: every event the ledger records: the programme's and its own hold/release
LedgerEvent: TypeAlias = Event | HoldEvent | ReleaseEvent

_HOLD: TypeAdapter[HoldEvent] = TypeAdapter(HoldEvent)
_RELEASE: TypeAdapter[ReleaseEvent] = TypeAdapter(ReleaseEvent)


def parse_ledger_event(raw: Mapping[str, Any] | LedgerEvent) -> LedgerEvent:
    """:func:`cps_engine.models.parse_event`, plus the ledger's ``hold`` and ``release`` events.

    >>> parse_ledger_event({"type": "release", "id": "r1", "payee": "", "at": "2026-03-01T00:00:00Z"})
    Traceback (most recent call last):
    ...
    cps_engine.errors.InvalidEvent: record 'r1', field 'payee': String should have at least 1 character
    """
    if isinstance(raw, (HoldEvent, ReleaseEvent)):
        return raw
    if isinstance(raw, Mapping) and raw.get("type") in HOLD_KINDS:
        adapter: TypeAdapter[Any] = _HOLD if raw["type"] == "hold" else _RELEASE
        try:
            out: HoldEvent | ReleaseEvent = adapter.validate_python(dict(raw))
            return out
        except ValidationError as exc:
            err = exc.errors()[0]
            record = raw.get("id") if isinstance(raw.get("id"), str) else None
            field = ".".join(str(p) for p in err["loc"]) or None
            raise InvalidEvent(err["msg"], record=record, field=field) from None
    return parse_event(dict(raw) if isinstance(raw, Mapping) else raw)


@dataclass(frozen=True, slots=True)
class PayeeHold:
    """A payee held as of a time: since when (µs), and every hold event of this hold (id, reason)."""

    payee: str
    since_us: int
    holds: tuple[tuple[str, str], ...]

    @property
    def reason(self) -> str:
        """The reasons of the hold events, joined (the first one first)."""
        return "; ".join(dict.fromkeys(r for _, r in self.holds))

    def as_json(self) -> dict[str, Any]:
        from cps_engine.ledger.hashing import iso_us

        return {"payee": self.payee, "since": iso_us(self.since_us), "reason": self.reason,
                "holds": [hid for hid, _ in self.holds]}


def held_since(markers: Iterable[tuple[str, int]], at_us: int) -> int | None:
    """When the hold in force at ``at_us`` began, from one payee's ``(kind, time)`` markers (any order);
    ``None``: not held at ``at_us``.

    >>> held_since([("hold", 5), ("release", 9), ("hold", 12), ("hold", 15)], 20)
    12
    >>> held_since([("hold", 5), ("release", 9)], 9), held_since([("hold", 5), ("release", 9)], 8)
    (None, 5)
    """
    items = [(t, k) for k, t in markers if t <= at_us]
    last_release = max((t for t, k in items if k == "release"), default=None)
    starts = [t for t, k in items if k == "hold" and (last_release is None or t > last_release)]
    return min(starts) if starts else None


def hold_windows(markers: Iterable[tuple[str, int]], end_us: int) -> list[tuple[int, int]]:
    """The payee's hold intervals ``[since, released)`` from its markers; a hold not released by
    ``end_us`` ends at ``end_us``.

    >>> hold_windows([("hold", 5), ("release", 9), ("hold", 12), ("hold", 15)], 100)
    [(5, 9), (12, 100)]
    >>> hold_windows([("hold", 5), ("hold", 9), ("release", 9), ("hold", 9)], 100)
    [(5, 9)]
    """
    out: list[tuple[int, int]] = []
    since: int | None = None
    for t, k in sorted((t, 1 if k == "release" else 0) for k, t in markers):  # a release wins a tie
        if k == 0 and since is None and t < end_us:
            since = t
        elif k == 1 and since is not None:
            if t > since:
                out.append((since, t))
            since = None
    if since is not None:
        out.append((since, end_us))
    return out
