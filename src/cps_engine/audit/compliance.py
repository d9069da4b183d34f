"""Compliance report: the policy config and the observed payouts against the pyramid-selling rules.

Each finding cites a rule of :data:`cps_engine.rules.RULES` (the one place the rules live, with their
sources), gives the measured figure and a status: ``pass``, ``warn``, ``fail``, or ``info`` when the
data cannot decide.  Limits come from the same place: the depth limit from ``PROFILES["cn"]``, the
30% from ``PROFILES["cn_direct"]``, and the percentages of the US/EU rules from their ``check`` text.

What is measured (commission is net of refunds, per currency; the worst currency decides):

- **depth**: the levels the policy can pay and the deepest level actually paid (CN-DEPTH);
- **team pay**: commission paid at level 2 or deeper, i.e. on a downline's sales (CN-TEAM);
- **effective rate**: commission as a share of the commissionable sales (CN-DIRECT);
- **recruitment-derived pay**: payouts no earned commission explains (CN-HEADCOUNT, CN-RECRUIT-BONUS,
  US-RETAIL, EU-INTRO); every commission line of this engine comes from an order, so any such money
  came from outside it;
- **self-purchases**: commission to uplines on participants' own purchases, and self rebates (CN-SELF);
  the share of sales bought by payees themselves (US-INTERNAL);
- **downline income**: payees earning more than half from levels 2+ (US-DOWNLINE);
- **entry fees**: orders containing a declared entry SKU, and any commission on them (CN-FEE).

The report is an aid, not legal advice: :data:`cps_engine.rules.DISCLAIMER` opens every rendering.

>>> from cps_engine.models import load_events
>>> from cps_engine.policies import load_policy
>>> evs = load_events([
...   '{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}',
...   '{"type":"order","id":"o1","buyer":"cat","share":"s1","amount":"100.00","currency":"CNY",'
...   '"at":"2026-03-01T12:00:00+08:00"}'])
>>> rep = compliance_report(evs, load_policy({"kind": "last_sharer", "rate": "10%"}))
>>> [(f.rule, f.status) for f in rep.findings if f.rule in ("CN-DEPTH", "US-INTERNAL")]
[('CN-DEPTH', 'pass'), ('CN-DEPTH', 'pass'), ('US-INTERNAL', 'pass')]
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

from cps_engine.engine import compute_events
from cps_engine.graph import BindingConfig, BindingMode, ShareGraph
from cps_engine.models import Event, OrderEvent, PayoutEvent
from cps_engine.money import Money
from cps_engine.policies.base import PolicyConfig
from cps_engine.rules import DISCLAIMER, PROFILES, RULES, Rule

__all__ = ["ComplianceReport", "Finding", "compliance_report", "rule_limit"]

Status = Literal["pass", "warn", "fail", "info"]
_RANK = {"pass": 0, "info": 1, "warn": 2, "fail": 3}


def rule_limit(rule_id: str) -> Fraction:
    """The threshold of ``RULES[rule_id]`` (``US-INTERNAL``: warn above 20%).

    >>> rule_limit("US-INTERNAL"), rule_limit("US-DOWNLINE")
    (Fraction(1, 5), Fraction(1, 2))
    """
    limit = RULES[rule_id].limit
    if limit is None:
        raise LookupError(f"rule {rule_id} states no threshold")
    return limit


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule, one measure: ``figure`` is the measured value as text, ``limit`` what it is held to."""

    rule: str
    measure: str
    figure: str
    status: Status
    limit: str
    detail: str = ""

    @property
    def source(self) -> Rule:
        return RULES[self.rule]

    def as_dict(self) -> dict[str, Any]:
        r = self.source
        return {"rule": self.rule, "jurisdiction": r.jurisdiction, "title": r.title, "source": r.source,
                "measure": self.measure, "figure": self.figure, "limit": self.limit, "status": self.status,
                "detail": self.detail}


@dataclass
class ComplianceReport:
    """Findings for every rule checked, the programme's figures, and the disclaimer."""

    policy: str
    policy_kind: str
    config_hash: str
    summary: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)
    disclaimer: str = DISCLAIMER

    @property
    def worst(self) -> Status:
        return max((f.status for f in self.findings), key=lambda s: _RANK[s], default="pass")

    def counts(self) -> dict[str, int]:
        out = {"pass": 0, "warn": 0, "fail": 0, "info": 0}
        for f in self.findings:
            out[f.status] += 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"disclaimer": self.disclaimer, "policy": self.policy, "policy_kind": self.policy_kind,
                "config_hash": self.config_hash, "summary": self.summary, "worst": self.worst,
                "counts": self.counts(), "findings": [f.as_dict() for f in self.findings]}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False, indent=1) + "\n"

    def render(self) -> str:
        """Plain text: the disclaimer, one line per finding, the disclaimer again."""
        out = [self.disclaimer, "", f"Policy {self.policy!r} ({self.policy_kind})"]
        for f in self.findings:
            out.append(f"[{f.status.upper():4}] {f.rule:17} {f.measure}: {f.figure} (limit: {f.limit})")
            if f.detail:
                out.append(f"       {f.detail}")
        out += ["", self.disclaimer]
        return "\n".join(out)


def _pct(x: Fraction) -> str:
    return f"{(Decimal(x.numerator) * 100 / Decimal(x.denominator)).quantize(Decimal('0.01'))}%"


def _share(part: int, whole: int) -> Fraction:
    return Fraction(part, whole) if whole else Fraction(0)


def _configured_levels(policy: PolicyConfig) -> int | None:
    depth = getattr(policy, "max_depth", None)
    if isinstance(depth, int):
        return depth
    return type(policy).max_levels


def compliance_report(events: Iterable[Event], policy: PolicyConfig, *,
                      binding: BindingConfig | BindingMode | str = BindingMode.FIRST_WINS,
                      entry_skus: Iterable[str] = (), jurisdictions: Iterable[str] | None = None) -> ComplianceReport:
    """Check ``policy`` and the payouts it produces on ``events`` against :data:`~cps_engine.rules.RULES`.

    ``entry_skus`` declares products that are entry purchases (starter kits); a compliant policy's own
    ``entry_skus`` are added.  ``jurisdictions`` (``CN``, ``US``, ``EU``) limits the rules reported.
    """
    evs = list(events)
    graph = ShareGraph.from_events(evs, binding=binding)
    settlements = compute_events(evs, policy, graph)
    orders = {ev.id: ev for ev in evs if isinstance(ev, OrderEvent)}
    entry = set(entry_skus) | set(getattr(policy, "entry_skus", ()) or ())

    base: dict[str, int] = defaultdict(int)
    paid: dict[str, int] = defaultdict(int)
    deep_paid: dict[str, int] = defaultdict(int)
    self_rebate: dict[str, int] = defaultdict(int)
    upline_on_own: dict[str, int] = defaultdict(int)
    entry_orders = 0
    entry_paid: dict[str, int] = defaultdict(int)
    income: dict[tuple[str, str], int] = defaultdict(int)
    downline: dict[tuple[str, str], int] = defaultdict(int)
    deepest = 0
    deepest_order: str | None = None
    for s in settlements:
        order = orders[s.order]
        cur = s.base.currency
        base[cur] += s.base.minor
        is_entry = bool(entry) and bool(order.lines) and any(ln.sku in entry for ln in order.lines or ())
        entry_orders += is_entry
        own = graph.is_participant(order.buyer, order.at)  # as the engine sees it: at the order's time
        for ln in s.lines:
            amt = ln.amount.minor
            paid[cur] += amt
            income[(cur, ln.payee)] += amt
            if ln.level >= 2:
                deep_paid[cur] += amt
                downline[(cur, ln.payee)] += amt
            if ln.level > deepest:
                deepest, deepest_order = ln.level, s.order
            if ln.payee == order.buyer:
                self_rebate[cur] += amt
            elif own:
                upline_on_own[cur] += amt
            if is_entry:
                entry_paid[cur] += amt
    payees = {p for (_, p) in income}
    internal: dict[str, int] = defaultdict(int)
    for s in settlements:
        if orders[s.order].buyer in payees:
            internal[s.base.currency] += s.base.minor
    payouts: dict[tuple[str, str], int] = defaultdict(int)
    for ev in evs:
        if isinstance(ev, PayoutEvent):
            payouts[(ev.currency, ev.payee)] += ev.money.minor
    unexplained = {k: v - income.get(k, 0) for k, v in payouts.items() if v > income.get(k, 0)}
    currencies = sorted({*base, *(c for c, _ in payouts)})

    def money_by_cur(values: dict[str, int]) -> str:
        shown = [str(Money(values.get(c, 0), c)) for c in currencies]
        return ", ".join(shown) if shown else "0"

    def worst_share(part: dict[str, int], whole: dict[str, int]) -> Fraction:
        return max((_share(part.get(c, 0), whole.get(c, 0)) for c in currencies), default=Fraction(0))

    f: list[Finding] = []
    cn = PROFILES["cn"]
    levels = _configured_levels(policy)
    f.append(Finding("CN-DEPTH", "levels the policy can pay", "no limit" if levels is None else str(levels),
                     "fail" if levels is None or levels > cn.max_levels else "pass",
                     f"≤ {cn.max_levels} (profile {cn.name!r})",
                     "counting the distributor: level 1 is the sharer or direct upline of the buyer"))
    f.append(Finding("CN-DEPTH", "deepest level actually paid", str(deepest),
                     "fail" if deepest > cn.max_levels else "pass", f"≤ {cn.max_levels}",
                     f"on order {deepest_order}" if deepest_order else "no commission paid"))
    team = worst_share(deep_paid, paid)
    f.append(Finding("CN-TEAM", "commission paid at level 2 or deeper (on a downline's sales)", _pct(team),
                     "warn" if team > 0 else "pass", "none (art. 7(3)); level 2 tolerated under CN-DEPTH",
                     f"{money_by_cur(deep_paid)} of {money_by_cur(paid)}"))
    direct = PROFILES["cn_direct"].max_total_rate
    assert direct is not None
    eff = worst_share(paid, base)
    cap = getattr(policy, "cap", None)
    f.append(Finding("CN-DIRECT", "commission as a share of sales", _pct(eff),
                     "warn" if eff > direct else "pass", f"≤ {_pct(direct)} (direct-selling limit)",
                     f"{money_by_cur(paid)} on sales of {money_by_cur(base)}; configured cap: "
                     f"{_pct(cap) if isinstance(cap, Fraction) else 'none'}"))
    unexpl_cur: dict[str, int] = defaultdict(int)
    for (c, _), v in unexplained.items():
        unexpl_cur[c] += v
    total_out = {c: paid.get(c, 0) + unexpl_cur.get(c, 0) for c in currencies}
    recruit = worst_share(unexpl_cur, total_out)
    worst_payees = sorted(unexplained.items(), key=lambda kv: -kv[1])[:5]
    unexpl_detail = ("; ".join(f"{p} {Money(v, c)}" for (c, p), v in worst_payees)
                     if worst_payees else "every payout is covered by commission this policy earned on orders")
    f.append(Finding("CN-HEADCOUNT", "pay not derived from an order (e.g. per recruit)", _pct(recruit),
                     "fail" if recruit > 0 else "pass", "0%",
                     "every commission line derives from an order; payouts beyond what this policy earned the "
                     "payee: " + money_by_cur(unexpl_cur)))
    f.append(Finding("CN-RECRUIT-BONUS", "payouts not tied to any order", money_by_cur(unexpl_cur),
                     "fail" if unexplained else "pass", "0 (no recruit bounty, no recruit-count rank)",
                     unexpl_detail))
    f.append(Finding("US-RETAIL", "recruitment-derived share of compensation", _pct(recruit),
                     "fail" if recruit > 0 else "pass", "0%", "compensation only from orders"))
    if entry:
        status: Status = "fail" if any(entry_paid.values()) else "warn" if entry_orders else "pass"
        f.append(Finding("CN-FEE", "entry purchases observed", f"{entry_orders} order(s)", status,
                         "none, and no commission on them",
                         f"entry SKUs {sorted(entry)}; commission on them: {money_by_cur(entry_paid)}"))
    else:
        f.append(Finding("CN-FEE", "entry purchases observed", "not measurable", "info",
                         "none, and no commission on them",
                         "no entry SKUs declared (pass --entry-sku, or the compliant policy's entry_skus)"))
    up = worst_share(upline_on_own, paid)
    reb = worst_share(self_rebate, paid)
    f.append(Finding("CN-SELF", "commission to uplines on participants' own purchases", _pct(up),
                     "fail" if up > 0 else "pass", "0%", f"{money_by_cur(upline_on_own)} of {money_by_cur(paid)}"))
    f.append(Finding("CN-SELF", "self-purchase rebates", _pct(reb), "warn" if reb > 0 else "pass",
                     "disclosed, level 1 only", f"{money_by_cur(self_rebate)} of {money_by_cur(paid)}"))
    lim = rule_limit("US-INTERNAL")
    inter = worst_share(internal, base)
    f.append(Finding("US-INTERNAL", "sales bought by payees themselves", _pct(inter),
                     "warn" if inter > lim else "pass", f"≤ {_pct(lim)}",
                     f"{money_by_cur(internal)} of {money_by_cur(base)}"))
    lim = rule_limit("US-DOWNLINE")
    mostly = sorted(((c, p) for (c, p), v in income.items() if v and Fraction(downline.get((c, p), 0), v) > lim),
                    key=lambda k: -downline[k])
    f.append(Finding("US-DOWNLINE", "payees earning mostly from their downline",
                     f"{len(mostly)} of {len(payees)} payees", "warn" if mostly else "pass",
                     f"none above {_pct(lim)}",
                     ", ".join(f"{p} ({_pct(Fraction(downline[(c, p)], income[(c, p)]))})" for c, p in mostly[:5])
                     + (" …" if len(mostly) > 5 else "")))
    lim = rule_limit("EU-INTRO")
    per_payee = max((Fraction(v, v + income.get(k, 0)) for k, v in unexplained.items()), default=Fraction(0))
    entry_consideration = any(entry_paid.values())
    f.append(Finding("EU-INTRO", "largest recruitment-derived share of one payee's income", _pct(per_payee),
                     "fail" if per_payee >= lim or entry_consideration else "pass", f"< {_pct(lim)}",
                     "commission on entry purchases observed" if entry_consideration else
                     "no commission on entry purchases observed"))
    if jurisdictions is not None:
        keep = {j.upper() for j in jurisdictions}
        f = [x for x in f if RULES[x.rule].jurisdiction in keep]
    summary = {"orders": len(orders), "payees": len(payees), "currencies": currencies,
               "sales": {c: str(Money(base.get(c, 0), c).amount) for c in currencies},
               "commission": {c: str(Money(paid.get(c, 0), c).amount) for c in currencies},
               "payouts": {c: str(Money(sum(v for (pc, _), v in payouts.items() if pc == c), c).amount)
                           for c in currencies}}
    return ComplianceReport(policy.label, policy.kind, policy.config_hash, summary, f)
