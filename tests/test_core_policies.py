"""Policies, hand-checked: every built-in kind, distributors, rate precedence, fixed amounts, the
commissionable base, compliance profiles; loading, dumping, hashing, the schema and the registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cps_engine import (
    ComplianceViolation,
    Compliant,
    CurrencyMismatch,
    Event,
    FirstSharer,
    FloatRejected,
    InvalidPolicyConfig,
    InvalidRate,
    OrderEvent,
    PolicyConfig,
    PolicyRegistrationError,
    ShareGraph,
    compute,
    compute_events,
    dump_policy,
    load_policy,
    parse_event,
    policy_kinds,
    policy_schema,
    register,
)
from cps_engine.policies import ENTRY_POINT_GROUP, Award, registry
from cps_engine.rules import PROFILES, RULES
from tests.strategies import POLICY_KINDS, policy_configs

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = sorted((ROOT / "src" / "cps_engine" / "data").glob("*.toml"))


def at(hour: int, day: int = 1) -> str:
    return f"2026-03-{day:02d}T{hour:02d}:00:00+08:00"


def ev(**kw: Any) -> Event:
    return parse_event({k: v for k, v in kw.items() if v is not None})


# amy -> bob -> cat -> dan: four shares, each re-shared from the one before
LINE4: list[Event] = [ev(type="share", id="s1", sharer="amy", at=at(1)),
                      ev(type="share", id="s2", sharer="bob", parent="s1", at=at(2)),
                      ev(type="share", id="s3", sharer="cat", parent="s2", at=at(3)),
                      ev(type="share", id="s4", sharer="dan", parent="s3", at=at(4))]


def order(oid: str = "o1", buyer: str = "eve", share: str | None = "s4", amount: str = "100.00",
          currency: str = "CNY", **kw: Any) -> OrderEvent:
    o = ev(type="order", id=oid, buyer=buyer, share=share, amount=amount, currency=currency, at=at(12), **kw)
    assert isinstance(o, OrderEvent)
    return o


def pay(policy: PolicyConfig | dict[str, Any], *orders: OrderEvent,
        events: list[Event] = LINE4) -> list[tuple[str, str, int, str]]:
    pol = load_policy(policy)
    rows = []
    for s in compute_events([*events, *orders], pol):
        rows += [(ln.order, ln.payee, ln.level, str(ln.amount)) for ln in s.lines]
    return rows


# ------------------------------------------------------------------ each kind, by hand


def test_first_sharer() -> None:
    # base 100.00 CNY, 10% -> 10.00 to amy, who is level 4 of dan, cat, bob, amy
    assert pay({"kind": "first_sharer", "rate": "10%"}, order()) == [("o1", "amy", 4, "10.00 CNY")]


def test_last_sharer() -> None:
    assert pay({"kind": "last_sharer", "rate": "10%"}, order()) == [("o1", "dan", 1, "10.00 CNY")]


def test_capped_multilevel_under_the_cap() -> None:
    assert pay({"kind": "capped_multilevel", "rates": ["10%", "5%", "2%"], "cap": "20%"}, order()) == [
        ("o1", "dan", 1, "10.00 CNY"), ("o1", "cat", 2, "5.00 CNY"), ("o1", "bob", 3, "2.00 CNY")]


def test_capped_multilevel_scales_proportionally_above_the_cap() -> None:
    # 10 + 5 + 2 = 17% > 12%: factor 12/17.  dan 1000 × 12/17 = 705.88 -> 705; cat 500 × 12/17 = 352.94
    # -> 352; bob 200 × 12/17 = 141.17 -> 141.  Total 11.98 <= 12.00.
    policy = load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%", "2%"], "cap": "12%"})
    assert pay(policy, order()) == [("o1", "dan", 1, "7.05 CNY"), ("o1", "cat", 2, "3.52 CNY"),
                                    ("o1", "bob", 3, "1.41 CNY")]
    s = compute(order(), policy, graph=ShareGraph.from_events(LINE4))
    assert [a.rate for a in s.awards] == [Fraction(6, 85), Fraction(3, 85), Fraction(6, 425)]
    assert sum(a.rate for a in s.awards) == Fraction(12, 100)
    assert all("scaled to cap" in a.rule for a in s.awards)


def test_capped_multilevel_stops_at_its_depth_and_at_the_chain_end() -> None:
    four = {"kind": "capped_multilevel", "rates": ["10%", "5%", "2%", "1%", "1%"]}
    assert [r[1:3] for r in pay(four, order())] == [("dan", 1), ("cat", 2), ("bob", 3), ("amy", 4)]
    assert [r[1:3] for r in pay(four, order(share="s2"))] == [("bob", 1), ("amy", 2)]
    assert pay({"kind": "capped_multilevel", "rates": ["10%"]}, order()) == [("o1", "dan", 1, "10.00 CNY")]


def test_linear_splits_the_pool_exactly() -> None:
    # pool = 10% of 100.00 = 1000 fen over cat, bob, amy: 333.33 each -> 333 × 3 = 999, the one fen
    # left goes to the tie winner in chain order (chain[0], the farthest: amy)
    assert pay({"kind": "linear", "rate": "10%"}, order(share="s3")) == [
        ("o1", "cat", 1, "3.33 CNY"), ("o1", "bob", 2, "3.33 CNY"), ("o1", "amy", 3, "3.34 CNY")]
    assert pay({"kind": "linear", "rate": "10%", "max_depth": 2}, order()) == [
        ("o1", "dan", 1, "5.00 CNY"), ("o1", "cat", 2, "5.00 CNY")]


def test_position_based_40_20_40() -> None:
    # pool = 10% of 123.45 = 12.345 -> 1234 fen.  Weights dan .4, cat .1, bob .1, amy .4:
    # 493.6, 123.4, 123.4, 493.6 -> floors 1232, the two fen left go to the .6 remainders (dan, amy)
    assert pay({"kind": "position_based", "rate": "10%"}, order(amount="123.45")) == [
        ("o1", "dan", 1, "4.94 CNY"), ("o1", "cat", 2, "1.23 CNY"), ("o1", "bob", 3, "1.23 CNY"),
        ("o1", "amy", 4, "4.94 CNY")]
    # one person takes the whole pool; two split it first : last
    assert pay({"kind": "position_based", "rate": "10%"}, order(share="s1")) == [("o1", "amy", 1, "10.00 CNY")]
    assert pay({"kind": "position_based", "rate": "10%"}, order(share="s2")) == [
        ("o1", "bob", 1, "5.00 CNY"), ("o1", "amy", 2, "5.00 CNY")]
    # 60 / 20 / 20 with two people: amy (first) 60 : bob (last) 20 -> 7.50 / 2.50
    assert pay({"kind": "position_based", "rate": "10%", "first": "60%", "middle": "20%", "last": "20%"},
               order(share="s2")) == [("o1", "bob", 1, "2.50 CNY"), ("o1", "amy", 2, "7.50 CNY")]
    with pytest.raises(InvalidPolicyConfig, match="100%"):
        load_policy({"kind": "position_based", "rate": "10%", "first": "50%"})


def test_time_decay_halves_weight_per_half_life() -> None:
    # amy shared on day 1, bob re-shared on day 2, the order is on day 3 at the same hour, half-life
    # 1 day: amy's weight 1/4, bob's 1/2 -> bob 2/3, amy 1/3 of the pool 10% of 90.00 = 900 fen
    evs = [ev(type="share", id="s1", sharer="amy", at=at(9, day=1)),
           ev(type="share", id="s2", sharer="bob", parent="s1", at=at(9, day=2))]
    o = ev(type="order", id="o1", buyer="eve", share="s2", amount="90.00", currency="CNY", at=at(9, day=3))
    assert isinstance(o, OrderEvent)
    assert pay({"kind": "time_decay", "rate": "10%", "half_life_days": "1"}, o, events=evs) == [
        ("o1", "bob", 1, "6.00 CNY"), ("o1", "amy", 2, "3.00 CNY")]
    # a very long half-life is nearly linear: 450 / 450
    long = pay({"kind": "time_decay", "rate": "10%", "half_life_days": "36500"}, o, events=evs)
    assert [r[3] for r in long] == ["4.50 CNY", "4.50 CNY"]


@pytest.mark.parametrize("share", ["s2", None])
def test_time_decay_with_self_purchase(share: str | None) -> None:
    # eve buys on day 3 at 09:00 under a 1-day half-life, with self-purchase: her own link is age 0
    # (weight 1), bob joined on day 2 (1/2), amy on day 1 (1/4) -> eve 4/7, bob 2/7, amy 1/7 of the
    # pool 10% of 70.00 = 700 fen -> 400 / 200 / 100.  Same through shares or through bindings.
    evs = [ev(type="share", id="s1", sharer="amy", at=at(9, day=1)),
           ev(type="share", id="s2", sharer="bob", parent="s1", at=at(9, day=2)),
           ev(type="bind", id="b1", user="bob", upline="amy", at=at(9, day=1)),
           ev(type="bind", id="b2", user="eve", upline="bob", at=at(9, day=2))]
    o = ev(type="order", id="o1", buyer="eve", share=share, amount="70.00", currency="CNY", at=at(9, day=3))
    assert isinstance(o, OrderEvent)
    assert pay({"kind": "time_decay", "rate": "10%", "half_life_days": "1", "self_purchase": True}, o,
               events=evs) == [("o1", "eve", 1, "4.00 CNY"), ("o1", "bob", 2, "2.00 CNY"), ("o1", "amy", 3, "1.00 CNY")]


def test_self_purchase_puts_the_buyer_at_level_1() -> None:
    policy = {"kind": "capped_multilevel", "rates": ["10%", "5%"], "self_purchase": True}
    assert pay(policy, order()) == [("o1", "eve", 1, "10.00 CNY"), ("o1", "dan", 2, "5.00 CNY")]
    # dan buys through his own link: he is level 1 once, cat moves to level 2
    assert pay(policy, order(buyer="dan")) == [("o1", "dan", 1, "10.00 CNY"), ("o1", "cat", 2, "5.00 CNY")]
    assert pay({**policy, "self_purchase": False}, order(buyer="dan")) == [
        ("o1", "cat", 1, "10.00 CNY"), ("o1", "bob", 2, "5.00 CNY")]


# ------------------------------------------------------------------ distributors (指定分销)


@pytest.mark.parametrize(
    ("policy", "compress", "keep_level"),
    [
        ({"kind": "capped_multilevel", "rates": ["10%", "5%", "2%"], "distributors": ["dan", "bob", "amy"]},
         [("dan", 1, "10.00 CNY"), ("bob", 2, "5.00 CNY"), ("amy", 3, "2.00 CNY")],
         [("dan", 1, "10.00 CNY"), ("bob", 3, "2.00 CNY")]),
        ({"kind": "first_sharer", "rate": "10%", "distributors": ["dan", "bob"]},
         [("bob", 2, "10.00 CNY")], [("bob", 3, "10.00 CNY")]),
        ({"kind": "last_sharer", "rate": "10%", "distributors": ["cat", "bob"]},
         [("cat", 1, "10.00 CNY")], []),
        ({"kind": "linear", "rate": "10%", "distributors": ["dan", "amy"]},
         [("dan", 1, "5.00 CNY"), ("amy", 2, "5.00 CNY")], [("dan", 1, "5.00 CNY"), ("amy", 4, "5.00 CNY")]),
        ({"kind": "capped_multilevel", "rates": ["10%"], "distributors": []}, [], []),
    ],
)
def test_distributors_compress_or_keep_level(policy: dict[str, Any], compress: list[Any],
                                            keep_level: list[Any]) -> None:
    for mode, expected in (("compress", compress), ("keep_level", keep_level)):
        rows = pay({**policy, "ineligible": mode}, order())
        assert [r[1:] for r in rows] == expected, mode


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({"kind": "capped_multilevel", "rates": ["10%", "5%", "2%"], "distributors": ["dan", "bob", "amy"]},
         [("dan", 1, "10.00 CNY")]),
        ({"kind": "first_sharer", "rate": "10%", "distributors": ["dan", "bob"]}, [("dan", 1, "10.00 CNY")]),
        ({"kind": "last_sharer", "rate": "10%", "distributors": ["cat", "bob"]}, []),
        ({"kind": "capped_multilevel", "rates": ["10%", "5%"], "distributors": ["cat", "bob", "amy"]}, []),
        ({"kind": "linear", "rate": "10%", "distributors": ["dan", "amy"]}, [("dan", 1, "10.00 CNY")]),
    ],
)
def test_ineligible_stop_ends_the_chain_at_the_first_ineligible_person(policy: dict[str, Any],
                                                                       expected: list[Any]) -> None:
    """yudao-cloud brokerage: when the level-1 user is not a brokerage user, nobody is paid; an
    ineligible level 2 ends the chain there (level 1 is still paid)."""
    rows = pay({**policy, "ineligible": "stop"}, order())
    assert [r[1:] for r in rows] == expected


def test_programmatic_eligibility() -> None:
    policy = FirstSharer(rate="10%", eligible=lambda p: p != "amy")
    s = compute(order(), policy, graph=ShareGraph.from_events(LINE4))
    assert [(ln.payee, ln.level) for ln in s.lines] == [("bob", 3)]
    assert "eligible" not in policy.to_dict()


# ------------------------------------------------------------------ rate precedence and fixed amounts

LINES = [{"sku": "tea", "category": "food", "quantity": 2, "unit_price": "10.00"},
         {"sku": "pan", "category": "home", "quantity": 1, "unit_price": "30.00"},
         {"sku": "bread", "category": "food", "quantity": 1, "unit_price": "50.00"}]


def test_rate_precedence_payee_over_product_over_category_over_default() -> None:
    # Lines: tea (food) 20.00, pan (home) 30.00, bread (food) 50.00 = the 100.00 base.
    # level 1 dan: tea product 20% -> 4.00; pan default 10% -> 3.00; bread category 4% -> 2.00 = 9.00
    # level 2 cat: payee rate 1% of 100.00 -> 1.00 (beats everything)
    # without the payee rate, level 2 cat: tea product level-2 1% -> 0.20; pan default 5% -> 1.50;
    #   bread category 4% (one spec: every level) -> 2.00 = 3.70
    # level 3 bob: the policy has 2 levels only
    policy: dict[str, Any] = {"kind": "capped_multilevel", "rates": ["10%", "5%"],
                              "category_rates": {"food": "4%"}, "product_rates": {"tea": ["20%", "1%"]},
                              "payee_rates": {"cat": "1%"}}
    o = order(lines=LINES)
    assert pay(policy, o) == [("o1", "dan", 1, "9.00 CNY"), ("o1", "cat", 2, "1.00 CNY")]
    s = compute(o, load_policy(policy), graph=ShareGraph.from_events(LINE4))
    assert s.lines[0].provenance.rule == "category rate+default rate+product rate"
    assert s.lines[1].provenance.rule == "payee rate" and s.lines[0].rate == Fraction(9, 100)
    del policy["payee_rates"]
    assert pay(policy, o) == [("o1", "dan", 1, "9.00 CNY"), ("o1", "cat", 2, "3.70 CNY")]
    # an order without lines only sees payee and default rates
    assert pay(policy, order()) == [("o1", "dan", 1, "10.00 CNY"), ("o1", "cat", 2, "5.00 CNY")]


def test_line_bases_split_the_base_by_gross_value() -> None:
    # base 99.99 over gross 20/30/50: 1999.8, 2999.7, 4999.5 -> floors 9997, largest remainders .8, .7 win
    from cps_engine.policies import OrderView

    o = order(amount="104.99", shipping="5.00", lines=LINES)
    view = OrderView(o, 9999)
    assert [b for *_, b in view.line_bases] == [2000, 3000, 4999]
    assert view.items == 4


def test_fixed_amounts_per_order_and_per_item() -> None:
    assert pay({"kind": "last_sharer", "rate": "5.00 CNY"}, order()) == [("o1", "dan", 1, "5.00 CNY")]
    # never more than the base itself
    assert pay({"kind": "last_sharer", "rate": "5.00 CNY"}, order(amount="3.00")) == [("o1", "dan", 1, "3.00 CNY")]
    # level 1 5.00 per order, level 2 1.00 per item: 4 items -> 4.00; without lines an order is 1 item
    policy = {"kind": "capped_multilevel", "rates": ["5.00 CNY", "1.00 CNY/item"]}
    assert pay(policy, order(lines=LINES)) == [("o1", "dan", 1, "5.00 CNY"), ("o1", "cat", 2, "4.00 CNY")]
    assert pay(policy, order()) == [("o1", "dan", 1, "5.00 CNY"), ("o1", "cat", 2, "1.00 CNY")]
    # per item on one product: tea 2 items × 1.50 = 3.00, pan 10% 3.00, bread 10% 5.00 -> 11.00
    assert pay({"kind": "last_sharer", "rate": "10%", "product_rates": {"tea": "1.50 CNY/item"}},
               order(lines=LINES)) == [("o1", "dan", 1, "11.00 CNY")]
    # a fixed amount is capped like a rate: 5.00 on 100.00 with a 3% cap -> 3.00
    assert pay({"kind": "last_sharer", "rate": "5.00 CNY", "cap": "3%"}, order()) == [("o1", "dan", 1, "3.00 CNY")]


def test_fixed_amount_in_another_currency_is_refused() -> None:
    with pytest.raises(CurrencyMismatch) as info:
        pay({"kind": "last_sharer", "rate": "5.00 CNY"}, order(amount="500", currency="JPY"))
    assert info.value.record == "o1"


@pytest.mark.parametrize(
    ("base", "expected_base", "line"),
    [({}, "105.00 CNY", "10.50 CNY"),
     ({"include_shipping": True}, "115.00 CNY", "11.50 CNY"),
     ({"include_tax": True}, "110.00 CNY", "11.00 CNY"),
     ({"include_shipping": True, "include_tax": True}, "120.00 CNY", "12.00 CNY")],
)
def test_commissionable_base(base: dict[str, bool], expected_base: str, line: str) -> None:
    # 120.00 paid, of which shipping 10.00 and tax 5.00
    o = order(amount="120.00", shipping="10.00", tax="5.00")
    policy = load_policy({"kind": "last_sharer", "rate": "10%", "base": base})
    s = compute(o, policy, graph=ShareGraph.from_events(LINE4))
    assert str(s.base) == expected_base and [str(ln.amount) for ln in s.lines] == [line]


# ------------------------------------------------------------------ compliant profiles

CN = {"kind": "compliant", "profile": "cn", "rates": ["10%", "5%"], "cap": "15%"}


def test_compliant_cn_pays_two_levels() -> None:
    assert pay(CN, order()) == [("o1", "dan", 1, "10.00 CNY"), ("o1", "cat", 2, "5.00 CNY")]
    assert load_policy(CN).max_depth == 2 and PROFILES["cn"].max_levels == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("config", "rule", "field"),
    [
        ({**CN, "rates": ["10%", "5%", "2%"]}, "CN-DEPTH", "rates"),
        ({k: v for k, v in CN.items() if k != "cap"}, "CN-DEPTH", "cap"),
        ({**CN, "self_purchase": True}, "CN-SELF", "self_purchase"),
        ({**CN, "self_purchase_rate": "20%"}, "CN-SELF", "self_purchase_rate"),
        ({**CN, "profile": "cn_direct"}, "CN-DIRECT", "rates"),
        ({**CN, "profile": "cn_direct", "rates": ["10%"], "cap": "31%"}, "CN-DIRECT", "cap"),
        ({**CN, "profile": "strict", "rates": ["10%"], "self_purchase_rate": "1%"}, "CN-SELF", "self_purchase_rate"),
        ({**CN, "recruit_bonus": "5.00 CNY"}, "CN-RECRUIT-BONUS", "recruit_bonus"),
        ({**CN, "rank_by_recruits": True}, "CN-RECRUIT-BONUS", "rank_by_recruits"),
        ({**CN, "headcount_bonus": "1.00 CNY"}, "CN-RECRUIT-BONUS", "headcount_bonus"),
        ({**CN, "entry_fee": "99.00 CNY"}, "CN-FEE", "entry_fee"),
    ],
)
def test_compliant_refuses_configs_over_the_profile(config: dict[str, Any], rule: str, field: str,
                                                    tmp_path: Path) -> None:
    assert rule in RULES
    with pytest.raises(ComplianceViolation) as info:
        load_policy(config)
    assert (info.value.rule, info.value.field) == (rule, field)
    assert f"[{rule}]" in str(info.value)
    assert isinstance(info.value, InvalidPolicyConfig) and isinstance(info.value, ValueError)
    with pytest.raises(ComplianceViolation) as direct:
        Compliant(**{k: v for k, v in config.items() if k != "kind"})
    assert direct.value.rule == rule
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ComplianceViolation) as from_file:
        load_policy(path)
    assert from_file.value.rule == rule and from_file.value.record == "policy.json"


def test_compliant_direct_and_strict_profiles_accept_one_level_within_30_percent() -> None:
    for profile in ("cn_direct", "strict"):
        p = load_policy({"kind": "compliant", "profile": profile, "rates": ["30%"], "cap": "30%"})
        assert pay(p, order()) == [("o1", "dan", 1, "30.00 CNY")]


def test_compliant_participant_self_purchase_pays_no_upline() -> None:
    # bob shared s2, so he takes part; his purchase through dan's link pays nobody above him
    assert pay(CN, order(buyer="bob")) == []
    # with a disclosed rebate he alone gets it, at level 1
    assert pay({**CN, "self_purchase_rate": "3%"}, order(buyer="bob")) == [("o1", "bob", 1, "3.00 CNY")]
    # a bound downline counts as taking part too
    evs = [*LINE4, ev(type="bind", id="b1", user="fay", upline="gus", at=at(5))]
    assert pay(CN, order(buyer="gus"), events=evs) == []
    # an outsider's purchase still pays two levels
    assert pay({**CN, "self_purchase_rate": "3%"}, order(buyer="eve")) == [
        ("o1", "dan", 1, "10.00 CNY"), ("o1", "cat", 2, "5.00 CNY")]


def test_compliant_rebate_respects_distributors() -> None:
    assert pay({**CN, "self_purchase_rate": "3%", "distributors": ["dan"]}, order(buyer="bob")) == []


@pytest.mark.parametrize("later", [
    {"type": "share", "id": "s9", "sharer": "bob", "at": at(9, day=2)},
    {"type": "bind", "id": "b9", "user": "zed", "upline": "bob", "at": at(9, day=2)},
])
def test_compliant_participant_status_is_taken_at_the_order_time(later: dict[str, Any]) -> None:
    # bob is an outsider when he buys through dan's link on day 1; he only starts sharing on day 2
    evs = [ev(type="share", id="s1", sharer="amy", at=at(1)), ev(type="share", id="s2", sharer="dan", parent="s1",
                                                                at=at(2))]
    o = order(buyer="bob", share="s2")
    before = pay(CN, o, events=evs)
    assert before == [("o1", "dan", 1, "10.00 CNY"), ("o1", "amy", 2, "5.00 CNY")]
    assert pay(CN, o, events=[*evs, ev(**later)]) == before


def test_compliant_entry_purchase_pays_nothing() -> None:
    policy = {**CN, "entry_skus": ["starter-kit"]}
    kit = [{"sku": "starter-kit", "unit_price": "99.00"}, {"sku": "tea", "unit_price": "1.00"}]
    assert pay(policy, order(lines=kit)) == []
    assert pay(policy, order(lines=LINES)) != []


def test_nothing_is_paid_for_a_bind_alone() -> None:
    binds = [ev(type="bind", id="b1", user="fay", upline="gus", at=at(5), registration=True),
             ev(type="bind", id="b2", user="gus", upline="hal", at=at(6))]
    for kind_config in (CN, {"kind": "capped_multilevel", "rates": ["10%", "5%"]}):
        assert compute_events([*LINE4, *binds], load_policy(kind_config)) == []
    # a sale by the bound downline (an outsider buyer) pays on the order, not on the bind
    assert pay(CN, order(buyer="fay", share=None), events=binds) == [
        ("o1", "gus", 1, "10.00 CNY"), ("o1", "hal", 2, "5.00 CNY")]


# ------------------------------------------------------------------ loading and dumping


def test_load_policy_from_toml_json_and_mapping(tmp_path: Path) -> None:
    toml_path = tmp_path / "p.toml"
    toml_path.write_text('kind = "capped_multilevel"\nrates = ["10%", "5%", "2%"]\ncap = "15%"\n'
                         'distributors = ["amy", "bob"]\n[payee_rates]\namy = "1%"\n[base]\ninclude_shipping = true\n',
                         encoding="utf-8")
    json_path = tmp_path / "p.json"
    mapping = {"kind": "capped_multilevel", "rates": ["10%", "5%", "2%"], "cap": "15%",
               "distributors": ["bob", "amy"], "payee_rates": {"amy": "1%"}, "base": {"include_shipping": True}}
    json_path.write_text(json.dumps(mapping), encoding="utf-8")
    a, b, c = load_policy(toml_path), load_policy(str(json_path)), load_policy(mapping)
    assert a == b == c and a.config_hash == b.config_hash == c.config_hash
    assert a.cap == Fraction(3, 20) and a.distributors == frozenset({"amy", "bob"})
    assert load_policy(a) is a


@pytest.mark.parametrize("path", BUNDLED, ids=[p.name for p in BUNDLED])
def test_bundled_policies_load(path: Path) -> None:
    assert load_policy(path).kind in POLICY_KINDS


@pytest.mark.parametrize(
    ("config", "error", "field"),
    [
        ({"kind": "nope"}, InvalidPolicyConfig, "kind"),
        ({"rate": "10%"}, InvalidPolicyConfig, "kind"),
        ({"kind": "first_sharer"}, InvalidPolicyConfig, "rate"),
        ({"kind": "first_sharer", "rate": "10%", "bogus": 1}, InvalidPolicyConfig, "bogus"),
        ({"kind": "first_sharer", "rate": 0.1}, FloatRejected, "rate"),
        ({"kind": "first_sharer", "rate": "110%"}, InvalidRate, None),
        ({"kind": "first_sharer", "rate": "-5.00 CNY"}, InvalidRate, "rate"),
        ({"kind": "first_sharer", "rate": "10%", "rounding": "banker"}, InvalidPolicyConfig, "rounding"),
        ({"kind": "first_sharer", "rate": "10%", "ineligible": "drop"}, InvalidPolicyConfig, "ineligible"),
        ({"kind": "capped_multilevel", "rates": []}, InvalidPolicyConfig, "rates"),
        ({"kind": "linear", "rate": "1%", "max_depth": 0}, InvalidPolicyConfig, "max_depth"),
        ({"kind": "time_decay", "rate": "1%", "half_life_days": "0"}, InvalidPolicyConfig, "half_life_days"),
        ({"kind": "time_decay", "rate": "1%", "half_life_days": 1.5}, FloatRejected, "half_life_days"),
    ],
)
def test_bad_configs_raise_typed_errors(config: dict[str, Any], error: type[Exception], field: str | None) -> None:
    with pytest.raises(error) as info:
        load_policy(config)
    assert isinstance(info.value, InvalidPolicyConfig | InvalidRate | FloatRejected)
    if field is not None:
        assert info.value.field == field  # type: ignore[attr-defined]


@pytest.mark.parametrize(("config", "field"), [
    ({"kind": "capped_multilevel", "rates": ["10%"], "cap": "200%"}, "cap"),
    ({"kind": "capped_multilevel", "rates": ["10%", "200%"]}, "rates.1"),
])
def test_bad_rate_names_its_own_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRate) as info:
        load_policy(config)
    assert info.value.field == field


def test_bad_policy_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidPolicyConfig, match="cannot read"):
        load_policy(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("kind = \n", encoding="utf-8")
    with pytest.raises(InvalidPolicyConfig, match="not valid"):
        load_policy(broken)
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "first_sharer", "rate": 0.1}', encoding="utf-8")
    with pytest.raises(FloatRejected) as info:
        load_policy(bad)
    assert info.value.record == "bad.json" and info.value.field == "rate"
    with pytest.raises(InvalidPolicyConfig):
        load_policy(42)  # type: ignore[arg-type]


@given(policy_configs())
def test_dump_policy_round_trips(config: dict[str, Any]) -> None:
    policy = load_policy(config)
    for fmt, parse in (("toml", tomllib.loads), ("json", json.loads)):
        text = dump_policy(policy, fmt)
        again = load_policy(parse(text))
        assert again == policy, fmt
        assert again.config_hash == policy.config_hash
        assert again.to_dict() == policy.to_dict()
        assert dump_policy(again, fmt) == text


def test_dump_policy_files_round_trip(tmp_path: Path) -> None:
    policy = load_policy({"kind": "compliant", "profile": "cn", "rates": ["1/3", "5.00 CNY/item"], "cap": "40%",
                          "self_purchase_rate": "2.5%", "distributors": ["b", "a"], "name": "全部"})
    for fmt in ("toml", "json"):
        path = tmp_path / f"p.{fmt}"
        path.write_text(dump_policy(policy, fmt), encoding="utf-8")
        assert load_policy(path) == policy and load_policy(path).config_hash == policy.config_hash


def test_config_hash_names_the_config() -> None:
    a = load_policy({"kind": "first_sharer", "rate": "10%"})
    assert a.config_hash == load_policy({"kind": "first_sharer", "rate": "0.1"}).config_hash  # same rate
    assert a.config_hash == load_policy({"kind": "first_sharer", "rate": "1/10", "rounding": "down"}).config_hash
    assert a.config_hash != load_policy({"kind": "first_sharer", "rate": "10.01%"}).config_hash
    assert a.config_hash != load_policy({"kind": "last_sharer", "rate": "10%"}).config_hash
    assert len(a.config_hash) == 64


def _hash_in_fresh_process(config: dict[str, Any], seed: int) -> str:
    code = ("import json, sys; from cps_engine import load_policy; "
            "print(load_policy(json.loads(sys.argv[1])).config_hash)")
    env = {**os.environ, "PYTHONHASHSEED": str(seed)}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(config)], env=env, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


def test_config_hash_is_stable_across_processes_with_distributors() -> None:
    config = {"kind": "first_sharer", "rate": "10%", "distributors": [f"u{i}" for i in range(12)]}
    assert len({_hash_in_fresh_process(config, seed) for seed in (1, 2)}) == 1
    assert _hash_in_fresh_process(config, 3) == load_policy(config).config_hash


def test_config_hash_is_stable_across_processes_with_entry_skus() -> None:
    config = {**CN, "entry_skus": [f"kit{i}" for i in range(12)]}
    assert len({_hash_in_fresh_process(config, seed) for seed in (1, 2)}) == 1


# ------------------------------------------------------------------ schema and registry


def test_policy_schema_is_a_valid_json_schema_with_every_kind() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = policy_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert set(schema["discriminator"]["mapping"]) == set(policy_kinds()) >= set(POLICY_KINDS)
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors({"kind": "first_sharer", "rate": "10%"}))
    assert list(validator.iter_errors({"kind": "first_sharer", "rate": 0.1}))
    assert list(validator.iter_errors({"kind": "no_such_kind"}))
    json.dumps(schema)  # plain JSON


@given(policy_configs())
def test_every_valid_config_and_its_dump_validate_against_the_schema(config: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(policy_schema())
    assert not [e.message for e in validator.iter_errors(config)]
    assert not [e.message for e in validator.iter_errors(load_policy(config).to_dict())]


def test_entry_point_group_name() -> None:
    assert ENTRY_POINT_GROUP == "cps_engine.policies"


@pytest.fixture
def kinds(monkeypatch: pytest.MonkeyPatch) -> dict[str, type[PolicyConfig]]:
    fresh = dict(registry._KINDS)
    monkeypatch.setattr(registry, "_KINDS", fresh)
    return fresh


class EveryOther(PolicyConfig):
    """A third-party policy: pays ``rate`` to levels 1, 3, 5, ..."""

    kind: Literal["every_other"] = "every_other"
    rate: str = "1%"
    max_levels: ClassVar[int | None] = None

    def awards(self, chain: Any, order: Any) -> list[Award]:
        return [Award(link.payee, level, Fraction(1, 100), "every other", (link.via,))
                for level, link in enumerate(chain.walk(), start=1) if level % 2]


def test_register_accepts_a_proper_subclass(kinds: dict[str, type[PolicyConfig]]) -> None:
    assert register(EveryOther) is EveryOther
    assert policy_kinds()["every_other"] is EveryOther
    policy = load_policy({"kind": "every_other"})
    assert pay(policy, order()) == [("o1", "dan", 1, "1.00 CNY"), ("o1", "bob", 3, "1.00 CNY")]
    assert "every_other" in policy_schema()["discriminator"]["mapping"]
    assert register(EveryOther) is EveryOther  # registering the same class again is harmless


def test_register_refuses_what_is_not_a_policy(kinds: dict[str, type[PolicyConfig]]) -> None:
    class NoAwards(PolicyConfig):
        kind: Literal["no_awards"] = "no_awards"

    class NoKind(PolicyConfig):
        def awards(self, chain: Any, order: Any) -> list[Award]:
            return []

    class Clash(PolicyConfig):
        kind: Literal["first_sharer"] = "first_sharer"

        def awards(self, chain: Any, order: Any) -> list[Award]:
            return []

    class NotAPolicy:
        kind = "plain"

        def awards(self, chain: Any, order: Any) -> list[Award]:
            return []

    for bad in (NotAPolicy, NoAwards, NoKind, Clash, len, "first_sharer", FirstSharer(rate="1%")):
        with pytest.raises(PolicyRegistrationError) as info:
            register(bad)  # type: ignore[arg-type]
        assert isinstance(info.value, TypeError)
    assert policy_kinds()["first_sharer"] is FirstSharer
    assert register(Clash, replace=True) is Clash


@given(st.sampled_from(POLICY_KINDS))
def test_every_builtin_kind_is_registered(kind: str) -> None:
    cls = policy_kinds()[kind]
    assert issubclass(cls, PolicyConfig) and cls.model_fields["kind"].default == kind
