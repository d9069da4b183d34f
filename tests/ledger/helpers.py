"""Event builders and small utilities shared by the ledger tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from cps_engine.models import Event, OrderEvent, PayoutEvent, RefundEvent, ShareEvent, parse_event

TZ = timezone(timedelta(hours=8))
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=TZ)
POLICY = {"kind": "capped_multilevel", "rates": ["10%", "5%"]}


def day(n: float) -> datetime:
    """``T0`` plus ``n`` days."""
    return T0 + timedelta(days=n)


def share(sid: str, sharer: str, parent: str | None = None, at: float = 0) -> ShareEvent:
    return ShareEvent(id=sid, sharer=sharer, parent=parent, at=day(at))


def order(oid: str, sh: str | None, amount: str, at: float, buyer: str = "cat", currency: str = "CNY",
          **kw: Any) -> OrderEvent:
    return OrderEvent(id=oid, buyer=buyer, share=sh, amount=Decimal(amount), currency=currency, at=day(at), **kw)


def refund(rid: str, oid: str, amount: str | None, at: float, kind: str = "refund") -> RefundEvent:
    return RefundEvent(id=rid, order=oid, amount=None if amount is None else Decimal(amount), at=day(at),
                       kind=kind)  # type: ignore[arg-type]


def payout(pid: str, payee: str, amount: str, at: float, currency: str = "CNY") -> PayoutEvent:
    return PayoutEvent(id=pid, payee=payee, amount=Decimal(amount), currency=currency, at=day(at))


def bal(led: Any, payee: str, at: float, currency: str = "CNY") -> tuple[str, str, str, str]:
    """``(pending, available, paid, fee)`` as decimal strings at ``T0 + at`` days."""
    b = led.balance(payee, currency, as_of=day(at)).as_json()
    return b["pending"], b["available"], b["paid"], b["fee"]


def ev(raw: dict[str, Any]) -> Event:
    return parse_event(raw)


def history(seed: int, *, n_orders: int = 20, n_people: int = 8, payouts: bool = True) -> list[Event]:
    """A deterministic small programme: shares, binds, orders (through shares or bindings), refunds,
    and payouts dated after everything else (safe to deliver in any order), time-sorted."""
    import random

    rnd = random.Random(seed)
    people = [f"u{i}" for i in range(n_people)]
    out: list[Event] = []
    t = 0.0

    def tick() -> float:
        nonlocal t
        t += rnd.uniform(0.01, 0.2)
        return t

    shares: list[str] = []
    for i in range(n_people):
        parent = rnd.choice(shares) if shares and rnd.random() < 0.7 else None
        out.append(share(f"s{i}", rnd.choice(people), parent, at=tick()))
        shares.append(f"s{i}")
    from cps_engine.models import BindEvent

    for i in range(1, n_people, 2):
        out.append(BindEvent(id=f"b{i}", user=people[i], upline=people[rnd.randrange(i)], at=day(tick())))
    orders = []
    for i in range(n_orders):
        amount = f"{rnd.randint(100, 50_000) / 100:.2f}"
        sh = rnd.choice(shares) if rnd.random() < 0.8 else None
        o = order(f"o{i}", sh, amount, at=tick(), buyer=rnd.choice([*people, "walkin"]))
        out.append(o)
        orders.append(o)
        if rnd.random() < 0.3:
            part = rnd.random() < 0.6
            out.append(refund(f"r{i}", o.id, f"{rnd.randint(1, o.amount_minor) / 100:.2f}" if part else None,
                              at=tick(), kind=rnd.choice(["refund", "chargeback"])))
    if payouts:
        out = with_payouts(out)
    return out


def with_payouts(events: list[Event], hold_days: int = 7, policy: dict[str, Any] = POLICY) -> list[Event]:
    """``events`` plus payouts of half the available balance of up to three payees, dated after every
    other event and every hold end (so they are applied whatever order the events arrive in)."""
    from cps_engine.ledger import Ledger

    end = max(e.at for e in events) + timedelta(days=hold_days + 1)
    with Ledger.open(":memory:", policy, hold_days=hold_days) as led:
        led.record_many(events)
        funded = [b for b in led.balances(as_of=end) if b.available.minor >= 2][:3]
    extra: list[Event] = [PayoutEvent(id=f"p{i}", payee=b.payee, currency=b.currency,
                                      amount=Decimal(b.available.minor // 2).scaleb(-2),
                                      at=end + timedelta(minutes=i)) for i, b in enumerate(funded)]
    return events + extra
