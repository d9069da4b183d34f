"""The ledger's public value types: what recording returns and what queries answer."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from cps_engine.engine import CommissionLine
from cps_engine.errors import InvalidInput, ValueOutOfRange
from cps_engine.graph import to_micros
from cps_engine.ledger.postings import (
    LedgerRules,
    Leg,
)
from cps_engine.limits import MAX_TIME, MIN_TIME, check_time
from cps_engine.money import Money
from cps_engine.policies import PolicyConfig
from cps_engine.policies.base import Award

__all__ = ["Balance", "ChainHead", "Entry", "OrderSnapshot", "Outcome", "ParkedEvent", "RecordSummary", "Recorded",
           "TermsVersion", "Verification", "as_micros"]

class Outcome(enum.StrEnum):
    """What recording one event did."""

    APPLIED = "applied"      #: posted (or, for shares and binds, placed in the graph)
    DUPLICATE = "duplicate"  #: seen before with the same payload: nothing changed
    PARKED = "parked"        #: kept, waiting for a predecessor (``waits_for``); applied when it arrives
    REJECTED = "rejected"    #: kept and visible, never applied (e.g. a refund larger than the order)


@dataclass(frozen=True, slots=True)
class Recorded:
    """The outcome of recording one event.

    ``released`` lists the parked events it let through; ``lines`` are the commission lines of an
    applied order, with their provenance (the engine's :class:`~cps_engine.engine.CommissionLine`);
    ``legs`` every commission leg the call posted (its own, and those of restated or released
    events), so a caller can see each balance it changed; ``capped`` the legs of what payee caps
    withheld from those commissions (account ``capped``: payee, line, signed minor units; see
    :class:`~cps_engine.ledger.postings.PayeeCaps`) -- ``lines`` stay the engine's, before caps.
    """

    kind: str
    id: str
    outcome: Outcome
    reason: str | None = None
    released: tuple[tuple[str, str], ...] = ()
    lines: tuple[CommissionLine, ...] = ()
    legs: tuple[Leg, ...] = ()
    capped: tuple[Leg, ...] = ()


@dataclass
class RecordSummary:
    """Counts per outcome of a :meth:`Ledger.record_many` call, and (with ``results=True``) the
    :class:`Recorded` of every event in input order; ``capped``: the commission payee caps withheld
    in the call, per currency (minor units, net of refunds of capped orders)."""

    counts: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    released: int = 0
    recorded: list[Recorded] = field(default_factory=list)
    capped: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, r: Recorded) -> None:
        self.counts[r.outcome] += 1
        self.released += len(r.released)
        for leg in r.capped:
            self.capped[leg.currency] = self.capped.get(leg.currency, 0) + leg.amount

    def __str__(self) -> str:
        parts = ", ".join(f"{n} {o.value}" for o, n in self.counts.items() if n)
        capped = ", ".join(str(Money(v, c)) for c, v in sorted(self.capped.items()) if v)
        return f"{self.total} events: {parts or 'none'}" + (f" ({self.released} parked released)"
                                                            if self.released else "") + \
            (f"; payee caps withheld {capped}" if capped else "")


@dataclass(frozen=True, slots=True)
class OrderSnapshot:
    """An applied order as the ledger computes it now: the rate snapshot taken when it was paid
    (``awards``: payee, level, exact rate, rule, chain path), its commissionable base and what was
    refunded, so each line's provenance can be shown without replaying anything."""

    order: str
    revision: int
    currency: str
    gross_base: int
    refunded: int
    awards: tuple[Award, ...]
    config_hash: str
    policy: str
    rounding: str

    @property
    def net_base(self) -> int:
        """The base the current lines are computed on: ``gross_base - refunded`` (never below 0)."""
        return max(0, self.gross_base - self.refunded)


@dataclass(frozen=True, slots=True)
class Balance:
    """One payee's balances in one currency as of a time (all derived from entries)."""

    payee: str
    currency: str
    pending: Money
    available: Money
    paid: Money
    fee: Money
    earned: Money
    reversed: Money
    #: when the payee's hold in force at the balance's time began (µs; ``None``: not held); while held,
    #: commission whose hold period ended since then is counted pending (:mod:`cps_engine.ledger.holds`)
    held_since_us: int | None = None
    #: commission the payee caps withheld from this payee (net of refunds; ``None`` read as zero)
    capped: Money | None = None

    def as_json(self) -> dict[str, str]:
        """Decimal strings, e.g. ``{"payee": "bob", "currency": "CNY", "pending": "10.00", ...}``; a held
        payee also has ``held_since`` (ISO time)."""
        out = {"payee": self.payee, "currency": self.currency, "pending": str(self.pending.amount),
               "available": str(self.available.amount), "paid": str(self.paid.amount),
               "fee": str(self.fee.amount)}
        if self.capped is not None and self.capped.minor:
            out["capped"] = str(self.capped.amount)
        if self.held_since_us is not None:
            from cps_engine.ledger.hashing import iso_us

            out["held_since"] = iso_us(self.held_since_us)
        return out


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored leg of the log."""

    seq: int
    event: str
    kind: str
    account: str
    payee: str | None
    currency: str
    amount: int
    effective_us: int
    available_us: int | None
    order: str | None
    revision: int | None
    line: int | None
    level: int | None
    rate: str | None
    config_hash: str | None
    hash: str

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)

    def encodable(self) -> dict[str, Any]:
        return {"seq": self.seq, "event": self.event, "kind": self.kind, "account": self.account,
                "payee": self.payee, "currency": self.currency, "amount": self.amount,
                "effective_us": self.effective_us, "available_us": self.available_us, "order": self.order,
                "revision": self.revision, "line": self.line, "level": self.level, "rate": self.rate,
                "config_hash": self.config_hash}


@dataclass(frozen=True, slots=True)
class ParkedEvent:
    kind: str
    id: str
    at_us: int
    status: str
    waits_for: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class ChainHead:
    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class Verification:
    """Result of :meth:`Ledger.verify` (see :mod:`cps_engine.ledger.verify`): ``problems`` found and what
    could not be checked (``unchecked``: a keyed chain verified without its key).  ``ok`` only when
    everything was checked and nothing was found."""

    entries: int
    head: ChainHead
    problems: tuple[str, ...]
    unchecked: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems and not self.unchecked


@dataclass(frozen=True)
class TermsVersion:
    """A policy version with the ledger rules, in force for orders dated at or after ``effective_us``."""

    version: int
    effective_us: int
    policy: PolicyConfig
    rules: LedgerRules

    @property
    def config_hash(self) -> str:
        return self.policy.config_hash


#: the supported times (:mod:`cps_engine.limits`) in µs since the epoch: ``[MIN_US, MAX_US)``
MIN_US: Final = to_micros(MIN_TIME)
MAX_US: Final = to_micros(MAX_TIME)


def as_micros(value: datetime | str | int | None, *, default_now: bool = True, field: str = "as_of") -> int:
    """A time as µs since the epoch: an aware ``datetime``, ISO text with a zone, or µs already, within
    the supported range (:data:`cps_engine.limits.MIN_TIME` .. ``MAX_TIME``); outside it a typed
    :class:`~cps_engine.errors.ValueOutOfRange` naming ``field``.

    >>> as_micros("1970-01-01T00:00:01Z"), as_micros(5)
    (1000000, 5)
    >>> as_micros(10**20)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cps_engine.errors.ValueOutOfRange: field 'as_of': 100000000000000000000 µs is outside the supported range ...
    """
    if value is None:
        if not default_now:
            raise ValueError("a time is required")
        return to_micros(datetime.now(UTC))
    if isinstance(value, bool):
        raise TypeError("a time must be a datetime, ISO text or µs, not a bool")
    if isinstance(value, int):
        if not MIN_US <= value < MAX_US:
            raise ValueOutOfRange(f"{value} µs is outside the supported range [{MIN_US}, {MAX_US}) "
                                  "(1970-01-01 .. 9000-01-01)", field=field)
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            raise InvalidInput(f"{text[:80]!r} is not an ISO-8601 time", field=field) from None
    if value.tzinfo is None:
        raise ValueError(f"time {value.isoformat()} has no zone; give e.g. +08:00 or Z")
    check_time(value, field=field)
    return to_micros(value)
