"""Cascade simulation: valid, reproducible histories whose sharing responds to the commission."""

from __future__ import annotations

import io
from fractions import Fraction
from typing import Any

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cps_engine import (
    BindEvent,
    FloatRejected,
    InvalidRate,
    OrderEvent,
    ShareEvent,
    ShareGraph,
    compute_events,
    dump_events,
    load_events,
    load_policy,
)
from cps_engine.batch import compute_batch
from cps_engine.simulate import cascade, launch, offered_commission

SMALL: dict[str, Any] = {"users": 300, "seeds": 6, "share_probability": "30%", "click_through": "30%",
                         "conversion": "20%", "days": 20}


def _jsonl(events: list[Any]) -> str:
    buf = io.StringIO()
    dump_events(events, buf)
    return buf.getvalue()


@given(seed=st.integers(0, 10**6), network=st.sampled_from(["small_world", "power_law"]),
       ctr=st.sampled_from(["10%", "50%", "1"]), share=st.sampled_from(["0", "20%", "60%"]),
       bind=st.booleans())
@settings(max_examples=15)
def test_histories_are_valid_and_reproducible(seed: int, network: Any, ctr: str, share: str, bind: bool) -> None:
    params = {**SMALL, "seed": seed, "network": network, "click_through": ctr, "share_probability": share,
              "bind": bind}
    c = cascade(**params)
    again = cascade(**params)
    assert _jsonl(c.events) == _jsonl(again.events)  # byte-identical for the same seed
    assert load_events(io.StringIO(_jsonl(c.events))) == c.events  # round-trips through JSON Lines
    graph = ShareGraph.from_events(c.events)  # no cycle, parents before children, binds valid
    shares = {e.id: e for e in c.events if isinstance(e, ShareEvent)}
    orders = [e for e in c.events if isinstance(e, OrderEvent)]
    binds = [e for e in c.events if isinstance(e, BindEvent)]
    assert (c.shares, c.orders, c.binds) == (len(shares), len(orders), len(binds))
    assert [e.at for e in c.events] == sorted(e.at for e in c.events)
    for o in orders:
        if o.share is not None:
            assert shares[o.share].at < o.at and o.buyer != shares[o.share].sharer
    assert sum(o.amount_minor for o in orders) == c.sales.minor
    assert c.visitors >= len({o.buyer for o in orders if o.share is not None})
    if not bind:
        assert not binds and all(o.share is not None for o in orders)
    # the simulated history is a realistic input for the engine: batch and per-order agree on it
    policy = load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%"], "cap": "12%"})
    ref = [(ln.order, ln.payee, ln.amount.minor)
           for s in compute_events(c.events, policy, graph=graph) for ln in s.lines]
    batch = compute_batch(c.events, policy=policy, graph=graph)
    assert list(batch[["order", "payee", "amount_minor"]].itertuples(index=False, name=None)) == ref


def test_sales_follow_visitors_conversion_and_order_value() -> None:
    c = cascade(users=3000, seeds=30, share_probability="50%", click_through="40%", conversion="10%",
                average_order_value="80.00", seed=11)
    assert c.expected_sales.minor == c.visitors * 8000 // 10
    assert c.orders > 50
    # realised sales within 25% of visitors × conversion × average order value (plus repeat orders)
    first = [e for e in c.events if isinstance(e, OrderEvent) and e.share is not None]
    linked = sum(o.amount_minor for o in first)
    assert abs(linked - c.expected_sales.minor) < c.expected_sales.minor // 4
    assert all(4000 <= o.amount_minor <= 12000 for o in first)


def test_share_probability_responds_to_the_commission() -> None:
    low = cascade(**SMALL, commission="5%", seed=1)
    ref = cascade(**SMALL, commission="10%", seed=1)
    high = cascade(**SMALL, commission="20%", seed=1)
    assert low.share_probability == Fraction(3, 20)  # 30% × (1 + (5% - 10%) / 10%)
    assert ref.share_probability == Fraction(3, 10)
    assert high.share_probability == Fraction(3, 5)
    flat = cascade(**SMALL, commission="20%", response=0, seed=1)
    assert flat.share_probability == Fraction(3, 10)
    assert _jsonl(flat.events) == _jsonl(ref.events)
    many = [cascade(**SMALL, commission=c, seed=s).shares for s in range(4) for c in ("5%", "20%")]
    assert sum(many[1::2]) > sum(many[0::2])


def test_offered_commission_of_each_kind() -> None:
    assert offered_commission({"kind": "first_sharer", "rate": "8%"}) == Fraction(2, 25)
    assert offered_commission({"kind": "compliant", "rates": ["10%", "5%"], "cap": "8%"}) == Fraction(2, 25)
    assert offered_commission({"kind": "linear", "rate": "9%"}) == Fraction(9, 100)
    with pytest.raises(InvalidRate):
        offered_commission({"kind": "last_sharer", "rate": "5.00 CNY"})
    assert cascade(**SMALL, policy={"kind": "last_sharer", "rate": "15%"}, seed=2).commission == Fraction(3, 20)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(FloatRejected):
        cascade(share_probability=0.1)  # type: ignore[arg-type]
    with pytest.raises(InvalidRate):
        cascade(conversion="150%")
    with pytest.raises(InvalidRate):
        cascade(average_order_value="0")
    with pytest.raises(ValueError, match="network"):
        cascade(network="lattice")  # type: ignore[arg-type]


def test_a_custom_social_graph() -> None:
    g = nx.karate_club_graph()
    c = cascade(network=g, seeds=3, share_probability="50%", click_through="60%", conversion="30%", seed=5)
    people = {f"u{n:02d}" for n in g.nodes}
    assert {e.sharer for e in c.events if isinstance(e, ShareEvent)} <= people
    assert c.social is g


def test_launch_compares_policies_on_their_own_cascades() -> None:
    run = launch({"lean": {"kind": "last_sharer", "rate": "5%"},
                  "rich": {"kind": "capped_multilevel", "rates": ["15%", "5%"], "cap": "18%"}}, **SMALL, seed=4)
    s = run.summary().set_index("policy")
    assert s.loc["rich", "share_probability"] > s.loc["lean", "share_probability"]
    assert set(run.comparison.policies) == {"lean", "rich"}
    for name, c in run.cascades.items():
        m = run.comparison.metrics
        row = m[m["policy"] == name]
        assert int(row["orders"].sum()) == c.orders
        assert int(s.loc[name, "sales_minor"]) == c.sales.minor
    with pytest.raises(TypeError):
        launch({"x": {"kind": "last_sharer", "rate": "5%"}}, commission="5%")
