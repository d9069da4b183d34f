"""Abuse signals: purchase rings, self-dealing clusters, refunds after payout, share bursts.

Over a history (events and the policy), each :class:`AbuseFinding` names its signal, the people,
orders and events involved (the evidence) and the money at stake per currency, exact in minor units
(shown as decimal text).  The thresholds (:class:`AbuseThresholds`) are printed with the report.

- ``ring``: a strongly connected group (≥ 2 people) of the directed graph *buyer → payee paid on
  the buyer's order* (gross commission lines > 0: a refund does not hide an edge); the shortest cycle
  through the group's first member must be at most ``ring_max_length`` long.  At stake: the net
  commission on the orders whose buyer and payee are both in the group.
- ``self_dealing``: people linked by a shared buyer fingerprint (``device``, ``phone_hash``,
  ``payment_hash`` on :class:`~cps_engine.models.OrderEvent`) form a cluster; a payee is flagged
  when ``self_dealing_min_orders`` or more orders by *other* buyers of their own cluster paid them
  commission.  At stake: the net commission those orders paid that payee.
- ``refund_after_payout``: per payee and currency, the commission that refunds took back when the
  payee had a payout dated at or after the order and before the refund, over the payee's gross
  commission; flagged at ``refund_ratio`` or more.  At stake: the clawed-back commission.
- ``share_burst``: ``burst_min_shares`` or more shares in one clock hour (UTC) by accounts first
  seen in that same hour (a person's first event of any kind).  At stake: the net commission on
  the orders whose share path goes through one of those shares.

The report is an aid to review, not a verdict: a flag says where to look.

>>> from cps_engine.models import load_events
>>> from cps_engine.policies import load_policy
>>> evs = load_events([
...   '{"type":"share","id":"sa","sharer":"amy","at":"2026-03-01T10:00:00Z"}',
...   '{"type":"share","id":"sb","sharer":"bob","at":"2026-03-01T10:00:00Z"}',
...   '{"type":"order","id":"o1","buyer":"bob","share":"sa","amount":"100.00","currency":"CNY",'
...   '"at":"2026-03-01T12:00:00Z"}',
...   '{"type":"order","id":"o2","buyer":"amy","share":"sb","amount":"100.00","currency":"CNY",'
...   '"at":"2026-03-01T13:00:00Z"}'])
>>> rep = abuse_report(evs, load_policy({"kind": "first_sharer", "rate": "10%"}))
>>> [(f.signal, f.people, f.orders, f.at_stake_text()) for f in rep.findings]
[('ring', ('amy', 'bob'), ('o1', 'o2'), {'CNY': '20.00'})]
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any, Literal

import networkx as nx
from pydantic import Field

from cps_engine.engine import Settlement, compute_events, orders_by_id, refunds_by_order
from cps_engine.graph import BindingConfig, BindingMode, ShareGraph
from cps_engine.models import (
    BindEvent,
    Event,
    EventsLike,
    OrderEvent,
    PayoutEvent,
    RefundEvent,
    RoleEvent,
    ShareEvent,
    as_events,
)
from cps_engine.money import Money
from cps_engine.policies.registry import PolicyLike, load_policy
from cps_engine.rules import Share, ThresholdSet, percent_text

__all__ = ["AbuseFinding", "AbuseReport", "AbuseThresholds", "Signal", "abuse_report"]

Signal = Literal["ring", "self_dealing", "refund_after_payout", "share_burst"]
FINGERPRINTS = ("device", "phone_hash", "payment_hash")

#: what each threshold means (printed with the report)
THRESHOLD_MEANING = {
    "ring_max_length": "a ring is flagged when its shortest cycle has at most this many people",
    "self_dealing_min_orders": "orders by other buyers of a payee's own fingerprint cluster that paid the payee",
    "refund_ratio": "commission clawed back by refunds after a payout, over the payee's gross commission",
    "burst_min_shares": "shares in one clock hour (UTC) by accounts first seen in that hour",
}


class AbuseThresholds(ThresholdSet):
    """Thresholds of the abuse report (shares are exact: ``"30%"``, ``"3/10"``); see ``docs/abuse.md``."""

    ring_max_length: int = Field(default=6, ge=2)
    self_dealing_min_orders: int = Field(default=1, ge=1)
    refund_ratio: Share = Fraction(3, 10)
    burst_min_shares: int = Field(default=5, ge=1)

    def as_rows(self) -> list[dict[str, str]]:
        out = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            text = percent_text(value) if isinstance(value, Fraction) else str(value)
            out.append({"name": name, "value": text, "meaning": THRESHOLD_MEANING[name]})
        return out


def _money_text(values: dict[str, int]) -> dict[str, str]:
    return {c: str(Money(v, c).amount) for c, v in sorted(values.items())}


@dataclass(frozen=True, slots=True)
class AbuseFinding:
    """One flag: ``signal``, a ``key`` naming it (stable across event order), the evidence (people,
    orders, other event ids), the money at stake per currency (minor units), the measured figure and
    how to recompute it."""

    signal: Signal
    key: str
    people: tuple[str, ...]
    orders: tuple[str, ...]
    events: tuple[str, ...]
    at_stake: dict[str, int]
    figure: str
    detail: str = ""
    how: str = ""

    def at_stake_text(self) -> dict[str, str]:
        return _money_text(self.at_stake)

    def as_dict(self) -> dict[str, Any]:
        return {"signal": self.signal, "key": self.key, "people": list(self.people), "orders": list(self.orders),
                "events": list(self.events), "at_stake": self.at_stake_text(), "figure": self.figure,
                "detail": self.detail, "how": self.how}


@dataclass
class AbuseReport:
    """Every finding (sorted by signal, then key) and the thresholds used."""

    policy: str
    policy_kind: str
    findings: list[AbuseFinding] = field(default_factory=list)
    thresholds: AbuseThresholds = field(default_factory=AbuseThresholds)

    @property
    def flagged(self) -> bool:
        return bool(self.findings)

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in ("ring", "self_dealing", "refund_after_payout", "share_burst")}
        for f in self.findings:
            out[f.signal] += 1
        return out

    def at_stake(self) -> dict[str, int]:
        """Money at stake over all findings, per currency (a sum: an order in two findings counts twice)."""
        out: dict[str, int] = defaultdict(int)
        for f in self.findings:
            for c, v in f.at_stake.items():
                out[c] += v
        return dict(out)

    def as_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "policy_kind": self.policy_kind, "flagged": self.flagged,
                "counts": self.counts(), "at_stake": _money_text(self.at_stake()),
                "findings": [f.as_dict() for f in self.findings], "thresholds": self.thresholds.as_rows()}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False, indent=1) + "\n"


def _people_of(ev: Event) -> tuple[str, ...]:
    if isinstance(ev, ShareEvent):
        return (ev.sharer,)
    if isinstance(ev, BindEvent):
        return (ev.user, ev.upline)
    if isinstance(ev, OrderEvent):
        return (ev.buyer,)
    if isinstance(ev, PayoutEvent):
        return (ev.payee,)
    if isinstance(ev, RoleEvent):
        return (ev.person,)
    return ()


def _stake(settlements: dict[str, Settlement], orders: Iterable[str], payees: set[str] | None = None) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for oid in orders:
        s = settlements[oid]
        out[s.base.currency] += sum(ln.amount.minor for ln in s.lines if payees is None or ln.payee in payees)
    return {c: v for c, v in out.items() if v}


def _rings(settlements: dict[str, Settlement], orders: dict[str, OrderEvent],
           t: AbuseThresholds) -> list[AbuseFinding]:
    g: nx.DiGraph[str] = nx.DiGraph()
    edge_orders: dict[tuple[str, str], set[str]] = defaultdict(set)
    for oid, s in settlements.items():
        buyer = orders[oid].buyer
        for ln in s.rebase(0).lines:
            if ln.amount.minor > 0 and ln.payee != buyer:
                g.add_edge(buyer, ln.payee)
                edge_orders[(buyer, ln.payee)].add(oid)
    out = []
    for comp in nx.strongly_connected_components(g):
        if len(comp) < 2:
            continue
        members = sorted(comp)
        sub = g.subgraph(comp)
        start = members[0]
        best: list[str] | None = None
        for pred in sorted(sub.predecessors(start)):
            path = [start] if pred == start else nx.shortest_path(sub, start, pred)
            if best is None or len(path) < len(best):
                best = path
        assert best is not None
        if len(best) > t.ring_max_length:
            continue
        ring_orders = sorted({o for (b, p), os in edge_orders.items() if b in comp and p in comp for o in os})
        cycle = " → ".join([*best, start])
        out.append(AbuseFinding(
            "ring", "ring:" + ",".join(members), tuple(members), tuple(ring_orders), (),
            _stake(settlements, ring_orders), f"{len(members)} people, shortest cycle {len(best)}",
            f"cycle {cycle}",
            "draw an arrow buyer → payee for every commission line > 0 (before refunds); find the groups "
            "where each member reaches every other by arrows; sum the net commission of the orders inside"))
    return out


def _self_dealing(settlements: dict[str, Settlement], orders: dict[str, OrderEvent],
                  t: AbuseThresholds) -> list[AbuseFinding]:
    g: nx.Graph[tuple[str, str]] = nx.Graph()
    for o in orders.values():
        for name in FINGERPRINTS:
            value = getattr(o, name)
            if value is not None:
                g.add_edge(("person", o.buyer), (name, value))
    cluster: dict[str, frozenset[str]] = {}
    for comp in nx.connected_components(g):
        people = frozenset(n[1] for n in comp if n[0] == "person")
        if len(people) >= 2:
            for p in people:
                cluster[p] = people
    hits: dict[str, list[str]] = defaultdict(list)
    for oid, s in settlements.items():
        buyer = orders[oid].buyer
        for payee in {ln.payee for ln in s.rebase(0).lines if ln.amount.minor > 0}:
            if payee != buyer and buyer in cluster.get(payee, frozenset()):
                hits[payee].append(oid)
    out = []
    for payee, oids in sorted(hits.items()):
        if len(oids) < t.self_dealing_min_orders:
            continue
        members = sorted(cluster[payee])
        shared = sorted({f"{n}={getattr(orders[o], n)}" for o in oids for n in FINGERPRINTS
                         if getattr(orders[o], n) is not None})
        out.append(AbuseFinding(
            "self_dealing", f"self_dealing:{payee}", tuple(members), tuple(sorted(oids)), (),
            _stake(settlements, oids, {payee}), f"{len(oids)} order(s) from the payee's own cluster",
            f"payee {payee}; fingerprints on those orders: {', '.join(shared)}",
            "link buyers who share any device, phone_hash or payment_hash (transitively); for each payee, "
            "count the orders by another buyer of the payee's own group that paid them commission"))
    return out


def _refund_after_payout(evs: list[Event], settlements: dict[str, Settlement], orders: dict[str, OrderEvent],
                         t: AbuseThresholds) -> list[AbuseFinding]:
    payouts: dict[tuple[str, str], list[PayoutEvent]] = defaultdict(list)
    for ev in evs:
        if isinstance(ev, PayoutEvent):
            payouts[(ev.currency, ev.payee)].append(ev)
    refunds: dict[str, list[RefundEvent]] = defaultdict(list)
    for ev in sorted((e for e in evs if isinstance(e, RefundEvent)), key=lambda r: (r.at, r.id)):
        refunds[ev.order].append(ev)
    gross: dict[tuple[str, str], int] = defaultdict(int)
    for s in settlements.values():
        for ln in s.rebase(0).lines:
            gross[(s.base.currency, ln.payee)] += ln.amount.minor
    clawed: dict[tuple[str, str], int] = defaultdict(int)
    evidence: dict[tuple[str, str], tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    for oid, rs in refunds.items():
        s, order = settlements[oid], orders[oid]
        cur = s.base.currency
        before = {ln.payee: ln.amount.minor for ln in s.rebase(0).lines}
        for i, r in enumerate(rs):
            after_s = s.rebase(refunds_by_order(rs[: i + 1], orders).get(oid, 0))
            after = {ln.payee: ln.amount.minor for ln in after_s.lines}
            for payee, was in before.items():
                drop = was - after.get(payee, 0)
                paid = [p for p in payouts.get((cur, payee), ()) if order.at <= p.at < r.at]
                if drop > 0 and paid:
                    clawed[(cur, payee)] += drop
                    evidence[(cur, payee)][0].add(oid)
                    evidence[(cur, payee)][1].update([r.id, max(paid, key=lambda p: (p.at, p.id)).id])
            before = after
    out = []
    for (cur, payee), amount in sorted(clawed.items()):
        ratio = Fraction(amount, gross[(cur, payee)]) if gross[(cur, payee)] else Fraction(1)
        if ratio < t.refund_ratio:
            continue
        oids, ids = evidence[(cur, payee)]
        out.append(AbuseFinding(
            "refund_after_payout", f"refund_after_payout:{payee}:{cur}", (payee,), tuple(sorted(oids)),
            tuple(sorted(ids)), {cur: amount}, f"{percent_text(ratio)} of {Money(gross[(cur, payee)], cur)}",
            f"payee {payee}: {Money(amount, cur)} clawed back after a payout",
            "for each refund, the drop in the payee's commission on its order, counted when the payee had a "
            "payout (same currency) at or after the order and before the refund; over the payee's commission "
            "before refunds"))
    return out


def _hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _bursts(evs: list[Event], settlements: dict[str, Settlement], orders: dict[str, OrderEvent],
            t: AbuseThresholds) -> list[AbuseFinding]:
    first: dict[str, datetime] = {}
    for ev in evs:
        for p in _people_of(ev):
            if p not in first or ev.at < first[p]:
                first[p] = ev.at
    shares = {ev.id: ev for ev in evs if isinstance(ev, ShareEvent)}
    by_hour: dict[datetime, list[ShareEvent]] = defaultdict(list)
    for sh in shares.values():
        if _hour(sh.at) == _hour(first[sh.sharer]):
            by_hour[_hour(sh.at)].append(sh)

    def path(share: str) -> set[str]:
        seen: set[str] = set()
        cur: str | None = share
        while cur is not None and cur not in seen and cur in shares:
            seen.add(cur)
            cur = shares[cur].parent
        return seen

    out = []
    for hour, group in sorted(by_hour.items()):
        if len(group) < t.burst_min_shares:
            continue
        ids = {sh.id for sh in group}
        oids = sorted(oid for oid, o in orders.items() if o.share is not None and path(o.share) & ids)
        people = sorted({sh.sharer for sh in group})
        out.append(AbuseFinding(
            "share_burst", f"share_burst:{hour.isoformat()}", tuple(people), tuple(oids), tuple(sorted(ids)),
            _stake(settlements, oids), f"{len(group)} shares by {len(people)} new account(s)",
            f"hour {hour.isoformat()} (UTC)",
            "bucket shares by clock hour in UTC; keep those whose sharer's first event (of any kind) falls in "
            "the same hour; orders whose share path (share, its parent, …) meets one of them; their net "
            "commission"))
    return out


def abuse_report(events: EventsLike, policy: PolicyLike, *,
                 binding: BindingConfig | BindingMode | str = BindingMode.FIRST_WINS,
                 thresholds: AbuseThresholds | None = None) -> AbuseReport:
    """The four abuse signals over a history (see the module docstring and ``docs/abuse.md``)."""
    policy = load_policy(policy)
    events = as_events(events)
    evs = sorted(events, key=lambda e: (e.at, e.type, e.id))
    t = thresholds or AbuseThresholds()
    graph = ShareGraph.from_events(evs, binding=binding)
    orders = orders_by_id(evs)
    settlements = {s.order: s for s in compute_events(evs, policy, graph=graph)}
    findings = (_rings(settlements, orders, t) + _self_dealing(settlements, orders, t)
                + _refund_after_payout(evs, settlements, orders, t) + _bursts(evs, settlements, orders, t))
    return AbuseReport(policy.label, policy.kind, findings, t)

