"""Verify a payout statement against a recomputation from the events.

Every line is recomputed (same policy, same binding mode, same period) and the statement is compared
with the result, **by content, not by position** (a platform may list lines in any order; positions
are what :mod:`cps_engine.audit.integrity` checks).  Each stated line is matched with the expected
line of the same ``(order, payee)``; what is left over is classified:

========================  ==================================================================
kind                      meaning (money at stake)
========================  ==================================================================
``missing``               an expected line is absent (underpaid: its amount)
``extra``                 a line nobody is owed (overpaid: its amount)
``duplicate``             a second copy of a line already stated (overpaid: its amount)
``wrong_payee``           the line of an order's level paid to someone else (over: stated,
                          under: the rightful payee's amount)
``self_purchase``         a payee paid for their own purchase (overpaid: its amount)
``refunded_order``        a line for a fully refunded order, or a refund not applied
                          (overpaid: the excess)
``out_of_period``         a line for an order paid outside the period (overpaid)
``unknown_order``         a line for an order not in the events (overpaid)
``amount_mismatch``       amount differs (over or under: the difference)
``rate_mismatch``         rate differs (the amount difference, if any)
``level_mismatch``,       level, base, currency or state differ while the amount is right
``base_mismatch``,
``currency_mismatch``,
``state_mismatch``
``manifest``              the manifest names other inputs (events, policy, rounding) than
                          those given
========================  ==================================================================

A stated rate written with fewer decimals than the exact rate (``8.82%`` for 3/34) matches when the
exact rate rounds to it at that precision; amounts must match to the unit.

>>> from cps_engine.models import load_events
>>> from cps_engine.policies import load_policy
>>> from cps_engine.audit.statement import build_statement
>>> evs = load_events([
...   '{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}',
...   '{"type":"order","id":"o1","buyer":"cat","share":"s1","amount":"100.00","currency":"CNY",'
...   '"at":"2026-03-01T12:00:00+08:00"}'])
>>> pol = load_policy({"kind": "first_sharer", "rate": "10%"})
>>> st = build_statement(evs, pol, "2026-03")
>>> verify_statement(st, evs, pol).ok
True
>>> from dataclasses import replace
>>> bad = replace(st, lines=(replace(st.lines[0], amount=Money(1001, "CNY")),), manifest=None)
>>> [(d.kind.value, d.line, d.overpaid) for d in verify_statement(bad, evs, pol, period="2026-03").discrepancies]
[('amount_mismatch', 1, 1)]
"""

from __future__ import annotations

import enum
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any, Final

from cps_engine.audit.statement import (
    InvalidStatement,
    Period,
    Statement,
    StatementLine,
    Steps,
    batch_frame,
    cut_events,
    events_digest,
    period_lines,
    zone_of,
)
from cps_engine.engine import compute, orders_by_id, refunds_by_order
from cps_engine.graph import BindingConfig, BindingMode, ShareGraph
from cps_engine.models import Event, OrderEvent
from cps_engine.money import Money, Rounding, apply_rate, format_rate
from cps_engine.policies.base import PolicyConfig

__all__ = ["Discrepancy", "Kind", "Pattern", "PayeeRollup", "VerificationReport", "find_patterns", "verify_statement"]


class Kind(enum.StrEnum):
    """What is wrong with a line (see the module docs)."""

    MISSING = "missing"
    EXTRA = "extra"
    DUPLICATE = "duplicate"
    WRONG_PAYEE = "wrong_payee"
    SELF_PURCHASE = "self_purchase"
    REFUNDED_ORDER = "refunded_order"
    OUT_OF_PERIOD = "out_of_period"
    UNKNOWN_ORDER = "unknown_order"
    AMOUNT = "amount_mismatch"
    RATE = "rate_mismatch"
    LEVEL = "level_mismatch"
    BASE = "base_mismatch"
    CURRENCY = "currency_mismatch"
    STATE = "state_mismatch"
    MANIFEST = "manifest"


#: One-line descriptions of each kind, for reports.
KIND_TITLES: Final[dict[Kind, str]] = {
    Kind.MISSING: "Missing lines (owed, not stated)",
    Kind.EXTRA: "Extra lines (stated, not owed)",
    Kind.DUPLICATE: "Duplicated lines",
    Kind.WRONG_PAYEE: "Paid to the wrong payee",
    Kind.SELF_PURCHASE: "Payees paid for their own purchases",
    Kind.REFUNDED_ORDER: "Lines for refunded orders",
    Kind.OUT_OF_PERIOD: "Orders outside the period",
    Kind.UNKNOWN_ORDER: "Orders not in the events",
    Kind.AMOUNT: "Amount mismatches",
    Kind.RATE: "Rate mismatches",
    Kind.LEVEL: "Level mismatches",
    Kind.BASE: "Base mismatches",
    Kind.CURRENCY: "Currency mismatches",
    Kind.STATE: "State mismatches",
    Kind.MANIFEST: "Manifest does not match the inputs",
}


@dataclass(frozen=True, slots=True)
class Discrepancy:
    """One problem, located: ``line`` is the 1-based position in the statement (``None`` for a missing
    line), ``row`` the location in the source file.  ``overpaid``/``underpaid`` are minor units of
    ``currency`` (the money at stake is their sum)."""

    kind: Kind
    detail: str
    order: str | None = None
    payee: str | None = None
    line: int | None = None
    row: int | None = None
    stated: StatementLine | None = None
    expected: StatementLine | None = None
    currency: str | None = None
    overpaid: int = 0
    underpaid: int = 0

    @property
    def at_stake(self) -> int:
        return self.overpaid + self.underpaid

    def as_dict(self) -> dict[str, Any]:
        def money(minor: int) -> str | None:
            return format(Money(minor, self.currency).amount, "f") if self.currency else None

        return {"kind": self.kind.value, "detail": self.detail, "order": self.order, "payee": self.payee,
                "line": self.line, "row": self.row,
                "stated": self.stated.as_dict() if self.stated else None,
                "expected": self.expected.as_dict() if self.expected else None,
                "currency": self.currency, "overpaid": money(self.overpaid), "underpaid": money(self.underpaid),
                "at_stake": money(self.at_stake)}


@dataclass(frozen=True, slots=True)
class PayeeRollup:
    """One payee's lines in one currency: stated and owed totals, the money at stake, the problems."""

    payee: str
    currency: str
    lines_stated: int = 0
    lines_owed: int = 0
    stated: int = 0
    owed: int = 0
    overpaid: int = 0
    underpaid: int = 0
    discrepancies: int = 0

    def as_dict(self) -> dict[str, Any]:
        def money(minor: int) -> str:
            return format(Money(minor, self.currency).amount, "f")

        return {"payee": self.payee, "currency": self.currency, "lines_stated": self.lines_stated,
                "lines_owed": self.lines_owed, "stated": money(self.stated), "owed": money(self.owed),
                "overpaid": money(self.overpaid), "underpaid": money(self.underpaid),
                "discrepancies": self.discrepancies}


@dataclass(frozen=True, slots=True)
class Pattern:
    """A cause several discrepancies share (:func:`find_patterns`): ``kind`` names the pattern
    (``rounding``, ``one_unit``, ``rate_ratio``, ``level``, ``payee``), ``count`` the discrepancies it
    explains, ``text`` the hint for a reader."""

    kind: str
    count: int
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "count": self.count, "text": self.text}


@dataclass
class VerificationReport:
    """The outcome of :func:`verify_statement`: every discrepancy plus totals of the money at stake.

    The evidence a reader needs to reproduce it: the sha256 of the canonical events, the policy's
    config hash and rounding, the Merkle root of the lines as stated (and the one the manifest
    states, if any), the period's bounds and zone, and the as-of time of the recomputation."""

    period: str
    policy: str
    config_hash: str
    source: str | None
    lines_stated: int
    lines_expected: int
    stated_totals: dict[str, int]
    expected_totals: dict[str, int]
    discrepancies: list[Discrepancy] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    events_sha256: str | None = None
    merkle_root: str | None = None
    manifest_merkle_root: str | None = None
    period_start: str | None = None
    period_end: str | None = None
    tz: str | None = None
    as_of: str | None = None
    rounding: str | None = None
    payees: list[PayeeRollup] = field(default_factory=list)
    #: rounding modes besides the policy's that also give every line stated right (None: not known)
    matched_roundings: tuple[str, ...] | None = None

    def patterns(self) -> list[Pattern]:
        """Causes the discrepancies share (:func:`find_patterns`)."""
        return find_patterns(self.discrepancies, self.rounding, matched_roundings=self.matched_roundings)

    @property
    def ok(self) -> bool:
        return not self.discrepancies

    def by_kind(self) -> dict[Kind, list[Discrepancy]]:
        """Discrepancies grouped by kind, in the order of :class:`Kind`."""
        groups: dict[Kind, list[Discrepancy]] = {}
        for k in Kind:
            found = [d for d in self.discrepancies if d.kind is k]
            if found:
                groups[k] = found
        return groups

    def at_stake(self) -> dict[str, dict[str, dict[str, int]]]:
        """``{currency: {kind: {"count", "overpaid", "underpaid"}}}`` in minor units (``kind`` ``total``
        sums them)."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for d in self.discrepancies:
            cur = d.currency or "-"
            for key in (d.kind.value, "total"):
                row = out.setdefault(cur, {}).setdefault(key, {"count": 0, "overpaid": 0, "underpaid": 0})
                row["count"] += 1
                row["overpaid"] += d.overpaid
                row["underpaid"] += d.underpaid
        return out

    def as_dict(self) -> dict[str, Any]:
        def fmt(cur: str, minor: int) -> str:
            return format(Money(minor, cur).amount, "f") if cur != "-" else str(minor)

        stake = {cur: {k: {"count": v["count"], "overpaid": fmt(cur, v["overpaid"]),
                           "underpaid": fmt(cur, v["underpaid"]),
                           "at_stake": fmt(cur, v["overpaid"] + v["underpaid"])}
                       for k, v in kinds.items()} for cur, kinds in self.at_stake().items()}
        return {
            "ok": self.ok, "period": self.period, "policy": self.policy, "config_hash": self.config_hash,
            "statement": self.source, "lines_stated": self.lines_stated, "lines_expected": self.lines_expected,
            "stated_totals": {c: fmt(c, v) for c, v in sorted(self.stated_totals.items())},
            "expected_totals": {c: fmt(c, v) for c, v in sorted(self.expected_totals.items())},
            "discrepancy_count": len(self.discrepancies), "at_stake": stake,
            "groups": {k.value: [d.as_dict() for d in ds] for k, ds in self.by_kind().items()},
            "notes": self.notes,
            "evidence": {"events_sha256": self.events_sha256, "policy_config_hash": self.config_hash,
                         "rounding": self.rounding, "merkle_root": self.merkle_root,
                         "manifest_merkle_root": self.manifest_merkle_root, "period_start": self.period_start,
                         "period_end": self.period_end, "tz": self.tz, "as_of": self.as_of},
            "patterns": [p.as_dict() for p in self.patterns()],
            "payees": [p.as_dict() for p in self.payees],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False, indent=1) + "\n"


# ---------------------------------------------------------------------------------------------- helpers
def rate_matches(stated: Fraction, expected: Fraction, text: str | None = None) -> bool:
    """Exact equality, or a display rounding: ``stated`` is printed to at least 0.01 % (4 decimals of
    the rate), ``expected`` needs more decimals than that, and rounding ``expected`` half-even to the
    stated decimals gives ``stated`` (a platform printing ``8.82%``, i.e. ``0.0882``, for 3/34).
    A coarser figure (``0.05`` for 0.049) is a mismatch.

    >>> rate_matches(Fraction(882, 10000), Fraction(3, 34)), rate_matches(Fraction(883, 10000), Fraction(3, 34))
    (True, False)
    >>> rate_matches(Fraction(5, 100), Fraction(49, 1000))
    False
    """
    if stated == expected:
        return True
    text = text or format_rate(stated)
    if "/" in text:
        return False
    places = len(text.split(".")[1]) if "." in text else 0
    if places < 4 or (expected * 10**places).denominator == 1:
        return False
    q = Decimal(1).scaleb(-places)
    rounded = (Decimal(expected.numerator) / Decimal(expected.denominator)).quantize(q, rounding=ROUND_HALF_EVEN)
    return Fraction(rounded) == stated


def _states_agree(stated: str | None, expected: str | None) -> bool:
    if stated is None or expected is None or stated == expected or "accrued" in (stated, expected):
        return True
    return stated == "paid" and expected == "available"


def _money(minor: int, cur: str) -> str:
    return str(Money(minor, cur))


@dataclass
class _Context:
    orders: dict[str, OrderEvent]
    refunded: dict[str, int]
    gross: dict[tuple[str, str], int]  # (order, payee) -> amount before refunds
    period: Period
    self_purchase: bool
    owed: set[tuple[str, str]] = field(default_factory=set)  # (order, payee) of every expected line


def _compare(s: StatementLine, e: StatementLine, ctx: _Context, line: int, row: int) -> Discrepancy | None:
    """One matched pair: the primary problem, with every differing field in the detail."""
    diffs = []
    if s.currency != e.currency:
        return Discrepancy(Kind.CURRENCY, f"stated in {s.currency}, owed in {e.currency} ({e.amount})",
                           s.order, s.payee, line, row, s, e, e.currency, 0, e.amount.minor)
    delta = s.amount.minor - e.amount.minor
    rate_bad = s.rate is not None and e.rate is not None and not rate_matches(s.rate, e.rate)
    level_bad = s.level is not None and s.level != e.level
    base_bad = s.base is not None and e.base is not None and s.base != e.base
    state_bad = not _states_agree(s.state, e.state)
    if delta:
        diffs.append(f"amount {s.amount.amount} vs {e.amount.amount}")
    if rate_bad:
        assert s.rate is not None and e.rate is not None
        diffs.append(f"rate {format_rate(s.rate)} vs {format_rate(e.rate)}")
    if level_bad:
        diffs.append(f"level {s.level} vs {e.level}")
    if base_bad:
        assert s.base is not None and e.base is not None
        diffs.append(f"base {s.base.amount} vs {e.base.amount}")
    if state_bad:
        diffs.append(f"state {s.state} vs {e.state}")
    if not diffs:
        return None
    detail = "; ".join(diffs) + " (stated vs owed)"
    over, under = max(delta, 0), max(-delta, 0)
    if delta:
        refunded = ctx.refunded.get(s.order, 0)
        if refunded and s.amount.minor == ctx.gross.get(s.key(), -1):
            kind = Kind.REFUNDED_ORDER
            detail = f"refund of {_money(refunded, e.currency)} not applied: " + detail
        else:
            kind = Kind.RATE if rate_bad else Kind.AMOUNT
    else:
        kind = Kind.RATE if rate_bad else Kind.LEVEL if level_bad else Kind.BASE if base_bad else Kind.STATE
    return Discrepancy(kind, detail, s.order, s.payee, line, row, s, e, e.currency, over, under)


def _unmatched(s: StatementLine, ctx: _Context, line: int, row: int) -> Discrepancy:
    """A stated line with no expected line of its (order, payee)."""
    order = ctx.orders.get(s.order)
    cur, amt = s.currency, s.amount.minor
    over = max(amt, 0)
    if order is None:
        return Discrepancy(Kind.UNKNOWN_ORDER, f"order {s.order!r} is not in the events", s.order, s.payee, line,
                           row, s, None, cur, over, 0)
    if order.at not in ctx.period:
        return Discrepancy(Kind.OUT_OF_PERIOD, f"order paid {order.at.isoformat()}, outside {ctx.period.label}",
                           s.order, s.payee, line, row, s, None, cur, over, 0)
    if s.payee == order.buyer and not ctx.self_purchase:
        return Discrepancy(Kind.SELF_PURCHASE, f"{s.payee!r} is the buyer of {s.order!r}; the policy pays nobody "
                           "for their own purchase", s.order, s.payee, line, row, s, None, cur, over, 0)
    refunded = ctx.refunded.get(s.order, 0)
    if refunded and s.key() in ctx.gross and s.key() not in ctx.owed:  # the refund took the whole line away
        return Discrepancy(Kind.REFUNDED_ORDER, f"order refunded ({_money(refunded, order.currency)} of "
                           f"{order.money}); nothing is owed on it any more", s.order, s.payee, line, row, s, None,
                           cur, over, 0)
    return Discrepancy(Kind.EXTRA, f"{s.payee!r} is owed nothing on order {s.order!r}", s.order, s.payee, line,
                       row, s, None, cur, over, 0)


# ---------------------------------------------------------------------------------------------- verify
def verify_statement(statement: Statement, events: Iterable[Event], policy: PolicyConfig, *,
                     period: str | Period | None = None, tz: str | None = None, as_of: datetime | None = None,
                     hold_days: int | None = None,
                     binding: BindingConfig | BindingMode | str | None = None,
                     steps: Steps | None = None) -> VerificationReport:
    """Recompute every line of ``statement`` from ``events`` under ``policy`` and report the differences.

    ``period``, ``tz``, ``as_of``, ``hold_days`` and ``binding`` default to what the statement's manifest
    says (a platform statement without a manifest needs ``period``; ``tz`` then defaults to the zone of
    the data, :func:`~cps_engine.audit.statement.zone_of`: the offset all the events carry, else UTC).
    States are compared only when the hold period is known.  Raises :class:`InvalidStatement` when
    the period is unknown.  The recomputation runs on the batch engine
    (:func:`~cps_engine.audit.statement.period_lines`); ``steps`` hears of its progress.
    """
    events = list(events)
    man = statement.manifest
    if period is None and man is None:
        raise InvalidStatement("the statement has no manifest: give the period it covers (--period 2026-03)",
                               field="period")
    if isinstance(period, Period):
        per = period
    else:
        label = period if period is not None else man.period  # type: ignore[union-attr]
        zone = tz if tz is not None else (man.tz if man is not None else zone_of(cut_events(events, as_of),
                                                                                 policy)[0])
        per = Period.parse(label, zone)
    if as_of is None and man is not None and man.as_of is not None:
        as_of = datetime.fromisoformat(man.as_of)
    if hold_days is None and man is not None:
        hold_days = man.hold_days
    if binding is None:
        binding = (BindingConfig.of(man.binding, man.expire_days) if man is not None else BindingMode.FIRST_WINS)
    config = BindingConfig.of(binding)

    evs = cut_events(events, as_of)
    orders = orders_by_id(evs)
    refunded = refunds_by_order(evs, orders)
    effective_as_of = as_of if as_of is not None else max((ev.at for ev in evs), default=None)
    graph = ShareGraph.from_events(evs, binding=config)
    expected = period_lines(evs, policy, per, binding=config, hold_days=hold_days, as_of=effective_as_of,
                            graph=graph, steps=steps)
    gross = _gross(sorted((o for o in orders.values() if refunded.get(o.id) and o.at in per),
                          key=lambda o: (o.at, o.id)), policy, graph)
    ctx = _Context(orders, refunded, gross, per, policy.self_purchase, {e.key() for e in expected})

    report = VerificationReport(
        period=per.label, policy=policy.label, config_hash=policy.config_hash, source=statement.source,
        lines_stated=len(statement.lines), lines_expected=len(expected),
        stated_totals=_sum(statement.lines), expected_totals=_sum(expected),
        events_sha256=events_digest(evs, steps=steps), merkle_root=statement.merkle_root(),
        manifest_merkle_root=man.merkle_root if man is not None else None, period_start=per.start.isoformat(),
        period_end=per.end.isoformat(), tz=per.tz,
        as_of=effective_as_of.isoformat() if effective_as_of is not None else None, rounding=policy.rounding.value)
    if man is not None:
        _check_manifest(man, report.events_sha256, policy, config, per, report)
    if hold_days is None and any(line.state not in (None, "accrued") for line in statement.lines):
        report.notes.append("states were not compared: the hold period is unknown (give --hold-days)")

    out = report.discrepancies
    want: dict[tuple[str, str], list[StatementLine]] = defaultdict(list)
    for e in expected:
        want[e.key()].append(e)
    have: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, s in enumerate(statement.lines):
        have[s.key()].append(i)

    leftovers: list[int] = []
    matched: list[tuple[StatementLine, StatementLine]] = []
    for key, idxs in have.items():
        exp = list(want.get(key, ()))
        pending_stated: list[int] = []
        # pair by equal level first, then in statement order
        for i in idxs:
            s = statement.lines[i]
            j = next((k for k, e in enumerate(exp) if s.level is not None and e.level == s.level), None)
            if j is None:
                pending_stated.append(i)
                continue
            e = exp.pop(j)
            matched.append((s, e))
            found = _compare(s, e, ctx, i + 1, statement.row_of(i))
            if found:
                out.append(found)
        rest: list[int] = []
        for i in pending_stated:
            if exp:
                e = exp.pop(0)
                matched.append((statement.lines[i], e))
                found = _compare(statement.lines[i], e, ctx, i + 1, statement.row_of(i))
                if found:
                    out.append(found)
            else:
                rest.append(i)
        want[key] = exp
        for i in rest:
            s = statement.lines[i]
            twin = next((k for k in idxs if k != i and k not in rest and statement.lines[k] == s), None)
            if twin is None:
                twin = next((k for k in rest if k < i and statement.lines[k] == s), None)
            if twin is not None:
                out.append(Discrepancy(Kind.DUPLICATE, f"same line as line {twin + 1}", s.order, s.payee, i + 1,
                                       statement.row_of(i), s, None, s.currency, max(s.amount.minor, 0), 0))
            else:
                leftovers.append(i)

    # stated lines with no (order, payee) counterpart: classify, pairing wrong payees with missing lines
    missing_by_order: dict[str, list[StatementLine]] = defaultdict(list)
    for key, exp in want.items():
        for e in exp:
            missing_by_order[key[0]].append(e)
    for i in sorted(leftovers):
        s = statement.lines[i]
        d = _unmatched(s, ctx, i + 1, statement.row_of(i))
        if d.kind in (Kind.EXTRA, Kind.REFUNDED_ORDER):
            # a line owed to someone else at the same level (or of the same amount) is missing: the
            # stated line went to the wrong payee -- more precise than "extra" or "refunded"
            cands = missing_by_order.get(s.order, [])
            j = next((k for k, e in enumerate(cands) if s.level is not None and e.level == s.level), None)
            if j is None and d.kind is Kind.EXTRA:
                j = next((k for k, e in enumerate(cands) if e.amount == s.amount), None)
            if j is None and d.kind is Kind.EXTRA and len(cands) == 1 and s.level is None:
                j = 0
            if j is not None:
                e = cands.pop(j)
                d = Discrepancy(Kind.WRONG_PAYEE, f"paid to {s.payee!r}; owed to {e.payee!r} ({e.amount})",
                                s.order, s.payee, i + 1, statement.row_of(i), s, e, e.currency,
                                max(s.amount.minor, 0), e.amount.minor)
        out.append(d)
    for cands in missing_by_order.values():
        for e in cands:
            out.append(Discrepancy(Kind.MISSING, f"{e.payee!r} is owed {e.amount} at level {e.level} on order "
                                   f"{e.order!r}", e.order, e.payee, None, None, None, e, e.currency, 0,
                                   e.amount.minor))
    out.sort(key=lambda d: (list(Kind).index(d.kind), d.line if d.line is not None else 1 << 62, d.order or "",
                            d.payee or ""))
    report.payees = _rollup(statement.lines, expected, out)
    report.matched_roundings = _roundings(matched, policy.rounding)
    return report


def _roundings(pairs: Iterable[tuple[StatementLine, StatementLine]], own: Rounding) -> tuple[str, ...]:
    """The rounding modes other than ``own`` that give every stated amount equal to the owed one
    (``base × rate`` rounded that way): what a platform may have used instead.  Stops as soon as none
    is left, which honest data with fractional amounts reaches within a few lines."""
    left = [m for m in _MODES if m is not own]
    for s, e in pairs:
        if not left:
            break
        if s.amount != e.amount or e.base is None or e.rate is None:
            continue
        left = [m for m in left if apply_rate(e.base.minor, e.rate, m) == s.amount.minor]
    return tuple(m.value for m in left)


def _rollup(stated: Iterable[StatementLine], expected: Iterable[StatementLine],
            found: Iterable[Discrepancy]) -> list[PayeeRollup]:
    """Per payee and currency, those with the most money at stake first, then the largest stated."""
    acc: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * 7)
    for ln in stated:
        row = acc[(ln.payee, ln.currency)]
        row[0] += 1
        row[2] += ln.amount.minor
    for ln in expected:
        row = acc[(ln.payee, ln.currency)]
        row[1] += 1
        row[3] += ln.amount.minor
    for d in found:
        if d.payee is None or d.currency is None:
            continue
        row = acc[(d.payee, d.currency)]
        row[4] += d.overpaid
        row[5] += d.underpaid
        row[6] += 1
    rows = [PayeeRollup(p, c, *v) for (p, c), v in acc.items()]
    rows.sort(key=lambda r: (-(r.overpaid + r.underpaid), -r.discrepancies, -r.stated, r.currency, r.payee))
    return rows


_MODES: Final = (Rounding.DOWN, Rounding.HALF_UP, Rounding.HALF_EVEN, Rounding.UP)
_MODE_WORDS: Final = {Rounding.DOWN: "down", Rounding.HALF_UP: "half-up", Rounding.HALF_EVEN: "half-even",
                      Rounding.UP: "up"}


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}" if n != 1 else f"1 {what.removesuffix('s').replace('differences', 'difference')}"


def _stake(ds: list[Discrepancy]) -> str:
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for d in ds:
        if d.currency:
            per[d.currency][0] += d.overpaid
            per[d.currency][1] += d.underpaid
    parts = []
    for cur, (over, under) in sorted(per.items()):
        bits = [f"overpaid {Money(over, cur)}" if over else "", f"underpaid {Money(under, cur)}" if under else ""]
        parts.append(", ".join(b for b in bits if b))
    return "; ".join(p for p in parts if p)


def find_patterns(discrepancies: Iterable[Discrepancy], rounding: str | None = None, *,
                  matched_roundings: Iterable[str] | None = None, minimum: int = 2) -> list[Pattern]:
    """Causes that several discrepancies share, as hints for a reader (each checked exactly):

    - **rounding**: amount differences of one minor unit where the stated amount is ``base × rate``
      rounded another way (half-up, half-even, up or down) than the policy's ``rounding``, and that
      way also gives the lines stated right (``matched_roundings``: the modes that do, when known);
      *one_unit* when one-unit differences are not explained by any rounding mode;
    - **rate_ratio**: amounts stated at one constant multiple of the owed ones (stated rates a fixed
      ratio of the owed rates, e.g. 12% for 10%);
    - **level** / **payee**: all the discrepancies of one kind on one level, or on one payee.

    A pattern needs ``minimum`` discrepancies.

    >>> def d(stated, owed, base=1005, rate=Fraction(1, 10)):
    ...     line = lambda m: StatementLine("amy", "o1", Money(m, "CNY"), 1, Money(base, "CNY"), rate)
    ...     return Discrepancy(Kind.AMOUNT, "", "o1", "amy", 1, 1, line(stated), line(owed), "CNY",
    ...                        max(stated - owed, 0), max(owed - stated, 0))
    >>> found = find_patterns([d(101, 100), d(101, 100, base=1007)], "down", matched_roundings=["half_up"])
    >>> found[0].text
    '2 one-unit differences (overpaid 0.02 CNY) consistent with half-up rounding (the policy rounds down)'
    >>> find_patterns([d(101, 100), d(101, 100, base=1007)], "down")[0].text.split(" consistent ")[1]
    'with half-up or up rounding (the policy rounds down)'
    >>> [p.kind for p in find_patterns([d(101, 100), d(101, 100, base=1007)], "down", matched_roundings=[])]
    ['one_unit', 'level', 'payee']
    """
    ds = list(discrepancies)
    out: list[Pattern] = []
    amounts = [d for d in ds if d.stated is not None and d.expected is not None and d.kind in (Kind.AMOUNT, Kind.RATE)
               and d.stated.currency == d.expected.currency and d.stated.amount != d.expected.amount]
    ones = [d for d in amounts if abs(d.stated.amount.minor - d.expected.amount.minor) == 1]  # type: ignore[union-attr]
    if len(ones) >= minimum:
        fits: set[Rounding] | None = None if matched_roundings is None else {Rounding(m) for m in matched_roundings}
        for d in ones:
            e, st = d.expected, d.stated
            assert e is not None and st is not None
            if e.base is None or e.rate is None:
                fits = set()
                break
            modes = {m for m in _MODES if apply_rate(e.base.minor, e.rate, m) == st.amount.minor}
            fits = modes if fits is None else fits & modes
            if not fits:
                break
        own = f" (the policy rounds {_MODE_WORDS[Rounding(rounding)]})" if rounding in set(Rounding) else ""
        if fits:
            words = " or ".join(_MODE_WORDS[m] for m in _MODES if m in fits)
            out.append(Pattern("rounding", len(ones), f"{_count(len(ones), 'one-unit differences')} "
                                                      f"({_stake(ones)}) consistent with {words} rounding{own}"))
        else:
            out.append(Pattern("one_unit", len(ones), f"{_count(len(ones), 'one-unit differences')} "
                                                      f"({_stake(ones)}), not explained by another rounding mode"))
    big = [d for d in amounts if d not in ones and d.expected is not None and d.expected.amount.minor]
    if len(big) >= minimum:
        ratio = _common_ratio(big)
        if ratio is not None:
            shown = format_rate(ratio) if "/" not in format_rate(ratio) else f"{ratio} (≈{float(ratio):.4g})"
            out.append(Pattern("rate_ratio", len(big), f"{_count(len(big), 'amounts')} stated at {shown} × the "
                                                       f"amount owed ({_stake(big)}), consistent with rates {shown} "
                                                       "times the policy's"))
    for kind, group in _by_kind(ds).items():
        if len(group) < minimum:
            continue
        lines = [d.expected or d.stated for d in group]
        levels = {ln.level if ln is not None else None for ln in lines}
        if len(levels) == 1 and None not in levels:
            out.append(Pattern("level", len(group), f"all {len(group):,} {KIND_TITLES[kind].lower()} are at "
                                                    f"level {levels.pop()} ({_stake(group)})"))
        payees = {d.payee for d in group}
        if len(payees) == 1 and None not in payees:
            out.append(Pattern("payee", len(group), f"all {len(group):,} {KIND_TITLES[kind].lower()} concern "
                                                    f"payee {payees.pop()!r} ({_stake(group)})"))
    return out


def _by_kind(ds: list[Discrepancy]) -> dict[Kind, list[Discrepancy]]:
    groups: dict[Kind, list[Discrepancy]] = {}
    for d in ds:
        groups.setdefault(d.kind, []).append(d)
    return groups


def _common_ratio(ds: list[Discrepancy]) -> Fraction | None:
    """The one ratio stated / owed of every pair: exact from the rates when every line states one,
    else from the amounts (each within a unit of ``owed × ratio``, the ratio a simple fraction)."""
    pairs = [(d.stated, d.expected) for d in ds if d.stated is not None and d.expected is not None]
    if len(pairs) < len(ds):
        return None
    rated = [(s.rate, e.rate) for s, e in pairs if s.rate is not None and e.rate]
    if len(rated) == len(pairs):
        ratios = {sr / er for sr, er in rated}
        if len(ratios) == 1:
            r = ratios.pop()
            return r if r != 1 else None
    stated = sum(s.amount.minor for s, _ in pairs)
    owed = sum(e.amount.minor for _, e in pairs)
    if owed <= 0 or stated <= 0:
        return None
    r = Fraction(stated, owed).limit_denominator(100)
    if r == 1:
        return None
    for s, e in pairs:
        if abs(s.amount.minor - e.amount.minor * r) > 1 + r:  # both sides rounded to a unit
            return None
    return r


def _gross(orders: list[OrderEvent], policy: PolicyConfig, graph: ShareGraph) -> dict[tuple[str, str], int]:
    """(order, payee) -> the line's amount before any refund, for the refunded orders of the period
    (to tell "a refund not applied" from another wrong amount)."""
    if not orders:
        return {}
    try:
        frame = batch_frame(orders, policy, graph)
    except ImportError:  # no pandas: order by order
        return {(cl.order, cl.payee): cl.amount.minor for o in orders for cl in compute(o, policy, graph=graph).lines}
    return {(o, p): int(a) for o, p, a in zip(frame["order"].tolist(), frame["payee"].tolist(),
                                              frame["amount_minor"].tolist(), strict=True)}


def _sum(lines: Iterable[StatementLine]) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in lines:
        out[line.currency] = out.get(line.currency, 0) + line.amount.minor
    return out


def _check_manifest(man: Any, events_sha256: str | None, policy: PolicyConfig, config: BindingConfig, per: Period,
                    report: VerificationReport) -> None:
    checks: Mapping[str, tuple[object, object]] = {
        "events_sha256": (man.events_sha256, events_sha256),
        "policy_config_hash": (man.policy_config_hash, policy.config_hash),
        "rounding": (man.rounding, policy.rounding.value),
    }
    for name, (stated, actual) in checks.items():
        if stated != actual:
            report.discrepancies.append(Discrepancy(
                Kind.MANIFEST, f"manifest {name} is {stated}, the inputs given give {actual}"))
    if man.period != per.label or man.binding != config.mode.value:
        report.notes.append(f"verified for period {per.label} with binding {config.mode.value}; the manifest says "
                            f"{man.period} with {man.binding}")
