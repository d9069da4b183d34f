"""Hand-checked histories with exact numbers, run on SQLite, PostgreSQL and MariaDB alike.

Programme used throughout: share ``s1`` by amy, re-shared as ``s2`` by bob; orders through ``s2``
pay bob (level 1) 10% and amy (level 2) 5% of the base (capped_multilevel, rounding down), with a
7-day hold.
"""

from __future__ import annotations

import pytest

from cps_engine import IdempotencyConflict, InvalidEvent, UnknownReference
from cps_engine.ledger import BelowMinimumPayout, InsufficientBalance, Outcome
from tests.ledger.conftest import MakeLedger
from tests.ledger.helpers import POLICY, bal, order, payout, refund, share

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

GRAPH = [share("s1", "amy"), share("s2", "bob", "s1", at=0.01)]


def test_pending_available_paid_with_fee_and_minimum(make_ledger: MakeLedger) -> None:
    led = make_ledger(POLICY, hold_days=7, min_payout="5.00 CNY", payout_fee="1%")
    led.record_many([*GRAPH, order("o1", "s2", "100.00", at=1)])
    assert bal(led, "bob", 2) == ("10.00", "0.00", "0.00", "0.00")
    assert bal(led, "amy", 7.999) == ("5.00", "0.00", "0.00", "0.00")
    assert bal(led, "bob", 8) == ("0.00", "10.00", "0.00", "0.00")  # hold ends exactly 7 days after the order
    # a payout before the hold ended is refused (strict) with a typed error, and nothing is stored
    with pytest.raises(InsufficientBalance, match=r"0\.00 CNY available"):
        led.record(payout("p0", "bob", "6.00", at=7), strict=True)
    r = led.record(payout("p1", "bob", "6.00", at=9))
    assert r.outcome is Outcome.APPLIED
    # 1% fee of 6.00 = 0.06 withheld: bob receives 5.94, 4.00 stays available
    assert bal(led, "bob", 9) == ("0.00", "4.00", "5.94", "0.06")
    assert bal(led, "bob", 8.5) == ("0.00", "10.00", "0.00", "0.00")  # as of before the payout
    with pytest.raises(BelowMinimumPayout):
        led.record(payout("p2", "bob", "4.00", at=10), strict=True)
    with pytest.raises(InsufficientBalance):
        led.record(payout("p3", "bob", "5.00", at=10), strict=True)
    assert [e.id for e in led.parked()] == []  # strict refusals store nothing
    assert led.record(payout("p2", "bob", "4.00", at=10)).outcome is Outcome.REJECTED  # below the minimum, kept
    assert led.record(payout("p3", "bob", "5.00", at=10)).outcome is Outcome.PARKED  # waits for funds
    b = led.balance("bob", "CNY", as_of=pytest.importorskip("tests.ledger.helpers").day(10))
    assert (str(b.earned.amount), str(b.reversed.amount)) == ("10.00", "0.00")
    assert b.earned.minor - b.reversed.minor == b.pending.minor + b.available.minor + b.paid.minor + b.fee.minor
    # a later commission funds the parked payout: applied when it arrives
    r = led.record(order("o2", "s2", "20.00", at=1.5))
    assert r.released == (("payout", "p3"),)
    assert bal(led, "bob", 10) == ("0.00", "1.00", "10.89", "0.11")
    assert [(p.id, p.status) for p in led.parked()] == [("p2", "rejected")]
    assert led.verify().ok


def test_refund_after_payout_claws_back_and_later_commission_offsets(make_ledger: MakeLedger) -> None:
    led = make_ledger(POLICY, hold_days=7)
    led.record_many([*GRAPH, order("o1", "s2", "100.00", at=0), payout("p1", "bob", "10.00", at=8)])
    assert bal(led, "bob", 8) == ("0.00", "0.00", "10.00", "0.00")
    led.record(refund("r1", "o1", "60.00", at=9))  # net base 40.00: bob 4.00, amy 2.00
    assert bal(led, "bob", 9) == ("0.00", "-6.00", "10.00", "0.00")  # clawback: available negative
    assert bal(led, "amy", 9) == ("0.00", "2.00", "0.00", "0.00")
    assert [str(m.amount) for _, _, m in led.order_lines("o1")] == ["4.00", "2.00"]
    led.record(order("o2", "s2", "200.00", at=10))
    assert bal(led, "bob", 16.9) == ("20.00", "-6.00", "10.00", "0.00")
    assert bal(led, "bob", 17) == ("0.00", "14.00", "10.00", "0.00")  # offset by the later commission
    b = led.balance("bob", "CNY", as_of=pytest.importorskip("tests.ledger.helpers").day(17))
    assert (b.earned.minor, b.reversed.minor) == (3000, 600)
    # a payout cannot draw on the negative balance before the new commission is available
    with pytest.raises(InsufficientBalance):
        led.record(payout("p2", "bob", "1.00", at=12), strict=True)
    assert led.record(payout("p2", "bob", "14.00", at=17)).outcome is Outcome.APPLIED
    assert bal(led, "bob", 17) == ("0.00", "0.00", "24.00", "0.00")
    assert led.verify().ok


def test_partial_refund_then_cancel_before_hold_reverses_everything(make_ledger: MakeLedger) -> None:
    led = make_ledger(POLICY, hold_days=7)
    led.record_many([*GRAPH, order("o1", "s2", "100.00", at=0), refund("r1", "o1", "33.33", at=2)])
    # net 66.67: bob floor(6.667) = 6.66, amy floor(3.3335) = 3.33
    assert bal(led, "bob", 3) == ("6.66", "0.00", "0.00", "0.00")
    assert bal(led, "amy", 3) == ("3.33", "0.00", "0.00", "0.00")
    led.record(refund("c1", "o1", None, at=4, kind="cancel"))  # no amount: the rest (66.67)
    for who in ("bob", "amy"):
        assert bal(led, who, 30) == ("0.00", "0.00", "0.00", "0.00")
    assert led.order_lines("o1") == []
    b = led.balance("bob", "CNY", as_of=pytest.importorskip("tests.ledger.helpers").day(30))
    assert (b.earned.minor, b.reversed.minor) == (1000, 1000)
    # over-refunding is rejected with a reason (kept, visible), strict raises InvalidEvent
    with pytest.raises(InvalidEvent, match="exceed"):
        led.record(refund("r9", "o1", "0.01", at=5), strict=True)
    assert led.record(refund("r9", "o1", "0.01", at=5)).outcome is Outcome.REJECTED


def test_chargeback_after_release_takes_back_available(make_ledger: MakeLedger) -> None:
    led = make_ledger(POLICY, hold_days=7)
    led.record_many([*GRAPH, order("o1", "s2", "19.99", at=0)])
    assert bal(led, "bob", 8) == ("0.00", "1.99", "0.00", "0.00")
    led.record(refund("cb1", "o1", None, at=20, kind="chargeback"))
    assert bal(led, "bob", 19) == ("0.00", "1.99", "0.00", "0.00")
    assert bal(led, "bob", 20) == ("0.00", "0.00", "0.00", "0.00")


def test_out_of_order_refund_and_payout_are_parked_then_applied(make_ledger: MakeLedger) -> None:
    in_order = make_ledger(POLICY, hold_days=7)
    events = [*GRAPH, order("o1", "s2", "100.00", at=0), refund("r1", "o1", "10.00", at=1),
              refund("r2", "o1", "0.05", at=2), payout("p1", "bob", "5.00", at=9)]
    in_order.record_many(events)
    late = make_ledger(POLICY, hold_days=7)
    assert late.record(events[5]).outcome is Outcome.PARKED  # payout before any commission
    assert late.record(events[4]).outcome is Outcome.PARKED  # refund before its order
    assert late.record(events[2]).outcome is Outcome.PARKED  # order before its share
    assert {(p.kind, p.waits_for) for p in late.parked()} == {
        ("payout", "funds:CNY:bob"), ("refund", "order:o1"), ("order", "share:s2")}
    assert late.record(events[3]).outcome is Outcome.PARKED
    late.record(events[0])
    r = late.record(events[1])  # the share lets the order through, which lets the refunds and the payout through
    assert r.released == (("order", "o1"), ("refund", "r1"), ("refund", "r2"), ("payout", "p1"))
    assert late.parked() == []
    for who in ("bob", "amy"):
        for t in (0.5, 1.5, 3, 9, 10):
            assert bal(late, who, t) == bal(in_order, who, t)
    assert late.state_digest() == in_order.state_digest()
    assert late.verify().ok


def test_idempotency_duplicate_and_conflict(make_ledger: MakeLedger) -> None:
    led = make_ledger(POLICY)
    led.record_many([*GRAPH, order("o1", "s2", "100.00", at=0)])
    head = led.chain_head()
    assert led.record(order("o1", "s2", "100.0", at=0)).outcome is Outcome.DUPLICATE  # same amount, other text
    with pytest.raises(IdempotencyConflict, match="different payload"):
        led.record(order("o1", "s2", "100.01", at=0))
    with pytest.raises(IdempotencyConflict):  # a whole batch with a conflict changes nothing
        led.record_many([order("o2", "s2", "5.00", at=1), order("o1", "s2", "1.00", at=0)])
    assert led.chain_head() == head
    assert led.event_count() == 3
    assert led.record(order("o2", "s2", "5.00", at=1)).outcome is Outcome.APPLIED


def test_strict_unknown_share_and_unknown_order(make_ledger: MakeLedger) -> None:
    led = make_ledger(POLICY)
    with pytest.raises(UnknownReference, match="s9"):
        led.record(order("o1", "s9", "1.00", at=0), strict=True)
    with pytest.raises(UnknownReference, match="o7"):
        led.record(refund("r1", "o7", "1.00", at=0), strict=True)
    assert led.event_count() == 0


def test_policy_versions_apply_to_new_orders_only(make_ledger: MakeLedger) -> None:
    led = make_ledger({"kind": "first_sharer", "rate": "10%"}, hold_days=0)
    led.record_many([*GRAPH, order("o1", "s2", "100.00", at=0)])
    store = led._engine if led._engine is not None else led._conn
    led2 = type(led)(store, {"kind": "first_sharer", "rate": "20%"}, prefix=led.tables.prefix)  # type: ignore[arg-type]
    assert [t.version for t in led2.terms] == [1, 2]
    led2.record(order("o2", "s2", "100.00", at=1))
    led2.record(refund("r1", "o1", "50.00", at=2))  # o1 keeps its 10% snapshot
    assert [str(m.amount) for _, _, m in led2.order_lines("o1")] == ["5.00"]
    assert [str(m.amount) for _, _, m in led2.order_lines("o2")] == ["20.00"]
    rates = {(e.order, e.rate, e.config_hash) for e in led2.entries(payee="amy")}
    assert rates == {("o1", "1/10", led2.terms[0].config_hash), ("o2", "1/5", led2.terms[1].config_hash)}
    # an order dated before the change still gets the old policy, even when it arrives later
    led2.record(order("o0", "s2", "100.00", at=-0.5))
    assert [str(m.amount) for _, _, m in led2.order_lines("o0")] == ["10.00"]


def test_late_bind_restates_the_order(make_ledger: MakeLedger) -> None:
    from cps_engine.models import BindEvent
    from tests.ledger.helpers import day

    bind = BindEvent(id="b1", user="cat", upline="bob", at=day(0))
    o = order("o1", None, "50.00", at=1)  # no share: the buyer's upline is paid
    in_order = make_ledger(POLICY, hold_days=7)
    in_order.record_many([bind, o, refund("r1", "o1", "10.00", at=2)])
    assert [str(m.amount) for _, _, m in in_order.order_lines("o1")] == ["4.00"]
    late = make_ledger(POLICY, hold_days=7)
    late.record_many([o, refund("r1", "o1", "10.00", at=2)])
    assert late.order_lines("o1") == []  # nobody was bound yet, as far as the ledger knew
    late.record(bind)  # dated before the order: the order's chain changes
    assert [str(m.amount) for _, _, m in late.order_lines("o1")] == ["4.00"]
    for t in (1.5, 2.5, 9):
        assert bal(late, "bob", t) == bal(in_order, "bob", t)
    assert late.state_digest() == in_order.state_digest()
    assert late.verify().ok


def test_rounding_never_loses_a_cent(make_ledger: MakeLedger) -> None:
    led = make_ledger(POLICY, hold_days=0)
    led.record_many([*GRAPH, order("o1", "s2", "0.99", at=0), refund("r1", "o1", "0.01", at=1),
                     refund("r2", "o1", "0.09", at=2), refund("r3", "o1", "0.89", at=3)])
    # base 99 -> bob 9, amy 4; 98 -> 9, 4; 89 -> 8, 4; 0 -> 0, 0
    got = [(e.payee, e.kind, e.amount) for e in led.entries(order="o1") if e.account == "commission"]
    assert got == [("bob", "accrual", 9), ("amy", "accrual", 4), ("bob", "refund", -1), ("bob", "refund", -8),
                   ("amy", "refund", -4)]
    assert bal(led, "bob", 5) == ("0.00", "0.00", "0.00", "0.00")


def test_refunds_out_of_order_restate_to_the_in_order_timeline(make_ledger: MakeLedger) -> None:
    # 0.99 at 10%: 9; after r1 (0.01) 98 -> 9; after r2 (0.09) 89 -> 8.  Delivered r2 first, the
    # rounding step would land on r1's day; restated, it lands on r2's day as in order.
    events = [*GRAPH, order("o1", "s2", "0.99", at=0), refund("r1", "o1", "0.01", at=1),
              refund("r2", "o1", "0.09", at=2)]
    in_order = make_ledger(POLICY, hold_days=7)
    in_order.record_many(events)
    late = make_ledger(POLICY, hold_days=7)
    late.record_many([*events[:3], events[4], events[3]])
    assert bal(late, "bob", 1.5) == bal(in_order, "bob", 1.5) == ("0.09", "0.00", "0.00", "0.00")
    assert bal(late, "bob", 2.5) == bal(in_order, "bob", 2.5) == ("0.08", "0.00", "0.00", "0.00")
    assert late.state_digest() == in_order.state_digest()
    # restatement posts only the difference (posting rules 2): the -0.01 step on r2's day, nothing reversed
    assert {e.kind for e in late.entries(order="o1")} == {"accrual", "refund"}
    assert len(late.entries(order="o1")) == len(in_order.entries(order="o1"))
    assert late.verify().ok


def test_participation_is_judged_as_of_the_order(make_ledger: MakeLedger) -> None:
    policy = {"kind": "compliant", "profile": "cn", "rates": ["10%", "5%"], "cap": "15%"}
    led = make_ledger(policy, hold_days=0)
    # dan buys through amy's share, and only later shares himself: amy earns on his order, even when
    # the ledger hears of his share first
    led.record_many([share("s1", "amy"), share("s9", "dan", at=2), order("o1", "s1", "10.00", at=1, buyer="dan"),
                     order("o2", "s1", "10.00", at=3, buyer="dan")])
    assert [str(m.amount) for _, _, m in led.order_lines("o1")] == ["1.00"]
    assert led.order_lines("o2") == []  # by then dan is a participant: CN-SELF, his uplines earn nothing
    # a share of dan dated before o1 that arrives late makes o1 a participant's purchase: restated
    led.record(share("s8", "dan", at=0.5))
    assert led.order_lines("o1") == []
    assert bal(led, "amy", 5) == ("0.00", "0.00", "0.00", "0.00")


def test_long_exact_rates_are_stored_exactly(make_ledger: MakeLedger) -> None:
    from fractions import Fraction

    led = make_ledger({"kind": "time_decay", "rate": "10%", "half_life_days": "0.7"}, hold_days=0)
    led.record_many([share("s1", "amy"), share("s2", "bob", "s1", at=0.3), share("s3", "cid", "s2", at=0.6),
                     order("o1", "s3", "999.99", at=1.1), refund("r1", "o1", "0.07", at=2)])
    rates = {e.payee: e.rate for e in led.entries(order="o1") if e.payee}
    assert all(r is not None and Fraction(r) > 0 for r in rates.values())  # exact texts, read back exactly
    assert sum(Fraction(r) for r in rates.values() if r) == Fraction(1, 10)
    assert sum(m.minor for _, _, m in led.order_lines("o1")) == 9999  # one pool of 10% of 999.92, rounded once
    assert led.verify().ok
