"""The appendable share graph: built one event at a time, in any arrival order, it answers every
chain question exactly as the graph built in bulk from all events does."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cps_engine import (
    BindEvent,
    BindingConfig,
    CpsError,
    CycleError,
    Event,
    OrderEvent,
    ShareEvent,
    ShareGraph,
    UnknownReference,
)
from cps_engine.graph.index import ShareIndex
from tests.strategies import T0, Programme, programmes

MODES = [BindingConfig(mode="first_wins"), BindingConfig(mode="overwrite"),
         BindingConfig(mode="registration_only"), BindingConfig(mode="expiring", expire_days=1)]


@st.composite
def cyclic_programmes(draw: st.DrawFn) -> Programme:
    """A programme whose binds may point anywhere (cycles possible), plus its shares and orders."""
    prog = draw(programmes(binds=False, refunds=False, max_shares=20, max_orders=12))
    people = prog.people
    binds = []
    for i in range(draw(st.integers(0, 12))):
        u, up = draw(st.sampled_from(people)), draw(st.sampled_from(people))
        if u == up:
            continue
        at = T0 + timedelta(seconds=draw(st.integers(0, 200_000)))
        binds.append(BindEvent(id=f"b{i}", user=u, upline=up, at=at, registration=draw(st.booleans())))
    prog.binds = binds
    prog.events = [*prog.events, *binds]
    return prog


def incremental(events: list[Event], binding: BindingConfig) -> ShareGraph:
    """What a backend does: add each share and bind as it arrives; a share whose parent has not
    arrived waits for it (the ledger parks it), a refused record is left out."""
    g = ShareGraph(binding)
    waiting: dict[str, list[ShareEvent]] = {}

    def place(ev: ShareEvent) -> None:
        try:
            g.add_share(ev)
        except UnknownReference as exc:
            if exc.field == "parent" and ev.parent is not None:
                waiting.setdefault(ev.parent, []).append(ev)
            return
        for child in waiting.pop(ev.id, []):
            place(child)

    for ev in events:
        if isinstance(ev, ShareEvent):
            place(ev)
        elif isinstance(ev, BindEvent):
            with contextlib.suppress(CpsError):
                g.add_bind(ev)
    return g


def answers(g: ShareGraph, orders: list[OrderEvent]) -> list[object]:
    out: list[object] = []
    for o in orders:
        for self_purchase in (False, True):
            c = g.chain_for(o, self_purchase=self_purchase)
            out.append((o.id, self_purchase, c.source, c.all(), c.first(), len(c), c.nearest(2),
                        c.buyer_is_participant(), [c.time_of(link) for link in c.all() if link.via != o.id]))
    return out


@settings(max_examples=150)
@given(prog=cyclic_programmes(), mode=st.sampled_from(MODES), data=st.data())
def test_any_arrival_order_gives_the_bulk_graphs_chains(prog: Programme, mode: BindingConfig,
                                                        data: st.DataObject) -> None:
    refused: list[CpsError] = []
    bulk = ShareGraph.from_events(prog.events, binding=mode, on_error=refused.append)
    arrival = data.draw(st.permutations([*prog.shares, *prog.binds]))
    inc = incremental(list(arrival), mode)
    assert answers(inc, prog.orders) == answers(bulk, prog.orders)
    assert set(inc.refused_binds) == {str(e.record) for e in refused}
    for person in prog.people:
        assert inc.binding_history(person) == bulk.binding_history(person)
    assert inc.n_shares == bulk.n_shares


@given(prog=programmes(max_shares=40, binds=False, max_orders=0))
def test_appending_shares_matches_the_bulk_index_column_by_column(prog: Programme) -> None:
    g = ShareGraph()
    for s in prog.shares:  # in time order: parents first
        g.add_share(s)
    bulk = ShareGraph.from_events(prog.shares)
    a, b = g.index, bulk.index
    for col in ("parent", "depth", "root", "second", "jump", "at_us"):
        assert list(getattr(a, col)) == list(getattr(b, col)), col
    assert bytes(a.repeat) == bytes(b.repeat)
    assert [g.people[p] for p in a.sharer] == [bulk.people[p] for p in b.sharer]
    # the lazily built batch columns follow the appends
    assert list(a.tin) == list(b.tin) and list(a.tout) == list(b.tout)


def test_level_ancestor_on_a_deep_chain_is_exact() -> None:
    idx = ShareIndex()
    for i in range(10_000):
        idx.append(f"s{i}", i % 7, i - 1)
    assert all(idx.ancestor_at(9_999, d) == d for d in range(0, 10_000, 37))
    assert idx.on_path(3, 9_999) and idx.is_ancestor(17, 4_000) and not idx.is_ancestor(4_000, 17)
    assert max(idx.jump[i] for i in range(10_000)) < 10_000


def test_share_refusals_change_nothing() -> None:
    g = ShareGraph()
    g.add_share(ShareEvent(id="s1", sharer="amy", at=T0 + timedelta(hours=2)))
    with pytest.raises(UnknownReference, match="before its parent") as e:
        g.add_share(ShareEvent(id="s2", sharer="bob", parent="s1", at=T0))
    assert e.value.field == "at"
    with pytest.raises(UnknownReference) as e:
        g.add_share(ShareEvent(id="s3", sharer="bob", parent="nope", at=T0))
    assert e.value.field == "parent"
    assert g.n_shares == 1 and g.version == 1


def test_late_bind_refuses_the_later_bind_it_turns_into_a_cycle() -> None:
    g = ShareGraph(BindingConfig(mode="overwrite"))
    g.add_bind(BindEvent(id="b2", user="amy", upline="bob", at=T0 + timedelta(hours=2)))
    g.add_bind(BindEvent(id="b1", user="bob", upline="amy", at=T0 + timedelta(hours=1)))  # late
    assert set(g.refused_binds) == {"b2"}
    assert g.upline_at("bob", T0 + timedelta(hours=3)) == "amy"
    assert g.upline_at("amy", T0 + timedelta(hours=3)) is None
    with pytest.raises(CycleError):
        g.add_bind(BindEvent(id="b2", user="amy", upline="bob", at=T0 + timedelta(hours=2)))
