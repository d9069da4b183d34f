"""Arrival-order guarantees (issue 11): what is independent of arrival order, and -- one test each --
the events that are order-sensitive by nature (documented in the README and ``state_digest``)."""

from __future__ import annotations

from cps_engine.ledger import Outcome
from tests.ledger.conftest import MakeLedger
from tests.ledger.helpers import POLICY, bal, order, payout, refund, share

GRAPH = [share("s1", "amy"), share("s2", "bob", "s1", at=0.01)]


def test_a_full_refund_before_an_earlier_partial_one_equals_in_order(make_ledger: MakeLedger) -> None:
    # an amount-less refund means "what is left at its time": re-resolved when an earlier refund
    # arrives late.  Before issue 11 the partial refund was rejected and the balances differed.
    events = [*GRAPH, order("o1", "s2", "100.00", at=0), refund("r1", "o1", "30.00", at=1),
              refund("c1", "o1", None, at=2, kind="cancel")]
    in_order = make_ledger(POLICY, hold_days=7)
    in_order.record_many(events)
    late = make_ledger(POLICY, hold_days=7)
    late.record_many([*events[:3], events[4]])
    assert late.record(events[3]).outcome is Outcome.APPLIED
    assert late.parked() == in_order.parked() == []
    assert late.state_digest() == in_order.state_digest()
    assert bal(late, "bob", 1.5) == bal(in_order, "bob", 1.5) == ("7.00", "0.00", "0.00", "0.00")
    assert late.verify().ok


def test_a_partial_refund_after_a_full_one_is_rejected_in_either_order_of_time(make_ledger: MakeLedger) -> None:
    led = make_ledger(POLICY, hold_days=7)
    led.record_many([*GRAPH, order("o1", "s2", "100.00", at=0), refund("c1", "o1", None, at=2, kind="cancel")])
    assert led.record(refund("r9", "o1", "0.01", at=3)).outcome is Outcome.REJECTED


def test_order_sensitive_a_partial_refund_dated_after_a_full_one_but_arriving_first(make_ledger: MakeLedger) -> None:
    # in time order the partial refund (dated after the cancel) would be rejected; arriving first it is
    # applied, and an applied refund is never undone: the cancel takes what is left (documented)
    events = [*GRAPH, order("o1", "s2", "100.00", at=0), refund("c1", "o1", None, at=1, kind="cancel"),
              refund("r2", "o1", "30.00", at=2)]
    in_order = make_ledger(POLICY, hold_days=7)
    in_order.record_many(events)
    assert [p.id for p in in_order.parked()] == ["r2"]
    late = make_ledger(POLICY, hold_days=7)
    late.record_many([*events[:3], events[4], events[3]])
    assert late.parked() == []
    assert bal(late, "bob", 5) == bal(in_order, "bob", 5) == ("0.00", "0.00", "0.00", "0.00")  # same money
    assert late.state_digest() != in_order.state_digest()  # different parked list and timing


def test_order_sensitive_two_payouts_exceeding_the_balance(make_ledger: MakeLedger) -> None:
    # a payout is money that left: the one that arrives first is paid, the other waits for funds
    # (documented); the money paid is the same, who waits differs
    base = [*GRAPH, order("o1", "s2", "100.00", at=0)]
    p1, p2 = payout("p1", "bob", "6.00", at=10), payout("p2", "bob", "7.00", at=11)
    a = make_ledger(POLICY, hold_days=7)
    a.record_many([*base, p1, p2])
    b = make_ledger(POLICY, hold_days=7)
    b.record_many([*base, p2, p1])
    assert [p.id for p in a.parked()] == ["p2"] and [p.id for p in b.parked()] == ["p1"]
    assert bal(a, "bob", 12) == ("0.00", "4.00", "6.00", "0.00")
    assert bal(b, "bob", 12) == ("0.00", "3.00", "7.00", "0.00")
    assert a.state_digest() != b.state_digest()
