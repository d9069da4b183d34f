"""Duplicates and reorderings: a ledger fed a history with every event delivered 1-5 times in random
order ends identical to the ledger fed the history once, in order.

Identical means: the same balances of every payee at every event time and after all holds, the same
commission per order and payee, the same parked/rejected events and the same ``state_digest`` (the
ledger's positions).  The hash chain records the order things actually happened in, so its head is
identical exactly when the first deliveries came in the same order: a second test delivers every
event 1-5 times with duplicates interleaved anywhere and checks the chain head too.

The histories are the shared ``programmes()`` (shares, binds, orders in CNY/JPY/KWD, partial and
full refunds, chargebacks) plus payouts dated after everything else and within what the payee has
available at the end, under several policies and binding modes.  The in-order ledger is also
checked against the engine (``compute_events``) line by line.
"""

from __future__ import annotations

import os
import random
from datetime import timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from cps_engine.engine import compute_events
from cps_engine.graph import BindingConfig, to_micros
from cps_engine.ledger import Ledger, Outcome
from cps_engine.models import Event, PayoutEvent
from cps_engine.policies import load_policy
from tests.strategies import CURRENCY_EXP, programmes

POLICIES = [
    {"kind": "capped_multilevel", "rates": ["10%", "5%", "2%"], "cap": "15%"},
    {"kind": "first_sharer", "rate": "10%"},
    {"kind": "compliant", "profile": "cn", "rates": ["10%", "5%"], "cap": "15%", "self_purchase_rate": "3%"},
    {"kind": "linear", "rate": "9%"},
    {"kind": "time_decay", "rate": "10%", "half_life_days": "1"},
]
BINDINGS = [BindingConfig(), BindingConfig(mode="overwrite"), BindingConfig(mode="expiring", expire_days=1)]
HOLD = 1
#: histories per run: the hypothesis profile's count; CPS_LEDGER_REORDER_EXAMPLES=2000 for a long soak
EXAMPLES = int(os.environ.get("CPS_LEDGER_REORDER_EXAMPLES", "0")) or settings.default.max_examples
DELIVERIES = 2  # random deliveries per generated history

def ledger(policy: dict[str, object], binding: BindingConfig) -> Ledger:
    return Ledger.open(":memory:", policy, hold_days=HOLD, binding=binding)


Payouts = list[tuple[int, int]]  # (which funded balance, per-mille of it to pay out)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Event], dict[str, object], BindingConfig, Payouts]:
    prog = draw(programmes(max_people=6, max_shares=10, max_orders=8, currencies=("CNY", "JPY", "KWD"),
                           max_amount=10**6))
    payouts = draw(st.lists(st.tuples(st.integers(0, 5), st.integers(1, 1000)), max_size=4,
                            unique_by=lambda p: p[0]))
    return list(prog.events), draw(st.sampled_from(POLICIES)), draw(st.sampled_from(BINDINGS)), payouts


def in_order(events: list[Event], policy: dict[str, object], binding: BindingConfig,
             payouts: Payouts) -> tuple[Ledger, list[Event]]:
    """The in-order ledger, plus payouts dated after everything else and within the final available
    balances (so any delivery order applies them)."""
    base = ledger(policy, binding)
    base.record_many(events)
    if not events:
        return base, events
    end = max(e.at for e in events) + timedelta(days=HOLD + 1)
    funded = [b for b in base.balances(as_of=end) if b.available.minor > 0]
    extra: list[Event] = []
    for i, (which, per_mille) in enumerate(payouts):
        if which < len(funded):
            b = funded[which]
            minor = max(1, b.available.minor * per_mille // 1000)
            extra.append(PayoutEvent(id=f"p{i}", payee=b.payee, currency=b.currency, at=end + timedelta(minutes=i),
                                     amount=Decimal(minor).scaleb(-CURRENCY_EXP[b.currency])))
    base.record_many(extra)
    return base, events + extra


def snapshot(led: Ledger, events: list[Event]) -> dict[str, object]:
    times = sorted({to_micros(e.at) for e in events} | {to_micros(e.at) + HOLD * 86_400_000_000 for e in events})
    return {
        "balances": {t: led.balances(as_of=t) for t in times[:: max(1, len(times) // 5)] + times[-1:]},
        "lines": net_lines(led),
        "parked": [(p.kind, p.id, p.status) for p in led.parked()],
        "digest": led.state_digest(),
    }


def net_lines(led: Ledger) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for e in led.entries():
        if e.account == "commission" and e.order and e.payee:
            out[(e.order, e.payee)] = out.get((e.order, e.payee), 0) + e.amount
    return {k: v for k, v in out.items() if v}


@settings(max_examples=EXAMPLES)
@given(histories(), st.randoms(use_true_random=False))
def test_random_deliveries_equal_in_order_delivery(hist: tuple[list[Event], dict[str, object], BindingConfig,
                                                               Payouts], rnd: random.Random) -> None:
    base, events = in_order(*hist)
    _, policy, binding, _ = hist
    assert base.parked() == []
    assert base.verify().ok
    want: dict[tuple[str, str], int] = {}  # the engine replaying the whole history agrees to the unit
    for s in compute_events(events, load_policy(policy), binding=binding):
        for line in s.lines:
            key = (s.order, line.payee)
            want[key] = want.get(key, 0) + line.amount.minor
    assert net_lines(base) == want
    expected = snapshot(base, events)
    for _ in range(DELIVERIES):
        deliveries = [e for e in events for _ in range(rnd.randint(1, 5))]
        rnd.shuffle(deliveries)
        led = ledger(policy, binding)
        for i in range(0, len(deliveries), 7):
            led.record_many(deliveries[i:i + 7], batch_size=rnd.randint(1, 7))
        assert led.event_count() == len(events)
        assert snapshot(led, events) == expected
        v = led.verify()
        assert v.ok, v.problems
        led.close()
    base.close()


@given(histories(), st.randoms(use_true_random=False))
def test_duplicates_anywhere_give_the_same_chain_head(hist: tuple[list[Event], dict[str, object], BindingConfig,
                                                                 Payouts], rnd: random.Random) -> None:
    base, events = in_order(*hist)
    _, policy, binding, _ = hist
    deliveries = list(events)
    for e in events:  # extra copies anywhere after the first delivery
        first = deliveries.index(e)
        for _ in range(rnd.randint(0, 4)):
            deliveries.insert(rnd.randint(first + 1, len(deliveries)), e)
    led = ledger(policy, binding)
    summary = led.record_many(deliveries, batch_size=rnd.randint(1, 10))
    assert summary.counts[Outcome.DUPLICATE] == len(deliveries) - len(events)
    assert led.chain_head() == base.chain_head()
    assert led.state_digest() == base.state_digest()
    led.close()
    base.close()
