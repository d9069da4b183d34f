"""ShareGraph.from_columns from Arrow, pandas, polars, numpy and lists: the same graph, the same refusals."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cps_engine.errors import CycleError, DuplicateEvent, SelfReferralError, UnknownReference
from cps_engine.graph import ShareGraph
from cps_engine.graph.index import ShareIndex

SHARES = ["s1", "s2", "s3", "s4", "s5"]
SHARERS = ["amy", "bob", "amy", "cat", "bob"]
PARENTS: list[str | None] = ["s2", None, "s1", "s1", "s4"]  # s1's parent comes after it


def _state(g: ShareGraph) -> dict[str, Any]:
    idx = g.index
    return {"people": g.people, "shares": idx.share_ids.names,
            **{c: idx.np(c).tolist() for c in ("parent", "sharer", "depth", "root", "second", "jump", "tin", "tout",
                                              "person_ptr", "person_shares")},
            "repeat": bytes(idx.repeat), "participant": g.participant_since().tolist()}


def _forms(values: list[Any]) -> list[Any]:
    pl = pytest.importorskip("polars")
    return [values, pa.array(values), pa.chunked_array([values[:2], values[2:]]), pd.Series(values, dtype="str"),
            pd.Series(values, dtype=object), np.asarray(values, dtype=object), pl.Series(values),
            pa.array(values).dictionary_encode()]


def test_every_column_form_builds_the_same_graph() -> None:
    expected = _state(ShareGraph.from_columns(SHARES, SHARERS, PARENTS))
    assert expected["depth"] == [1, 0, 2, 2, 3] and expected["repeat"] == b"\x00\x00\x01\x00\x01"
    for s, u, p in zip(_forms(SHARES), _forms(SHARERS), _forms(PARENTS), strict=True):
        assert _state(ShareGraph.from_columns(s, u, p)) == expected, type(s)


def test_bulk_equals_appending_one_by_one() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    parent = np.where(rng.random(n) < 0.9, (rng.random(n) * np.arange(n)).astype(np.int64), -1)
    parent[:400] = np.arange(-1, 399)  # a 400-deep chain
    ids = [f"s{i}" for i in range(n)]
    sharers = [f"u{int(x)}" for x in rng.integers(0, 800, n)]
    parents = [ids[p] if p >= 0 else None for p in parent.tolist()]
    bulk = ShareGraph.from_columns(pa.array(ids), pa.array(sharers), pa.array(parents))
    one = ShareIndex()
    people: dict[str, int] = {}
    for i in range(n):
        one.append(ids[i], people.setdefault(sharers[i], len(people)), int(parent[i]))
    idx = bulk.index
    assert bulk.people == list(people)
    for col in ("parent", "sharer", "depth", "root", "second", "jump", "tin", "tout", "person_shares"):
        assert idx.np(col).tolist() == one.np(col).tolist(), col
    assert bytes(idx.repeat) == bytes(one.repeat)
    assert int(idx.np("depth").max()) >= 399


@pytest.mark.parametrize("form", [list, pa.array])
def test_refusals_are_the_same_from_arrow(form: Any) -> None:
    with pytest.raises(DuplicateEvent) as dup:
        ShareGraph.from_columns(form(["a", "b", "b", "a"]), form(["x"] * 4), form([None] * 4))
    assert dup.value.record == "a"  # the earliest id that repeats
    with pytest.raises(UnknownReference, match="'zz'") as unknown:
        ShareGraph.from_columns(form(["a", "b"]), form(["x", "y"]), form([None, "zz"]))
    assert unknown.value.record == "b"
    with pytest.raises(SelfReferralError):
        ShareGraph.from_columns(form(["a", "b"]), form(["x", "y"]), form([None, "b"]))
    with pytest.raises(CycleError):
        ShareGraph.from_columns(form(["a", "b", "c", "d"]), form(["x", "y", "z", "w"]), form([None, "c", "b", "c"]))


def test_a_graph_from_columns_answers_lookups_by_name() -> None:
    g = ShareGraph.from_columns(pa.array(SHARES), pa.array(SHARERS), pa.array(PARENTS))
    assert g.person_id("cat") == 2 and g.person_id("nobody") == -1
    assert g.is_participant("bob") and not g.is_participant("nobody")
    assert g.index.share_ids.get("s4") == 3
