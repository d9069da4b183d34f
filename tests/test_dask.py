"""``compute_batch`` over a dask DataFrame on a real ``distributed.LocalCluster`` (two worker
processes): the same rows as the single-process result."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from cps_engine import ShareGraph, load_events, load_policy
from cps_engine.batch import compute_batch, orders_frame
from cps_engine.cli import sample_path

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

POLICIES = {
    "first": {"kind": "first_sharer", "rate": "10%"},
    "three": {"kind": "capped_multilevel", "rates": ["10%", "5%", "2%"], "cap": "15%"},
    "cn": {"kind": "compliant", "profile": "cn", "rates": ["10%", "5%"], "cap": "15%",
           "self_purchase_rate": "3%"},
    "linear": {"kind": "linear", "rate": "9%", "max_depth": 3},
}


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                       memory_limit="1GiB", silence_logs=40)
    with distributed.Client(cluster, timeout="60s") as c:
        yield c
    cluster.close(timeout=30)


@pytest.fixture(scope="module")
def sample() -> tuple[list[Any], ShareGraph, pd.DataFrame]:
    events = load_events(sample_path())
    graph = ShareGraph.from_events(events)
    return events, graph, orders_frame(events)


def _plain(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in frame.reset_index(drop=True).astype(object).itertuples(index=False, name=None)]


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_cluster_gives_the_single_process_rows(client: Any, sample: tuple[list[Any], ShareGraph, pd.DataFrame],
                                               name: str) -> None:
    _, graph, orders = sample
    policy = load_policy(POLICIES[name])
    expected = compute_batch(orders, policy, graph=graph)
    lazy = compute_batch(dd.from_pandas(orders, npartitions=4), policy, graph=graph)
    got = lazy.compute()
    assert len(got) == len(expected) > 0
    assert _plain(got) == _plain(expected)
    workers = client.run(lambda: 1)
    assert len(workers) == 2


def test_refund_mapping_is_broadcast(client: Any, sample: tuple[list[Any], ShareGraph, pd.DataFrame]) -> None:
    _, graph, orders = sample
    refunds = {k: int(v) for k, v in zip(orders["id"], orders["refunded_minor"], strict=True) if v}
    bare = orders.drop(columns=["refunded_minor"])
    policy = load_policy(POLICIES["three"])
    expected = compute_batch(bare, policy=policy, graph=graph, refunds=refunds)
    got = compute_batch(dd.from_pandas(bare, npartitions=3), policy=policy, graph=graph, refunds=refunds).compute()
    assert _plain(got) == _plain(expected)
    assert _plain(expected) == _plain(compute_batch(orders, policy, graph=graph))


def test_without_a_client_the_local_scheduler_gives_the_same(sample: tuple[list[Any], ShareGraph, pd.DataFrame]
                                                            ) -> None:
    import dask

    _, graph, orders = sample
    policy = load_policy(POLICIES["first"])
    head = orders.head(500)
    with dask.config.set(scheduler="synchronous"):
        got = compute_batch(dd.from_pandas(head, npartitions=2), policy, graph=graph).compute(scheduler="synchronous")
    assert _plain(got) == _plain(compute_batch(head, policy, graph=graph))
