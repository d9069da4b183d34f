"""The share graph: share paths, binding modes and their history, chains at the order's time,
refusals (cycles, self-referral, unknown parents), deep chains, networkx export."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cps_engine import (
    BindEvent,
    BindingConfig,
    BindingMode,
    CpsError,
    CycleError,
    DuplicateEvent,
    Event,
    GraphError,
    OrderEvent,
    SelfReferralError,
    ShareEvent,
    ShareGraph,
    UnknownReference,
    parse_event,
)
from cps_engine.graph import Link
from tests.strategies import Programme, interleaved_programmes, programmes
from tests.test_core_reference import Reference, micros

TZ = timezone(timedelta(hours=8))
T0 = datetime(2026, 3, 1, tzinfo=TZ)


def at(day: int, hour: int = 0) -> str:
    return (T0 + timedelta(days=day - 1, hours=hour)).isoformat()


def share(sid: str, sharer: str, parent: str | None = None, day: int = 1, hour: int = 0) -> Event:
    return parse_event({"type": "share", "id": sid, "sharer": sharer, "parent": parent, "at": at(day, hour)})


def bind(bid: str, user: str, upline: str, day: int = 1, hour: int = 0, registration: bool = False) -> Event:
    return parse_event({"type": "bind", "id": bid, "user": user, "upline": upline, "at": at(day, hour),
                        "registration": registration})


def order(oid: str, buyer: str, share_id: str | None = None, day: int = 10, hour: int = 0) -> OrderEvent:
    ev = parse_event({"type": "order", "id": oid, "buyer": buyer, "share": share_id, "amount": "100.00",
                      "currency": "CNY", "at": at(day, hour)})
    assert isinstance(ev, OrderEvent)
    return ev


def payees(graph: ShareGraph, o: OrderEvent, self_purchase: bool = False) -> list[str]:
    return [link.payee for link in graph.chain_for(o, self_purchase=self_purchase).walk()]


# ------------------------------------------------------------------ share paths

LINE = [share("s1", "amy", hour=1), share("s2", "bob", "s1", hour=2), share("s3", "cat", "s2", hour=3)]


def test_share_path_nearest_first_and_first_sharer() -> None:
    g = ShareGraph.from_events(LINE)
    chain = g.chain_for(order("o1", "dan", "s3"))
    assert chain.source == "share" and chain.buyer == "dan" and chain.order_id == "o1"
    assert chain.all() == [Link("cat", "s3"), Link("bob", "s2"), Link("amy", "s1")]
    assert chain.first() == Link("amy", "s1") and len(chain) == 3
    assert chain.nearest(2) == [Link("cat", "s3"), Link("bob", "s2")]
    assert chain.nearest(0) == [] and chain.nearest(99) == chain.all()
    assert g.n_shares == 3 and g.n_people == 3 and g.depth_histogram() == {0: 1, 1: 1, 2: 1}


def test_order_through_a_middle_share_ignores_its_descendants() -> None:
    g = ShareGraph.from_events(LINE)
    assert payees(g, order("o1", "dan", "s2")) == ["bob", "amy"]


@pytest.mark.parametrize(
    ("buyer", "share_id", "plain", "with_self", "first", "first_self"),
    [
        ("bob", "s3", ["cat", "amy"], ["bob", "cat", "amy"], "amy", "amy"),   # buyer in the middle
        ("amy", "s3", ["cat", "bob"], ["amy", "cat", "bob"], "bob", "bob"),   # buyer is the root sharer
        ("cat", "s3", ["bob", "amy"], ["cat", "bob", "amy"], "amy", "amy"),   # buyer bought through own link
        ("amy", "s1", [], ["amy"], None, "amy"),                               # buyer is the only sharer
    ],
)
def test_buyer_is_removed_unless_self_purchase(buyer: str, share_id: str, plain: list[str], with_self: list[str],
                                               first: str | None, first_self: str) -> None:
    g = ShareGraph.from_events(LINE)
    o = order("o1", buyer, share_id)
    chain, chain_self = g.chain_for(o), g.chain_for(o, self_purchase=True)
    assert payees(g, o) == plain and len(chain) == len(plain)
    assert payees(g, o, True) == with_self and len(chain_self) == len(with_self)
    assert chain_self.all()[0] == Link(buyer, "o1")  # the buyer is level 1, via the order itself
    assert (chain.first().payee if chain.first() else None) == first  # type: ignore[union-attr]
    assert chain_self.first().payee == first_self  # type: ignore[union-attr]


def test_each_person_once_at_the_occurrence_nearest_the_buyer() -> None:
    evs = [share("s1", "amy", hour=1), share("s2", "bob", "s1", hour=2), share("s3", "amy", "s2", hour=3),
           share("s4", "cat", "s3", hour=4), share("s5", "bob", "s4", hour=5)]
    g = ShareGraph.from_events(evs)
    chain = g.chain_for(order("o1", "dan", "s5"))
    assert chain.all() == [Link("bob", "s5"), Link("cat", "s4"), Link("amy", "s3")]
    assert len(chain) == 3 and chain.first() == Link("amy", "s3")
    chain = g.chain_for(order("o2", "cat", "s5"))  # buyer also removed from a path with repeats
    assert chain.all() == [Link("bob", "s5"), Link("amy", "s3")] and chain.first() == Link("amy", "s3")
    chain = g.chain_for(order("o3", "bob", "s5"), self_purchase=True)
    assert chain.all() == [Link("bob", "o3"), Link("cat", "s4"), Link("amy", "s3")] and len(chain) == 3


def test_share_path_wins_over_bindings_and_unknown_share_is_refused() -> None:
    g = ShareGraph.from_events([*LINE, bind("b1", "dan", "zed")])
    assert payees(g, order("o1", "dan", "s3")) == ["cat", "bob", "amy"]
    assert payees(g, order("o2", "dan")) == ["zed"]
    with pytest.raises(UnknownReference) as info:
        g.chain_for(order("o3", "dan", "s404"))
    assert (info.value.record, info.value.field) == ("o3", "share")
    assert isinstance(info.value, KeyError) and "s404" in str(info.value)


def test_unbound_buyer_without_share_has_an_empty_chain() -> None:
    g = ShareGraph.from_events(LINE)
    for buyer in ("nobody", "amy"):
        chain = g.chain_for(order("o1", buyer))
        assert chain.source == "none" and chain.all() == [] and len(chain) == 0 and chain.first() is None
        assert g.chain_for(order("o1", buyer), self_purchase=True).all() == [Link(buyer, "o1")]


# ------------------------------------------------------------------ bindings


def test_binding_chain_links_name_the_bind_records() -> None:
    g = ShareGraph.from_events([bind("b1", "cat", "bob", hour=1), bind("b2", "bob", "amy", hour=2)])
    chain = g.chain_for(order("o1", "cat"))
    assert chain.source == "binding"
    assert chain.all() == [Link("bob", "b1"), Link("amy", "b2")]
    assert chain.first() == Link("amy", "b2") and len(chain) == 2
    chain = g.chain_for(order("o2", "bob"), self_purchase=True)
    assert chain.all() == [Link("bob", "o2"), Link("amy", "b2")] and len(chain) == 2


HISTORY = [bind("b1", "cat", "amy", day=1), bind("b2", "cat", "bob", day=5),
           bind("b3", "cat", "dan", day=20, registration=True)]
ORDERS = [order("o1", "cat", day=3), order("o2", "cat", day=7), order("o3", "cat", day=25)]


@pytest.mark.parametrize(
    ("mode", "chains", "statuses"),
    [
        ("first_wins", [["amy"], ["amy"], ["amy"]], ["accepted", "ignored", "ignored"]),
        ("overwrite", [["amy"], ["bob"], ["dan"]], ["accepted", "accepted", "accepted"]),
        ("registration_only", [[], [], ["dan"]], ["ignored", "ignored", "accepted"]),
        (BindingConfig(mode=BindingMode.EXPIRING, expire_days=3), [["amy"], ["bob"], []],
         ["accepted", "accepted", "accepted"]),
        (BindingConfig(mode=BindingMode.EXPIRING, expire_days=10), [["amy"], ["amy"], ["dan"]],
         ["accepted", "ignored", "accepted"]),
    ],
)
def test_binding_modes(mode: Any, chains: list[list[str]], statuses: list[str]) -> None:
    g = ShareGraph.from_events(HISTORY, binding=mode)
    assert [payees(g, o) for o in ORDERS] == chains
    history = g.binding_history("cat")
    assert [r.bind_id for r in history] == ["b1", "b2", "b3"]
    assert [r.status for r in history] == statuses
    assert all(r.reason for r in history if r.status == "ignored")
    assert [g.upline_at("cat", o.at) for o in ORDERS] == [c[0] if c else None for c in chains]
    assert g.upline_at("cat", T0 - timedelta(days=1)) is None
    assert g.binding_history("nobody") == [] and g.upline_at("nobody", T0) is None


def test_binding_history_records_when_a_binding_stopped() -> None:
    g = ShareGraph.from_events(HISTORY, binding="overwrite")
    b1, b2, b3 = g.binding_history("cat")
    assert b1.until == b2.at and b2.until == b3.at and b3.until is None
    assert b1.reason == "replaced" and (b1.user, b1.upline) == ("cat", "amy")
    g = ShareGraph.from_events(HISTORY, binding=BindingConfig(mode="expiring", expire_days=3))
    b1, b2, b3 = g.binding_history("cat")
    assert b1.until == b1.at + timedelta(days=3) and b3.until == b3.at + timedelta(days=3)


def test_expiring_binding_ends_exactly_at_the_deadline() -> None:
    g = ShareGraph.from_events([bind("b1", "cat", "amy", day=1)], binding=BindingConfig(mode="expiring",
                                                                                         expire_days=2))
    assert payees(g, order("o1", "cat", day=2, hour=23)) == ["amy"]
    assert payees(g, order("o2", "cat", day=3)) == []  # [start, end): gone at the deadline


def test_binding_config_checks_expire_days() -> None:
    for bad in ({"mode": "expiring"}, {"mode": "overwrite", "expire_days": 3},
                {"mode": "expiring", "expire_days": 0}, {"mode": "sticky"}):
        with pytest.raises(ValueError):
            BindingConfig(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["overwrite", BindingConfig(mode="expiring", expire_days=2)])
def test_later_rebind_never_changes_an_earlier_orders_chain(mode: Any) -> None:
    early = [bind("b1", "cat", "amy", day=1), bind("b2", "amy", "zed", day=1, hour=1)]
    o1 = order("o1", "cat", day=2)
    before = ShareGraph.from_events(early, binding=mode)
    after = ShareGraph.from_events([*early, bind("b3", "cat", "bob", day=4), bind("b4", "amy", "yan", day=4),
                                    bind("b5", "bob", "xia", day=5)], binding=mode)
    assert payees(before, o1) == payees(after, o1) == ["amy", "zed"]
    assert len(after.chain_for(o1)) == 2 and after.chain_for(o1).first() == Link("zed", "b2")
    assert payees(after, order("o9", "cat", day=5, hour=1)) == ["bob", "xia"]


def binding_modes() -> st.SearchStrategy[BindingConfig]:
    return st.one_of(
        st.sampled_from([BindingConfig(mode=m) for m in ("first_wins", "overwrite", "registration_only")]),
        st.integers(1, 3).map(lambda d: BindingConfig(mode="expiring", expire_days=d)),
    )


def histories(**kwargs: Any) -> st.SearchStrategy[Programme]:
    """Random programmes, half of them with binds interleaved with (and expiring between) orders."""
    return st.one_of(programmes(**kwargs), interleaved_programmes(**kwargs))


ALL_MODES = [BindingConfig(mode="first_wins"), BindingConfig(mode="overwrite"),
             BindingConfig(mode="registration_only"), BindingConfig(mode="expiring", expire_days=1),
             BindingConfig(mode="expiring", expire_days=3)]


@given(interleaved_programmes(max_people=5, max_shares=0, max_orders=12))
def test_chain_depends_only_on_events_up_to_the_order(prog: Programme) -> None:
    """A later bind or rebind never changes an earlier order's chain, in every binding mode."""
    for mode in ALL_MODES:
        full = ShareGraph.from_events(prog.events, binding=mode)
        for o in prog.orders:
            partial = ShareGraph.from_events([e for e in prog.events if e.at <= o.at], binding=mode)
            for self_purchase in (False, True):
                assert (full.chain_for(o, self_purchase=self_purchase).all()
                        == partial.chain_for(o, self_purchase=self_purchase).all()), (mode, o.id)


# ------------------------------------------------------------------ against the naive reference


def check_against_reference(graph: ShareGraph, ref: Reference, orders: list[OrderEvent]) -> None:
    for o in orders:
        for self_purchase in (False, True):
            expected = [Link(p, r) for p, r in ref.chain(o, self_purchase)]
            chain = graph.chain_for(o, self_purchase=self_purchase)
            assert chain.all() == expected, (o.id, self_purchase)
            assert len(chain) == len(expected)
            assert chain.first() == (expected[-1] if expected else None)
            for n in (1, 2, 3):
                assert chain.nearest(n) == expected[:n]
            people = [link.payee for link in expected]
            assert len(set(people)) == len(people)
            assert (o.buyer in people) == (self_purchase)
            if self_purchase:
                assert people[0] == o.buyer


@given(histories(max_people=6, max_shares=30), binding_modes())
def test_chains_match_the_naive_reference(prog: Programme, mode: BindingConfig) -> None:
    graph = ShareGraph.from_events(prog.events, binding=mode)
    ref = Reference.build(prog.events, mode.mode.value, mode.expire_days)
    check_against_reference(graph, ref, prog.orders)


@given(interleaved_programmes(max_people=5, max_shares=0, max_orders=20))
def test_binding_chains_match_the_naive_reference(prog: Programme) -> None:
    """No shares, binds spread between the orders: every chain is a binding chain that changes over time
    (this is what exercises the per-epoch memo behind ``first()`` and ``len()``), in every mode."""
    # every person asked at every moment something may have changed (binds, expiries), in time order
    moments = sorted({b.at + timedelta(days=d) + timedelta(microseconds=us) for b in prog.binds
                      for d in (0, 1, 3) for us in (-1, 0)})
    grid = [OrderEvent(id=f"q{i}_{p}", buyer=p, amount="1", currency="CNY", at=t)
            for i, t in enumerate(moments) for p in prog.people]
    for mode in ALL_MODES:
        graph = ShareGraph.from_events(prog.events, binding=mode)
        ref = Reference.build(prog.events, mode.mode.value, mode.expire_days)
        check_against_reference(graph, ref, prog.orders)
        check_against_reference(graph, ref, grid)


@given(programmes(max_people=4, max_shares=40, binds=False, max_orders=0), st.data())
def test_share_chains_with_many_repeats_match_the_reference(prog: Programme, data: st.DataObject) -> None:
    """Few people and many shares: nearly every path repeats someone (the slow, walked branch)."""
    graph = ShareGraph.from_events(prog.events)
    ref = Reference.build(prog.events)
    buyers = [*prog.people, "walkin"]
    orders = [order(f"x{i}", data.draw(st.sampled_from(buyers)), s.id) for i, s in enumerate(prog.shares)]
    check_against_reference(graph, ref, orders)


# ------------------------------------------------------------------ refusals


def test_bind_that_would_form_a_cycle_is_refused() -> None:
    for evs, record in (
        ([bind("b1", "amy", "bob", hour=1), bind("b2", "bob", "amy", hour=2)], "b2"),
        ([bind("b1", "amy", "bob", hour=1), bind("b2", "bob", "cat", hour=2), bind("b3", "cat", "amy", hour=3)],
         "b3"),
    ):
        for mode in ("first_wins", "overwrite"):
            with pytest.raises(CycleError) as info:
                ShareGraph.from_events(evs, binding=mode)
            assert (info.value.record, info.value.field) == (record, "upline")
            assert isinstance(info.value, GraphError) and isinstance(info.value, ValueError)


def test_bind_after_the_old_binding_expired_is_not_a_cycle() -> None:
    evs = [bind("b1", "amy", "bob", day=1), bind("b2", "bob", "amy", day=5)]
    g = ShareGraph.from_events(evs, binding=BindingConfig(mode="expiring", expire_days=2))
    assert payees(g, order("o1", "bob", day=6)) == ["amy"]
    assert payees(g, order("o2", "amy", day=1, hour=5)) == ["bob"]
    with pytest.raises(CycleError):
        ShareGraph.from_events(evs, binding=BindingConfig(mode="expiring", expire_days=10))


def test_self_bind_and_self_parent_share_are_self_referral() -> None:
    with pytest.raises(SelfReferralError) as info:
        ShareGraph.from_events([bind("b1", "amy", "amy")])
    assert (info.value.record, info.value.field) == ("b1", "upline")
    with pytest.raises(SelfReferralError) as info2:
        ShareGraph.from_events([share("s1", "amy", "s1")])
    assert (info2.value.record, info2.value.field) == ("s1", "parent")


def test_unknown_parent_share_is_refused() -> None:
    with pytest.raises(UnknownReference) as info:
        ShareGraph.from_events([share("s1", "amy"), share("s2", "bob", "s0")])
    assert (info.value.record, info.value.field) == ("s2", "parent") and isinstance(info.value, KeyError)


def test_reshare_before_its_parent_existed_is_refused() -> None:
    with pytest.raises(UnknownReference) as info:
        ShareGraph.from_events([share("s1", "amy", day=2), share("s2", "bob", "s1", day=1)])
    assert (info.value.record, info.value.field) == ("s2", "at")


@pytest.mark.parametrize("loop", [["s1", "s2"], ["s1", "s2", "s3"]])
def test_share_cycles_are_refused(loop: list[str]) -> None:
    evs = [share(s, f"u{i}", loop[i - 1]) for i, s in enumerate(loop)]  # s1 <- s_last, s2 <- s1, ...
    with pytest.raises(CycleError) as info:
        ShareGraph.from_events([share("s0", "root"), *evs])
    assert info.value.record in loop and info.value.field == "parent"


def test_duplicate_share_with_different_payload_is_refused() -> None:
    with pytest.raises(DuplicateEvent) as info:
        ShareGraph.from_events([share("s1", "amy"), share("s1", "bob")])
    assert info.value.record == "s1"
    assert ShareGraph.from_events([share("s1", "amy"), share("s1", "amy")]).n_shares == 1


def test_on_error_collects_every_bad_record_and_keeps_the_rest() -> None:
    evs = [*LINE,
           share("x1", "zed", "x2", hour=5), share("x2", "yan", "x1", hour=5),  # share cycle
           share("x3", "yan", "x3", hour=5),                                    # self parent
           share("x4", "yan", "nope", hour=5), share("x5", "wu", "x4", hour=6),  # unknown parent (+ child)
           bind("b1", "dan", "cat", hour=1), bind("b2", "cat", "dan", hour=2),  # cycle
           bind("b3", "eve", "eve", hour=3),                                    # self bind
           bind("b4", "fay", "dan", hour=4)]
    errors: list[CpsError] = []
    g = ShareGraph.from_events(evs, on_error=errors.append)
    kinds = Counter(type(e).__name__ for e in errors)
    assert kinds == Counter({"CycleError": 2, "SelfReferralError": 2, "UnknownReference": 1})
    assert {e.record for e in errors} >= {"x3", "x4", "b2", "b3"}
    assert g.n_shares == 3  # the good line survives; the bad shares (and x5 under x4) are left out
    assert payees(g, order("o1", "zoe", "s3")) == ["cat", "bob", "amy"]
    assert payees(g, order("o2", "fay")) == ["dan", "cat"]
    assert payees(g, order("o3", "cat")) == []  # b2 was refused


# ------------------------------------------------------------------ deep chains

DEPTH = 10_000


@contextmanager
def shallow_stack(extra: int = 60) -> Iterator[None]:
    """Run with the recursion limit just above the current depth: anything recursive fails."""
    old = sys.getrecursionlimit()
    depth = 0
    frame = sys._getframe()
    while frame is not None:
        depth += 1
        frame = frame.f_back  # type: ignore[assignment]
    sys.setrecursionlimit(depth + extra)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


@pytest.fixture(scope="module")
def deep_graph() -> tuple[ShareGraph, OrderEvent, OrderEvent]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    evs: list[Event] = [ShareEvent(id=f"s{i}", sharer=f"u{i}", parent=f"s{i - 1}" if i else None,
                                   at=t0 + timedelta(seconds=i)) for i in range(DEPTH)]
    evs += [BindEvent(id=f"b{i}", user=f"v{i}", upline=f"v{i - 1}", at=t0 + timedelta(seconds=i))
            for i in range(1, DEPTH + 1)]
    via_share = OrderEvent(id="o1", buyer="buyer", share=f"s{DEPTH - 1}", amount="100", currency="CNY",
                           at=t0 + timedelta(days=1))
    via_binding = OrderEvent(id="o2", buyer=f"v{DEPTH}", amount="100", currency="CNY", at=t0 + timedelta(days=1))
    return ShareGraph.from_events(evs), via_share, via_binding


def test_deep_share_chain_does_not_recurse(deep_graph: tuple[ShareGraph, OrderEvent, OrderEvent]) -> None:
    g, o, _ = deep_graph
    with shallow_stack():
        chain = g.chain_for(o)
        assert len(chain) == DEPTH
        assert chain.first() == Link("u0", "s0")
        assert chain.nearest(3) == [Link(f"u{DEPTH - 1 - k}", f"s{DEPTH - 1 - k}") for k in range(3)]
        sp = g.chain_for(o, self_purchase=True)
        assert len(sp) == DEPTH + 1 and sp.first() == Link("u0", "s0") and sp.nearest(1) == [Link("buyer", "o1")]
        mid = g.chain_for(OrderEvent(id="o3", buyer="u5000", share=f"s{DEPTH - 1}", amount="1", currency="CNY",
                                     at=o.at))
        assert len(mid) == DEPTH - 1 and mid.first() == Link("u0", "s0")
        assert len(mid.all()) == DEPTH - 1
    assert g.depth_histogram()[DEPTH - 1] == 1


def test_deep_binding_chain_does_not_recurse(deep_graph: tuple[ShareGraph, OrderEvent, OrderEvent]) -> None:
    g, _, o = deep_graph
    with shallow_stack():
        chain = g.chain_for(o)
        assert len(chain) == DEPTH
        assert chain.first() == Link("v0", "b1")
        assert chain.nearest(3) == [Link(f"v{DEPTH - 1 - k}", f"b{DEPTH - k}") for k in range(3)]
        assert len(g.chain_for(o, self_purchase=True)) == DEPTH + 1
        mid = g.chain_for(OrderEvent(id="o4", buyer="v5000", amount="1", currency="CNY", at=o.at))
        assert len(mid) == 5000 and mid.first() == Link("v0", "b1") and len(mid.all()) == 5000


# ------------------------------------------------------------------ networkx


@given(histories(max_people=6), binding_modes())
def test_to_networkx_edges_match_shares_and_accepted_binds(prog: Programme, mode: BindingConfig) -> None:
    g = ShareGraph.from_events(prog.events, binding=mode)
    ref = Reference.build(prog.events, mode.mode.value, mode.expire_days)
    nxg = g.to_networkx()
    by_id = {s.id: s for s in prog.shares}
    expected = Counter((by_id[s.parent].sharer, s.sharer, s.id, "share") for s in prog.shares if s.parent)
    for user, ivs in ref.intervals.items():
        for iv in ivs:
            expected[(iv.upline, user, iv.bind_id, "bind")] += 1
    got = Counter((u, v, k, d["kind"]) for u, v, k, d in nxg.edges(keys=True, data=True))
    assert got == expected
    for _, v, k, d in nxg.edges(keys=True, data=True):
        if d["kind"] == "bind":
            iv = next(i for i in ref.intervals[v] if i.bind_id == k)
            assert (d["start"], d["end"]) == (iv.start, iv.end)
    assert set(nxg.nodes) == set(g.people)
    tree = g.share_tree()
    assert set(tree.edges) == {(s.parent, s.id) for s in prog.shares if s.parent}
    assert all(tree.nodes[s.id]["sharer"] == s.sharer for s in prog.shares)


def test_micros_reference_agrees_with_the_library() -> None:
    from cps_engine.graph import to_micros

    assert to_micros(T0) == micros(T0) == 1772294400 * 10**6
