"""Explanations: the chain as a path, the rule and rate, the base, refunds and rounding of every line."""

from __future__ import annotations

import json

import pytest
from hypothesis import given

from cps_engine import UnknownReference, compute_events, load_events, load_policy
from cps_engine.audit.explain import explain_order
from cps_engine.money import apply_rate
from tests.audit.helpers import Case, cases

EVENTS = [
    '{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}',
    '{"type":"share","id":"s2","sharer":"bob","parent":"s1","at":"2026-03-01T11:00:00+08:00"}',
    '{"type":"share","id":"s3","sharer":"cat","parent":"s2","at":"2026-03-01T11:30:00+08:00"}',
    '{"type":"order","id":"o1","buyer":"dan","share":"s3","amount":"199.99","currency":"CNY","shipping":"10.00",'
    '"at":"2026-03-02T12:00:00+08:00"}',
    '{"type":"refund","id":"r1","order":"o1","amount":"50.00","at":"2026-03-03T12:00:00+08:00"}',
    '{"type":"bind","id":"b1","user":"eve","upline":"bob","at":"2026-03-01T09:00:00+08:00"}',
    '{"type":"order","id":"o2","buyer":"eve","amount":"10.00","currency":"CNY","at":"2026-03-04T12:00:00+08:00"}',
    '{"type":"order","id":"o3","buyer":"fay","share":"s1","amount":"20.00","currency":"CNY",'
    '"at":"2026-03-05T12:00:00+08:00"}',
    '{"type":"refund","id":"r3","order":"o3","at":"2026-03-06T12:00:00+08:00"}',
]
TWO = {"kind": "capped_multilevel", "rates": ["10%", "5%"]}


def test_chain_rule_rate_base_refunds_and_rounding() -> None:
    ex = explain_order(load_events(EVENTS), load_policy(TWO), "o1")
    assert ex.path_text() == "amy [unpaid via s1] → bob [L2 via s2] → cat [L1 via s3] → dan (buyer, order o1)"
    assert ex.chain_source == "share"
    assert str(ex.gross_base) == "189.99 CNY" and ex.base_rule == "paid 199.99 CNY − shipping 10.00 CNY"
    assert [r.id for r in ex.refunds] == ["r1"] and str(ex.net_base) == "139.99 CNY"
    assert [(ln.payee, ln.level, ln.rule, str(ln.amount), str(ln.gross_amount)) for ln in ex.lines] == [
        ("cat", 1, "level 1 rate", "13.99 CNY", "18.99 CNY"), ("bob", 2, "level 2 rate", "6.99 CNY", "9.49 CNY")]
    assert str(ex.lines[0].kept) == "9/10"  # 13999 × 1/10 = 1399.9 minor units, rounded down
    text = ex.render()
    for part in ("refund r1", "net base 139.99 CNY", "13.999 CNY exact, rounded down to 13.99 CNY",
                 "before refunds it was 18.99 CNY", "path read: s3 → s2", "Merchant keeps 119.01 CNY"):
        assert part in text, part
    data = json.loads(ex.to_json())
    assert data["lines"][0]["exact_minor"] == "13999/10" and data["base"]["net"] == "139.99"


def test_why_a_payee_has_no_line() -> None:
    evs = load_events(EVENTS)
    pol = load_policy(TWO)
    assert "not on the chain" in (explain_order(evs, pol, "o1", "zed").payee_reason or "")
    assert "at most 2 levels" in (explain_order(evs, pol, "o1", "amy").payee_reason or "")
    assert "★" in explain_order(evs, pol, "o1", "amy").path_text()
    assert "is the buyer" in (explain_order(evs, pol, "o1", "dan").payee_reason or "")
    assert explain_order(evs, pol, "o1", "cat").payee_reason == "paid as shown above"
    refunded = explain_order(evs, pol, "o3", "amy")
    assert refunded.lines == () and "refunded" in (refunded.no_lines_reason or "")
    assert "nothing after them" in (refunded.payee_reason or "")
    only_amy = load_policy({**TWO, "distributors": ["amy"]})
    assert "not an eligible distributor" in (explain_order(evs, only_amy, "o1", "cat").payee_reason or "")
    with pytest.raises(UnknownReference):
        explain_order(evs, pol, "o404")


def test_binding_chain_pool_and_rounding_up() -> None:
    evs = load_events(EVENTS)
    ex = explain_order(evs, load_policy(TWO), "o2")
    assert ex.chain_source == "binding" and ex.path_text() == "bob [L1 via b1] → eve (buyer, order o2)"
    pool = explain_order(evs, load_policy({"kind": "linear", "rate": "10%"}), "o1")
    assert {ln.pool for ln in pool.lines} == {"linear"} and "pool of 13.99 CNY" in pool.render()
    up = explain_order(evs, load_policy({"kind": "capped_multilevel", "rates": ["1/3", "1/3", "1/3"],
                                         "rounding": "up"}), "o1")
    assert sum(ln.amount.minor for ln in up.lines) == up.net_base.minor
    assert any(ln.taken_back for ln in up.lines) and "was taken back" in up.render()


def test_deep_chains_are_drawn_with_the_middle_elided() -> None:
    lines = ['{"type":"share","id":"d0","sharer":"u0","at":"2026-03-01T00:00:00Z"}']
    lines += [f'{{"type":"share","id":"d{i}","sharer":"u{i}","parent":"d{i - 1}","at":"2026-03-01T00:00:{i:02d}Z"}}'
              for i in range(1, 40)]
    lines.append('{"type":"order","id":"o","buyer":"b","share":"d39","amount":"1.00","currency":"CNY",'
                 '"at":"2026-03-02T00:00:00Z"}')
    ex = explain_order(load_events(lines), load_policy({"kind": "first_sharer", "rate": "10%"}), "o")
    assert len(ex.chain) == 40 and "… 28 more …" in ex.path_text()
    assert ex.path_text().startswith("u0 [L40 via d0]")
    assert len(json.loads(ex.to_json())["chain"]["links"]) == 40


@given(cases())
def test_explanations_agree_with_the_engine(case: Case) -> None:
    settlements = compute_events(case.events, case.policy)
    for s in settlements[:4]:
        ex = explain_order(case.events, case.policy, s.order)
        assert [(ln.payee, ln.level, ln.amount) for ln in ex.lines] == [(ln.payee, ln.level, ln.amount)
                                                                       for ln in s.lines]
        assert sum(ln.amount.minor for ln in ex.lines) + ex.merchant_net.minor == ex.net_base.minor
        for ln in ex.lines:
            assert ln.exact == ln.base.minor * ln.rate
            if ln.pool is None:
                assert ln.amount.minor == apply_rate(ln.base.minor, ln.rate, ln.rounding) - ln.taken_back
        assert ex.render()
