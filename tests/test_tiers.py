"""Promoter tiers (issue 13): rates that follow a payee's own recent sales.

Hand-checked peer examples, the window and refund edges, validation (typed errors naming the
field, floats refused, CN-HEADCOUNT under the compliant profiles), the tier history and its
reasons, determinism under any event order, the explain and compliance outputs, and the batch ==
per-order property for tiered policies.
"""

from __future__ import annotations

import random
import warnings
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cps_engine import (
    ComplianceViolation,
    CpsError,
    Event,
    FloatRejected,
    InvalidPolicyConfig,
    OrderEvent,
    RefundEvent,
    ShareEvent,
    ShareGraph,
    compute,
    compute_events,
    dump_policy,
    load_policy,
)
from cps_engine.audit.compliance import compliance_report
from cps_engine.audit.explain import explain_order
from cps_engine.batch import compute_batch
from cps_engine.batch._kernels import BatchFallbackWarning
from cps_engine.models import BindEvent
from cps_engine.money import format_rate
from cps_engine.tiers import TierBook, TierBookMissing
from tests.strategies import Programme, policy_configs, programmes, rate_texts

TZ = timezone(timedelta(hours=8))
DAY = timedelta(days=1)
T0 = datetime(2026, 3, 1, 10, tzinfo=TZ)


def share(id_: str, sharer: str, parent: str | None = None, at: datetime = T0 - DAY) -> ShareEvent:
    return ShareEvent(id=id_, sharer=sharer, parent=parent, at=at)


def order(id_: str, via: str | None, at: datetime, amount: str = "100.00", currency: str = "CNY",
          buyer: str | None = None, lines: Any = None) -> OrderEvent:
    return OrderEvent(id=id_, buyer=buyer or f"buyer-{id_}", share=via, amount=amount, currency=currency, at=at,
                      lines=lines)


def lines_of(events: list[Event], policy: Any) -> list[tuple[str, str, int, int, str]]:
    """(order, payee, level, minor units, rule without the last-sharer prefix) of every line."""
    return [(ln.order, ln.payee, ln.level, ln.amount.minor, ln.provenance.rule.removeprefix("last sharer, "))
            for s in compute_events(events, policy) for ln in s.lines]


# ------------------------------------------------------------------------------ peer examples
CRMEB = {"kind": "capped_multilevel", "rates": ["10%", "5%"],
         "tiers": [{"name": "推广员"},
                   {"name": "银牌", "rates": ["12%", "6%"], "upgrade": {"measure": "orders", "at_least": 3}},
                   {"name": "金牌", "rates": ["15%", "8%"], "upgrade": {"measure": "orders", "at_least": 5}}]}


def test_crmeb_agent_levels_raise_both_levels_rates_by_own_order_count() -> None:
    """CRMEB agent levels (分销等级): a promoter's level is upgraded by a task such as a number of
    orders, and the level's extra brokerage applies to both the first and second level brokerage of
    the promoter.  Here: amy sells three orders herself (Mar 1-3), then bob's re-share sells one (Mar 4):
    amy is 银牌 from the third order on, so her level-2 line on o4 is 6% (not 5%); her own o3 is
    still 10% (only two orders before it).  Bob has no own sales: his level-1 line stays at 10%."""
    evs: list[Event] = [share("s1", "amy"), share("s2", "bob", "s1"),
                        order("o1", "s1", T0), order("o2", "s1", T0 + DAY), order("o3", "s1", T0 + 2 * DAY),
                        order("o4", "s2", T0 + 3 * DAY)]
    got = lines_of(evs, CRMEB)
    assert got == [("o1", "amy", 1, 1000, "level 1 rate"), ("o2", "amy", 1, 1000, "level 1 rate"),
                   ("o3", "amy", 1, 1000, "level 1 rate"),
                   ("o4", "bob", 1, 1000, "level 1 rate"), ("o4", "amy", 2, 600, "tier 银牌 rate")]
    book = TierBook.from_events(evs, load_policy(CRMEB))
    assert [str(c) for c in book.history("amy")] == [
        "银牌 since 2026-03-03T10:00:00+08:00: 3 orders in the 30 days before (银牌: at least 3)"]
    assert book.history("bob") == []


def test_crmeb_levels_count_only_the_promoters_own_orders() -> None:
    """CRMEB again: the level task counts the promoter's own promotion orders; a downline's sale (amy
    at level 2) is not amy's.  Two sales through bob's re-share plus amy's three make five orders on
    which amy is paid, but only three of her own: she is 银牌 (12%), not 金牌 (15%), on o6."""
    evs: list[Event] = [share("s1", "amy"), share("s2", "bob", "s1"),
                        order("o1", "s1", T0), order("o2", "s1", T0 + DAY), order("o3", "s1", T0 + 2 * DAY),
                        order("o4", "s2", T0 + 3 * DAY), order("o5", "s2", T0 + 4 * DAY),
                        order("o6", "s1", T0 + 5 * DAY)]
    assert lines_of(evs, CRMEB)[-1] == ("o6", "amy", 1, 1200, "tier 银牌 rate")


PAP = {"kind": "last_sharer", "rate": "10%",
       "tiers": [{"name": "standard"},
                 {"name": "gold", "rates": "15%", "downgrade": True,
                  "upgrade": {"measure": "net_sales", "at_least": "500.00 USD", "window_days": 30}}]}


def test_post_affiliate_pro_performance_tier_follows_net_sales_down_after_a_refund() -> None:
    """Post Affiliate Pro performance rewards: an affiliate moves to a better commission group once
    their sales in the period reach a volume, and back when they fall below it.  Here: 300 + 300 USD
    (Mar 1-2) make 600 >= 500: gold, so o3 (50 USD) pays 15%; a 200 USD refund of o1 on Mar 3 brings
    the net to 100 + 300 + 50 = 450 < 500: standard again, so o4 (Mar 4) pays 10%.  o4 itself makes
    550: gold again after it; o1 (net 100) leaves the window 30 days after it: 450, standard."""
    evs: list[Event] = [share("s1", "amy"),
                        order("o1", "s1", T0, "300.00", "USD"), order("o2", "s1", T0 + DAY, "300.00", "USD"),
                        order("o3", "s1", T0 + DAY + timedelta(hours=12), "50.00", "USD"),
                        RefundEvent(id="r1", order="o1", amount="200.00", at=T0 + 2 * DAY),
                        order("o4", "s1", T0 + 3 * DAY, "100.00", "USD")]
    got = lines_of(evs, PAP)
    assert got == [("o1", "amy", 1, 1000, "level 1 rate"), ("o2", "amy", 1, 3000, "level 1 rate"),
                   ("o3", "amy", 1, 750, "tier gold rate"), ("o4", "amy", 1, 1000, "level 1 rate")]
    hist = [str(c) for c in TierBook.from_events(evs, load_policy(PAP)).history("amy")]
    assert hist == [
        "gold since 2026-03-02T10:00:00+08:00: 600.00 USD of own net sales in the 30 days before "
        "(gold: at least 500.00 USD)",
        "standard since 2026-03-03T10:00:00+08:00: 450.00 USD of own net sales in the 30 days before, below "
        "gold's 500.00 USD",
        "gold since 2026-03-04T10:00:00+08:00: 550.00 USD of own net sales in the 30 days before "
        "(gold: at least 500.00 USD)",
        "standard since 2026-03-31T10:00:00+08:00: 450.00 USD of own net sales in the 30 days before, below "
        "gold's 500.00 USD"]


def test_a_refund_dated_with_its_order_counts_from_the_start() -> None:
    """A refund dated at the order's own time (cancelled at once) is netted from the start: 600 - 200 =
    400 USD < 500, so o2 pays the standard 10%."""
    evs: list[Event] = [share("s1", "amy"), order("o1", "s1", T0, "600.00", "USD"),
                        RefundEvent(id="r1", order="o1", amount="200.00", at=T0),
                        order("o2", "s1", T0 + DAY, "100.00", "USD")]
    assert lines_of(evs, PAP)[-1] == ("o2", "amy", 1, 1000, "level 1 rate")


def test_with_self_purchase_a_buyers_own_orders_are_their_own_sales() -> None:
    """self_purchase puts the buyer at level 1: their own purchases count towards their tier; under
    keep_level an ineligible level 1 is nobody's own sale."""
    tiers = [{"name": "base"}, {"name": "up", "rates": "20%", "upgrade": {"measure": "orders", "at_least": 1}}]
    evs: list[Event] = [order("a1", None, T0, buyer="amy"), order("a2", None, T0 + DAY, buyer="amy")]
    pol = {"kind": "last_sharer", "rate": "10%", "self_purchase": True, "tiers": tiers}
    assert [r for *_, r in lines_of(evs, pol)] == ["level 1 rate", "tier up rate"]
    keep = {"kind": "capped_multilevel", "rates": ["10%", "5%"], "distributors": ["amy"], "ineligible": "keep_level",
            "tiers": [{"name": "base"}, {"name": "up", "rates": ["20%", "9%"],
                                         "upgrade": {"measure": "orders", "at_least": 1}}]}
    evs2: list[Event] = [share("s1", "amy"), share("s2", "bob", "s1"), order("b1", "s2", T0),
                         order("b2", "s2", T0 + DAY)]
    assert lines_of(evs2, keep) == [("b1", "amy", 2, 500, "level 2 rate"), ("b2", "amy", 2, 500, "level 2 rate")]
    compress = {**keep, "ineligible": "compress"}  # amy moves up to level 1: b1 is her own sale
    assert lines_of(evs2, compress) == [("b1", "amy", 1, 1000, "level 1 rate"), ("b2", "amy", 1, 2000, "tier up rate")]


def test_a_tier_without_downgrade_is_kept_and_the_window_edges_are_exact() -> None:
    """Upgrades are kept unless the tier says downgrade; the window is [t - N days, t): an order exactly
    N days before still counts, an order at the same instant does not."""
    pol = {"kind": "last_sharer", "rate": "10%",
           "tiers": [{"name": "base"}, {"name": "up", "rates": "20%",
                                        "upgrade": {"measure": "orders", "at_least": 2, "window_days": 2}}]}
    evs: list[Event] = [share("s1", "amy"), order("o1", "s1", T0), order("o2", "s1", T0 + DAY),
                        order("o3", "s1", T0 + 2 * DAY),   # o1 is exactly 2 days before: counts
                        order("o3b", "s1", T0 + 2 * DAY),  # same instant as o3: o3 does not count for it
                        order("o4", "s1", T0 + 30 * DAY)]  # window long empty: kept (no downgrade)
    rules = {o: r for o, _, _, _, r in lines_of(evs, pol)}
    assert rules == {"o1": "level 1 rate", "o2": "level 1 rate", "o3": "tier up rate", "o3b": "tier up rate",
                     "o4": "tier up rate"}
    one = {"kind": "last_sharer", "rate": "10%",
           "tiers": [{"name": "base"}, {"name": "up", "rates": "20%",
                                        "upgrade": {"measure": "orders", "at_least": 1, "window_days": 1}}]}
    evs2: list[Event] = [share("s1", "amy"), order("a", "s1", T0), order("b", "s1", T0)]
    assert {o: r for o, _, _, _, r in lines_of(evs2, one)} == {"a": "level 1 rate", "b": "level 1 rate"}
    down = {**one, "tiers": [{"name": "base"}, {"name": "up", "rates": "20%", "downgrade": True,
                                                "upgrade": {"measure": "orders", "at_least": 1, "window_days": 1}}]}
    evs3: list[Event] = [share("s1", "amy"), order("a", "s1", T0), order("b", "s1", T0 + DAY),
                         order("c", "s1", T0 + 2 * DAY + timedelta(microseconds=1))]
    assert {o: r for o, _, _, _, r in lines_of(evs3, down)} == {
        "a": "level 1 rate", "b": "tier up rate", "c": "level 1 rate"}


def test_precedence_payee_over_tier_over_product_rates() -> None:
    """payee_rates > tier > product > category > default: a tier's rates replace product rates for the
    tier's members; the first tier without rates keeps the policy's own (product rates included)."""
    from decimal import Decimal

    from cps_engine.models import OrderLine

    pol = {"kind": "last_sharer", "rate": "10%", "product_rates": {"cheap": "1%"}, "payee_rates": {"vip": "30%"},
           "tiers": [{"name": "base"}, {"name": "up", "rates": "20%",
                                        "upgrade": {"measure": "orders", "at_least": 1}}]}
    item = (OrderLine(sku="cheap", quantity=1, unit_price=Decimal("100.00")),)
    evs: list[Event] = [share("s1", "amy"), share("s2", "vip"),
                        order("a1", "s1", T0, lines=item), order("a2", "s1", T0 + DAY, lines=item),
                        order("v1", "s2", T0, lines=item), order("v2", "s2", T0 + DAY, lines=item)]
    got = {o: (amt, r) for o, _, _, amt, r in lines_of(evs, pol)}
    assert got == {"a1": (100, "product rate"), "a2": (2000, "tier up rate"),
                   "v1": (3000, "payee rate"), "v2": (3000, "payee rate")}


# ------------------------------------------------------------------------------ validation
BASE = {"kind": "capped_multilevel", "rates": ["10%", "5%"]}


@pytest.mark.parametrize(("tiers", "error", "field"), [
    ([{"name": "a"}, {"name": "b", "rates": "12%", "upgrade": {"measure": "orders", "at_least": 3.0}}],
     FloatRejected, "tiers.1.upgrade.at_least"),
    ([{"name": "a"}, {"name": "b", "rates": "12%",
                      "upgrade": {"measure": "orders", "at_least": 3, "window_days": 30.0}}],
     FloatRejected, "tiers.1.upgrade.window_days"),
    ([{"name": "a"}, {"name": "b", "rates": [0.12], "upgrade": {"measure": "orders", "at_least": 3}}],
     FloatRejected, "tiers.1.rates"),
    ([{"name": "a"}, {"name": "b", "rates": "12%", "upgrade": {"measure": "net_sales", "at_least": 500}}],
     InvalidPolicyConfig, "tiers.1.upgrade.at_least"),
    ([{"name": "a"}, {"name": "b", "rates": "12%", "upgrade": {"measure": "orders", "at_least": "0"}}],
     InvalidPolicyConfig, "tiers.1.upgrade.at_least"),
    ([{"name": "a", "upgrade": {"measure": "orders", "at_least": 1}}], InvalidPolicyConfig, "tiers.0.upgrade"),
    ([{"name": "a"}, {"name": "b", "rates": "12%"}], InvalidPolicyConfig, "tiers.1.upgrade"),
    ([{"name": "a"}, {"name": "b", "upgrade": {"measure": "orders", "at_least": 2}}], InvalidPolicyConfig,
     "tiers.1.rates"),
    ([{"name": "a"}, {"name": "a", "rates": "12%", "upgrade": {"measure": "orders", "at_least": 2}}],
     InvalidPolicyConfig, "tiers.1.name"),
    ([{"name": "a"}, {"name": "b", "rates": "12%", "upgrade": {"measure": "orders", "at_least": 5}},
      {"name": "c", "rates": "15%", "upgrade": {"measure": "orders", "at_least": 5}}],
     InvalidPolicyConfig, "tiers.2.upgrade.at_least"),
    ([{"name": "a"}, {"name": "b", "rates": ["12%", "6%", "1%"], "upgrade": {"measure": "orders", "at_least": 2}}],
     InvalidPolicyConfig, "tiers.1.rates"),
    ([{"name": "a"}, {"name": "b", "rates": "12%", "upgrade": {"measure": "recruits", "at_least": 2}}],
     InvalidPolicyConfig, "tiers.1.upgrade.measure"),
    ([], InvalidPolicyConfig, "tiers"),
    ([{"name": "a"}, *[{"name": f"t{i}", "rates": "1%", "upgrade": {"measure": "orders", "at_least": i}}
                       for i in range(1, 101)]], InvalidPolicyConfig, "tiers"),
    ([{"name": "a"}, {"name": "b", "rates": "12%", "upgrade": {"measure": "orders", "at_least": "٣"}}],
     InvalidPolicyConfig, "tiers.1.upgrade.at_least"),
    ([{"name": "a"}, {"name": "b", "rates": "12%", "upgrade": {"measure": "orders", "at_least": "9" * 5000}}],
     InvalidPolicyConfig, "tiers.1.upgrade.at_least"),
])
def test_bad_tiers_are_refused_naming_the_field(tiers: list[Any], error: type[Exception], field: str) -> None:
    with pytest.raises(error) as info:
        load_policy({**BASE, "tiers": tiers})
    assert isinstance(info.value, CpsError)
    assert info.value.field == field


def test_tiers_on_a_pool_policy_are_refused() -> None:
    with pytest.raises(InvalidPolicyConfig) as info:
        load_policy({"kind": "linear", "rate": "10%", "tiers": [{"name": "a"}]})
    assert info.value.field == "tiers"


def test_tier_rates_count_towards_the_100_percent_bound() -> None:
    cfg = {"kind": "capped_multilevel", "rates": ["40%", "40%"],
           "tiers": [{"name": "a"}, {"name": "b", "rates": ["70%", "40%"],
                                     "upgrade": {"measure": "orders", "at_least": 2}}]}
    with pytest.raises(InvalidPolicyConfig, match="100%"):
        load_policy(cfg)
    assert load_policy({**cfg, "cap": "80%"}).tiers is not None


@pytest.mark.parametrize("measure", ["downline_count", "team_sales"])
@pytest.mark.parametrize("profile", ["cn", "cn_direct", "strict"])
def test_compliant_profiles_refuse_headcount_and_team_tiers(measure: str, profile: str) -> None:
    at_least: Any = 3 if measure == "downline_count" else "500.00 CNY"
    cfg = {"kind": "compliant", "profile": profile, "rates": ["10%"], "cap": "15%",
           "tiers": [{"name": "a"}, {"name": "b", "rates": "12%",
                                     "upgrade": {"measure": measure, "at_least": at_least}}]}
    with pytest.raises(ComplianceViolation) as info:
        load_policy(cfg)
    assert info.value.rule == "CN-HEADCOUNT"
    assert info.value.field == "tiers.1.upgrade.measure"
    # own sales are fine under the same profile
    own = {**cfg, "tiers": [{"name": "a"}, {"name": "b", "rates": "12%",
                                            "upgrade": {"measure": "orders", "at_least": 3}}]}
    assert load_policy(own).tiers is not None


def test_a_tiered_policy_round_trips_with_its_config_hash() -> None:
    pol = load_policy(CRMEB)
    for fmt in ("toml", "json"):
        import json
        import tomllib

        text = dump_policy(pol, fmt)
        again = load_policy(json.loads(text) if fmt == "json" else tomllib.loads(text))
        assert again == pol and again.config_hash == pol.config_hash
    assert load_policy(BASE).config_hash == load_policy({**BASE, "tiers": None}).config_hash


def test_the_example_policy_file_loads() -> None:
    from pathlib import Path

    pol = load_policy(Path(__file__).parent.parent / "examples" / "policies" / "tiers.toml")
    assert pol.tiers is not None and [t.name for t in pol.tiers] == ["member", "silver", "gold"]


# ------------------------------------------------------------------------------ the book in the API
def _crmeb_history() -> list[Event]:
    return [share("s1", "amy"), share("s2", "bob", "s1"),
            *[order(f"o{i}", "s1", T0 + i * DAY) for i in range(1, 5)], order("o9", "s2", T0 + 9 * DAY)]


def test_compute_needs_the_book_and_refuses_another_policys() -> None:
    evs = _crmeb_history()
    pol = load_policy(CRMEB)
    g = ShareGraph.from_events(evs)
    last = evs[-1]
    assert isinstance(last, OrderEvent)
    with pytest.raises(TierBookMissing) as info:
        compute(last, pol, graph=g)
    assert info.value.field == "tiers"
    book = TierBook.from_events(evs, pol)
    by_book = compute(last, pol, graph=g, tiers=book)
    assert by_book == compute(last, book.policy, graph=g)
    assert by_book.lines[1].provenance.rule == "tier 银牌 rate"
    import pickle  # dask ships the policy to its workers: the book travels with it

    assert compute(last, pickle.loads(pickle.dumps(book.policy)), graph=g) == by_book
    other = load_policy({**CRMEB, "rates": ["10%", "4%"]})
    with pytest.raises(InvalidPolicyConfig):
        compute(last, other, graph=g, tiers=book)
    with pytest.raises(InvalidPolicyConfig):
        compute(last, load_policy(BASE), graph=g, tiers=book)


def test_compute_batch_falls_back_per_order_with_the_book_and_refuses_without_it() -> None:
    evs = _crmeb_history()
    pol = load_policy(CRMEB)
    book = TierBook.from_events(evs, pol)
    with pytest.warns(BatchFallbackWarning):
        frame = compute_batch(evs, book.policy)
    expected = [(ln.order, ln.payee, ln.level, ln.amount.minor) for s in compute_events(evs, pol) for ln in s.lines]
    assert [tuple(r) for r in frame[["order", "payee", "level", "amount_minor"]].itertuples(index=False)] == expected
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BatchFallbackWarning)
        with pytest.raises(TierBookMissing):
            compute_batch(evs, pol)


def test_the_book_is_the_same_for_any_event_order() -> None:
    evs = [*_crmeb_history(), RefundEvent(id="r1", order="o1", amount="20.00", at=T0 + 3 * DAY + timedelta(hours=2)),
           RefundEvent(id="r2", order="o1", at=T0 + 3 * DAY + timedelta(hours=3))]  # the rest of o1
    pol = load_policy({**CRMEB, "tiers": [*CRMEB["tiers"][:2],  # type: ignore[index]
                                          {"name": "金牌", "rates": ["15%", "8%"], "downgrade": True,
                                           "upgrade": {"measure": "net_sales", "at_least": "300.00 CNY"}}]})
    first = TierBook.from_events(evs, pol)
    assert [str(c) for c in first.history("amy")][:2] == [
        "金牌 since 2026-03-04T10:00:00+08:00: 300.00 CNY of own net sales in the 30 days before "
        "(金牌: at least 300.00 CNY)",
        "银牌 since 2026-03-04T12:00:00+08:00: 280.00 CNY of own net sales in the 30 days before, below "
        "金牌's 300.00 CNY"]
    rng = random.Random(13)
    for k in range(10):
        shuffled = evs[::-1] if k == 0 else evs[:]
        if k:
            rng.shuffle(shuffled)
        again = TierBook.from_events(shuffled, pol)
        assert again.columns() == first.columns()
        assert [c.as_dict() for c in again.history("amy")] == [c.as_dict() for c in first.history("amy")]


# ------------------------------------------------------------------------------ audit
def test_explain_says_which_tier_applied_and_why() -> None:
    evs = _crmeb_history()
    ex = explain_order(evs, load_policy(CRMEB), "o9", "amy")
    assert ex.tier_of("amy") == ("银牌", "银牌 since 2026-03-04T10:00:00+08:00: 3 orders in the 30 days before "
                                        "(银牌: at least 3)")
    assert ex.tier_of("bob") == ("推广员", "推广员 (the first tier: no upgrade rule met before the order)")
    text = ex.render()
    assert "tier: 银牌 since 2026-03-04T10:00:00+08:00: 3 orders in the 30 days before" in text
    assert ex.as_dict()["tiers"]["amy"]["tier"] == "银牌"
    assert "tiers" not in explain_order(evs, load_policy(BASE), "o9").as_dict()


def test_compliance_report_flags_a_tier_that_pays_for_headcount() -> None:
    evs: list[Event] = [share("s1", "amy"), order("o1", "s1", T0),
                        *[BindEvent(id=f"b{i}", user=f"u{i}", upline="amy", at=T0 + i * timedelta(hours=1))
                          for i in range(1, 4)], order("o2", "s1", T0 + DAY)]
    head = {**BASE, "tiers": [{"name": "a"}, {"name": "leader", "rates": ["15%", "5%"],
                                              "upgrade": {"measure": "downline_count", "at_least": 3}}]}
    rep = compliance_report(evs, head)
    found = [f for f in rep.findings if f.measure == "tier rules paying for headcount or team sales"]
    assert [(f.status, f.figure) for f in found] == [("fail", "leader by downline_count")]
    assert "amy" in found[0].detail and rep.verdict == "non-compliant"
    assert lines_of(evs, head)[-1] == ("o2", "amy", 1, 1500, "tier leader rate")
    own = compliance_report(evs, CRMEB)
    assert [f.status for f in own.findings if f.measure == "tier rules paying for headcount or team sales"] == \
        ["pass"]
    assert not [f for f in compliance_report(evs, BASE).findings if "tier" in f.measure]


# ------------------------------------------------------------------------------ the property
NON_POOL = ("first_sharer", "last_sharer", "capped_multilevel", "compliant")


@st.composite
def tiered_configs(draw: st.DrawFn) -> dict[str, Any]:
    cfg = draw(policy_configs(kinds=NON_POOL))
    reads = len(cfg["rates"]) if isinstance(cfg.get("rates"), list) else 1  # type: ignore[arg-type]
    spec = st.one_of(rate_texts(30), st.sampled_from(["1.00 CNY", "0.50 CNY/item"]))
    rates = st.one_of(spec, st.lists(spec, min_size=1, max_size=reads))
    tiers: list[dict[str, Any]] = [{"name": "t0"}]
    if draw(st.booleans()):
        tiers[0]["rates"] = draw(rates)
    counts = sorted(draw(st.lists(st.integers(1, 6), min_size=1, max_size=3, unique=True)))
    sales = sorted(draw(st.lists(st.integers(1, 10**7), max_size=2, unique=True)))
    rules = [{"measure": "orders", "at_least": n} for n in counts] + \
        [{"measure": "net_sales", "at_least": f"{n / 100:.2f} CNY"} for n in sales]
    for i, rule in enumerate(rules, start=1):
        rule["window_days"] = draw(st.integers(1, 3))
        tiers.append({"name": f"t{i}", "rates": draw(rates), "upgrade": rule, "downgrade": draw(st.booleans())})
    cfg["tiers"] = tiers
    if "cap" not in cfg:
        cfg["allow_over_100"] = True
    return cfg


@given(prog=programmes(max_orders=20), cfg=tiered_configs())
def test_batch_equals_per_order_for_tiered_policies(prog: Programme, cfg: dict[str, Any]) -> None:
    """compute_batch with the book (per-order fallback) gives compute_events' lines, or the same error."""
    policy = load_policy(cfg)

    def per_order() -> list[tuple[str, str, int, int, str]]:
        return [(ln.order, ln.payee, ln.level, ln.amount.minor, format_rate(ln.rate))
                for s in compute_events(prog.events, policy) for ln in s.lines]

    def batch() -> list[tuple[str, str, int, int, str]]:
        book = TierBook.from_events(prog.events, policy)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BatchFallbackWarning)
            frame = compute_batch(prog.events, book.policy)
        return [tuple(r) for r in frame[["order", "payee", "level", "amount_minor", "rate"]]  # type: ignore[misc]
                .itertuples(index=False, name=None)]

    def outcome(fn: Any) -> tuple[str, Any]:
        try:
            return "ok", fn()
        except CpsError as exc:
            return "error", type(exc).__name__

    assert outcome(batch) == outcome(per_order)


@given(prog=programmes(max_orders=20), cfg=tiered_configs())
def test_tier_indices_over_arrays_agree_with_state(prog: Programme, cfg: dict[str, Any]) -> None:
    """The array lookup the batch kernel will use gives :meth:`TierBook.state` for every (payee, order)."""
    from cps_engine.tiers import _micros

    policy = load_policy(cfg)
    try:
        book = TierBook.from_events(prog.events, policy)
    except CpsError:
        return
    pairs = [(p, o.at) for o in prog.orders for p in [*prog.people, "nobody"]]
    got = book.tier_indices([p for p, _ in pairs], [_micros(at) for _, at in pairs]).tolist()
    assert got == [book.state(p, at).index for p, at in pairs]


@given(prog=programmes(max_orders=20), cfg=tiered_configs(), seed=st.integers(0, 2**32))
def test_the_book_does_not_depend_on_event_order(prog: Programme, cfg: dict[str, Any], seed: int) -> None:
    policy = load_policy(cfg)
    try:
        first = TierBook.from_events(prog.events, policy)
    except CpsError:
        return
    shuffled = prog.events[:]
    random.Random(seed).shuffle(shuffled)
    assert TierBook.from_events(shuffled, policy).columns() == first.columns()
