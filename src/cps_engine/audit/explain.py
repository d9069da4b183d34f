"""Explain a commission: why each line of an order is what it is.

For one order: the chain (drawn as a path from the farthest sharer or upline down to the buyer), the
level of each payee, the rule and rate that applied, the commissionable base and how it was derived,
the refunds and the net base, and the rounding (the exact ``base × rate`` and what rounding kept).
With a payee: that payee's line, or the reason they have none.

>>> from cps_engine.models import load_events
>>> from cps_engine.policies import load_policy
>>> evs = load_events([
...   '{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}',
...   '{"type":"share","id":"s2","sharer":"bob","parent":"s1","at":"2026-03-01T11:00:00+08:00"}',
...   '{"type":"order","id":"o1","buyer":"cat","share":"s2","amount":"199.99","currency":"CNY",'
...   '"shipping":"10.00","at":"2026-03-01T12:00:00+08:00"}'])
>>> ex = explain_order(evs, load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%"]}), "o1")
>>> ex.path_text()
'amy [L2 via s1] → bob [L1 via s2] → cat (buyer, order o1)'
>>> [(ln.payee, ln.level, str(ln.exact), str(ln.amount)) for ln in ex.lines]
[('bob', 1, '18999/10', '18.99 CNY'), ('amy', 2, '18999/20', '9.49 CNY')]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from cps_engine.engine import Settlement, compute, refunds_by_order
from cps_engine.errors import UnknownReference
from cps_engine.graph import BindingConfig, BindingMode, Link, ShareGraph
from cps_engine.models import EventsLike, OrderEvent, RefundEvent, as_events
from cps_engine.money import Money, Rounding, apply_rate, format_rate
from cps_engine.policies.base import PolicyConfig
from cps_engine.policies.registry import PolicyLike, load_policy
from cps_engine.tiers import TierBook

__all__ = ["Explanation", "LineExplanation", "explain_order"]

#: Chains longer than this are drawn with the middle elided (the JSON form keeps every link).
DRAW_LIMIT = 12


@dataclass(frozen=True, slots=True)
class LineExplanation:
    """One line: ``amount`` is ``exact = base × rate`` rounded (or its share of a rounded pool)."""

    payee: str
    level: int
    rule: str
    rate: Fraction
    base: Money
    exact: Fraction
    amount: Money
    rounding: Rounding
    path: tuple[str, ...]
    pool: str | None
    pool_total: Money | None
    gross_amount: Money
    #: minor units taken back after rounding up so the lines never exceed the base (farthest first)
    taken_back: int = 0

    @property
    def kept(self) -> Fraction:
        """What rounding left with the merchant on this line (minor units, may be negative)."""
        return self.exact - self.amount.minor

    def as_dict(self) -> dict[str, Any]:
        return {"payee": self.payee, "level": self.level, "rule": self.rule, "rate": format_rate(self.rate),
                "base": str(self.base.amount), "exact_minor": str(self.exact), "amount": str(self.amount.amount),
                "currency": self.amount.currency, "rounding": self.rounding.value,
                "rounding_kept_minor": str(self.kept),
                "path": list(self.path), "pool": self.pool,
                "pool_total": str(self.pool_total.amount) if self.pool_total is not None else None,
                "before_refunds": str(self.gross_amount.amount), "taken_back_minor": self.taken_back}


@dataclass(frozen=True)
class Explanation:
    """Everything :func:`explain_order` found about one order (and optionally one payee)."""

    order: OrderEvent
    policy: str
    policy_kind: str
    config_hash: str
    rounding: Rounding
    chain_source: str
    chain: tuple[Link, ...]
    gross_base: Money
    base_rule: str
    refunds: tuple[RefundEvent, ...]
    refunded: Money
    net_base: Money
    lines: tuple[LineExplanation, ...]
    merchant_net: Money
    payee: str | None = None
    payee_reason: str | None = None
    no_lines_reason: str | None = None
    #: promoter tiers (a tiered policy): payee -> (tier name, why), for every payee awarded a rate
    tiers: tuple[tuple[str, str, str], ...] = ()

    def tier_of(self, payee: str) -> tuple[str, str] | None:
        """``(tier, why)`` of ``payee`` on this order (None: the policy has no tiers)."""
        return next(((name, why) for p, name, why in self.tiers if p == payee), None)

    def level_of(self, payee: str) -> int | None:
        return next((ln.level for ln in self.lines if ln.payee == payee), None)

    def path_text(self, limit: int = DRAW_LIMIT) -> str:
        """The chain drawn farthest first: ``amy [L2 via s1] → bob [L1 via s2] → cat (buyer, order o1)``."""
        nodes = []
        links = list(reversed(self.chain))
        for link in links:
            level = self.level_of(link.payee)
            tag = f"L{level}" if level is not None else "unpaid"
            mark = " ★" if self.payee is not None and link.payee == self.payee else ""
            if link.payee == self.order.buyer and link.via == self.order.id:
                nodes.append(f"{link.payee}{mark} [{tag}, self-purchase]")
            else:
                nodes.append(f"{link.payee}{mark} [{tag} via {link.via}]")
        if len(nodes) > limit:
            head, tail = limit // 2, limit - limit // 2
            nodes = [*nodes[:head], f"… {len(nodes) - limit} more …", *nodes[-tail:]]
        nodes.append(f"{self.order.buyer} (buyer, order {self.order.id})")
        return " → ".join(nodes)

    def render(self) -> str:
        """A plain-text explanation for people."""
        o = self.order
        cur = o.currency
        out = [f"Order {o.id}: {o.buyer} paid {o.money} at {o.at.isoformat()}"
               + (f" through share {o.share}" if o.share else " (no share link: the buyer's uplines)"),
               f"Policy {self.policy!r} ({self.policy_kind}, config {self.config_hash[:12]}…), "
               f"rounding {self.rounding.value}",
               "",
               f"Chain ({self.chain_source}, {len(self.chain)} link{'s' if len(self.chain) != 1 else ''}, "
               "farthest first):",
               f"  {self.path_text()}",
               "",
               f"Commissionable base: {self.gross_base} ({self.base_rule})"]
        if self.refunds:
            for r in self.refunds:
                amt = "the rest of the order" if r.amount is None else str(Money.of(r.amount, cur))
                out.append(f"  {r.kind} {r.id} at {r.at.isoformat()}: {amt}")
            out.append(f"  refunded {self.refunded}; net base {self.net_base} (refunds come off the base first, "
                       "never below 0; rates stay those snapshotted when the order was paid)")
        out.append("")
        if not self.lines:
            out.append(f"No commission lines: {self.no_lines_reason}.")
        for ln in self.lines:
            how = (f"{_minor_text(ln.exact, cur)} exact, rounded {ln.rounding.value} to "
                   f"{Money(ln.amount.minor + ln.taken_back, cur)}"
                   if ln.pool is None else
                   f"its share of the {ln.pool} pool of {ln.pool_total} (pool rounded {ln.rounding.value} once, "
                   f"split exactly by largest remainder): exact {_minor_text(ln.exact, cur)} -> {ln.amount}")
            out.append(f"{ln.payee} (level {ln.level}): rule {ln.rule!r}, rate {format_rate(ln.rate)}"
                       f" = {_percent(ln.rate)}")
            out.append(f"  {ln.base} × {format_rate(ln.rate)} = {how}")
            if ln.taken_back:
                out.append(f"  rounding up gave {Money(ln.amount.minor + ln.taken_back, cur)}; "
                           f"{Money(ln.taken_back, cur)} was taken back so the lines do not exceed the base")
            if ln.gross_amount != ln.amount:
                out.append(f"  before refunds it was {ln.gross_amount}")
            out.append(f"  path read: {' → '.join(ln.path) if ln.path else '-'}")
            tier = self.tier_of(ln.payee)
            if tier is not None:
                out.append(f"  tier: {tier[1]}")
        out.append(f"Merchant keeps {self.merchant_net} (base {self.net_base} − lines "
                   f"{Money(self.net_base.minor - self.merchant_net.minor, cur)})")
        if self.payee is not None and self.payee_reason is not None:
            out += ["", f"{self.payee}: {self.payee_reason}"]
        return "\n".join(out)

    def as_dict(self) -> dict[str, Any]:
        o = self.order
        return {
            "order": {"id": o.id, "buyer": o.buyer, "share": o.share, "at": o.at.isoformat(),
                      "amount": str(o.money.amount), "currency": o.currency},
            "policy": {"name": self.policy, "kind": self.policy_kind, "config_hash": self.config_hash,
                       "rounding": self.rounding.value},
            "chain": {"source": self.chain_source, "path": self.path_text(limit=10**9),
                      "links": [{"payee": ln.payee, "via": ln.via, "level": self.level_of(ln.payee)}
                                for ln in self.chain]},
            "base": {"gross": str(self.gross_base.amount), "rule": self.base_rule,
                     "refunds": [{"id": r.id, "kind": r.kind, "at": r.at.isoformat(),
                                  "amount": str(r.amount) if r.amount is not None else None} for r in self.refunds],
                     "refunded": str(self.refunded.amount), "net": str(self.net_base.amount)},
            "lines": [ln.as_dict() for ln in self.lines],
            "merchant_net": str(self.merchant_net.amount),
            "payee": self.payee, "payee_reason": self.payee_reason, "no_lines_reason": self.no_lines_reason,
            **({"tiers": {p: {"tier": name, "why": why} for p, name, why in self.tiers}} if self.tiers else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False, indent=1) + "\n"


def _percent(rate: Fraction) -> str:
    return f"{(Decimal(rate.numerator) * 100 / Decimal(rate.denominator)).quantize(Decimal('0.0001'))}%"


def _minor_text(x: Fraction, currency: str) -> str:
    """Exact minor units, written in major units when the decimal terminates, else as ``p/q`` minor units.

    >>> _minor_text(Fraction(37999, 20), "CNY"), _minor_text(Fraction(1, 3), "CNY")
    ('18.9995 CNY', '1/3 minor units of CNY (≈ 0.003333 CNY)')
    """
    text = format_rate(x) if 0 <= x <= 1 else None
    d = x.denominator
    for prime in (2, 5):
        while d % prime == 0:
            d //= prime
    if d == 1:
        major = Decimal(x.numerator) / Decimal(x.denominator) / Decimal(10) ** Money(0, currency).exponent
        return f"{format(major, 'f')} {currency}"
    approx = (Decimal(x.numerator) / Decimal(x.denominator) / Decimal(10) ** Money(0, currency).exponent
              ).quantize(Decimal("0.000001"))
    return f"{text or x} minor units of {currency} (≈ {approx} {currency})"


def _base_rule(order: OrderEvent, policy: PolicyConfig) -> str:
    parts = [f"paid {order.money}"]
    if order.shipping_minor and not policy.base.include_shipping:
        parts.append(f"− shipping {Money(order.shipping_minor, order.currency)}")
    if order.tax_minor and not policy.base.include_tax:
        parts.append(f"− tax {Money(order.tax_minor, order.currency)}")
    return " ".join(parts)


def _why_none(order: OrderEvent, chain: tuple[Link, ...], gross: Settlement, net: Settlement,
              policy: PolicyConfig, buyer_participates: bool) -> str | None:
    """Why the order has no line at all (``None`` when it has lines)."""
    if net.lines:
        return None
    if gross.lines:
        return "the order was refunded: on the net base every line is 0"
    if gross.awards:
        return "the policy awarded rates, but every base × rate rounds to 0 minor units"
    if not chain:
        return ("no chain: the order came through no share link and the buyer had no upline at the time"
                if order.share is None else "the share path holds nobody but the buyer")
    traits = policy.traits()
    entry = traits.entry_skus
    if entry and order.lines and any(ln.sku in entry for ln in order.lines):
        return "the order contains an entry purchase, which earns nobody anything (CN-FEE)"
    if not traits.participant_self_purchase_pays_uplines and buyer_participates:
        return ("the buyer takes part in the programme (has shared or has a downline), so their own purchase earns "
                "their uplines nothing (CN-SELF)")
    if not any(policy.is_eligible(link.payee) for link in chain):
        return "nobody on the chain is an eligible distributor under the policy"
    return f"the {policy.kind} policy awards nothing on this chain"


def _why_not(payee: str, order: OrderEvent, chain: tuple[Link, ...], gross: Settlement, net: Settlement,
             policy: PolicyConfig, order_reason: str | None) -> str:
    if any(ln.payee == payee for ln in net.lines):
        return "paid as shown above"
    if any(ln.payee == payee for ln in gross.lines):
        return "paid before the refunds, nothing after them: the net base leaves this line at 0"
    if any(a.payee == payee for a in gross.awards):
        return "awarded a rate, but base × rate rounds to 0 minor units"
    pos = next((k for k, ln in enumerate(chain, start=1) if ln.payee == payee), None)
    if pos is None:
        if payee == order.buyer:
            return "is the buyer; the policy pays nobody for their own purchase (self_purchase is off)"
        return "is not on the chain of this order, so no rule of the policy can pay them"
    hints = []
    depth = policy.traits().max_level
    if depth is not None and pos > depth:
        hints.append(f"the policy pays at most {depth} level{'s' if depth != 1 else ''}")
    if not policy.is_eligible(payee):
        hints.append("they are not an eligible distributor under the policy")
    if order_reason is not None:
        hints.append(order_reason)
    reason = "; ".join(hints) if hints else f"the {policy.kind} policy awards nothing at that position"
    return f"sits at position {pos} of the chain (nearest first), but {reason}"


def explain_order(events: EventsLike, policy: PolicyLike, order_id: str, payee: str | None = None, *,
                  binding: BindingConfig | BindingMode | str = BindingMode.FIRST_WINS,
                  as_of: datetime | None = None) -> Explanation:
    """Explain the lines of ``order_id`` (and why ``payee`` has the line they have, or none).

    Raises :class:`~cps_engine.errors.UnknownReference` when the order is not in the events.
    """
    policy = load_policy(policy)
    events = as_events(events)
    evs = [ev for ev in events if as_of is None or ev.at <= as_of]
    orders = {ev.id: ev for ev in evs if isinstance(ev, OrderEvent)}
    order = orders.get(order_id)
    if order is None:
        raise UnknownReference(f"order {order_id!r} is not in the events", record=order_id, field="order")
    graph = ShareGraph.from_events(evs, binding=binding)
    chain = graph.chain_for(order, self_purchase=policy.self_purchase)
    links = tuple(chain.all())
    refunded = refunds_by_order(evs, orders).get(order.id, 0)
    book = TierBook.from_events(evs, policy, graph=graph) if policy.tiers is not None else None
    net = compute(order, policy, chain=chain, refunded=refunded, tiers=book)
    tiers = () if book is None else tuple(
        (a.payee, (st := book.state(a.payee, order.at)).name, st.explain()) for a in net.awards)
    gross = net.rebase(0)
    cur = order.currency
    gross_amounts = {ln.payee: ln.amount for ln in gross.lines}
    pools: dict[str, int] = {}
    for ln in net.lines:
        if ln.provenance.pool is not None:
            pools[ln.provenance.pool] = pools.get(ln.provenance.pool, 0) + ln.amount.minor
    lines = []
    for ln in net.lines:
        p = ln.provenance
        pool_total = Money(pools[p.pool], cur) if p.pool is not None else None
        exact = p.base * ln.rate
        taken = apply_rate(p.base, ln.rate, p.rounding) - ln.amount.minor if p.pool is None else 0
        lines.append(LineExplanation(ln.payee, ln.level, p.rule, ln.rate, Money(p.base, cur), exact, ln.amount,
                                     p.rounding, p.path, p.pool, pool_total, gross_amounts.get(ln.payee, ln.amount),
                                     taken))
    refunds = tuple(sorted((ev for ev in evs if isinstance(ev, RefundEvent) and ev.order == order.id),
                           key=lambda r: (r.at, r.id)))
    order_reason = _why_none(order, links, gross, net, policy, graph.is_participant(order.buyer, order.at))
    reason = _why_not(payee, order, links, gross, net, policy, order_reason) if payee is not None else None
    return Explanation(order, policy.label, policy.kind, policy.config_hash, policy.rounding, chain.source, links,
                       Money(gross.gross_base, cur), _base_rule(order, policy), refunds, Money(refunded, cur),
                       net.base, tuple(lines), net.merchant_net, payee, reason, order_reason, tiers)
