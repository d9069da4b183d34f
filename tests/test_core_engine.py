"""Engine properties over random programmes, for every built-in policy kind.

Conservation to the unit, caps, rates, no negative line, who may be paid and at which level,
first-sharer against the naive reference, determinism under shuffling, refunds (rebase, split),
and exact pool splits.
"""

from __future__ import annotations

import math
import random
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cps_engine import (
    Event,
    OrderEvent,
    PolicyConfig,
    RefundEvent,
    Rounding,
    Settlement,
    ShareGraph,
    compute,
    compute_events,
    load_policy,
)
from cps_engine.money import apply_rate, parse_rate
from tests.strategies import POLICY_KINDS, Programme, interleaved_programmes, policy_configs, programmes
from tests.test_core_reference import Reference, net_base, refunded

POOL_KINDS = ("linear", "position_based", "time_decay")
CURRENCIES = ("CNY", "JPY", "KWD")


def self_rebate(policy: PolicyConfig) -> bool:
    return getattr(policy, "self_purchase_rate", None) is not None


def check_settlement(s: Settlement, order: OrderEvent, policy: PolicyConfig, events: list[Event]) -> None:
    """Every invariant one settlement must satisfy, whatever the policy."""
    base = s.base.minor
    cur = order.currency
    # the base is the net commissionable base, after refunds
    assert base == net_base(events, order, policy.base.include_shipping, policy.base.include_tax)
    assert s.base.currency == s.merchant_net.currency == cur
    # conservation to the unit, nobody negative, the merchant never below zero
    paid = sum(line.amount.minor for line in s.lines)
    assert paid + s.merchant_net.minor == base
    assert s.total.minor == paid and 0 <= paid <= base
    assert all(line.amount.minor > 0 and line.amount.currency == cur for line in s.lines)
    # total within the cap, the awards within [0, min(cap, 1)]
    ceiling = min(policy.cap, Fraction(1)) if policy.cap is not None else Fraction(1)
    assert sum((a.rate for a in s.awards), Fraction(0)) <= ceiling
    assert all(a.rate >= 0 for a in s.awards)
    if policy.rounding is Rounding.DOWN:
        assert paid <= ceiling * base
    # each person at most once, at level >= 1
    payees = [line.payee for line in s.lines]
    assert len(set(payees)) == len(payees)
    assert all(line.level >= 1 for line in s.lines)
    # the buyer only with self-purchase on (or a compliant disclosed rebate), and only at level 1
    for line in s.lines:
        if line.payee == order.buyer:
            assert policy.self_purchase or self_rebate(policy)
            assert line.level == 1
    # never more levels than the policy allows
    kind = policy.kind
    if kind in ("first_sharer", "last_sharer"):
        assert len(s.lines) <= 1
    if kind == "last_sharer":
        assert all(line.level == 1 for line in s.lines)
    if kind in ("capped_multilevel", "compliant"):
        assert all(line.level <= len(policy.rates) for line in s.lines)  # type: ignore[attr-defined]
    if kind in POOL_KINDS and policy.max_depth is not None:  # type: ignore[attr-defined]
        assert all(line.level <= policy.max_depth for line in s.lines)  # type: ignore[attr-defined]
    if policy.distributors is not None:
        assert set(payees) - {order.buyer} <= policy.distributors
        if not self_rebate(policy):
            assert set(payees) <= policy.distributors
    # rates and pools: rounded once, one rule
    pooled = [a for a in s.awards if a.pool is not None]
    by_award = {(a.payee, a.level): a for a in s.awards}
    for line in s.lines:
        award = by_award[(line.payee, line.level)]
        assert line.rate == award.rate and line.provenance.base == base
        assert line.provenance.config_hash == policy.config_hash and line.provenance.rounding is policy.rounding
        if award.pool is None and policy.rounding is Rounding.DOWN:
            assert line.amount.minor == math.floor(award.rate * base) <= award.rate * base
        if award.pool is not None:
            assert line.amount.minor <= math.ceil(award.rate * base)  # a share of a pool rounded once
    if pooled:
        pool_rate = sum((a.rate for a in pooled), Fraction(0))
        pool_paid = sum(line.amount.minor for line in s.lines if by_award[(line.payee, line.level)].pool)
        assert pool_paid == apply_rate(base, pool_rate, policy.rounding)


def run(prog: Programme, config: dict[str, Any]) -> tuple[PolicyConfig, list[Settlement]]:
    policy = load_policy(config)
    return policy, compute_events(prog.events, policy)


# ------------------------------------------------------------------ invariants, every kind


@pytest.mark.parametrize("kind", POLICY_KINDS)
@given(data=st.data())
def test_invariants_hold_for_every_kind(kind: str, data: st.DataObject) -> None:
    multi = data.draw(st.booleans(), label="several currencies")
    history = data.draw(st.sampled_from([programmes, interleaved_programmes]), label="history")
    prog = data.draw(history(currencies=CURRENCIES if multi else ("CNY",)), label="programme")
    config = data.draw(policy_configs(kinds=(kind,), fixed=not multi, rounding="down"), label="policy")
    policy, settlements = run(prog, config)
    assert [s.order for s in settlements] == [o.id for o in sorted(prog.orders, key=lambda o: (o.at, o.id))]
    by_id = {o.id: o for o in prog.orders}
    for s in settlements:
        check_settlement(s, by_id[s.order], policy, prog.events)


@given(programmes(), policy_configs(), st.sampled_from(list(Rounding)))
def test_conservation_under_every_rounding_mode(prog: Programme, config: dict[str, Any], rounding: Rounding) -> None:
    policy, settlements = run(prog, {**config, "rounding": rounding.value})
    by_id = {o.id: o for o in prog.orders}
    for s in settlements:
        check_settlement(s, by_id[s.order], policy, prog.events)


@given(programmes(currencies=CURRENCIES), st.sampled_from(list(Rounding)), st.data())
def test_caps_with_rates_that_exceed_them(prog: Programme, rounding: Rounding, data: st.DataObject) -> None:
    """High rates and low caps, so scaling happens on nearly every order: above the cap the awards add
    up to the cap exactly, in the proportions of the stated rates; below it they are the stated rates."""
    rates = data.draw(st.lists(st.sampled_from(["50%", "1/3", "25%", "12.5%"]), min_size=2, max_size=4))
    cap = data.draw(st.sampled_from(["1%", "7.5%", "1/7", "30%", "90%"]))
    by_id = {o.id: o for o in prog.orders}
    for config in ({"kind": "capped_multilevel", "rates": rates, "cap": cap},
                   {"kind": "linear", "rate": rates[0], "cap": cap},
                   {"kind": "compliant", "profile": "cn", "rates": rates[:2], "cap": cap}):
        policy, settlements = run(prog, {**config, "rounding": rounding.value})
        assert policy.cap is not None
        for s in settlements:
            check_settlement(s, by_id[s.order], policy, prog.events)
            if not s.awards:
                continue
            if policy.kind == "linear":
                stated = {(a.payee, a.level): parse_rate(rates[0]) * a.rate / sum(b.rate for b in s.awards)
                          for a in s.awards}
            else:
                stated = {(a.payee, a.level): parse_rate(rates[a.level - 1]) for a in s.awards}
            total = sum(stated.values(), Fraction(0))
            factor = min(Fraction(1), policy.cap / total)
            assert {(a.payee, a.level): a.rate for a in s.awards} == {k: r * factor for k, r in stated.items()}


# ------------------------------------------------------------------ first sharer against the reference


@given(st.one_of(programmes(currencies=CURRENCIES), interleaved_programmes(currencies=CURRENCIES)),
       policy_configs(kinds=("first_sharer",), fixed=False, overrides=False,
                                                         filters=False, rounding="down"))
def test_first_sharer_pays_exactly_chain_zero(prog: Programme, config: dict[str, Any]) -> None:
    policy, settlements = run(prog, config)
    ref = Reference.build(prog.events)
    rate = min(policy.rate, policy.cap if policy.cap is not None else Fraction(1))  # type: ignore[attr-defined]
    by_id = {o.id: o for o in prog.orders}
    for s in settlements:
        order = by_id[s.order]
        chain = ref.chain(order, policy.self_purchase)
        expected_amount = math.floor(rate * net_base(prog.events, order, policy.base.include_shipping,
                                                     policy.base.include_tax))
        if not chain or expected_amount == 0:
            assert s.lines == ()
            continue
        (line,) = s.lines
        assert (line.payee, line.level, line.amount.minor) == (chain[-1][0], len(chain), expected_amount)
        assert line.provenance.path == (chain[-1][1],)


@given(programmes(), policy_configs(kinds=("last_sharer", "capped_multilevel"), fixed=False, overrides=False,
                                    filters=False, rounding="down"))
def test_multilevel_pays_the_reference_chain_in_order(prog: Programme, config: dict[str, Any]) -> None:
    policy, settlements = run(prog, config)
    ref = Reference.build(prog.events)
    by_id = {o.id: o for o in prog.orders}
    for s in settlements:
        chain = ref.chain(by_id[s.order], policy.self_purchase)
        for line in s.lines:
            assert chain[line.level - 1][0] == line.payee


# ------------------------------------------------------------------ determinism


@given(programmes(currencies=CURRENCIES), policy_configs(fixed=False), st.randoms(use_true_random=False))
def test_same_input_same_output_and_event_order_does_not_matter(prog: Programme, config: dict[str, Any],
                                                                 rnd: random.Random) -> None:
    policy = load_policy(config)
    first = compute_events(prog.events, policy)
    assert compute_events(list(prog.events), load_policy(config)) == first
    shuffled = list(prog.events)
    rnd.shuffle(shuffled)
    again = compute_events(shuffled, policy)
    assert again == first
    assert [ln.as_row() for s in again for ln in s.lines] == [ln.as_row() for s in first for ln in s.lines]
    # the graph built from the shuffled events answers every order the same way
    graph = ShareGraph.from_events(shuffled)
    by_id = {o.id: o for o in prog.orders}
    for s in first:
        assert compute(by_id[s.order], policy, graph=graph, refunded=refunded(prog.events, by_id[s.order])) == s
    assert compute_events(shuffled, policy, graph=graph) == first


# ------------------------------------------------------------------ refunds


@given(programmes(refunds=False), policy_configs())
def test_full_refund_rebases_to_nothing(prog: Programme, config: dict[str, Any]) -> None:
    policy, settlements = run(prog, config)
    by_id = {o.id: o for o in prog.orders}
    graph = ShareGraph.from_events(prog.events)
    for s in settlements:
        order = by_id[s.order]
        for back in (order.amount_minor, s.gross_base, order.amount_minor * 2):
            zero = s.rebase(back)
            assert zero.lines == () and zero.base.minor == 0 and zero.merchant_net.minor == 0
            assert zero.awards == s.awards  # the rate snapshot is kept
        assert s.rebase(0) == s
        assert compute(order, policy, graph=graph, refunded=order.amount_minor).lines == ()


@given(programmes(refunds=False, currencies=CURRENCIES), policy_configs(fixed=False), st.data())
def test_refund_result_does_not_depend_on_how_refunds_were_split(prog: Programme, config: dict[str, Any],
                                                                 data: st.DataObject) -> None:
    orders = [o for o in prog.orders if o.amount_minor > 0]
    if not orders:
        return
    order = data.draw(st.sampled_from(orders))
    total = data.draw(st.integers(1, order.amount_minor))
    x = data.draw(st.integers(0, total))
    exp = Decimal(1).scaleb(-{"CNY": 2, "JPY": 0, "KWD": 3}[order.currency])
    when = order.at

    def refund(rid: str, minor: int | None) -> RefundEvent:
        return RefundEvent(id=rid, order=order.id, at=when, amount=None if minor is None else Decimal(minor) * exp)

    one = [*prog.events, refund("r_all", total)]
    parts = [refund(f"r{i}", m) for i, m in enumerate((x, total - x)) if m > 0]
    two = [*prog.events, *reversed(parts)]  # even in the other order
    policy = load_policy(config)
    a, b = compute_events(one, policy), compute_events(two, policy)
    assert a == b
    s = next(s for s in a if s.order == order.id)
    graph = ShareGraph.from_events(prog.events)
    fresh = compute(order, policy, graph=graph)
    assert s == fresh.rebase(total) == compute(order, policy, graph=graph, refunded=total)
    # a full refund (without amount) equals refunding every unit, and leaves nothing
    full = compute_events([*prog.events, refund("r_full", None)], policy)
    assert next(t for t in full if t.order == order.id).lines == ()
    # refunds never raise what is paid
    assert s.total.minor <= fresh.total.minor


# ------------------------------------------------------------------ pools


@pytest.mark.parametrize("kind", POOL_KINDS)
@given(data=st.data())
def test_pool_is_split_exactly(kind: str, data: st.DataObject) -> None:
    prog = data.draw(programmes(max_people=8, max_shares=30))
    rounding = data.draw(st.sampled_from(list(Rounding)))
    config = data.draw(policy_configs(kinds=(kind,), rounding=rounding.value))
    _, settlements = run(prog, config)
    for s in settlements:
        pool_rate = sum((a.rate for a in s.awards), Fraction(0))
        assert all(a.pool == kind for a in s.awards)
        assert sum(line.amount.minor for line in s.lines) == apply_rate(s.base.minor, pool_rate, rounding)


# ------------------------------------------------------------------ bad histories


def test_compute_events_refuses_inconsistent_histories() -> None:
    from cps_engine import CurrencyMismatch, DuplicateEvent, InvalidEvent, UnknownReference, parse_event

    at = "2026-03-01T{:02d}:00:00+08:00"
    share = parse_event({"type": "share", "id": "s1", "sharer": "amy", "at": at.format(9)})
    o1 = parse_event({"type": "order", "id": "o1", "buyer": "bob", "share": "s1", "amount": "10.00",
                      "currency": "CNY", "at": at.format(10)})
    policy = load_policy({"kind": "first_sharer", "rate": "10%"})

    def refund(**kw: Any) -> Event:
        return parse_event({"type": "refund", "id": "r1", "order": "o1", "at": at.format(11), **kw})

    with pytest.raises(DuplicateEvent) as dup:
        compute_events([share, o1, o1.model_copy(update={"buyer": "cat"})], policy)
    assert dup.value.record == "o1"
    with pytest.raises(UnknownReference) as unknown:
        compute_events([share, o1, refund(order="o9")], policy)
    assert (unknown.value.record, unknown.value.field) == ("r1", "order")
    with pytest.raises(InvalidEvent) as over:
        compute_events([share, o1, refund(amount="6.00"), refund(amount="5.00").model_copy(update={"id": "r2"})],
                       policy)
    assert (over.value.record, over.value.field) == ("r2", "amount")
    with pytest.raises(InvalidEvent) as cur:
        compute_events([share, o1, refund(amount="5", currency="JPY")], policy)
    assert (cur.value.record, cur.value.field) == ("r1", "currency")
    with pytest.raises(InvalidEvent):
        compute_events([share, o1, refund(amount="0.001")], policy)
    # an order whose share is unknown names the order
    o2 = o1.model_copy(update={"id": "o2", "share": "s404"})
    with pytest.raises(UnknownReference) as bad_share:
        compute_events([share, o2], policy)
    assert (bad_share.value.record, bad_share.value.field) == ("o2", "share")
    # a fixed amount in another currency names the order too
    with pytest.raises(CurrencyMismatch) as mismatch:
        compute_events([share, o1], load_policy({"kind": "first_sharer", "rate": "5 JPY"}))
    assert mismatch.value.record == "o1"
    # an exact repeat of an order is fine
    assert len(compute_events([share, o1, o1], policy)) == 1


def test_a_refund_without_amount_refunds_what_is_left() -> None:
    from cps_engine import InvalidEvent, parse_event
    from cps_engine.engine import refunds_by_order

    at = "2026-03-01T{:02d}:00:00+08:00"
    share = parse_event({"type": "share", "id": "s1", "sharer": "amy", "at": at.format(9)})
    o1 = parse_event({"type": "order", "id": "o1", "buyer": "bob", "share": "s1", "amount": "10.00",
                      "currency": "CNY", "at": at.format(10)})
    assert isinstance(o1, OrderEvent)
    part = parse_event({"type": "refund", "id": "r1", "order": "o1", "amount": "4.00", "at": at.format(11)})
    rest = parse_event({"type": "refund", "id": "r2", "order": "o1", "at": at.format(12)})
    policy = load_policy({"kind": "first_sharer", "rate": "10%"})
    # partial 4.00, then "the rest": 10.00 refunded in all, nothing is paid; delivery order is irrelevant
    for history in ([share, o1, part, rest], [rest, part, o1, share]):
        assert refunds_by_order(history, {"o1": o1}) == {"o1": 1000}
        (s,) = compute_events(history, policy)
        assert s.lines == () and s.merchant_net.minor == 0
    # but a partial refund dated after the full one exceeds what was paid
    late = part.model_copy(update={"id": "r3", "at": rest.at.replace(hour=13)})
    with pytest.raises(InvalidEvent) as over:
        compute_events([share, o1, rest, late], policy)
    assert (over.value.record, over.value.field) == ("r3", "amount")


def test_a_pool_rounded_up_never_pays_a_member_above_its_ceiling() -> None:
    # found by a 1,500-example soak: pool 0.1% of 10.01 = 1.001 fen, rounded up to 2 fen; split
    # 95/5 by weight the old way gave the level-1 member both fen (1.9 -> 2) although its exact
    # share is 0.95095 fen.  Now: floors 0 and 0, the two units to the two remainders: 1 and 1.
    from cps_engine import parse_event

    at = "2026-03-01T00:00:{:02d}+08:00"
    events = [parse_event(e) for e in (
        {"type": "share", "id": "s0", "sharer": "p0", "at": at.format(1)},
        {"type": "bind", "id": "b0", "user": "p1", "upline": "p0", "at": at.format(2)},
        {"type": "order", "id": "o0", "buyer": "p1", "amount": "10.01", "currency": "CNY", "at": at.format(3)})]
    policy = load_policy({"kind": "position_based", "rate": "0.1%", "first": "5%", "middle": "0%", "last": "95%",
                          "self_purchase": True, "rounding": "up"})
    (s,) = compute_events(events, policy)
    assert [(ln.payee, ln.level, ln.amount.minor) for ln in s.lines] == [("p1", 1, 1), ("p0", 2, 1)]
    assert all(ln.amount.minor <= math.ceil(ln.rate * 1001) for ln in s.lines)
