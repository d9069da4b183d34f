"""Cascade simulation: realistic share events and orders on a social graph, before launch.

:func:`cascade` runs an independent-cascade model on a friendship graph built with networkx (a
small-world or power-law graph, or your own): seed users share a link; each friend of a sharer
clicks with probability ``click_through`` (a *visitor*), buys with probability ``conversion`` (an
order of about ``average_order_value``), and re-shares with the share probability — which
responds to the commission offered: ``p = share_probability × (1 + response × (commission −
reference_rate) / reference_rate)``, clamped to [0, 1].  So expected sales are visitors ×
conversion × average order value, and a richer policy buys more sharing at a higher rate.
Visitors are bound to the sharer who brought them (registration), and some buyers come back
later and buy again without a link, so binding chains appear too.

Everything is exact and reproducible: probabilities are exact rates drawn with integer
arithmetic from ``random.Random(seed)``, amounts are integer minor units, and the same seed
gives the same events.

>>> c = cascade(users=300, seeds=5, share_probability="30%", click_through="30%", conversion="20%", seed=7)
>>> c == cascade(users=300, seeds=5, share_probability="30%", click_through="30%", conversion="20%", seed=7)
True
>>> c.orders > 0 and c.shares >= 5 and c.sales.currency == "CNY"
True

:func:`launch` simulates one cascade per policy — each with the commission that policy offers —
and compares them with :func:`cps_engine.whatif.compare_histories`.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import networkx as nx

from cps_engine.errors import InvalidRate
from cps_engine.models import BindEvent, Event, OrderEvent, ShareEvent
from cps_engine.money import Money, Rounding, apply_rate, parse_amount, parse_rate
from cps_engine.policies import PolicyConfig, load_policy
from cps_engine.policies.base import Fixed

if TYPE_CHECKING:
    import pandas as pd

    from cps_engine.whatif import Comparison

__all__ = ["Cascade", "Launch", "cascade", "launch", "offered_commission"]

START = datetime(2026, 3, 1, tzinfo=timezone(timedelta(hours=8)))
_DAY = 86_400
Network = Literal["small_world", "power_law"]
RateLike = str | Decimal | Fraction | int


@dataclass(frozen=True)
class Cascade:
    """A simulated programme: its events and what happened.

    ``expected_sales`` is visitors × conversion × average order value (the orders bought through a
    link); ``sales`` is what the simulated orders add up to, repeat purchases by bound buyers
    included.
    """

    events: list[Event] = field(repr=False)
    social: nx.Graph[Any] = field(repr=False, compare=False)
    commission: Fraction
    share_probability: Fraction
    shares: int
    visitors: int
    orders: int
    binds: int
    sales: Money
    expected_sales: Money


def _bernoulli(rng: random.Random, p: Fraction) -> bool:
    """An exact draw: True with probability ``p`` (integer arithmetic, no floats)."""
    if p <= 0:
        return False
    if p >= 1:
        return True
    return rng.randrange(p.denominator) < p.numerator


def _network(kind: Network | nx.Graph[Any], users: int, degree: int, rewire: Fraction,
             seed: int) -> nx.Graph[Any]:
    if isinstance(kind, nx.Graph):
        return kind
    if users < 2:
        raise ValueError("a social graph needs at least 2 users")
    g: nx.Graph[Any]
    if kind == "small_world":
        k = max(2, min(degree, users - 1))
        g = nx.watts_strogatz_graph(users, k, float(rewire), seed=seed)  # ok: networkx takes a float probability
        return g
    if kind == "power_law":
        g = nx.barabasi_albert_graph(users, max(1, min(degree // 2, users - 1)), seed=seed)
        return g
    raise ValueError(f"network must be 'small_world', 'power_law' or a networkx graph, not {kind!r}")


def offered_commission(policy: PolicyConfig | Mapping[str, Any] | str | Path,
                       average_order_value: Money | None = None) -> Fraction:
    """The headline rate a sharer is offered: what the nearest sharer earns on a typical order.

    First/last-sharer and pool policies: their rate; multi-level and compliant: the level-1 rate;
    both limited by the cap.  A fixed amount counts as a share of ``average_order_value``.

    >>> offered_commission({"kind": "capped_multilevel", "rates": ["20%", "5%"], "cap": "15%"})
    Fraction(3, 20)
    >>> offered_commission({"kind": "first_sharer", "rate": "5.00 CNY"}, Money.of("100", "CNY"))
    Fraction(1, 20)
    """
    pol = load_policy(policy)
    headline = pol.traits().headline_rate
    spec = Fraction(0) if headline is None else headline
    if isinstance(spec, Fixed):
        if average_order_value is None or average_order_value.minor <= 0:
            raise InvalidRate("a fixed-amount policy needs the average order value to offer a rate")
        spec = min(Fraction(spec.minor, average_order_value.minor), Fraction(1))
    rate = Fraction(spec)
    if pol.cap is not None:
        rate = min(rate, pol.cap)
    return rate


def cascade(
    *,
    users: int = 2000,
    network: Network | nx.Graph[Any] = "small_world",
    degree: int = 10,
    rewire: RateLike = "10%",
    seeds: int = 20,
    share_probability: RateLike = "30%",
    click_through: RateLike = "30%",
    conversion: RateLike = "5%",
    average_order_value: str | Decimal | int = "100.00",
    currency: str = "CNY",
    commission: RateLike | None = None,
    policy: PolicyConfig | Mapping[str, Any] | str | Path | None = None,
    response: str | Decimal | Fraction | int = 1,
    reference_rate: RateLike = "10%",
    repeat_rate: RateLike = "30%",
    bind: bool = True,
    days: int = 30,
    start: datetime = START,
    seed: int = 0,
    max_shares: int = 100_000,
) -> Cascade:
    """Simulate share events, binds and orders of one launch (see the module docs).

    ``commission`` (a rate) or ``policy`` (its :func:`offered_commission`) is what sharers are
    offered; ``response`` is how strongly the share probability follows it (0: not at all, 1: in
    proportion to ``commission / reference_rate``).  ``repeat_rate``: chance that a bound buyer
    comes back within ten days and buys again without a link (a binding-chain order).
    """
    p_share0 = parse_rate(share_probability, field="share_probability")
    ctr = parse_rate(click_through, field="click_through")
    conv = parse_rate(conversion, field="conversion")
    repeat = parse_rate(repeat_rate, field="repeat_rate")
    ref = parse_rate(reference_rate, field="reference_rate")
    aov = Money(parse_amount(average_order_value, currency), currency)
    if aov.minor <= 0:
        raise InvalidRate("average_order_value must be positive", field="average_order_value")
    if isinstance(response, (float, bool)):
        raise InvalidRate("response must be exact (a string, Decimal, Fraction or int)", field="response")
    elasticity = Fraction(Decimal(response)) if isinstance(response, str) else Fraction(response)
    if commission is not None:
        offered = parse_rate(commission, field="commission")
    elif policy is not None:
        offered = offered_commission(policy, aov)
    else:
        offered = ref
    if ref == 0:
        raise InvalidRate("reference_rate must be positive", field="reference_rate")
    p_share = min(Fraction(1), max(Fraction(0), p_share0 * (1 + elasticity * (offered - ref) / ref)))
    rng = random.Random(seed)
    social = _network(network, users, degree, parse_rate(rewire, field="rewire"), seed)
    nodes = sorted(social.nodes, key=str)
    width = len(str(len(nodes)))
    name = {v: f"u{v:0{width}d}" if isinstance(v, int) else str(v) for v in nodes}
    horizon = days * _DAY
    lo, hi = aov.minor - aov.minor // 2, aov.minor + aov.minor // 2

    def at(t: int) -> datetime:
        return start + timedelta(seconds=t)

    def amount(minor: int) -> Decimal:
        return Decimal(minor).scaleb(-aov.exponent)

    events: list[tuple[int, int, str, Event]] = []
    queue: list[tuple[int, int, str, Any]] = []
    visited: set[Any] = set()
    bound: set[Any] = set()
    counter = {"share": 0, "bind": 0, "order": 0}
    visitors = 0
    sales = 0

    def new_id(kind: str) -> str:
        counter[kind] += 1
        return f"{kind[0]}{counter[kind]:06d}"

    def add_share(t: int, who: Any, parent: str | None) -> None:
        sid = new_id("share")
        events.append((t, 0, sid, ShareEvent(id=sid, sharer=name[who], parent=parent, at=at(t))))
        heapq.heappush(queue, (t, counter["share"], sid, who))

    def add_order(t: int, who: Any, share: str | None) -> None:
        nonlocal sales
        oid = new_id("order")
        minor = rng.randint(lo, hi)
        sales += minor
        events.append((t, 2, oid, OrderEvent(id=oid, buyer=name[who], share=share, amount=amount(minor),
                                              currency=currency, at=at(t))))

    for who in rng.sample(nodes, min(seeds, len(nodes))):
        visited.add(who)
        add_share(rng.randrange(max(1, horizon // 5)), who, None)
    while queue:
        t_share, _, sid, sharer = heapq.heappop(queue)
        for friend in sorted(social.neighbors(sharer), key=str):
            if friend in visited or not _bernoulli(rng, ctr):
                continue
            t = t_share + rng.randrange(60, 2 * _DAY)
            if t >= horizon:
                continue
            visited.add(friend)
            visitors += 1
            if bind and friend not in bound:
                bound.add(friend)
                bid = new_id("bind")
                events.append((t, 1, bid, BindEvent(id=bid, user=name[friend], upline=name[sharer], at=at(t),
                                                     registration=True)))
            bought = _bernoulli(rng, conv)
            if bought:
                add_order(min(horizon - 1, t + rng.randrange(60, 3600)), friend, sid)
            if counter["share"] < max_shares and _bernoulli(rng, p_share):
                t_re = t + rng.randrange(60, 6 * 3600)
                if t_re < horizon:
                    add_share(t_re, friend, sid)
            if bought and friend in bound and _bernoulli(rng, repeat):
                t_back = t + rng.randrange(_DAY, 10 * _DAY)
                if t_back < horizon:
                    add_order(t_back, friend, None)
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    return Cascade(
        events=[e[3] for e in events], social=social, commission=offered, share_probability=p_share,
        shares=counter["share"], visitors=visitors, orders=counter["order"], binds=counter["bind"],
        sales=Money(sales, currency),
        expected_sales=Money(apply_rate(visitors * aov.minor, conv, Rounding.DOWN), currency),
    )


@dataclass
class Launch:
    """One simulated cascade per policy and their comparison."""

    cascades: dict[str, Cascade]
    comparison: Comparison

    def summary(self) -> pd.DataFrame:
        """Per policy: commission offered, share probability it bought, shares, visitors, orders,
        sales, commission and merchant net (money in minor units)."""
        import pandas as pd

        m = self.comparison.metrics
        rows = []
        for name, c in self.cascades.items():
            mine = m[(m["policy"] == name) & (m["currency"] == c.sales.currency)]
            paid = int(mine["commission_minor"].sum())
            gmv = int(mine["gmv_minor"].sum())
            rows.append({"policy": name, "commission_offered": c.commission,
                         "share_probability": c.share_probability, "shares": c.shares, "visitors": c.visitors,
                         "orders": c.orders, "sales_minor": c.sales.minor, "commission_minor": paid,
                         "merchant_net_minor": gmv - paid})
        return pd.DataFrame(rows)


def launch(policies: Mapping[str, PolicyConfig | Mapping[str, Any] | str | Path], **params: Any) -> Launch:
    """Simulate a launch under each policy (same seed and graph; sharing responds to what each
    policy offers) and compare the outcomes.  ``params`` are those of :func:`cascade`.

    >>> run = launch({"5%": {"kind": "last_sharer", "rate": "5%"}, "20%": {"kind": "last_sharer", "rate": "20%"}},
    ...              users=400, seeds=8, share_probability="20%", click_through="30%", conversion="10%", seed=3)
    >>> s = run.summary().set_index("policy")
    >>> bool(s.loc["20%", "share_probability"] > s.loc["5%", "share_probability"])
    True
    """
    from cps_engine.whatif import compare_histories

    if "policy" in params or "commission" in params:
        raise TypeError("launch sets the commission from each policy; do not pass policy= or commission=")
    cascades = {name: cascade(policy=pol, **params) for name, pol in policies.items()}
    comparison = compare_histories({name: (c.events, policies[name]) for name, c in cascades.items()})
    return Launch(cascades, comparison)
