"""A hypothesis state machine against a plain in-memory model of the ledger.

Rules: place an order, refund partially, refund fully, cancel, let time pass (less or more than the
hold), pay out (within and beyond the available balance), deliver an event again, re-send an id with
another payload, hold an order or refund back and deliver it later (out of order).

The model knows nothing of entries: it keeps the delivered orders, refunds and payouts and computes
every line as ``floor(net base × rate)`` at any time.  After every step: the log verifies (hash chain,
every posting balances per currency), every payee's balances equal the model's now and after all
holds end, ``earned - reversed == pending + available + paid + fee``, the commission of every order
is exactly its lines on the net base (nothing lost to rounding, never above the base), and the
parked events are exactly the refunds whose order is held back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from cps_engine import IdempotencyConflict
from cps_engine.graph import to_micros
from cps_engine.ledger import InsufficientBalance, Ledger, Outcome
from cps_engine.models import Event, OrderEvent, PayoutEvent, RefundEvent
from cps_engine.money import Money
from tests.ledger.helpers import POLICY, T0, share

HOLD_DAYS = 3
HOLD_US = HOLD_DAYS * 86_400_000_000
FEE_RATE = Fraction(1, 50)
MIN_PAYOUT = 100
#: share -> (payee, rate) of capped_multilevel 10% / 5% (the buyer is never on a chain)
CHAINS = {"s1": [("amy", Fraction(1, 10))],
          "s2": [("bob", Fraction(1, 10)), ("amy", Fraction(1, 20))],
          "s3": [("cid", Fraction(1, 10)), ("bob", Fraction(1, 20))]}
PAYEES = ("amy", "bob", "cid")


def cny(minor: int) -> Decimal:
    return Decimal(minor).scaleb(-2)


@dataclass
class ModelOrder:
    ev: OrderEvent
    refunds: list[tuple[int, str, int]] = field(default_factory=list)  # (at, id, minor) delivered

    @property
    def at(self) -> int:
        return to_micros(self.ev.at)

    def lines(self, t: int) -> dict[str, int]:
        """Commission per payee as of ``t`` (refunds dated after ``t`` not yet counted)."""
        net = self.ev.amount_minor - sum(m for at, _, m in self.refunds if at <= t)
        out: dict[str, int] = {}
        for payee, rate in CHAINS[self.ev.share or ""]:
            out[payee] = out.get(payee, 0) + net * rate.numerator // rate.denominator
        return out


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.led = Ledger.open(":memory:", POLICY, hold_days=HOLD_DAYS, min_payout=str(Money(MIN_PAYOUT, "CNY")),
                               payout_fee=str(FEE_RATE))
        self.now = to_micros(T0) + 86_400_000_000
        self.n = 0
        self.orders: dict[str, ModelOrder] = {}           # delivered orders
        self.held: dict[str, Event] = {}                   # created, not delivered yet
        self.all_orders: dict[str, OrderEvent] = {}        # delivered or held
        self.refunded: dict[str, int] = {}                 # per order, delivered or held
        self.payouts: list[tuple[int, str, int, int]] = []  # (at, payee, amount, fee)
        self.delivered: list[Event] = []

    @initialize()
    def programme(self) -> None:
        for ev in (share("s1", "amy"), share("s2", "bob", "s1", at=0.01), share("s3", "cid", "s2", at=0.02)):
            self.deliver(ev)

    # ------------------------------------------------------------------ helpers
    def at(self) -> object:
        self.now += 1_000_000  # events never share a timestamp
        return T0 + timedelta(microseconds=self.now - to_micros(T0))

    def deliver(self, ev: Event) -> None:
        r = self.led.record(ev)
        assert r.outcome in (Outcome.APPLIED, Outcome.PARKED), r
        self.delivered.append(ev)
        if isinstance(ev, OrderEvent):
            self.orders[ev.id] = ModelOrder(ev)
            for other in self.delivered:  # refunds delivered before their order
                if isinstance(other, RefundEvent) and other.order == ev.id:
                    self._apply_refund(other)
        elif isinstance(ev, RefundEvent) and ev.order in self.orders:
            self._apply_refund(ev)

    def _apply_refund(self, ev: RefundEvent) -> None:
        o = self.orders[ev.order]
        minor = ev.amount_minor("CNY")
        assert minor is not None
        o.refunds.append((to_micros(ev.at), ev.id, minor))

    def send(self, ev: Event, hold: bool) -> None:
        if hold:
            self.held[ev.id] = ev
        else:
            self.deliver(ev)

    def expected(self, payee: str, t: int) -> tuple[int, int, int, int]:
        pending = available = 0
        for o in self.orders.values():
            if o.at <= t:
                amount = o.lines(t).get(payee, 0)
                if t < o.at + HOLD_US:
                    pending += amount
                else:
                    available += amount
        paid = fee = 0
        for at, who, amount, f in self.payouts:
            if who == payee and at <= t:
                available -= amount
                paid += amount - f
                fee += f
        return pending, available, paid, fee

    def funds(self, payee: str, t: int) -> int:
        total = 0
        for o in self.orders.values():
            if o.at <= t and o.at + HOLD_US <= t:
                total += o.lines(t).get(payee, 0)
        return total - sum(a for _, who, a, _ in self.payouts if who == payee)

    # ------------------------------------------------------------------ rules
    @rule(sh=st.sampled_from(sorted(CHAINS)), minor=st.integers(1, 200_000), hold=st.booleans())
    def place_order(self, sh: str, minor: int, hold: bool) -> None:
        self.n += 1
        ev = OrderEvent(id=f"o{self.n}", buyer="zed", share=sh, amount=cny(minor), currency="CNY", at=self.at())
        self.all_orders[ev.id] = ev
        self.refunded[ev.id] = 0
        self.send(ev, hold and len(self.held) < 4)

    def _refundable(self) -> list[str]:
        return sorted(o for o, ev in self.all_orders.items() if self.refunded[o] < ev.amount_minor)

    @precondition(lambda self: self._refundable())
    @rule(data=st.data(), hold=st.booleans())
    def refund_partially(self, data: st.DataObject, hold: bool) -> None:
        oid = data.draw(st.sampled_from(self._refundable()))
        left = self.all_orders[oid].amount_minor - self.refunded[oid]
        minor = data.draw(st.integers(1, left))
        self.n += 1
        self.refunded[oid] += minor
        ev = RefundEvent(id=f"r{self.n}", order=oid, amount=cny(minor), at=self.at())
        self.send(ev, hold and len(self.held) < 4)

    @precondition(lambda self: self._refundable())
    @rule(data=st.data(), kind=st.sampled_from(["refund", "chargeback", "cancel"]))
    def refund_fully(self, data: st.DataObject, kind: str) -> None:
        oid = data.draw(st.sampled_from(self._refundable()))
        left = self.all_orders[oid].amount_minor - self.refunded[oid]
        self.n += 1
        self.refunded[oid] += left
        ev = RefundEvent(id=f"r{self.n}", order=oid, amount=cny(left), at=self.at(), kind=kind)  # type: ignore[arg-type]
        self.send(ev, False)

    @rule(hours=st.integers(1, 30))
    def time_passes(self, hours: int) -> None:
        self.now += hours * 3_600_000_000

    @rule()
    def pass_hold_period(self) -> None:
        self.now += HOLD_US

    @rule(data=st.data(), payee=st.sampled_from(PAYEES))
    def pay_out(self, data: st.DataObject, payee: str) -> None:
        at = self.at()
        t = to_micros(at)  # type: ignore[arg-type]
        funds = self.funds(payee, t)
        self.n += 1
        if funds < MIN_PAYOUT:
            ev = PayoutEvent(id=f"p{self.n}", payee=payee, amount=cny(max(funds, 0) + MIN_PAYOUT), currency="CNY",
                             at=at)
            with pytest.raises(InsufficientBalance):
                self.led.record(ev, strict=True)
            return
        minor = data.draw(st.integers(MIN_PAYOUT, funds))
        ev = PayoutEvent(id=f"p{self.n}", payee=payee, amount=cny(minor), currency="CNY", at=at)
        assert self.led.record(ev).outcome is Outcome.APPLIED
        self.delivered.append(ev)
        self.payouts.append((t, payee, minor, minor * FEE_RATE.numerator // FEE_RATE.denominator))

    @precondition(lambda self: self.delivered)
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        ev = data.draw(st.sampled_from(self.delivered))
        head = self.led.chain_head()
        assert self.led.record(ev).outcome is Outcome.DUPLICATE
        assert self.led.chain_head() == head

    @precondition(lambda self: any(isinstance(e, OrderEvent) for e in self.delivered))
    @rule(data=st.data())
    def conflicting_payload(self, data: st.DataObject) -> None:
        ev = data.draw(st.sampled_from([e for e in self.delivered if isinstance(e, OrderEvent)]))
        head = self.led.chain_head()
        with pytest.raises(IdempotencyConflict):
            self.led.record(ev.model_copy(update={"amount": ev.amount + 1}))
        assert self.led.chain_head() == head

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def deliver_held(self, data: st.DataObject) -> None:
        eid = data.draw(st.sampled_from(sorted(self.held)))
        self.deliver(self.held.pop(eid))

    # ------------------------------------------------------------------ invariants
    @invariant()
    def log_verifies(self) -> None:
        v = self.led.verify(replay=False)  # the chain after every step; the replay once, at the end
        assert v.ok, v.problems

    @invariant()
    def balances_equal_model(self) -> None:
        for t in (self.now, self.now + HOLD_US):
            got = {b.payee: b for b in self.led.balances(as_of=t)}
            for payee in PAYEES:
                b = got.get(payee)
                have = (b.pending.minor, b.available.minor, b.paid.minor, b.fee.minor) if b else (0, 0, 0, 0)
                assert have == self.expected(payee, t), (payee, t)
                if b is not None:
                    assert b.earned.minor - b.reversed.minor == sum(have)

    @invariant()
    def nothing_lost_to_rounding(self) -> None:
        for oid, o in self.orders.items():
            lines = {p: m.minor for p, _, m in self.led.order_lines(oid)}
            want = {p: v for p, v in o.lines(2**62).items() if v}
            assert lines == want, oid
            assert sum(lines.values()) <= o.ev.amount_minor - sum(m for _, _, m in o.refunds)

    @invariant()
    def parked_are_refunds_of_held_orders(self) -> None:
        parked = {(p.kind, p.id) for p in self.led.parked()}
        want = {("refund", e.id) for e in self.delivered if isinstance(e, RefundEvent) and e.order not in self.orders}
        assert parked == want

    def teardown(self) -> None:
        v = self.led.verify()  # with the replay: every entry, snapshot and refund follows from the events
        self.led.close()
        assert v.ok, v.problems


LedgerMachine.TestCase.settings = settings(settings.default, stateful_step_count=25)
TestLedgerMachine = LedgerMachine.TestCase
