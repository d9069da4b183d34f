"""Awards -> money: the one place rates become minor units.

Rules (docs/design.md, "Money"):

- a line is ``round(base × rate)`` with the policy's one rounding mode (default ``down``);
- awards that split a pool are rounded once as a pool and split exactly by largest remainder,
  ties broken in chain order (``chain[0]`` — the farthest — first);
- the merchant keeps the rest: ``sum(lines) + merchant_net == base``, to the unit, always;
- a refund recomputes the lines on the net base (paid − refunded, taken off the commissionable
  base first) with the rates snapshotted when the order was paid (:meth:`Settlement.rebase`).

>>> from cps_engine.models import load_events
>>> from cps_engine.graph import ShareGraph
>>> from cps_engine.policies import load_policy
>>> evs = load_events([
...   '{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}',
...   '{"type":"share","id":"s2","sharer":"bob","parent":"s1","at":"2026-03-01T11:00:00+08:00"}',
...   '{"type":"order","id":"o1","buyer":"cat","share":"s2","amount":"199.99","currency":"CNY",'
...   '"shipping":"10.00","at":"2026-03-01T12:00:00+08:00"}'])
>>> s = compute(evs[2], {"kind": "capped_multilevel", "rates": ["10%", "5%"]},
...             graph=ShareGraph.from_events(evs))
>>> [(l.payee, l.level, str(l.amount)) for l in s.lines], str(s.merchant_net)
([('bob', 1, '18.99 CNY'), ('amy', 2, '9.49 CNY')], '161.51 CNY')
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, cast

from cps_engine.errors import CpsError, DuplicateEvent, InvalidEvent, UnknownReference
from cps_engine.graph import BindingConfig, BindingMode, ShareGraph
from cps_engine.graph.chains import Chain
from cps_engine.models import Event, EventsLike, OrderEvent, RefundEvent, as_events
from cps_engine.money import Money, Rounding, apply_rate, format_rate
from cps_engine.policies.base import Award, OrderView, PolicyConfig, fast_new
from cps_engine.policies.registry import PolicyLike, load_policy

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from cps_engine.tiers import TierBook

__all__ = ["CommissionLine", "Provenance", "Settlement", "compute", "compute_events", "net_base",
           "refunds_by_order", "settle"]


@dataclass(frozen=True, slots=True)
class Provenance:
    """Everything needed to recompute one line: ``amount = round(base × rate)`` (or its share of a
    rounded pool), where the payee sits (``level``, ``path`` of share/bind ids read, nearest first),
    and which policy produced it."""

    order: str
    policy: str
    config_hash: str
    rate: Fraction
    level: int
    path: tuple[str, ...]
    rounding: Rounding
    base: int
    rule: str
    pool: str | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form: the rate as exact text, the base in minor units."""
        return {"order": self.order, "policy": self.policy, "config_hash": self.config_hash,
                "rate": format_rate(self.rate), "level": self.level, "path": list(self.path),
                "rounding": self.rounding.value, "base_minor": self.base, "rule": self.rule, "pool": self.pool}


@dataclass(frozen=True, slots=True)
class CommissionLine:
    """One payee's commission on one order."""

    order: str
    payee: str
    level: int
    amount: Money
    rate: Fraction
    provenance: Provenance

    def as_row(self) -> dict[str, object]:
        """Flat row: order, payee, level, amount (decimal string), currency, rate (exact text)."""
        return {"order": self.order, "payee": self.payee, "level": self.level,
                "amount": str(self.amount.amount), "currency": self.amount.currency,
                "rate": format_rate(self.rate), "rule": self.provenance.rule,
                "policy": self.provenance.policy, "config_hash": self.provenance.config_hash,
                "base": str(Money(self.provenance.base, self.amount.currency).amount),
                "path": "/".join(self.provenance.path), "rounding": self.provenance.rounding.value}

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form with exact values only: amounts as decimal strings and minor units, the rate
        as exact text (a decimal, or ``p/q`` when no finite decimal exists), the provenance nested.
        Serialise it with :func:`json.dumps` as it is."""
        return {"order": self.order, "payee": self.payee, "level": self.level,
                "amount": str(self.amount.amount), "amount_minor": self.amount.minor,
                "currency": self.amount.currency, "rate": format_rate(self.rate),
                "provenance": self.provenance.to_dict()}


@dataclass(frozen=True, slots=True)
class Settlement:
    """The commission lines of one order and what the merchant keeps.

    ``awards`` is the rate snapshot taken when the order was paid; :meth:`rebase` recomputes the
    lines on a new net base from it (refunds).
    """

    order: str
    base: Money
    lines: tuple[CommissionLine, ...]
    merchant_net: Money
    policy: str
    config_hash: str
    rounding: Rounding
    awards: tuple[Award, ...]
    gross_base: int

    @property
    def total(self) -> Money:
        return Money(self.base.minor - self.merchant_net.minor, self.base.currency)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (exact strings and integers, no floats), what a web handler returns;
        :meth:`from_dict` reads it back to an equal settlement.

        >>> import json
        >>> from cps_engine.policies.base import Award
        >>> s = settle("o1", "CNY", 10_000, [Award("amy", 1, Fraction(1, 3), "level 1", ("s1",))], "p", "h",
        ...            Rounding.DOWN)
        >>> d = s.to_dict()
        >>> d["lines"][0]["amount"], d["lines"][0]["rate"], d["merchant_net"]
        ('33.33', '1/3', '66.67')
        >>> Settlement.from_dict(json.loads(json.dumps(d))) == s
        True
        """
        cur = self.base.currency
        return {"order": self.order, "currency": cur,
                "base": str(self.base.amount), "base_minor": self.base.minor,
                "gross_base_minor": self.gross_base,
                "total": str(self.total.amount), "total_minor": self.total.minor,
                "merchant_net": str(self.merchant_net.amount), "merchant_net_minor": self.merchant_net.minor,
                "policy": self.policy, "config_hash": self.config_hash, "rounding": self.rounding.value,
                "lines": [ln.to_dict() for ln in self.lines],
                "awards": [{"payee": a.payee, "level": a.level, "rate": format_rate(a.rate), "rule": a.rule,
                            "path": list(a.path), "pool": a.pool} for a in self.awards]}

    def to_json(self) -> str:
        """:meth:`to_dict` as compact JSON text."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Settlement:
        """The settlement :meth:`to_dict` described, recomputed from its awards and checked against
        the lines it carries: a changed amount, rate or payee is an :class:`InvalidEvent` naming
        the field, never accepted silently."""
        try:
            cur = str(data["currency"])
            awards = [Award(str(a["payee"]), int(a["level"]), Fraction(str(a["rate"])), str(a["rule"]),
                            tuple(str(x) for x in a["path"]), None if a["pool"] is None else str(a["pool"]))
                      for a in data["awards"]]
            out = settle(str(data["order"]), cur, int(data["gross_base_minor"]), awards, str(data["policy"]),
                         str(data["config_hash"]), Rounding(str(data["rounding"])))
            base = int(data["base_minor"])
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise InvalidEvent(f"not a settlement: {type(exc).__name__}: {exc}", field="settlement") from None
        if base != out.base.minor:
            out = out.rebase(out.gross_base - base)
        if out.to_dict() != dict(data):
            diff = next(k for k in out.to_dict() if out.to_dict()[k] != data.get(k))
            raise InvalidEvent("the settlement's figures do not follow from its awards", record=out.order, field=diff)
        return out

    def rebase(self, refunded: int) -> Settlement:
        """The same awards on the net base ``gross_base - refunded`` (floored at 0)."""
        return settle(self.order, self.base.currency, net_base(self.gross_base, refunded), self.awards,
                      self.policy, self.config_hash, self.rounding, gross_base=self.gross_base)


# positional constructors that fill the slots directly (every field, in order): the per-order hot path
_line = fast_new(CommissionLine)
_provenance = fast_new(Provenance)
_settlement = fast_new(Settlement)


def net_base(gross_base: int, refunded: int) -> int:
    """Commissionable base left after ``refunded`` minor units came back (base first, never < 0)."""
    return max(0, gross_base - refunded)


def _split(total: int, parts: Sequence[tuple[int, Fraction, int]]) -> dict[int, int]:
    """Split a pool's rounded ``total`` over its members exactly: each member gets the floor of its
    exact amount, and the units left go one each to the largest remainders; ties to the larger level
    (chain order).  ``parts`` are ``(key, exact amount, level)``.

    ``total`` is the pool's exact amount rounded once, so ``sum(floors) <= total <= sum(ceils)``:
    every member ends within one unit of its exact amount, never above its ceiling.

    >>> _split(2, [(0, Fraction(19019, 20000), 1), (1, Fraction(1001, 20000), 2)])  # 1.001 rounded up
    {0: 1, 1: 1}
    """
    floors = {k: x.numerator // x.denominator for k, x, _ in parts}
    rest = total - sum(floors.values())
    assert 0 <= rest <= len(parts), "a pool total must lie between the floors and ceilings of its members"
    ranked = sorted(parts, key=lambda p: (-(p[1] - floors[p[0]]), -p[2], p[0]))
    for k, _, _ in ranked[:rest]:
        floors[k] += 1
    return floors


def settle(order_id: str, currency: str, base: int, awards: Sequence[Award], policy: str,
           config_hash: str, rounding: Rounding, *, gross_base: int | None = None) -> Settlement:
    """Turn awards into lines on ``base`` minor units of ``currency``.  Pure and exact."""
    # total rate tn / td in exact integer arithmetic (td > 0): no Fraction objects on the hot path
    tn, td = 0, 1
    negative = False
    for a in awards:
        rate = a.rate
        n, d = rate.numerator, rate.denominator
        if n < 0:
            negative = True
        if d == td:
            tn += n
        else:
            tn, td = tn * d + n * td, td * d
    if tn > td or negative:
        total_rate = sum((a.rate for a in awards), Fraction(0))
        raise InvalidEvent(f"policy {policy!r} awarded rates adding up to {format_rate(total_rate)}, "
                           "outside [0, 1]", record=order_id)
    amounts = [0] * len(awards)
    pools: dict[str, list[int]] = {}
    for i, a in enumerate(awards):
        if a.pool is None:
            amounts[i] = apply_rate(base, a.rate, rounding)
        else:
            pools.setdefault(a.pool, []).append(i)
    for members in pools.values():
        pool_total = apply_rate(base, sum((awards[i].rate for i in members), Fraction(0)), rounding)
        split = _split(pool_total, [(i, awards[i].rate * base, awards[i].level) for i in members])
        for i in members:
            amounts[i] = split[i]
    over = sum(amounts) - base
    if over > 0:  # only reachable with rounding up: take the excess back from the farthest lines
        for i in sorted(range(len(awards)), key=lambda j: -awards[j].level):
            take = min(over, amounts[i])
            amounts[i] -= take
            over -= take
            if over == 0:
                break
    made = []
    for a, amt in zip(awards, amounts, strict=True):
        if amt:
            made.append(_line(order_id, a.payee, a.level, Money(amt, currency), a.rate,
                              _provenance(order_id, policy, config_hash, a.rate, a.level, a.path, rounding, base,
                                          a.rule, a.pool)))
    lines = tuple(made)
    paid = sum(amounts)
    return _settlement(order_id, Money(base, currency), lines, Money(base - paid, currency), policy,
                       config_hash, rounding, tuple(awards), base if gross_base is None else gross_base)


def compute(order: OrderEvent, policy: PolicyLike, *legacy: PolicyLike, graph: ShareGraph | None = None,
            chain: Chain | None = None, refunded: int = 0, tiers: TierBook | None = None) -> Settlement:
    """Commission lines for one order under ``policy`` (a config, a mapping or a policy file).

    The order's chain comes from ``graph`` (the :class:`ShareGraph` to find it in) or is given as
    ``chain``; with neither, the order must have come through no share link (a direct sale).
    ``refunded`` (minor units) computes the lines on the net base, as after refunds.
    ``tiers``: the :class:`~cps_engine.tiers.TierBook` of a policy with promoter tiers (each payee's
    tier as of the order's time); a tiered policy needs one, given here or carried by the policy
    (``book.policy``), else :class:`~cps_engine.tiers.TierBookMissing` is raised.

    The 0.x form ``compute(order, graph_or_chain, policy)`` still works, with a
    :class:`DeprecationWarning`.
    """
    if legacy:
        policy, graph, chain = _legacy_compute(policy, legacy)
    pol = policy if isinstance(policy, PolicyConfig) else load_policy(policy)
    if chain is None:
        chain = (graph if graph is not None else ShareGraph()).chain_for(order, self_purchase=pol.self_purchase)
    base = pol.base.of(order)
    view = OrderView(order, base) if pol.tiers is None and tiers is None else _tiered_view(order, base, pol, tiers)
    awards = pol.awards(chain, view)
    settlement = settle(order.id, order.currency, base, awards, pol.label, pol.config_hash, pol.rounding)
    return settlement.rebase(refunded) if refunded else settlement


def _tiered_view(order: OrderEvent, base: int, pol: PolicyConfig, tiers: TierBook | None) -> OrderView:
    """The order as a tiered policy sees it: each payee's tier as of the order's time, from ``tiers``
    or the book the policy carries."""
    from cps_engine.errors import InvalidPolicyConfig
    from cps_engine.tiers import TierBookMissing, bound_book

    book = tiers if tiers is not None else bound_book(pol)
    if book is None:
        raise TierBookMissing(f"policy {pol.label!r} has promoter tiers: give its tier history, "
                              "compute(order, policy, tiers=TierBook.from_events(events, policy)), or pass "
                              "book.policy as the policy", record=order.id, field="tiers")
    if pol.tiers is None or book.config_hash != pol.config_hash:
        raise InvalidPolicyConfig("the tier book was built for another policy config", record=order.id,
                                  field="tiers")
    return OrderView(order, base, book.lookup(order.at))


def _legacy_compute(first: object, rest: tuple[object, ...]) -> tuple[PolicyLike, ShareGraph | None, Chain | None]:
    """``compute(order, graph_or_chain, policy)``: the 0.x argument order, mapped to the 1.0 one."""
    if len(rest) != 1 or not isinstance(first, (ShareGraph, Chain)):
        raise TypeError("compute(order, policy, *, graph=None, chain=None, refunded=0) takes one positional "
                        "policy after the order")
    warnings.warn("compute(order, graph, policy) is deprecated: use compute(order, policy, graph=graph) "
                  "(or chain=chain)", DeprecationWarning, stacklevel=3)
    policy = cast("PolicyLike", rest[0])
    return (policy, first, None) if isinstance(first, ShareGraph) else (policy, None, first)


def orders_by_id(events: Iterable[Event]) -> dict[str, OrderEvent]:
    """The orders of a history by id: an exact repeat counts once, the same id with another payload
    is a :class:`DuplicateEvent`."""
    orders: dict[str, OrderEvent] = {}
    for ev in events:
        if isinstance(ev, OrderEvent):
            seen = orders.get(ev.id)
            if seen is not None and seen != ev:
                raise DuplicateEvent("order id used twice with different payloads", record=ev.id, field="id")
            orders[ev.id] = ev
    return orders


def refunds_by_order(events: Iterable[Event], orders: dict[str, OrderEvent]) -> dict[str, int]:
    """Refunded minor units per order id.  Refunds apply in time order (ties by id); a refund
    without an amount refunds whatever of the order is still unrefunded (as the ledger does).

    Raises :class:`UnknownReference` for a refund of an unknown order and :class:`InvalidEvent`
    when refunds exceed what was paid.
    """
    out: dict[str, int] = {}
    refunds = sorted((ev for ev in events if isinstance(ev, RefundEvent)), key=lambda r: (r.at, r.id))
    for ev in refunds:
        order = orders.get(ev.order)
        if order is None:
            raise UnknownReference(f"refund for unknown order {ev.order!r}", record=ev.id, field="order")
        amount = ev.amount_minor(order.currency)
        total = order.amount_minor if amount is None else out.get(ev.order, 0) + amount
        if total > order.amount_minor:
            raise InvalidEvent(f"refunds of order {ev.order!r} exceed the {order.money} paid",
                               record=ev.id, field="amount")
        out[ev.order] = total
    return out


def compute_events(events: EventsLike, policy: PolicyLike, *legacy: ShareGraph | None,
                   graph: ShareGraph | None = None,
                   binding: BindingConfig | BindingMode | str = BindingMode.FIRST_WINS) -> list[Settlement]:
    """Replay a whole history: every order's settlement on its net base after all its refunds.

    Orders come out sorted by (time, id), so the result does not depend on event order.

    >>> from cps_engine.models import load_events
    >>> from cps_engine.policies import load_policy
    >>> evs = load_events([
    ...   '{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}',
    ...   '{"type":"order","id":"o1","buyer":"cat","share":"s1","amount":"100.00","currency":"CNY",'
    ...   '"at":"2026-03-01T12:00:00+08:00"}',
    ...   '{"type":"refund","id":"r1","order":"o1","amount":"40.00","at":"2026-03-02T12:00:00+08:00"}'])
    >>> [str(s.total) for s in compute_events(evs, load_policy({"kind": "first_sharer", "rate": "10%"}))]
    ['6.00 CNY']
    """
    if legacy:
        if len(legacy) != 1 or graph is not None:
            raise TypeError("compute_events(events, policy, *, graph=None, binding=...) takes the graph as a keyword")
        warnings.warn("compute_events(events, policy, graph) is deprecated: use compute_events(events, policy, "
                      "graph=graph)", DeprecationWarning, stacklevel=2)
        graph = legacy[0]
    pol = policy if isinstance(policy, PolicyConfig) else load_policy(policy)
    events = as_events(events)
    if graph is None:
        graph = ShareGraph.from_events(events, binding=binding)
    orders = orders_by_id(events)
    refunded = refunds_by_order(events, orders)
    book = None
    if pol.tiers is not None:  # each payee's tier as of each order's time, from this history
        from cps_engine.tiers import TierBook

        book = TierBook.from_events(events, pol, graph=graph)
    out = []
    for order in sorted(orders.values(), key=lambda o: (o.at, o.id)):
        try:
            out.append(compute(order, pol, graph=graph, refunded=refunded.get(order.id, 0), tiers=book))
        except CpsError as exc:
            raise exc.located(record=order.id) from None
    return out
