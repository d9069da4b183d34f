"""compute_batch's argument order (and the deprecated old order), integer-coded and categorical ids."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cps_engine.batch import compute_batch
from cps_engine.graph import ShareGraph
from cps_engine.models import Event, load_events
from cps_engine.policies import load_policy

COLS = ["order", "payee", "level", "amount_minor", "currency", "rate", "base_minor"]
POLICY = {"kind": "capped_multilevel", "rates": ["10%", "5%"]}
DEPRECATED = r"compute_batch\(orders, graph, policy\) is deprecated: use compute_batch\(orders, policy, graph=graph\)"


def _events() -> list[Event]:
    return load_events([
        '{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00Z"}',
        '{"type":"share","id":"s2","sharer":"bob","parent":"s1","at":"2026-03-01T11:00:00Z"}',
        '{"type":"order","id":"o1","buyer":"cat","share":"s2","amount":"199.99","currency":"CNY",'
        '"at":"2026-03-01T12:00:00Z"}',
        '{"type":"order","id":"o2","buyer":"dan","share":"s1","amount":"50.00","currency":"CNY",'
        '"at":"2026-03-01T13:00:00Z"}'])


def _rows(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in frame[COLS].itertuples(index=False, name=None)]


# ---------------------------------------------------------------------------- argument order
def test_new_order_gives_no_warning() -> None:
    evs = _events()
    graph = ShareGraph.from_events(evs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        by_events = compute_batch(evs, POLICY)
        with_graph = compute_batch(evs, POLICY, graph=graph)
        keyword = compute_batch(evs, policy=POLICY, graph=graph)
    assert _rows(by_events) == _rows(with_graph) == _rows(keyword)
    assert _rows(by_events)[0] == ("o1", "bob", 1, 1999, "CNY", "0.1", 19999)


@pytest.mark.parametrize("with_graph", [True, False])
def test_old_order_warns_and_gives_the_same_lines(with_graph: bool) -> None:
    evs = _events()
    graph = ShareGraph.from_events(evs) if with_graph else None
    policy = load_policy(POLICY)
    new = compute_batch(evs, policy, graph=graph)
    with pytest.warns(DeprecationWarning, match=DEPRECATED) as record:
        old = compute_batch(evs, graph, policy)  # type: ignore[call-overload]
    assert len(record) == 1
    assert record[0].filename == __file__  # stacklevel: the warning points at the caller
    assert _rows(old) == _rows(new)
    assert old.attrs == new.attrs


def test_old_order_with_policy_keyword_warns() -> None:
    evs = _events()
    graph = ShareGraph.from_events(evs)
    with pytest.warns(DeprecationWarning, match=DEPRECATED):
        old = compute_batch(evs, graph, policy=POLICY)
    assert _rows(old) == _rows(compute_batch(evs, POLICY, graph=graph))


def test_frame_orders_old_and_new_order_agree() -> None:
    graph = ShareGraph.from_columns(["s1", "s2"], ["amy", "bob"], [None, "s1"])
    orders = pd.DataFrame({"id": ["o1", "o2"], "buyer": ["cat", "dan"], "share": ["s2", None],
                           "amount_minor": [10000, 5000], "currency": ["CNY", "CNY"]})
    new = compute_batch(orders, POLICY, graph=graph)
    with pytest.warns(DeprecationWarning, match=DEPRECATED):
        old = compute_batch(orders, graph, POLICY)  # type: ignore[call-overload]
    assert _rows(old) == _rows(new) == [("o1", "bob", 1, 1000, "CNY", "0.1", 10000),
                                        ("o1", "amy", 2, 500, "CNY", "0.05", 10000)]


@pytest.mark.parametrize("call", [
    lambda evs, g: compute_batch(evs, g),  # the graph where the policy goes
    lambda evs, g: compute_batch(evs, POLICY, g, POLICY),  # type: ignore[call-overload]
    lambda evs, g: compute_batch(evs, g, POLICY, graph=g),  # type: ignore[call-overload]
    lambda evs, g: compute_batch(evs, POLICY, POLICY),  # type: ignore[call-overload]  # not a graph
    lambda evs, g: compute_batch(evs),  # type: ignore[call-overload]
])
def test_misplaced_arguments_are_refused(call: Any) -> None:
    evs = _events()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(TypeError):
            call(evs, ShareGraph.from_events(evs))


def test_doctest_style_values_tolist() -> None:
    lines = compute_batch(_events(), POLICY)
    assert lines[["order", "payee", "level", "amount_minor"]].values.tolist() == [
        ["o1", "bob", 1, 1999], ["o1", "amy", 2, 999], ["o2", "amy", 1, 500]]
    assert np.asarray(lines["amount_minor"]).dtype == np.int64


# ---------------------------------------------------------------------------- graph.encode
def test_encode_gives_the_graphs_own_codes() -> None:
    import pyarrow as pa

    graph = ShareGraph.from_columns(["s1", "s2", "s3"], ["amy", "bob", "amy"], [None, "s1", "s2"])
    shares = ["s3", "s1", "zz", None, "s2"]
    expected = [2, 0, -1, -1, 1]
    assert graph.encode(shares).tolist() == expected
    assert graph.encode(pa.array(shares)).tolist() == expected
    assert graph.encode(pd.Series(shares, dtype="str")).tolist() == expected
    assert graph.encode(np.asarray(shares, dtype=object)).tolist() == expected
    people = graph.encode(["bob", "cat", "amy"], kind="user").tolist()
    assert people == [graph.person_id("bob"), -1, graph.person_id("amy")] == [1, -1, 0]
    with pytest.raises(ValueError, match="kind"):
        graph.encode(["s1"], kind="person")  # type: ignore[arg-type]


def test_encode_without_pyarrow_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    from cps_engine.graph import index

    graph = ShareGraph.from_columns(["s1", "s2"], ["amy", "bob"], [None, "s1"])
    monkeypatch.setattr(index, "_pyarrow", lambda: None)
    assert graph.encode(["s2", "x", None, "s1"]).tolist() == [1, -1, -1, 0]


def test_codes_stay_valid_after_appending() -> None:
    from cps_engine.models import parse_event

    graph = ShareGraph.from_columns(["s1", "s2"], ["amy", "bob"], [None, "s1"])
    before = graph.encode(["s2", "s1"]).tolist()
    graph.add_share(parse_event({"type": "share", "id": "s3", "sharer": "cat", "parent": "s2",
                                 "at": "2026-03-01T10:00:00Z"}))  # type: ignore[arg-type]
    assert graph.encode(["s2", "s1", "s3"]).tolist() == [*before, 2]
    assert graph.encode(["cat"], kind="user").tolist() == [2]


# ---------------------------------------------------------------------------- coded and categorical input
def _programme(seed: int, n_shares: int = 60, n_orders: int = 300, *, repeats: bool = True
               ) -> tuple[ShareGraph, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    people = [f"p{i}" for i in range(25 if repeats else n_shares)]
    share_ids = [f"s{i}" for i in range(n_shares)]
    parents: list[str | None] = [None if i == 0 or rng.random() < 0.2 else share_ids[int(rng.integers(0, i))]
                                 for i in range(n_shares)]
    sharers = [people[int(rng.integers(0, len(people)))] for _ in range(n_shares)] if repeats else \
        [people[i] for i in rng.permutation(n_shares)]  # with repeats, some orders are computed per order
    graph = ShareGraph.from_columns(share_ids, sharers, parents)
    buyers = [*people, "stranger1", "stranger2"]
    share_col = [share_ids[int(rng.integers(0, n_shares))] if rng.random() < 0.8 else None for _ in range(n_orders)]
    orders = pd.DataFrame({
        "id": [f"o{i}" for i in range(n_orders)],
        "buyer": [buyers[int(rng.integers(0, len(buyers)))] for _ in range(n_orders)],
        "share": share_col,
        "amount_minor": rng.integers(0, 100_000, n_orders),
        "currency": ["CNY"] * n_orders,
        "at": pd.Timestamp("2026-03-02", tz="UTC"),
    })
    return graph, orders


POLICIES = [
    {"kind": "first_sharer", "rate": "10%"},
    {"kind": "last_sharer", "rate": "10%"},
    {"kind": "capped_multilevel", "rates": ["10%", "5%", "2%"], "cap": "15%"},
    {"kind": "linear", "rate": "10%"},
]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: str(p["kind"]))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_integer_codes_give_the_same_lines_as_strings(policy: dict[str, Any], seed: int) -> None:
    graph, orders = _programme(seed)
    expected = _rows(compute_batch(orders, policy, graph=graph))
    coded = orders.assign(share=graph.encode(orders["share"].tolist()),
                          buyer=graph.encode(orders["buyer"].tolist(), kind="user"))
    assert coded["share"].dtype == np.int64
    known = coded["buyer"] >= 0  # coded buyers unknown to the graph: fine unless they are paid themselves
    assert _rows(compute_batch(coded[known], policy, graph=graph)) == \
        _rows(compute_batch(orders[known], policy, graph=graph))
    with_strangers = compute_batch(coded.assign(buyer=orders["buyer"]), policy, graph=graph)
    assert _rows(with_strangers) == expected
    assert len(expected) > 50


def test_coded_buyer_without_a_name_is_refused_when_paid_itself() -> None:
    graph, orders = _programme(4)
    policy = {"kind": "capped_multilevel", "rates": ["10%"], "self_purchase": True}
    coded = orders.assign(buyer=graph.encode(orders["buyer"].tolist(), kind="user"))
    from cps_engine.errors import InvalidEvent

    with pytest.raises(InvalidEvent, match="buyer"):
        compute_batch(coded, policy, graph=graph)


def test_bad_codes_are_refused() -> None:
    from cps_engine.errors import InvalidEvent, UnknownReference

    graph, orders = _programme(5)
    policy = POLICIES[0]
    with pytest.raises(UnknownReference, match="share code 60"):
        compute_batch(orders.assign(share=np.full(len(orders), graph.n_shares)), policy, graph=graph)
    with pytest.raises(InvalidEvent, match="code -2"):
        compute_batch(orders.assign(share=np.full(len(orders), -2)), policy, graph=graph)
    with pytest.raises(UnknownReference, match="buyer code"):
        compute_batch(orders.assign(buyer=np.full(len(orders), graph.n_people)), policy, graph=graph)


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: str(p["kind"]))
def test_categoricals_give_the_same_lines_and_resolve_only_their_categories(
        policy: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from cps_engine.batch import _kernels

    graph, orders = _programme(6, repeats=False)  # every order vectorised: no payee looked up by name
    expected = _rows(compute_batch(orders, policy, graph=graph))
    extra = ["unused-share", "s0"]  # an unused category, categories in another order than the graph's
    share_cats = sorted({s for s in orders["share"] if isinstance(s, str)} | set(extra), reverse=True)
    cat = orders.assign(share=pd.Categorical(orders["share"], categories=share_cats),
                        buyer=pd.Categorical(orders["buyer"]), id=pd.Categorical(orders["id"]))
    seen: list[int] = []
    original = _kernels._lookup

    def spy(ga: Any, which: str, values: Any) -> Any:
        if values.dictionary is None:
            seen.append(len(values))
        return original(ga, which, values)

    monkeypatch.setattr(_kernels, "_lookup", spy)
    got = compute_batch(cat, policy, graph=graph)
    assert _rows(got) == expected
    n_cats = max(len(share_cats), len(cat["buyer"].cat.categories))
    assert seen and max(seen) <= n_cats < len(orders)  # categories looked up, not rows
    seen.clear()
    again = compute_batch(cat, policy, graph=graph)  # a second run: lookups cached for this graph
    assert _rows(again) == expected and seen == []


def test_arrow_dictionary_columns_resolve_their_dictionary() -> None:
    import pyarrow as pa

    graph, orders = _programme(7)
    policy = POLICIES[2]
    table = pa.Table.from_pandas(orders, preserve_index=False)
    enc = table.set_column(table.schema.get_field_index("share"), "share", table["share"].dictionary_encode())
    enc = enc.set_column(enc.schema.get_field_index("buyer"), "buyer", enc["buyer"].dictionary_encode())
    assert _rows(compute_batch(enc, policy, graph=graph)) == _rows(compute_batch(orders, policy, graph=graph))


# ---------------------------------------------------------------------------- categorical output
def test_payee_is_categorical_sorted_and_reads_as_text() -> None:
    graph, orders = _programme(8)
    lines = compute_batch(orders, POLICIES[2], graph=graph)
    assert isinstance(lines["payee"].dtype, pd.CategoricalDtype)
    cats = list(lines["payee"].cat.categories)
    assert cats == sorted(graph.people)  # every person, sorted: sorting or grouping orders as text
    assert lines["payee"].tolist() == [str(p) for p in lines["payee"].astype(object)]
    assert all(isinstance(p, str) for p in lines[["order", "payee"]].values.ravel().tolist())
    by_text = lines.assign(payee=lines["payee"].astype(object)).sort_values(["payee", "order"], kind="stable")
    by_cat = lines.sort_values(["payee", "order"], kind="stable")
    assert by_cat.index.tolist() == by_text.index.tolist()
    assert lines["order"].dtype != "category"  # text ids in, text out


def test_categorical_ids_give_categorical_orders() -> None:
    graph, orders = _programme(9)
    lines = compute_batch(orders.assign(id=pd.Categorical(orders["id"])), POLICIES[0], graph=graph)
    assert isinstance(lines["order"].dtype, pd.CategoricalDtype)
    assert _rows(lines) == _rows(compute_batch(orders, POLICIES[0], graph=graph))


def test_polars_in_gives_the_same_lines() -> None:
    """polars in, pandas out (as tests/test_batch.py and the analyst tutorial expect today)."""
    pl = pytest.importorskip("polars")
    graph, orders = _programme(10)
    lines = compute_batch(pl.from_pandas(orders), POLICIES[1], graph=graph)
    assert isinstance(lines, pd.DataFrame)
    assert _rows(lines) == _rows(compute_batch(orders, POLICIES[1], graph=graph))
