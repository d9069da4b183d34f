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
