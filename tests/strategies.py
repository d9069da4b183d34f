"""Hypothesis strategies for random programmes: share forests, bindings, orders and refunds.

Every generated history is valid (no cycles, parents before children, refunds within what was
paid), events in time order; tests that need disorder shuffle it themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import strategies as st

from cps_engine import (
    BindEvent,
    Event,
    OrderEvent,
    OrderLine,
    RefundEvent,
    ShareEvent,
)

T0 = datetime(2026, 3, 1, tzinfo=timezone(timedelta(hours=8)))
CURRENCY_EXP = {"CNY": 2, "JPY": 0, "KWD": 3}


@dataclass
class Programme:
    events: list[Event]
    people: list[str]
    shares: list[ShareEvent] = field(default_factory=list)
    binds: list[BindEvent] = field(default_factory=list)
    orders: list[OrderEvent] = field(default_factory=list)
    refunds: list[RefundEvent] = field(default_factory=list)


def _amount(minor: int, currency: str) -> str:
    return str(Decimal(minor).scaleb(-CURRENCY_EXP[currency]))


@st.composite
def programmes(
    draw: st.DrawFn,
    *,
    max_people: int = 10,
    max_shares: int = 25,
    max_orders: int = 15,
    binds: bool = True,
    refunds: bool = True,
    currencies: tuple[str, ...] = ("CNY",),
    lines: bool = True,
    max_amount: int = 10**7,
) -> Programme:
    """A random valid programme.  People repeat on share paths on purpose (re-sharing)."""
    n_people = draw(st.integers(2, max_people))
    people = [f"p{i}" for i in range(n_people)]
    clock = [0]

    def tick() -> datetime:
        clock[0] += draw(st.integers(1, 3600))
        return T0 + timedelta(seconds=clock[0])

    shares: list[ShareEvent] = []
    for i in range(draw(st.integers(0, max_shares))):
        parent = None
        if shares and draw(st.booleans()):
            parent = shares[draw(st.integers(0, len(shares) - 1))].id
        shares.append(ShareEvent(id=f"s{i}", sharer=draw(st.sampled_from(people)), parent=parent,
                                 at=tick()))
    bind_events: list[BindEvent] = []
    if binds:
        for i in range(draw(st.integers(0, n_people * 2))):
            u = draw(st.integers(1, n_people - 1))
            up = draw(st.integers(0, u - 1))  # uplines have smaller index: never a cycle
            bind_events.append(BindEvent(id=f"b{i}", user=people[u], upline=people[up], at=tick(),
                                         registration=draw(st.booleans())))
    orders: list[OrderEvent] = []
    refund_events: list[RefundEvent] = []
    buyers = [*people, "walkin1", "walkin2"]
    for i in range(draw(st.integers(0, max_orders))):
        currency = draw(st.sampled_from(currencies))
        share = None
        if shares and draw(st.integers(0, 3)) > 0:
            share = shares[draw(st.integers(0, len(shares) - 1))].id
        goods = draw(st.integers(0, max_amount))
        shipping = draw(st.integers(0, 2000)) if draw(st.booleans()) else None
        order_lines = None
        if lines and goods > 0 and draw(st.booleans()):
            k = draw(st.integers(1, 3))
            qty = [draw(st.integers(1, 3)) for _ in range(k)]
            unit = [draw(st.integers(0, max(0, goods // (k * 3)))) for _ in range(k)]
            goods = sum(q * u for q, u in zip(qty, unit, strict=True))
            order_lines = tuple(OrderLine(sku=f"sku{j % 3}", category=draw(st.sampled_from(["food", "home", None])),
                                          quantity=qty[j], unit_price=Decimal(_amount(unit[j], currency)))
                                for j in range(k))
        total = goods + (shipping or 0)
        order = OrderEvent(id=f"o{i}", buyer=draw(st.sampled_from(buyers)), share=share,
                           amount=Decimal(_amount(total, currency)), currency=currency,
                           shipping=Decimal(_amount(shipping, currency)) if shipping is not None else None,
                           lines=order_lines, at=tick())
        orders.append(order)
        if refunds and total > 0 and draw(st.integers(0, 3)) == 0:
            left = total
            for j in range(draw(st.integers(1, 3))):
                if left <= 0:
                    break
                full = draw(st.booleans()) and j == 0
                amt = None if full else draw(st.integers(1, left))
                refund_events.append(RefundEvent(
                    id=f"r{i}_{j}", order=order.id, at=tick(),
                    amount=None if amt is None else Decimal(_amount(amt, currency)),
                    kind=draw(st.sampled_from(["refund", "refund", "chargeback"]))))
                left = 0 if amt is None else left - amt
    events: list[Event] = [*shares, *bind_events, *orders, *refund_events]
    events.sort(key=lambda e: e.at)
    return Programme(events, people, shares, bind_events, orders, refund_events)


# ------------------------------------------------------------------ policy configs
# (appended for the core test suite; everything above is unchanged)

from fractions import Fraction  # noqa: E402  (appended section: imports kept with it)

POLICY_KINDS: tuple[str, ...] = ("first_sharer", "last_sharer", "capped_multilevel", "compliant", "linear",
                                 "position_based", "time_decay")
SKUS: tuple[str, ...] = ("sku0", "sku1", "sku2")
CATEGORIES: tuple[str, ...] = ("food", "home")


def rate_texts(max_percent: int = 50) -> st.SearchStrategy[str]:
    """Exact rate texts in ``[0, max_percent %]`` in the three accepted spellings: ``'12.5%'``,
    ``'0.125'`` and ``'1/8'``."""
    percent = st.integers(0, max_percent * 10).map(lambda n: f"{Decimal(n).scaleb(-1)}%")
    decimal = st.integers(0, max_percent * 10).map(lambda n: str(Decimal(n).scaleb(-3)))
    ratio = st.tuples(st.integers(1, 97), st.integers(0, 97)).filter(
        lambda qp: qp[1] * 100 <= qp[0] * max_percent).map(lambda qp: f"{qp[1]}/{qp[0]}")
    return st.one_of(percent, decimal, ratio)


def fixed_texts(currency: str = "CNY") -> st.SearchStrategy[str]:
    """Fixed-amount specs: ``'5.00 CNY'`` per order or ``'1.00 CNY/item'`` per item."""
    return st.tuples(st.integers(0, 2000), st.booleans()).map(
        lambda mp: f"{_amount(mp[0], currency)} {currency}{'/item' if mp[1] else ''}")


def spec_texts(currency: str = "CNY", *, fixed: bool = True, max_percent: int = 50) -> st.SearchStrategy[str]:
    """A rate or (when ``fixed``) a fixed amount in ``currency``."""
    if not fixed:
        return rate_texts(max_percent)
    return st.one_of(rate_texts(max_percent), rate_texts(max_percent), fixed_texts(currency))


@st.composite
def policy_configs(
    draw: st.DrawFn,
    *,
    kinds: tuple[str, ...] = POLICY_KINDS,
    currency: str = "CNY",
    people: tuple[str, ...] = tuple(f"p{i}" for i in range(10)),
    fixed: bool = True,
    overrides: bool = True,
    filters: bool = True,
    rounding: str | None = None,
) -> dict[str, object]:
    """A valid policy config mapping (as ``load_policy`` reads it) of one of ``kinds``.

    ``overrides`` adds payee/product/category rates, ``filters`` a distributors list, ``fixed`` fixed
    amounts in ``currency``; ``rounding`` pins the rounding mode (None: any).
    """
    kind = draw(st.sampled_from(kinds))
    spec = spec_texts(currency, fixed=fixed)
    levels = st.one_of(spec, st.lists(spec, min_size=1, max_size=3))
    cfg: dict[str, object] = {"kind": kind}
    if draw(st.booleans()):
        cfg["name"] = draw(st.sampled_from(["house", "summer 促销", "test-policy"]))
    if kind in ("first_sharer", "last_sharer"):
        cfg["rate"] = draw(spec)
    elif kind == "capped_multilevel":
        cfg["rates"] = draw(st.lists(spec, min_size=1, max_size=4))
    elif kind == "compliant":
        profile = draw(st.sampled_from(["cn", "cn_direct", "strict"]))
        cfg["profile"] = profile
        cfg["rates"] = draw(st.lists(spec, min_size=1, max_size=2 if profile == "cn" else 1))
        cap_max = 50 if profile == "cn" else 30
        cap = draw(rate_texts(cap_max))
        cfg["cap"] = cap
        if profile == "cn" and draw(st.booleans()):
            cfg["self_purchase_rate"] = draw(rate_texts(cap_max).filter(
                lambda r: _as_fraction(r) <= _as_fraction(cap)))
        if draw(st.booleans()):
            cfg["entry_skus"] = draw(st.lists(st.sampled_from(SKUS), max_size=2, unique=True))
    else:  # pool policies
        cfg["rate"] = draw(spec)
        if draw(st.booleans()):
            cfg["max_depth"] = draw(st.integers(1, 5))
        if kind == "position_based" and draw(st.booleans()):
            first = draw(st.integers(0, 20))
            middle = draw(st.integers(0, 20 - first))
            cfg["first"], cfg["middle"] = f"{first * 5}%", f"{middle * 5}%"
            cfg["last"] = f"{100 - 5 * (first + middle)}%"
        if kind == "time_decay":
            cfg["half_life_days"] = draw(st.sampled_from(["0.5", "1", "7", "30", "2.25"]))
    if kind != "compliant":
        if draw(st.booleans()):
            cfg["cap"] = draw(rate_texts(60))
        cfg["self_purchase"] = draw(st.booleans())
    if filters and draw(st.booleans()):
        cfg["distributors"] = draw(st.lists(st.sampled_from(people), unique=True, max_size=len(people)))
        cfg["ineligible"] = draw(st.sampled_from(["compress", "keep_level", "stop"]))
    if overrides:
        if draw(st.booleans()):
            cfg["payee_rates"] = draw(st.dictionaries(st.sampled_from(people), levels, max_size=2))
        if draw(st.booleans()):
            cfg["product_rates"] = draw(st.dictionaries(st.sampled_from(SKUS), levels, max_size=2))
        if draw(st.booleans()):
            cfg["category_rates"] = draw(st.dictionaries(st.sampled_from(CATEGORIES), levels, max_size=2))
    if draw(st.booleans()):
        cfg["base"] = {"include_shipping": draw(st.booleans()), "include_tax": draw(st.booleans())}
    cfg["rounding"] = rounding if rounding is not None else draw(
        st.sampled_from(["down", "half_up", "half_even", "up"]))
    if "cap" not in cfg and _over_100(cfg):  # say so explicitly (the engine scales the total to 100%)
        cfg["allow_over_100"] = True
    return cfg


def _over_100(cfg: dict[str, object]) -> bool:
    """Rates that can add up to more than 100% of the base (refused unless ``allow_over_100``)."""
    from cps_engine import load_policy

    bound = load_policy({**cfg, "allow_over_100": True}).max_total_rate()
    return bound is not None and bound[0] > 1


def _as_fraction(text: str) -> Fraction:
    text = text.strip()
    return Fraction(Decimal(text[:-1])) / 100 if text.endswith("%") else Fraction(text)


@st.composite
def interleaved_programmes(draw: st.DrawFn, *, span_days: int = 6, **kwargs: object) -> Programme:
    """Like :func:`programmes` (same keyword arguments), but binds, orders and refunds happen at
    random times over ``span_days``, so bindings change, and expire, between orders.  Shares keep
    their order in time (a share never comes before its parent); refunds may precede their order."""
    prog: Programme = draw(programmes(**kwargs))  # type: ignore[arg-type]
    span = span_days * 86_400
    seconds = st.integers(0, span)
    share_times = sorted(draw(st.lists(seconds, min_size=len(prog.shares), max_size=len(prog.shares))))
    shares = [s.model_copy(update={"at": T0 + timedelta(seconds=t)}) for s, t in zip(prog.shares, share_times,
                                                                                   strict=True)]

    def moved(ev: Event) -> Event:
        return ev.model_copy(update={"at": T0 + timedelta(seconds=draw(seconds))})

    binds = [moved(b) for b in prog.binds]
    orders = [moved(o) for o in prog.orders]
    refund_events = [moved(r) for r in prog.refunds]
    events: list[Event] = sorted([*shares, *binds, *orders, *refund_events], key=lambda e: e.at)
    return Programme(events, prog.people, shares, binds, orders, refund_events)  # type: ignore[arg-type]
