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
