"""``compute_batch`` over a dask DataFrame: the graph broadcast once, partitions in the workers.

Imported only when a dask DataFrame is passed; dask (and ``distributed``) stay optional extras.
Each partition runs the single-process :func:`cps_engine.batch.compute_batch` on a pandas frame,
so the lines are the same rows as the single-process result, partition after partition.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd

    from cps_engine.graph import ShareGraph
    from cps_engine.policies import PolicyConfig

__all__ = ["compute_dask"]


def _partition(part: pd.DataFrame, graph: ShareGraph, policy: PolicyConfig, refunds: Any) -> pd.DataFrame:
    from cps_engine.batch import _frame, empty_lines
    from cps_engine.batch._kernels import run
    from cps_engine.batch._orders import order_columns

    if len(part) == 0:
        return empty_lines()
    mine = None
    if refunds is not None:  # only the refunds of this partition's orders
        ids = set(part["id"].tolist())
        mine = {k: v for k, v in refunds.items() if k in ids}
    cols = order_columns(part, mine or None)
    # text columns, as the meta (empty_lines) says: categories would differ between partitions
    return _frame(cols, run(cols, graph, policy), policy, graph, categorical=False)


def _broadcast(obj: Any, name: str) -> Any:
    """One copy of ``obj`` per worker: scattered to every worker when a distributed client is
    active, else a single keyed task that every partition depends on."""
    import dask

    client = None
    if dask.config.get("scheduler", None) in (None, "dask.distributed", "distributed"):
        try:
            from distributed import get_client

            client = get_client()
        except (ImportError, ValueError):
            client = None
    if client is not None:  # a list, so that a dict is scattered whole rather than per key
        return client.scatter([obj], broadcast=True, hash=False)[0]  # type: ignore[no-untyped-call]
    from dask.delayed import delayed

    return delayed(obj, name=f"{name}-{uuid.uuid4().hex}", pure=False)


def compute_dask(orders: dd.DataFrame, graph: ShareGraph, policy: PolicyConfig, *, refunds: Any = None) -> Any:
    """Lazy dask DataFrame of lines for a dask DataFrame of orders (see :func:`compute_batch`).

    ``refunds`` must be ``None`` (use a ``refunded_minor`` column) or a mapping ``order id ->
    refunded minor units``; the mapping is broadcast with the graph.
    """
    from collections.abc import Mapping

    from cps_engine.batch import empty_lines

    if refunds is not None and not isinstance(refunds, Mapping):
        raise TypeError("with a dask DataFrame, give refunds as a mapping order id -> minor units or as a "
                        "'refunded_minor' column")
    g = _broadcast(graph, "cps-graph")
    p = _broadcast(policy, "cps-policy")
    r = _broadcast(dict(refunds), "cps-refunds") if refunds else None
    return orders.map_partitions(_partition, g, p, r, meta=empty_lines(),  # type: ignore[no-untyped-call]
                                 align_dataframes=False)
