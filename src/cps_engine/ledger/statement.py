"""Payee statements: every movement of a payee's balances over a period, as CSV or JSON.

A statement covers ``[start, end)``.  Each commission leg moves money into **pending** at its
effective time and from pending to **available** when its hold ends (a ``release`` line, derived
from the hold end: releases are not stored entries); a leg effective after its hold end goes
straight to available; a payout moves available to **paid** and **fee**.  So for each currency

    opening + sum(lines) == closing      (per state: pending, available, paid, fee)

where opening is the balance just before ``start`` and closing the balance just before ``end``.
The statement carries the Merkle root of its lines (the RFC 6962 tree of :mod:`cps_engine.merkle` over
each line's canonical JSON; before issue 11 an odd node was paired with itself) and a manifest
(the ledger's chain head, the policy config hashes and rounding modes of the lines, the library
version) for the audit tools to build on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from cps_engine._version import library_version
from cps_engine.ledger.hashing import canonical_json, iso_us, merkle_root
from cps_engine.ledger.types import ChainHead, Entry, as_micros
from cps_engine.money import Money
from cps_engine.textio import CsvWriter

if TYPE_CHECKING:
    from cps_engine.ledger.ledger import Ledger

__all__ = ["STATES", "Statement", "StatementLine", "build_statement", "movements", "statement_of"]

STATES = ("pending", "available", "paid", "fee")
CSV_COLUMNS = ("at", "kind", "event", "order", "level", "rate", "config_hash", "currency", "pending", "available",
               "paid", "fee", "entry")


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One movement of a payee's balances; ``delta`` maps states to signed minor units."""

    at_us: int
    kind: str
    event: str
    currency: str
    delta: tuple[tuple[str, int], ...]
    order: str | None = None
    level: int | None = None
    rate: str | None = None
    config_hash: str | None = None
    entry: int | None = None

    def amount(self, state: str) -> int:
        return dict(self.delta).get(state, 0)

    def as_row(self) -> dict[str, Any]:
        """Flat row: amounts as decimal strings in major units."""
        row: dict[str, Any] = {"at": iso_us(self.at_us), "kind": self.kind, "event": self.event, "order": self.order,
                               "level": self.level, "rate": self.rate, "config_hash": self.config_hash,
                               "currency": self.currency, "entry": self.entry}
        for s in STATES:
            row[s] = str(Money(self.amount(s), self.currency).amount)
        return row


def movements(entries: Iterable[Entry]) -> list[StatementLine]:
    """Every balance movement of the given (one payee's) entries, in time order."""
    out: list[StatementLine] = []
    releases: dict[tuple[str | None, int | None, int, str], list[Any]] = {}
    for e in entries:
        if e.payee is None:
            continue
        if e.account == "commission" and e.kind != "payout":
            assert e.available_us is not None
            state = "pending" if e.effective_us < e.available_us else "available"
            out.append(StatementLine(e.effective_us, e.kind, e.event, e.currency, ((state, e.amount),), e.order,
                                     e.level, e.rate, e.config_hash, e.seq))
            if state == "pending":
                k = (e.order, e.line, e.available_us, e.currency)
                rel = releases.setdefault(k, [0, e])
                rel[0] += e.amount
        else:
            state = {"commission": "available", "paid": "paid", "fee": "fee"}[e.account]
            out.append(StatementLine(e.effective_us, e.kind, e.event, e.currency, ((state, e.amount),), e.order,
                                     e.level, e.rate, e.config_hash, e.seq))
    for (order, _line, at, cur), (total, e) in releases.items():
        if total:
            out.append(StatementLine(at, "release", f"order:{order}", cur, (("pending", -total), ("available", total)),
                                     order, e.level, e.rate, e.config_hash))
    out.sort(key=lambda m: (m.at_us, m.entry is None, m.entry or 0, m.order or "", m.level or 0))
    return out


@dataclass
class Statement:
    """A payee's movements over ``[start_us, end_us)`` with opening and closing balances per currency."""

    payee: str
    start_us: int
    end_us: int
    lines: list[StatementLine]
    opening: dict[str, dict[str, int]]
    closing: dict[str, dict[str, int]]
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def merkle_root(self) -> str:
        return merkle_root(canonical_json(line.as_row()) for line in self.lines)

    def balanced(self) -> bool:
        """Whether opening + movements == closing for every currency and state."""
        for cur in set(self.opening) | set(self.closing):
            for s in STATES:
                moved = sum(m.amount(s) for m in self.lines if m.currency == cur)
                if self.opening.get(cur, {}).get(s, 0) + moved != self.closing.get(cur, {}).get(s, 0):
                    return False
        return True

    def _money(self, cur: str, values: dict[str, int]) -> dict[str, str]:
        return {s: str(Money(values.get(s, 0), cur).amount) for s in STATES}

    def to_json(self) -> dict[str, Any]:
        currencies = sorted(set(self.opening) | set(self.closing))
        return {
            "payee": self.payee, "from": iso_us(self.start_us), "to": iso_us(self.end_us),
            "currencies": {c: {"opening": self._money(c, self.opening.get(c, {})),
                               "closing": self._money(c, self.closing.get(c, {}))} for c in currencies},
            "lines": [line.as_row() for line in self.lines],
            "merkle_root": self.merkle_root,
            "manifest": self.manifest,
        }

    def write_json(self, out: IO[str]) -> None:
        json.dump(self.to_json(), out, ensure_ascii=False, indent=2, sort_keys=True)
        out.write("\n")

    def write_csv(self, out: IO[str]) -> None:
        """One row per movement, framed by an ``opening`` and a ``closing`` row per currency; text cells
        escaped by :class:`cps_engine.textio.CsvWriter` (a payee ``=HYPERLINK(...)`` is not a formula)."""
        w = CsvWriter(out, CSV_COLUMNS, lineterminator="\n")
        w.writeheader()
        currencies = sorted(set(self.opening) | set(self.closing))
        for cur in currencies:
            w.writerow({"at": iso_us(self.start_us), "kind": "opening", "currency": cur,
                        **self._money(cur, self.opening.get(cur, {}))})
        for line in self.lines:
            w.writerow(line.as_row())
        for cur in currencies:
            w.writerow({"at": iso_us(self.end_us), "kind": "closing", "currency": cur,
                        **self._money(cur, self.closing.get(cur, {}))})


def _balances(lines: Iterable[StatementLine], before: int) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for m in lines:
        if m.at_us < before:
            row = out.setdefault(m.currency, dict.fromkeys(STATES, 0))
            for s, v in m.delta:
                row[s] += v
    return out


def build_statement(ledger: Ledger, payee: str, start: datetime | str | int, end: datetime | str | int) -> Statement:
    """The statement of ``payee`` for ``[start, end)`` (times as aware datetimes, ISO text or µs).

    >>> from cps_engine.ledger import Ledger
    >>> led = Ledger.open(":memory:", policy={"kind": "first_sharer", "rate": "10%"}, hold_days=1)
    >>> _ = led.record_many([
    ...     {"type": "share", "id": "s1", "sharer": "amy", "at": "2026-03-01T00:00:00Z"},
    ...     {"type": "order", "id": "o1", "buyer": "bo", "share": "s1", "amount": "50.00", "currency": "CNY",
    ...      "at": "2026-03-01T10:00:00Z"}])
    >>> st = build_statement(led, "amy", "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")
    >>> [(m.kind, m.as_row()["pending"], m.as_row()["available"]) for m in st.lines]
    [('accrual', '5.00', '0.00'), ('release', '-5.00', '5.00')]
    >>> st.closing, st.balanced()
    ({'CNY': {'pending': 0, 'available': 500, 'paid': 0, 'fee': 0}}, True)
    """
    s, e = as_micros(start, default_now=False), as_micros(end, default_now=False)
    return statement_of(ledger.entries(payee=payee, end=e), payee, s, e, chain_head=ledger.chain_head(),
                        rounding=sorted({t.policy.rounding.value for t in ledger.terms}))


def statement_of(entries: Iterable[Entry], payee: str, start_us: int, end_us: int, *, chain_head: ChainHead,
                 rounding: Iterable[str]) -> Statement:
    """The statement of ``payee`` for ``[start_us, end_us)``: a pure function of the payee's entries
    up to ``end_us`` (what :func:`build_statement` reads from a ledger) and the manifest facts."""
    s, e = start_us, end_us
    if e <= s:
        raise ValueError("a statement period must end after it starts")
    all_moves = movements(entries)
    lines = [m for m in all_moves if s <= m.at_us < e]
    lib = library_version()
    manifest = {
        "chain_head": {"seq": chain_head.seq, "hash": chain_head.hash},
        "config_hashes": sorted({m.config_hash for m in lines if m.config_hash}),
        "rounding": sorted(set(rounding)),
        "library_version": lib,
    }
    return Statement(payee, s, e, lines, _balances(all_moves, s), _balances(all_moves, e), manifest)
