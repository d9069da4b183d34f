"""Compliance report: is this programme a pyramid?  The policy and the observed history against the rules.

Each finding cites a rule of :data:`cps_engine.rules.RULES` (the one place the rules live, with their
sources), gives the measured figure, the threshold it is held to (:class:`cps_engine.rules.Thresholds`,
each with its source in :data:`cps_engine.rules.THRESHOLDS`), how to recompute the figure by hand, and
a status: ``pass``, ``warn``, ``fail``, or ``info`` when the data cannot decide.  One verdict sums
them up: **non-compliant** when a finding fails, **review** when one warns, else **compliant**; the
findings that decide it are the report's evidence.

Vocabulary (commission is net of refunds, per currency; the worst currency decides a share):

- **paid hierarchy**: the payees of one order, nearest first (the engine's levels, read as ranks:
  a first-sharer line at position 6 of a share path is still the one and only payee).  Unpaid
  re-sharers on a share path are customers, not levels.
- **insider** (in hindsight): a person who ever earns commission, ever has an accepted bound
  downline, or ever holds a ``distributor`` role (:class:`~cps_engine.models.RoleEvent`).
  Sharing a link alone makes nobody an insider.  **At the order's time**: the same facts, dated
  before the order (earned on an earlier order, bound a downline or held the role by then).
- **member** at an order: an insider by the history, or holding a ``distributor`` role at the
  order's time; the retail ratio is the commission on non-members' purchases.
- **joining purchase**: a buyer's first order within ``entry_window_hours`` of their own bind,
  first share or distributor sign-up.  An **entry package** is a joining purchase (same SKUs at the
  same prices, or the same amount when orders carry no lines) shared by at least
  ``entry_concentration`` of the buyers who recruit or earn, and by ``entry_min_orders`` or more.
- **clawback**: commission a payee was paid out that a refund dated after their last payout took
  back.  It is its own measure (US-INVENTORY, on insiders' purchases) and is netted out of the pay
  not derived from an order, so that figure measures off-policy pay (recruit bounties) alone.

The report is an aid, not legal advice: :data:`cps_engine.rules.DISCLAIMER` opens every rendering.

>>> from cps_engine.models import load_events
>>> from cps_engine.policies import load_policy
>>> evs = load_events([
...   '{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}',
...   '{"type":"order","id":"o1","buyer":"cat","share":"s1","amount":"100.00","currency":"CNY",'
...   '"at":"2026-03-01T12:00:00+08:00"}'])
>>> rep = compliance_report(evs, load_policy({"kind": "last_sharer", "rate": "10%"}))
>>> [(f.rule, f.status) for f in rep.findings if f.rule in ("CN-DEPTH", "US-INTERNAL")]
[('CN-DEPTH', 'pass'), ('CN-DEPTH', 'pass'), ('CN-DEPTH', 'pass'), ('US-INTERNAL', 'pass')]
>>> rep.verdict
'compliant'
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

import networkx as nx

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
from cps_engine.policies.base import PolicyConfig
from cps_engine.policies.registry import PolicyLike, load_policy
from cps_engine.rules import DISCLAIMER, PROFILES, RULES, Rule, Thresholds
from cps_engine.tiers import HEADCOUNT_MEASURES, TierBook

__all__ = ["ComplianceReport", "EntryPackage", "Finding", "Verdict", "compliance_report", "rule_limit"]

Status = Literal["pass", "warn", "fail", "info"]
Verdict = Literal["compliant", "review", "non-compliant"]
_RANK = {"pass": 0, "info": 1, "warn": 2, "fail": 3}


def rule_limit(name: str, thresholds: Thresholds | None = None) -> Fraction | int:
    """A threshold by name (default values unless ``thresholds`` is given).

    >>> rule_limit("internal_fail"), rule_limit("downline_warn"), rule_limit("org_people")
    (Fraction(1, 5), Fraction(1, 2), 30)
    """
    t = thresholds or Thresholds()
    if name not in type(t).model_fields:
        raise LookupError(f"no threshold named {name!r}")
    value: Fraction | int = getattr(t, name)
    return value


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule, one measure: ``figure`` is the measured value as text, ``limit`` what it is held to,
    ``how`` how to recompute the figure by hand."""

    rule: str
    measure: str
    figure: str
    status: Status
    limit: str
    detail: str = ""
    how: str = ""

    @property
    def source(self) -> Rule:
        return RULES[self.rule]

    def as_dict(self) -> dict[str, Any]:
        r = self.source
        return {"rule": self.rule, "jurisdiction": r.jurisdiction, "title": r.title, "source": r.source,
                "measure": self.measure, "figure": self.figure, "limit": self.limit, "status": self.status,
                "detail": self.detail, "how": self.how}


@dataclass(frozen=True, slots=True)
class EntryPackage:
    """An entry purchase: declared (``entry_skus``) or found in the history (joining purchases)."""

    items: tuple[str, ...]
    declared: bool
    orders: int
    buyers_recruiting: int
    sales: dict[str, int]
    commission: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {"items": list(self.items), "declared": self.declared, "orders": self.orders,
                "buyers_recruiting": self.buyers_recruiting,
                "sales": {c: str(Money(v, c).amount) for c, v in sorted(self.sales.items())},
                "commission": {c: str(Money(v, c).amount) for c, v in sorted(self.commission.items())}}


@dataclass
class ComplianceReport:
    """Findings for every rule checked, the verdict and its evidence, the thresholds, the disclaimer."""

    policy: str
    policy_kind: str
    config_hash: str
    summary: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)
    thresholds: Thresholds = field(default_factory=Thresholds)
    entry_packages: list[EntryPackage] = field(default_factory=list)
    disclaimer: str = DISCLAIMER

    @property
    def worst(self) -> Status:
        return max((f.status for f in self.findings), key=lambda s: _RANK[s], default="pass")

    @property
    def verdict(self) -> Verdict:
        """``non-compliant`` when a finding fails, ``review`` when one warns, else ``compliant``."""
        worst = self.worst
        return "non-compliant" if worst == "fail" else "review" if worst == "warn" else "compliant"

    @property
    def evidence(self) -> list[Finding]:
        """The findings behind the verdict: the failing ones, else the warnings (none when compliant)."""
        want: Status = "fail" if self.worst == "fail" else "warn"
        return [f for f in self.findings if f.status == want]

    def counts(self) -> dict[str, int]:
        out = {"pass": 0, "warn": 0, "fail": 0, "info": 0}
        for f in self.findings:
            out[f.status] += 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"disclaimer": self.disclaimer, "policy": self.policy, "policy_kind": self.policy_kind,
                "config_hash": self.config_hash, "verdict": self.verdict,
                "evidence": [f"{f.rule}: {f.measure} = {f.figure} (limit {f.limit})" for f in self.evidence],
                "summary": self.summary, "worst": self.worst, "counts": self.counts(),
                "findings": [f.as_dict() for f in self.findings],
                "entry_packages": [p.as_dict() for p in self.entry_packages],
                "thresholds": self.thresholds.as_rows()}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False, indent=1) + "\n"

    def render(self) -> str:
        """Plain text: the disclaimer, the verdict and its evidence, one line per finding, the thresholds,
        the disclaimer again."""
        out = [self.disclaimer, "", f"Policy {self.policy!r} ({self.policy_kind})",
               f"Verdict: {self.verdict.upper()}"]
        out += [f"  because {f.rule} {f.measure}: {f.figure} (limit: {f.limit})" for f in self.evidence]
        out.append("")
        for f in self.findings:
            out.append(f"[{f.status.upper():4}] {f.rule:17} {f.measure}: {f.figure} (limit: {f.limit})")
            if f.detail:
                out.append(f"       {f.detail}")
            if f.how:
                out.append(f"       how: {f.how}")
        out += ["", "Thresholds (name = value: rule, source):"]
        out += [f"  {r['name']} = {r['value']}: {r['rule']}, {r['source']}" for r in self.thresholds.as_rows()]
        out += ["", self.disclaimer]
        return "\n".join(out)


def _pct(x: Fraction) -> str:
    return f"{(Decimal(x.numerator) * 100 / Decimal(x.denominator)).quantize(Decimal('0.01'))}%"


def _share(part: int, whole: int) -> Fraction:
    return Fraction(part, whole) if whole else Fraction(0)


def _policy_payees(policy: PolicyConfig) -> int | None:
    """Payees the policy can pay on one order (None: no limit), as the policy declares it."""
    return policy.traits().max_payees


def _signature(order: OrderEvent) -> tuple[str, ...]:
    if order.lines:
        return tuple(sorted(f"{ln.sku} × {ln.quantity} @ {ln.unit_price} {order.currency}" for ln in order.lines))
    return (f"amount {order.amount} {order.currency}",)


class _Roles:
    """Role events per person, answered as of a time."""

    def __init__(self, events: Iterable[RoleEvent]) -> None:
        self._by: dict[str, list[RoleEvent]] = defaultdict(list)
        for ev in sorted(events, key=lambda e: (e.at, e.id)):
            self._by[ev.person].append(ev)

    def __bool__(self) -> bool:
        return bool(self._by)

    def at(self, person: str, when: datetime) -> str | None:
        role = None
        for ev in self._by.get(person, ()):
            if ev.at > when:
                break
            role = ev.role
        return role

    def first_distributor(self) -> dict[str, datetime]:
        return {p: next(e.at for e in evs if e.role == "distributor")
                for p, evs in self._by.items() if any(e.role == "distributor" for e in evs)}


def _clawbacks(evs: list[Event], settlements: list[Settlement], orders: dict[str, OrderEvent],
               last_payout: dict[tuple[str, str], datetime]) -> dict[tuple[str, str], dict[str, int]]:
    """Per (currency, payee): commission on each order as of the payee's last payout minus the net
    commission, for orders refunded after that payout (the commission those refunds clawed back)."""
    refunds = sorted((ev for ev in evs if isinstance(ev, RefundEvent)), key=lambda r: (r.at, r.id))
    if not refunds or not last_payout:
        return {}
    late_orders = {r.order for r in refunds}
    cache: dict[datetime, dict[str, int]] = {}
    out: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for s in settlements:
        if s.order not in late_orders:
            continue
        cur = s.base.currency
        net = {ln.payee: ln.amount.minor for ln in s.lines}
        for payee in {a.payee for a in s.awards}:
            cutoff = last_payout.get((cur, payee))
            if cutoff is None:
                continue
            if cutoff not in cache:
                cache[cutoff] = refunds_by_order([r for r in refunds if r.at <= cutoff], orders)
            then = s.rebase(cache[cutoff].get(s.order, 0))
            earned_then = sum(ln.amount.minor for ln in then.lines if ln.payee == payee)
            diff = earned_then - net.get(payee, 0)
            if diff > 0:
                out[(cur, payee)][s.order] = diff
    return out


def _recruitment_tree(evs: list[Event], graph: ShareGraph, insiders: set[str]) -> nx.DiGraph[str]:
    """Participants (insiders) as nodes, an edge recruiter -> recruit: the upline of the recruit's
    first accepted bind, else the sharer of the share their first re-share was made from.  An edge that
    would close a loop is left out."""
    recruiter: dict[str, tuple[datetime, str]] = {}
    for person in insiders:
        for rec in graph.binding_history(person):
            if rec.status == "accepted" and rec.upline in insiders:
                recruiter[person] = (rec.at, rec.upline)
                break
    shares = {ev.id: ev for ev in evs if isinstance(ev, ShareEvent)}
    for ev in sorted(shares.values(), key=lambda e: (e.at, e.id)):
        parent = shares.get(ev.parent) if ev.parent is not None else None
        if (parent is not None and ev.sharer in insiders and ev.sharer not in recruiter
                and parent.sharer in insiders and parent.sharer != ev.sharer):
            recruiter[ev.sharer] = (ev.at, parent.sharer)
    tree: nx.DiGraph[str] = nx.DiGraph()
    tree.add_nodes_from(sorted(insiders))
    up: dict[str, str] = {}
    for person, (_, boss) in sorted(recruiter.items(), key=lambda kv: (kv[1][0], kv[0])):
        node: str | None = boss
        while node is not None and node != person:  # would the edge close a loop?
            node = up.get(node)
        if node is None:
            up[person] = boss
            tree.add_edge(boss, person)
    return tree


def _recruiters(evs: list[Event], graph: ShareGraph, people: set[str],
                joining: dict[str, OrderEvent]) -> dict[str, str]:
    """Who brought each of ``people`` in: the upline of their first accepted bind, else the sharer their
    first re-share came from, else the sharer of the share their joining purchase went through."""
    out: dict[str, str] = {}
    for person in people:
        rec = next((r for r in graph.binding_history(person) if r.status == "accepted"), None)
        if rec is not None:
            out[person] = rec.upline
    shares = {ev.id: ev for ev in evs if isinstance(ev, ShareEvent)}
    for ev in sorted(shares.values(), key=lambda e: (e.at, e.id)):
        parent = shares.get(ev.parent) if ev.parent is not None else None
        if ev.sharer in people and ev.sharer not in out and parent is not None and parent.sharer != ev.sharer:
            out[ev.sharer] = parent.sharer
    for person in people - set(out):
        via = shares.get(joining[person].share or "")
        if via is not None and via.sharer != person:
            out[person] = via.sharer
    return out


def _generations(joined: set[str], recruiter: dict[str, str]) -> int:
    """The longest line of ``joined`` people each brought in by the one before (loops cut)."""
    depth: dict[str, int] = {}
    for person in sorted(joined):
        line: list[str] = []
        node: str | None = person
        while node is not None and node in joined and node not in depth and node not in line:
            line.append(node)
            node = recruiter.get(node)
        below = depth.get(node, 0) if node is not None else 0
        for k, p in enumerate(reversed(line)):
            depth[p] = below + k + 1
    return max(depth.values(), default=0)


def _tree_levels(tree: nx.DiGraph[str]) -> list[tuple[int, int, str]]:
    """(people, levels counting the organiser, organiser) of each tree, largest first."""
    out = []
    for root in (n for n in tree.nodes if tree.in_degree(n) == 0):
        depth = nx.single_source_shortest_path_length(tree, root)
        out.append((len(depth), max(depth.values()) + 1, root))
    return sorted(out, key=lambda t: (-t[0], -t[1], t[2]))


def _tier_finding(evs: list[Event], policy: PolicyConfig, graph: ShareGraph) -> Finding:
    """CN-HEADCOUNT on promoter tiers: a tier reached by recruits (``downline_count``) or by the team's
    sales (``team_sales``) raises pay with recruiting; tiers on own sales pass."""
    tiers = policy.tiers or []
    bad = {i: t for i, t in enumerate(tiers) if t.upgrade is not None and t.upgrade.measure in HEADCOUNT_MEASURES}
    measure = "tier rules paying for headcount or team sales"
    limit = "tiers reached on own sales only (orders, net_sales)"
    how = ("read the policy's tiers: each upgrade rule's measure; downline_count counts recruits, team_sales the "
           "downline's sales; the tier history (TierBook) says who reached those tiers and when")
    if not bad:
        return Finding("CN-HEADCOUNT", measure, "none", "pass", limit,
                       f"{len(tiers)} tier(s), every upgrade measured on the payee's own sales", how)
    book = TierBook.from_events(evs, policy, graph=graph)
    reached = sorted({c.payee for p in book.payees() for c in book.history(p) if c.index in bad})
    rules = ", ".join(f"{t.name} by {t.upgrade.measure}" for t in bad.values() if t.upgrade is not None)
    return Finding("CN-HEADCOUNT", measure, rules, "fail", limit,
                   f"a tier rule pays for headcount: {len(reached)} payee(s) reached such a tier in this history"
                   + (f" ({', '.join(reached[:5])}{' …' if len(reached) > 5 else ''})" if reached else ""), how)


def compliance_report(events: EventsLike, policy: PolicyLike, *,
                      binding: BindingConfig | BindingMode | str = BindingMode.FIRST_WINS,
                      entry_skus: Iterable[str] = (), jurisdictions: Iterable[str] | None = None,
                      thresholds: Thresholds | None = None) -> ComplianceReport:
    """Check ``policy`` and the payouts it produces on ``events`` against :data:`~cps_engine.rules.RULES`.

    ``entry_skus`` declares products that are entry purchases (starter kits); a compliant policy's own
    ``entry_skus`` are added; undeclared entry packages are looked for as well.  ``jurisdictions``
    (``CN``, ``US``, ``EU``) limits the rules reported; ``thresholds`` overrides the defaults.
    """
    policy = load_policy(policy)
    events = as_events(events)
    t = thresholds or Thresholds()
    evs = list(events)
    graph = ShareGraph.from_events(evs, binding=binding)
    settlements = compute_events(evs, policy, graph=graph)
    orders = orders_by_id(evs)
    roles = _Roles(ev for ev in evs if isinstance(ev, RoleEvent))
    binds = sorted((ev for ev in evs if isinstance(ev, BindEvent)), key=lambda e: (e.at, e.id))
    share_evs = sorted((ev for ev in evs if isinstance(ev, ShareEvent)), key=lambda e: (e.at, e.id))
    declared = set(entry_skus) | set(policy.traits().entry_skus)
    currencies = sorted({s.base.currency for s in settlements}
                        | {ev.currency for ev in evs if isinstance(ev, PayoutEvent)})

    # -- who is an insider, and since when -------------------------------------------------------------
    earned_first: dict[str, tuple[datetime, str]] = {}
    for s in settlements:  # sorted by (time, id)
        o = orders[s.order]
        for ln in s.lines:
            if ln.amount.minor > 0 and ln.payee not in earned_first:
                earned_first[ln.payee] = (o.at, o.id)
    downline_first: dict[str, datetime] = {}
    for user in dict.fromkeys(b.user for b in binds):
        for rec in graph.binding_history(user):
            if rec.status == "accepted" and (rec.upline not in downline_first or rec.at < downline_first[rec.upline]):
                downline_first[rec.upline] = rec.at
    role_first = roles.first_distributor()
    recruiting = set(earned_first) | set(downline_first)  # by the history alone
    insiders = recruiting | set(role_first)

    def insider_then(person: str, o: OrderEvent) -> bool:
        e = earned_first.get(person)
        if e is not None and e < (o.at, o.id):
            return True
        d = downline_first.get(person)
        r = role_first.get(person)
        return (d is not None and d <= o.at) or (r is not None and roles.at(person, o.at) == "distributor")

    # -- the money, line by line -----------------------------------------------------------------------
    base: dict[str, int] = defaultdict(int)
    paid: dict[str, int] = defaultdict(int)
    team: dict[str, int] = defaultdict(int)
    self_rebate: dict[str, int] = defaultdict(int)
    upline_on_own: dict[str, int] = defaultdict(int)
    on_insiders: dict[str, int] = defaultdict(int)
    on_members: dict[str, int] = defaultdict(int)
    income: dict[tuple[str, str], int] = defaultdict(int)
    downline: dict[tuple[str, str], int] = defaultdict(int)
    most_payees, most_payees_order = 0, ""
    farthest, farthest_order = 0, ""
    for s in settlements:
        o = orders[s.order]
        cur = s.base.currency
        base[cur] += s.base.minor
        ranked = [p for p in dict.fromkeys(a.payee for a in sorted(s.awards, key=lambda a: a.level))
                  if p != o.buyer]
        if len(ranked) + (o.buyer in {a.payee for a in s.awards}) > most_payees:
            most_payees = len(ranked) + (o.buyer in {a.payee for a in s.awards})
            most_payees_order = s.order
        rank = {p: i + 1 for i, p in enumerate(ranked)}
        # binding distance from each payee up to the buyer, at the order's time
        walk_to = max((a.level for a in s.awards), default=0)
        ups: dict[str, int] = {}
        node: str | None = o.buyer
        for d in range(1, walk_to + 1):
            node = graph.upline_at(node, o.at) if node is not None else None
            if node is None or node in ups:
                break
            ups[node] = d
        for p in ranked:
            if ups.get(p, 0) > farthest:
                farthest, farthest_order = ups[p], s.order
        own_then = insider_then(o.buyer, o)
        member = o.buyer in recruiting or roles.at(o.buyer, o.at) == "distributor"
        for ln in s.lines:
            amt = ln.amount.minor
            paid[cur] += amt
            income[(cur, ln.payee)] += amt
            if o.buyer in insiders:
                on_insiders[cur] += amt
            if member:
                on_members[cur] += amt
            if ln.payee == o.buyer:
                self_rebate[cur] += amt
                continue
            if rank.get(ln.payee, 1) >= 2:
                team[cur] += amt
                downline[(cur, ln.payee)] += amt
            if own_then:
                upline_on_own[cur] += amt
    payees = {p for (_, p) in income}

    # -- payouts: clawbacks by later refunds, and pay no order explains --------------------------------
    payouts: dict[tuple[str, str], int] = defaultdict(int)
    last_payout: dict[tuple[str, str], datetime] = {}
    for ev in evs:
        if isinstance(ev, PayoutEvent):
            key = (ev.currency, ev.payee)
            payouts[key] += ev.money.minor
            last_payout[key] = max(ev.at, last_payout.get(key, ev.at))
    claws = _clawbacks(evs, settlements, orders, last_payout)
    clawed: dict[tuple[str, str], int] = {}
    unexplained: dict[tuple[str, str], int] = {}
    for key, out in payouts.items():
        over = out - income.get(key, 0)
        if over <= 0:
            continue
        back = min(over, sum(claws.get(key, {}).values()))
        if back:
            clawed[key] = back
        if over - back:
            unexplained[key] = over - back
    claw_cur: dict[str, int] = defaultdict(int)
    claw_insider: dict[str, int] = defaultdict(int)
    for (c, p), by_order in claws.items():
        room = clawed.get((c, p), 0)  # only what was actually paid out beyond the net commission
        for oid, v in sorted(by_order.items()):
            take = min(v, room)
            room -= take
            claw_cur[c] += take
            if orders[oid].buyer in insiders:
                claw_insider[c] += take
    unexpl_cur: dict[str, int] = defaultdict(int)
    for (c, _), v in unexplained.items():
        unexpl_cur[c] += v

    def money_by_cur(values: dict[str, int]) -> str:
        shown = [str(Money(values.get(c, 0), c)) for c in currencies]
        return ", ".join(shown) if shown else "0"

    def worst_share(part: dict[str, int], whole: dict[str, int]) -> Fraction:
        return max((_share(part.get(c, 0), whole.get(c, 0)) for c in currencies), default=Fraction(0))

    def least_share(part: dict[str, int], whole: dict[str, int]) -> Fraction:
        return min((_share(part.get(c, 0), whole.get(c, 0)) for c in currencies if whole.get(c, 0)),
                   default=Fraction(1))

    # -- joining purchases and entry packages ----------------------------------------------------------
    window = timedelta(hours=t.entry_window_hours)
    anchors: dict[str, list[datetime]] = defaultdict(list)
    for b in binds:
        anchors[b.user].append(b.at)
    first_share: dict[str, datetime] = {}
    for sh in share_evs:  # sorted by time: the first one stays
        first_share.setdefault(sh.sharer, sh.at)
    for p, at in first_share.items():
        anchors[p].append(at)
    for p, at in role_first.items():
        anchors[p].append(at)
    first_order: dict[str, OrderEvent] = {}
    for o in sorted(orders.values(), key=lambda o: (o.at, o.id)):
        first_order.setdefault(o.buyer, o)
    joining = {b: o for b, o in first_order.items() if any(abs(o.at - a) <= window for a in anchors.get(b, ()))}
    by_sig: Counter[tuple[str, ...]] = Counter(_signature(o) for b, o in joining.items() if b in recruiting)
    recruiters_buying = sum(1 for b in first_order if b in recruiting)
    settle_of = {s.order: s for s in settlements}

    def package(items: tuple[str, ...], order_ids: list[str], is_declared: bool) -> EntryPackage:
        sales: dict[str, int] = defaultdict(int)
        comm: dict[str, int] = defaultdict(int)
        for oid in order_ids:
            s = settle_of[oid]
            sales[s.base.currency] += s.base.minor
            comm[s.base.currency] += sum(ln.amount.minor for ln in s.lines if ln.payee != orders[oid].buyer)
        return EntryPackage(items, is_declared, len(order_ids),
                            sum(1 for oid in order_ids if orders[oid].buyer in recruiting), dict(sales), dict(comm))

    packages: list[EntryPackage] = []
    if declared:
        ids = [o.id for o in orders.values() if any(ln.sku in declared for ln in o.lines or ())]
        packages.append(package(tuple(sorted(declared)), sorted(ids), True))
    found: EntryPackage | None = None
    generations = 0
    if by_sig:
        sig, n = max(by_sig.items(), key=lambda kv: (kv[1], kv[0]))
        if n >= t.entry_min_orders and _share(n, recruiters_buying) >= t.entry_concentration:
            joined = {b for b, o in joining.items() if _signature(o) == sig}
            generations = _generations(joined, _recruiters(evs, graph, joined, joining))
            if generations >= t.entry_generations:
                found = package(sig, sorted(joining[b].id for b in joined), False)
                packages.append(found)

    # -- the recruitment tree (2013 opinion) -----------------------------------------------------------
    tree = _recruitment_tree(evs, graph, insiders)
    trees = _tree_levels(tree)

    # -- findings ---------------------------------------------------------------------------------------
    f: list[Finding] = []
    cn = PROFILES["cn"]
    levels = _policy_payees(policy)
    f.append(Finding("CN-DEPTH", "payees the policy can pay per order", "no limit" if levels is None else str(levels),
                     "fail" if levels is None or levels > t.max_paid_levels else "pass",
                     f"≤ {t.max_paid_levels} (profile {cn.name!r}: {cn.max_levels})",
                     "counting the distributor: the sharer or direct upline of the buyer is the first",
                     "first_sharer / last_sharer pay 1; multi-level policies their number of rates or max_depth"))
    f.append(Finding("CN-DEPTH", "most payees paid on one order", str(most_payees),
                     "fail" if most_payees > t.max_paid_levels else "pass", f"≤ {t.max_paid_levels}",
                     f"on order {most_payees_order}" if most_payees_order else "no commission paid",
                     "per order, count the distinct payees of its lines (cps-engine compute); take the largest"))
    f.append(Finding("CN-DEPTH", "largest binding distance from a payee to the buyer", str(farthest),
                     "fail" if farthest > t.max_binding_distance else "pass", f"≤ {t.max_binding_distance}",
                     f"on order {farthest_order}" if farthest_order else
                     "no payee sits in a buyer's binding uplines",
                     "per line, follow the buyer's uplines as bound at the order's time; the payee's step is the "
                     "distance (1: direct upline); share-path-only payees have none"))
    org_met = [x for x in trees if x[0] >= t.org_people and x[1] >= t.org_levels]
    big = org_met[0] if org_met else (trees[0] if trees else (0, 0, ""))
    acts = {"CN-HEADCOUNT": bool(unexplained)}
    f.append(Finding("CN-ORG", "largest recruitment tree of participants",
                     f"{big[0]} people in {big[1]} level(s)" + (f", organiser {big[2]}" if big[2] else ""),
                     "pass", f"< {t.org_people} people or < {t.org_levels} levels, or no prohibited act",
                     f"{len(trees)} tree(s) of {len(insiders)} participant(s)",
                     "participants: payees, people with an accepted bound downline, distributor roles; link each to "
                     "the upline of their first accepted bind, else to the sharer their first re-share came from; "
                     "levels count the organiser"))
    team_share = worst_share(team, paid)
    f.append(Finding("CN-TEAM", "commission paid beyond the nearest payee (on a downline's sale)", _pct(team_share),
                     "warn" if team_share > t.team_warn else "pass",
                     f"≤ {_pct(t.team_warn)}; depth limited by CN-DEPTH",
                     f"{money_by_cur(team)} of {money_by_cur(paid)}",
                     "per order, rank the payees other than the buyer by level; sum the lines of rank 2 and "
                     "beyond; divide by all commission"))
    eff = worst_share(paid, base)
    cap = policy.traits().cap
    f.append(Finding("CN-DIRECT", "commission as a share of sales", _pct(eff),
                     "warn" if eff > t.direct_rate_warn else "pass", f"≤ {_pct(t.direct_rate_warn)}",
                     f"{money_by_cur(paid)} on sales of {money_by_cur(base)}; configured cap: "
                     f"{_pct(cap) if isinstance(cap, Fraction) else 'none'}",
                     "all commission lines over all commissionable bases (net of refunds)"))
    total_out = {c: paid.get(c, 0) + unexpl_cur.get(c, 0) for c in currencies}
    recruit = worst_share(unexpl_cur, total_out)
    worst_payees = sorted(unexplained.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    how_unexpl = ("per payee: payouts − net commission − commission clawed back by refunds after their last "
                  "payout, when positive; over commission + that pay")
    f.append(Finding("CN-HEADCOUNT", "pay not derived from an order (e.g. per recruit)", _pct(recruit),
                     "fail" if recruit > t.unexplained_fail else "pass", f"≤ {_pct(t.unexplained_fail)}",
                     f"{money_by_cur(unexpl_cur)} beyond commission and clawbacks; clawbacks netted out: "
                     f"{money_by_cur(claw_cur)}", how_unexpl))
    f.append(Finding("CN-RECRUIT-BONUS", "payouts not tied to any order", money_by_cur(unexpl_cur),
                     "fail" if recruit > t.unexplained_fail else "pass", "no recruit bounty, no recruit-count rank",
                     "; ".join(f"{p} {Money(v, c)}" for (c, p), v in worst_payees) if worst_payees
                     else "every payout is covered by commission earned on orders (or later refunded)", how_unexpl))
    if policy.tiers is not None:
        f.append(_tier_finding(evs, policy, graph))
        acts["CN-HEADCOUNT"] = acts["CN-HEADCOUNT"] or f[-1].status == "fail"
    f.append(Finding("US-RETAIL", "recruitment-derived share of compensation", _pct(recruit),
                     "fail" if recruit > t.unexplained_fail else "pass", f"≤ {_pct(t.unexplained_fail)}",
                     "compensation only from orders", how_unexpl))
    retail = Fraction(1) - worst_share(on_members, paid)
    f.append(Finding("US-RETAIL", "commission from non-members' purchases (retail ratio)", _pct(retail),
                     ("fail" if retail < t.retail_min else "pass") if roles else "info", f"≥ {_pct(t.retail_min)}",
                     (f"{money_by_cur(on_members)} of {money_by_cur(paid)} on members' purchases" if roles else
                      "no role events: members are known from the history only (see US-INTERNAL)"),
                     "a buyer is a member when they ever recruit or earn, or hold a distributor role at the "
                     "order's time; 1 − commission on members' orders / all commission"))
    acts["CN-DEPTH"] = any(x.status == "fail" for x in f if x.rule == "CN-DEPTH")
    # entry fee
    comm_total = dict(paid)
    for pk in packages:
        if pk.declared:
            share = worst_share(pk.commission, comm_total)
            st: Status = "fail" if any(pk.commission.values()) else "warn" if pk.orders else "pass"
            f.append(Finding("CN-FEE", "declared entry purchases", f"{pk.orders} order(s)", st,
                             "none, and no commission on them",
                             f"entry SKUs {list(pk.items)}; commission on them: {money_by_cur(pk.commission)} "
                             f"({_pct(share)})" + ("" if pk.orders else "; never sold: see the found packages"),
                             "orders with a line of a declared SKU; their commission to anyone but the buyer"))
    if found is not None:
        share = worst_share(found.commission, comm_total)
        f.append(Finding("CN-FEE", "entry package found (joining purchases of one SKU and price)",
                         f"{found.orders} order(s), {_pct(share)} of commission",
                         "fail" if share > t.entry_fail else "warn", f"commission ≤ {_pct(t.entry_fail)}",
                         f"{'; '.join(found.items)}: {found.buyers_recruiting} of {recruiters_buying} buying "
                         f"recruiters joined with it, passed down {generations} generations; sales "
                         f"{money_by_cur(found.sales)}, commission {money_by_cur(found.commission)}",
                         f"first orders within {t.entry_window_hours} h of the buyer's own bind, first share or "
                         "sign-up; group those of buyers who recruit or earn by SKUs and prices; the largest group "
                         "is the package if it holds the threshold share of them and was bought by a line of "
                         "recruits each brought in by the one before (bind, re-share or the share bought through) "
                         "at least entry_generations long; money on every joining purchase of it"))
    elif not declared:
        f.append(Finding("CN-FEE", "entry package found (joining purchases of one SKU and price)", "none", "pass",
                         f"commission ≤ {_pct(t.entry_fail)}",
                         f"{len(joining)} joining purchase(s), {sum(by_sig.values())} by buyers who recruit; no "
                         f"SKU and price shared by {_pct(t.entry_concentration)} of {recruiters_buying} buying "
                         f"recruiters and passed down {t.entry_generations} generations"
                         + (f" (the commonest went {generations})" if generations else ""), "as for a found package"))
    else:
        f.append(Finding("CN-FEE", "entry package found (joining purchases of one SKU and price)", "none", "pass",
                         f"commission ≤ {_pct(t.entry_fail)}", "no undeclared package next to the declared SKUs",
                         "as for a found package"))
    acts["CN-FEE"] = any(x.status == "fail" for x in f if x.rule == "CN-FEE")
    up = worst_share(upline_on_own, paid)
    reb = worst_share(self_rebate, paid)
    f.append(Finding("CN-SELF", "commission to uplines on participants' own purchases", _pct(up),
                     "fail" if up > t.self_fail else "warn" if up > t.self_warn else "pass",
                     f"≤ {_pct(t.self_warn)} (fail above {_pct(t.self_fail)})",
                     f"{money_by_cur(upline_on_own)} of {money_by_cur(paid)}",
                     "lines to others on orders whose buyer had, before the order, earned, bound a downline or "
                     "held a distributor role"))
    f.append(Finding("CN-SELF", "self-purchase rebates", _pct(reb), "info", "disclosed, level 1 only",
                     f"{money_by_cur(self_rebate)} of {money_by_cur(paid)}", "lines paid to the order's own buyer"))
    inter = worst_share(on_insiders, paid)
    f.append(Finding("US-INTERNAL", "commission on insiders' purchases (in hindsight)", _pct(inter),
                     "fail" if inter > t.internal_fail else "warn" if inter > t.internal_warn else "pass",
                     f"≤ {_pct(t.internal_warn)} (fail above {_pct(t.internal_fail)})",
                     f"{money_by_cur(on_insiders)} of {money_by_cur(paid)}; {len(insiders)} insider(s)",
                     "lines on orders whose buyer ever earns, ever has an accepted bound downline or ever holds a "
                     "distributor role"))
    claw_base = {c: on_insiders.get(c, 0) + claw_insider.get(c, 0) for c in currencies}
    claw = worst_share(claw_insider, claw_base)
    f.append(Finding("US-INVENTORY", "commission clawed back after payout on insiders' purchases", _pct(claw),
                     "fail" if claw > t.clawback_fail else "warn" if claw > t.clawback_warn else "pass",
                     f"≤ {_pct(t.clawback_warn)} (fail above {_pct(t.clawback_fail)})",
                     f"{money_by_cur(claw_insider)} clawed back of {money_by_cur(claw_base)}; all clawbacks: "
                     f"{money_by_cur(claw_cur)}",
                     "per payee and order: commission as of the payee's last payout (refunds up to then) − net "
                     "commission, up to what was paid out beyond the net; on insiders' orders, over their "
                     "commission plus it"))
    mostly = {k for k, v in income.items() if v and Fraction(downline.get(k, 0), v) > Fraction(1, 2)}
    mostly_cur: dict[str, int] = defaultdict(int)
    for c, p in mostly:
        mostly_cur[c] += income[(c, p)]
    dl = worst_share(mostly_cur, paid)
    f.append(Finding("US-DOWNLINE", "commission to payees earning mostly from their downline", _pct(dl),
                     "warn" if dl > t.downline_warn else "pass", f"≤ {_pct(t.downline_warn)}",
                     f"{len(mostly)} of {len(payees)} payees: "
                     + ", ".join(f"{p} ({_pct(Fraction(downline[(c, p)], income[(c, p)]))})"
                                 for c, p in sorted(mostly, key=lambda k: (-downline[k], k))[:5])
                     + (" …" if len(mostly) > 5 else ""),
                     "payees whose rank-2+ lines (CN-TEAM) exceed half their income; their income over all"))
    per_payee = max((Fraction(v, v + income.get(k, 0)) for k, v in unexplained.items()), default=Fraction(0))
    entry_paid = acts["CN-FEE"]
    f.append(Finding("EU-INTRO", "largest recruitment-derived share of one payee's income", _pct(per_payee),
                     "fail" if per_payee >= t.eu_intro_fail or entry_paid else "pass",
                     f"< {_pct(t.eu_intro_fail)}, and no paid entry consideration",
                     "commission on entry purchases (CN-FEE fails)" if entry_paid else
                     "no material commission on entry purchases",
                     "per payee: unexplained pay / (it + their commission)"))
    # the 2013 threshold: a large, deep tree plus a prohibited act
    org = next(i for i, x in enumerate(f) if x.rule == "CN-ORG")
    prohibited = sorted(k for k, v in acts.items() if v)
    if org_met:
        f[org] = Finding(f[org].rule, f[org].measure, f[org].figure, "fail" if prohibited else "warn", f[org].limit,
                         f[org].detail + (f"; with {', '.join(prohibited)}: the 2013 criminal threshold is met"
                                          if prohibited else "; no prohibited act observed"), f[org].how)
    if jurisdictions is not None:
        keep = {j.upper() for j in jurisdictions}
        f = [x for x in f if RULES[x.rule].jurisdiction in keep]
    summary = {"orders": len(orders), "payees": len(payees), "insiders": len(insiders),
               "role_events": sum(1 for ev in evs if isinstance(ev, RoleEvent)), "currencies": currencies,
               "sales": {c: str(Money(base.get(c, 0), c).amount) for c in currencies},
               "commission": {c: str(Money(paid.get(c, 0), c).amount) for c in currencies},
               "payouts": {c: str(Money(sum(v for (pc, _), v in payouts.items() if pc == c), c).amount)
                           for c in currencies},
               "clawed_back": {c: str(Money(claw_cur.get(c, 0), c).amount) for c in currencies}}
    return ComplianceReport(policy.label, policy.kind, policy.config_hash, summary, f, t, packages)
