"""Promoter tiers (分销等级, performance tiers): a payee's rates follow their own recent sales.

A policy's ``tiers`` option lists tiers in order, the first one the tier everybody starts in.
Every later tier has an ``upgrade`` rule measured on the payee's **own** sales: the orders where
the payee is the order's level-1 payee (level 1 of its chain under the policy's ``distributors``,
``ineligible`` and ``self_purchase``: the nearest eligible person), dated within ``window_days``
before the order being paid, the order itself excluded, net of the refunds dated before it:

- ``orders``: how many of them were not fully refunded;
- ``net_sales``: their commissionable base net of refunds (the policy's ``base``), in the
  threshold's currency (orders in other currencies do not count).

Two more measures exist only so that the compliant profiles can refuse them (CN-HEADCOUNT) and the
compliance report can flag them: ``downline_count`` (people whose accepted bind names the payee
as upline) and ``team_sales`` (the net base of every order with the payee anywhere on its chain).

A payee's tier as of an instant is the highest tier it holds: a tier is held while its rule is
met, and, unless the tier says ``downgrade = true``, from the first moment it was met on.  The
measures are step functions of time that change only just after an order, a refund, or the
moment an order leaves the window, so the tiers of a history are a pure function of its events
(:class:`TierBook`): any arrival order gives the same book.

>>> from cps_engine.models import load_events
>>> from cps_engine.policies import load_policy
>>> evs = load_events(
...   ['{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T09:00:00+08:00"}'] +
...   [f'{{"type":"order","id":"o{i}","buyer":"b{i}","share":"s1","amount":"10.00","currency":"CNY",'
...    f'"at":"2026-03-0{i}T10:00:00+08:00"}}' for i in range(1, 4)])
>>> pol = load_policy({"kind": "last_sharer", "rate": "10%", "tiers": [
...     {"name": "member"}, {"name": "silver", "rates": "15%", "upgrade": {"measure": "orders", "at_least": 2}}]})
>>> book = TierBook.from_events(evs, pol)
>>> [str(c) for c in book.history("amy")]
['silver since 2026-03-02T10:00:00+08:00: 2 orders in the 30 days before (silver: at least 2)']
>>> book.tier_at("amy", evs[3].at).name, book.tier_at("amy", evs[2].at).name
('silver', 'member')
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema, field_validator

from cps_engine.errors import ComplianceViolation, CpsError, FloatRejected, InvalidPolicyConfig
from cps_engine.money import Money

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from cps_engine.graph import BindingConfig, BindingMode, ShareGraph
    from cps_engine.models import EventsLike
    from cps_engine.policies.base import PolicyConfig

__all__ = ["HEADCOUNT_MEASURES", "MAX_TIERS", "OWN_MEASURES", "Tier", "TierBook", "TierBookMissing", "TierChange",
           "Upgrade", "bound_book", "check_tiers"]

Measure = Literal["orders", "net_sales", "downline_count", "team_sales"]
#: measures on the payee's own sales (allowed everywhere)
OWN_MEASURES: tuple[str, ...] = ("orders", "net_sales")
#: measures that count recruits or the team (refused by the compliant profiles: CN-HEADCOUNT)
HEADCOUNT_MEASURES: tuple[str, ...] = ("downline_count", "team_sales")
_COUNTS = ("orders", "downline_count")
#: most tiers one policy may list
MAX_TIERS = 100
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_BOOK_KEY = "_cps_tier_book"


def _specs(value: Any) -> Any:
    """A spec or a list of specs, parsed as the policy's own rates are (``policies.base`` imports this
    module, so the parser is looked up when a config is validated)."""
    from cps_engine.policies.base import parse_spec

    if isinstance(value, list):
        return [parse_spec(v) for v in value]
    return parse_spec(value)


def _specs_text(value: Any) -> Any:
    from cps_engine.policies.base import _spec_text

    return [_spec_text(v) for v in value] if isinstance(value, list) else _spec_text(value)


_ONE_SPEC = {"type": "string", "description": "a rate ('10%') or a fixed amount ('5.00 CNY', '1.00 CNY/item')"}
#: a spec or one spec per level, as the policy's own rates
TierSpecs = Annotated[Any, BeforeValidator(_specs), PlainSerializer(_specs_text),
                      WithJsonSchema({"anyOf": [_ONE_SPEC, {"type": "array", "items": _ONE_SPEC}]})]


class TierBookMissing(CpsError, LookupError):
    """A tiered policy was asked for one order's lines without the tier history it needs."""


def _no_float(value: Any) -> Any:
    if isinstance(value, float):
        raise FloatRejected(f"{value!r} is a float; write a whole number, or money as text such as '5000.00 CNY'")
    if isinstance(value, bool):
        raise InvalidPolicyConfig(f"{value!r} is not a number")
    return value


class Upgrade(BaseModel):
    """When a payee reaches a tier: ``measure`` at least ``at_least`` over the ``window_days`` days
    before the order (``at_least``: a whole count, or money such as ``"5000.00 CNY"`` for sales)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    measure: Measure
    at_least: int | str
    window_days: int = Field(default=30, ge=1, le=3660)

    @field_validator("at_least", "window_days", mode="before")
    @classmethod
    def _exact(cls, value: Any) -> Any:
        return _no_float(value)

    def threshold(self) -> tuple[int, str | None]:
        """``(minor units or count, currency or None)``; checked by :func:`check_tiers`."""
        if self.measure in _COUNTS:
            return int(self.at_least), None
        money = Money.parse(str(self.at_least))
        return money.minor, money.currency

    def threshold_text(self) -> str:
        n, cur = self.threshold()
        return str(Money(n, cur)) if cur is not None else str(n)

    def describe(self, value: int) -> str:
        """``12 orders`` / ``5000.00 CNY of own net sales``."""
        cur = self.threshold()[1]
        if self.measure == "orders":
            return f"{value} order{'s' if value != 1 else ''}"
        if self.measure == "downline_count":
            return f"{value} recruit{'s' if value != 1 else ''} (downline headcount)"
        what = "own net sales" if self.measure == "net_sales" else "team sales"
        return f"{Money(value, cur or 'XXX')} of {what}"


class Tier(BaseModel):
    """One tier: its ``name``, its ``rates`` (a spec or one per level, as the policy's own rates; left
    out only on the first tier, which then pays the policy's rates), the ``upgrade`` rule that
    reaches it (every tier but the first), and ``downgrade``: leave the tier when the rule stops
    being met (default: a tier reached is kept)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    rates: TierSpecs | None = None
    upgrade: Upgrade | None = None
    downgrade: bool = False


def check_tiers(policy: PolicyConfig) -> None:
    """Validate ``policy.tiers`` as a whole (called when the config is built); every error names its
    field (``tiers.2.upgrade.at_least``)."""
    tiers = policy.tiers
    if tiers is None:
        return
    if not tiers:
        raise InvalidPolicyConfig("tiers must list at least one tier (the first is where everyone starts)",
                                  field="tiers")
    if len(tiers) > MAX_TIERS:
        raise InvalidPolicyConfig(f"at most {MAX_TIERS} tiers", field="tiers")
    seen: set[str] = set()
    last: dict[tuple[str, str | None], int] = {}
    plan = policy.plan()
    if plan is not None and plan.select == "pool":
        raise InvalidPolicyConfig("a pool policy pays one pool rate per order, not a rate per payee: tiers do not "
                                  "apply to it", field="tiers")
    reads = None if plan is None else (1 if plan.select in ("first", "last") else plan.depth)
    profile = getattr(policy, "profile_limits", None)
    headcount_refused = profile is not None and "CN-HEADCOUNT" in getattr(profile, "rules", ())
    for i, tier in enumerate(tiers):
        where = f"tiers.{i}"
        if tier.name in seen:
            raise InvalidPolicyConfig(f"tier name {tier.name!r} is used twice", field=f"{where}.name")
        seen.add(tier.name)
        if i == 0:
            if tier.upgrade is not None or tier.downgrade:
                raise InvalidPolicyConfig("the first tier is where every payee starts: it has no upgrade rule",
                                          field=f"{where}.upgrade")
        else:
            if tier.rates is None:
                raise InvalidPolicyConfig(f"tier {tier.name!r} needs its rates", field=f"{where}.rates")
            if tier.upgrade is None:
                raise InvalidPolicyConfig(f"tier {tier.name!r} needs an upgrade rule", field=f"{where}.upgrade")
        if isinstance(tier.rates, list):
            if not tier.rates:
                raise InvalidPolicyConfig("a list of rates needs one spec per level", field=f"{where}.rates")
            if reads is not None and len(tier.rates) > reads:
                raise InvalidPolicyConfig(f"tier {tier.name!r} lists {len(tier.rates)} rates but the policy pays "
                                          f"{reads} level{'s' if reads != 1 else ''}", field=f"{where}.rates")
        specs = tier.rates if isinstance(tier.rates, list) else [] if tier.rates is None else [tier.rates]
        for spec in specs:
            if not isinstance(spec, tuple) and not 0 <= spec <= 1:
                raise InvalidPolicyConfig("a tier rate must be within [0, 1]", field=f"{where}.rates")
        up = tier.upgrade
        if up is None:
            continue
        if up.measure in HEADCOUNT_MEASURES and headcount_refused:
            raise ComplianceViolation(f"tier {tier.name!r} is reached by {up.measure!r}: pay that rises with "
                                      "recruits, downline headcount or team sales is pay for recruiting",
                                      rule="CN-HEADCOUNT", field=f"{where}.upgrade.measure")
        field = f"{where}.upgrade.at_least"
        if up.measure in _COUNTS:
            text = str(up.at_least).strip()
            if not (text.isascii() and text.isdigit()) or len(text) > 18 or int(text) < 1:
                raise InvalidPolicyConfig(f"{up.measure} counts: at_least must be a whole number of at least 1",
                                          field=field)
            key: tuple[str, str | None] = (up.measure, None)
            value = int(text)
        else:
            if not isinstance(up.at_least, str):
                raise InvalidPolicyConfig(f"{up.measure} is money: write at_least as text such as '5000.00 CNY'",
                                          field=field)
            try:
                money = Money.parse(up.at_least)
            except CpsError as exc:
                raise InvalidPolicyConfig(exc.message, field=field) from None
            if money.minor <= 0:
                raise InvalidPolicyConfig("at_least must be above 0", field=field)
            key, value = (up.measure, money.currency), money.minor
        if key in last and value <= last[key]:
            raise InvalidPolicyConfig(f"tier {tier.name!r} must need more {up.measure} than the tiers before it",
                                      field=field)
        last[key] = value


# ------------------------------------------------------------------------------------------ the book
def _micros(at: datetime) -> int:
    return (at - _EPOCH) // _US


@dataclass(frozen=True, slots=True)
class TierChange:
    """One change of a payee's tier: from orders dated after ``at`` on, the payee is in ``tier``."""

    payee: str
    at: datetime
    tier: str
    index: int
    previous: str
    reason: str

    def __str__(self) -> str:
        return f"{self.tier} since {self.at.isoformat()}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {"payee": self.payee, "at": self.at.isoformat(), "tier": self.tier, "index": self.index,
                "previous": self.previous, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class TierState:
    """A payee's tier as of an instant, and the change that put them there (None: the first tier)."""

    tier: Tier
    index: int
    change: TierChange | None

    @property
    def name(self) -> str:
        return self.tier.name

    def explain(self) -> str:
        """``silver since 2026-03-04T10:00:00+08:00: 12 orders in the 30 days before (silver: at least 10)``."""
        if self.change is None:
            return f"{self.tier.name} (the first tier: no upgrade rule met before the order)"
        return str(self.change)


@dataclass
class _Step:
    """A measure's contribution: ``value`` from ``start`` (µs) on, changing at refunds, for the window."""

    start: int
    start_at: datetime
    values: list[tuple[int, datetime, int]]  # (µs, time, value from then on), first at start


def _timeline(steps: list[_Step], window_us: int) -> list[tuple[int, datetime, int]]:
    """The measure just after each instant it changes: ``(µs, time, value)`` in time order.  A step
    counts from its start to ``start + window`` (it leaves the window just after that instant)."""
    deltas: dict[int, int] = defaultdict(int)
    times: dict[int, datetime] = {}

    def at(us: int, when: datetime) -> None:
        if us not in times or when.isoformat() < times[us].isoformat():
            times[us] = when
        deltas[us] += 0

    for step in steps:
        end = step.start + window_us
        prev = 0
        for us, when, value in step.values:
            if us >= end:
                break
            at(us, when)
            deltas[us] += value - prev
            prev = value
        at(end, step.start_at + timedelta(microseconds=window_us))
        deltas[end] -= prev
    out = []
    total = 0
    for us in sorted(deltas):
        total += deltas[us]
        out.append((us, times[us], total))
    return out


class TierBook:
    """The tier history of every payee under one tiered policy, built from a history of events.

    :meth:`tier_at` answers a payee's tier as of an order's time (the change strictly before it
    applies); :meth:`history` lists the changes with their reasons.  Built for one policy (its
    ``config_hash``): :func:`cps_engine.engine.compute` refuses a book built for another.
    :attr:`policy` is that policy carrying this book, to pass wherever a policy goes (the batch
    engine computes a tiered policy's orders one at a time, each with this book).
    """

    def __init__(self, policy: PolicyConfig, changes: dict[str, list[TierChange]]) -> None:
        if policy.tiers is None:
            raise InvalidPolicyConfig("the policy has no tiers", field="tiers")
        self.config_hash = policy.config_hash
        self.tiers: tuple[Tier, ...] = tuple(policy.tiers)
        self._changes = changes
        self._times = {p: [_micros(c.at) for c in cs] for p, cs in changes.items()}
        self._index = {p: np.array([c.index for c in cs], dtype=np.int64) for p, cs in changes.items()}
        bound = policy.model_copy()
        for key in ("_cps_plan", "_cps_level_plan", "_cps_tier_plan", _BOOK_KEY):
            bound.__dict__.pop(key, None)
        bound.__dict__[_BOOK_KEY] = self
        self.policy: PolicyConfig = bound

    @classmethod
    def from_events(cls, events: EventsLike, policy: PolicyConfig, *, graph: ShareGraph | None = None,
                    binding: BindingConfig | BindingMode | str = "first_wins") -> TierBook:
        """The book of ``events`` under ``policy`` (``graph``: the share graph of the same events)."""
        from cps_engine.engine import orders_by_id, refunds_by_order
        from cps_engine.graph import ShareGraph
        from cps_engine.models import OrderEvent, RefundEvent, as_events

        tiers = policy.tiers
        if tiers is None:
            raise InvalidPolicyConfig("the policy has no tiers", field="tiers")
        evs = as_events(events)
        if graph is None:
            graph = ShareGraph.from_events(evs, binding=binding)
        orders = orders_by_id(evs)
        refunds_by_order(evs, orders)  # refuses refunds of unknown orders and refunds beyond what was paid
        cumulative: dict[str, list[tuple[int, datetime, int]]] = defaultdict(list)
        done: dict[str, int] = {}
        for ev in sorted((e for e in evs if isinstance(e, RefundEvent)), key=lambda r: (r.at, r.id)):
            order = orders[ev.order]
            amount = ev.amount_minor(order.currency)
            total = order.amount_minor if amount is None else done.get(ev.order, 0) + amount
            done[ev.order] = total
            cumulative[ev.order].append((_micros(ev.at), ev.at, total))
        measures = {t.upgrade.measure for t in tiers if t.upgrade is not None}
        # (payee, measure, currency) -> steps
        steps: dict[tuple[str, str, str | None], list[_Step]] = defaultdict(list)

        def step(order: OrderEvent, value: Callable[[int], int]) -> _Step:
            start = _micros(order.at)
            vals = [(start, order.at, value(_refunded_by(cumulative[order.id], start)))]
            for us, when, total in cumulative[order.id]:
                if us > start:
                    vals.append((us, when, value(total)))
            return _Step(start, order.at, vals)

        for order in sorted(orders.values(), key=lambda o: (o.at, o.id)):
            chain = graph.chain_for(order, self_purchase=policy.self_purchase)
            base = policy.base.of(order)
            paid = order.amount_minor
            count = lambda refunded, paid=paid: 1 if refunded < paid else 0
            sales = lambda refunded, base=base: max(0, base - refunded)
            if measures & {"orders", "net_sales"}:
                found = policy.levels(chain, 1)
                if found:
                    payee = found[0][0].payee
                    if "orders" in measures:
                        steps[(payee, "orders", None)].append(step(order, count))
                    if "net_sales" in measures:
                        steps[(payee, "net_sales", order.currency)].append(step(order, sales))
            if "team_sales" in measures:
                for person in sorted({link.payee for link in chain.all()}):
                    steps[(person, "team_sales", order.currency)].append(step(order, sales))
        if "downline_count" in measures:
            counted: set[tuple[str, str]] = set()
            for user in sorted(graph.people):
                for rec in graph.binding_history(user):
                    if rec.status == "accepted" and (user, rec.upline) not in counted:
                        counted.add((user, rec.upline))
                        steps[(rec.upline, "downline_count", None)].append(
                            _Step(_micros(rec.at), rec.at, [(_micros(rec.at), rec.at, 1)]))
        changes: dict[str, list[TierChange]] = {}
        payees = sorted({p for p, _, _ in steps})
        for payee in payees:
            found_changes = _changes(payee, tiers, steps)
            if found_changes:
                changes[payee] = found_changes
        return cls(policy, changes)

    def history(self, payee: str) -> list[TierChange]:
        """Every change of ``payee``'s tier in time order, each with its reason (empty: never left
        the first tier)."""
        return list(self._changes.get(payee, ()))

    def payees(self) -> list[str]:
        """Payees who ever left the first tier, sorted."""
        return sorted(self._changes)

    def state(self, payee: str, at: datetime) -> TierState:
        """``payee``'s tier for an order dated ``at``: the last change strictly before it."""
        times = self._times.get(payee)
        if not times:
            return TierState(self.tiers[0], 0, None)
        k = bisect.bisect_left(times, _micros(at))
        if k == 0:
            return TierState(self.tiers[0], 0, None)
        change = self._changes[payee][k - 1]
        return TierState(self.tiers[change.index], change.index, change)

    def tier_at(self, payee: str, at: datetime) -> Tier:
        """``payee``'s :class:`Tier` for an order dated ``at``."""
        return self.state(payee, at).tier

    def lookup(self, at: datetime) -> Callable[[str], Tier]:
        """payee -> tier for an order dated ``at`` (what the rate resolution reads)."""
        us = _micros(at)
        first = self.tiers[0]

        def tier(payee: str) -> Tier:
            times = self._times.get(payee)
            if not times:
                return first
            k = bisect.bisect_left(times, us)
            return first if k == 0 else self.tiers[self._changes[payee][k - 1].index]

        return tier

    def tier_indices(self, payees: Sequence[str], times_us: Sequence[int] | NDArray[np.int64]) -> NDArray[np.int64]:
        """The tier index (0: the first tier) of each ``(payee, order time in µs since the epoch)``:
        :meth:`state` over arrays, one ``searchsorted`` per payee (strictly before the time), as the
        batch kernel will read it per line.

        >>> book = TierBook.__new__(TierBook)
        >>> book._changes, book._times = {"amy": []}, {"amy": [10, 20]}
        >>> book._index = {"amy": np.array([1, 2])}
        >>> book.tier_indices(["amy", "amy", "amy", "bob"], [10, 11, 21, 99]).tolist()
        [0, 1, 2, 0]
        """
        t = np.asarray(times_us, dtype=np.int64)
        names = np.asarray(payees, dtype=object)
        out = np.zeros(len(t), dtype=np.int64)
        if not len(t):
            return out
        for payee in set(names.tolist()) & set(self._times):
            rows = np.flatnonzero(names == payee)
            k = np.searchsorted(np.asarray(self._times[payee], dtype=np.int64), t[rows], side="left")
            index = np.concatenate([np.zeros(1, dtype=np.int64), self._index[payee]])
            out[rows] = index[k]
        return out

    def columns(self) -> tuple[list[str], list[int], list[int]]:
        """Every change as three columns sorted by (payee, time): payee, time in µs since the epoch,
        tier index; what a vectorised lookup needs (``searchsorted`` per payee, strictly before)."""
        payee, times, index = [], [], []
        for p in sorted(self._changes):
            for c in self._changes[p]:
                payee.append(p)
                times.append(_micros(c.at))
                index.append(c.index)
        return payee, times, index


def _refunded_by(cumulative: list[tuple[int, datetime, int]], us: int) -> int:
    total = 0
    for t, _, value in cumulative:
        if t > us:
            break
        total = value
    return total


def _changes(payee: str, tiers: list[Tier], steps: dict[tuple[str, str, str | None], list[_Step]]
             ) -> list[TierChange]:
    lines: list[list[tuple[int, datetime, int]]] = []
    for tier in tiers[1:]:
        up = tier.upgrade
        assert up is not None
        _, cur = up.threshold()
        lines.append(_timeline(steps.get((payee, up.measure, cur), []), up.window_days * 86_400_000_000))
    points: dict[int, datetime] = {}
    for line in lines:
        for us, when, _ in line:
            if us not in points or when.isoformat() < points[us].isoformat():
                points[us] = when
    cursor = [0] * len(lines)
    value = [0] * len(lines)
    ever = [False] * len(lines)
    level = 0
    out: list[TierChange] = []
    for us in sorted(points):
        held = 0
        for k, line in enumerate(lines):
            while cursor[k] < len(line) and line[cursor[k]][0] <= us:
                value[k] = line[cursor[k]][2]
                cursor[k] += 1
            tier = tiers[k + 1]
            assert tier.upgrade is not None
            met = value[k] >= tier.upgrade.threshold()[0]
            ever[k] = ever[k] or met
            if met or (ever[k] and not tier.downgrade):
                held = k + 1
        if held != level:
            if held > level:
                up = tiers[held].upgrade
                assert up is not None
                reason = (f"{up.describe(value[held - 1])} in the {up.window_days} days before "
                          f"({tiers[held].name}: at least {up.threshold_text()})")
            else:
                lost = tiers[level].upgrade
                assert lost is not None
                reason = (f"{lost.describe(value[level - 1])} in the {lost.window_days} days before, below "
                          f"{tiers[level].name}'s {lost.threshold_text()}")
            out.append(TierChange(payee, points[us], tiers[held].name, held, tiers[level].name, reason))
            level = held
    return out


def bound_book(policy: PolicyConfig) -> TierBook | None:
    """The book a policy carries (``book.policy``), if any."""
    book = policy.__dict__.get(_BOOK_KEY)
    return book if isinstance(book, TierBook) else None
