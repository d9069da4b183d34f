"""Batch benchmark: ``compute_batch`` over 1M orders on a 1M-user share graph, next to a plain numpy
implementation of the same policies and the per-order engine.

What it measures (full mode; ``--quick`` uses 100k users and orders):

* **Data** — 1M users, one share each (ids ``u0000001``/``s0000001``), a random recursive forest
  (1% roots, each re-share picks a uniformly random earlier share, so depth grows like ln n);
  1M orders as a pandas DataFrame with pandas' ``str`` columns (``id``, ``buyer``, ``share``,
  ``currency``) and ``amount_minor`` int64; 95% through a random share, 5% without a share; buyers
  are random users, so some buy through their own cascade (the buyer is skipped on the path).
* **Index build** — ``ShareGraph.from_columns`` (the compact index, string ids interned) and the
  batch engine's derived arrays (``graph_arrays``: numpy views, the "is the buyer on this path"
  search keys), each timed once.
* **Batch** — ``compute_batch(orders, graph, policy)`` for first-sharer 10%, last-sharer 10% and
  three-level 10/5/2% capped at 15%, best of 3 with the index warm, and the share of that time
  spent resolving string ids (Arrow hash lookups of shares and buyers).  Every order takes the
  vectorised path here (no repeated person on a path, no bindings).
* **Plain numpy** — the same policies written directly in this file with numpy and pyarrow: ids
  resolved with the same Arrow lookup, roots and depths by pointer jumping, the buyer found on
  the path by walking up, amounts ``(base * p) // q``, and the same output columns.  Its own index
  build (id resolution + pointer jumping) is timed separately.  Its lines are checked against
  ``compute_batch``'s, so both compute the same thing.
* **Per order** — ``compute(order, graph, policy)`` over a sample of real ``OrderEvent`` objects
  (built untimed), as orders/s.

Reported: orders/s for each path, with and without the index build, and the ratio
``numpy time / batch time`` (1.0 = as fast as hand-written numpy).

Run: ``.venv/bin/python benchmarks/bench_batch.py [--quick]``; writes ``benchmarks/results/batch.json``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import bench_args, markdown_table, stopwatch, write_results

from cps_engine import OrderEvent, ShareGraph, compute, load_policy
from cps_engine.batch import compute_batch, graph_arrays
from cps_engine.batch._kernels import _lookup
from cps_engine.batch._strings import Strings

POLICIES = {
    "first_sharer": {"kind": "first_sharer", "rate": "10%"},
    "last_sharer": {"kind": "last_sharer", "rate": "10%"},
    "three_level": {"kind": "capped_multilevel", "rates": ["10%", "5%", "2%"], "cap": "15%"},
}
T0 = datetime(2026, 3, 1, tzinfo=timezone(timedelta(hours=8)))


# ------------------------------------------------------------------------------------------ data
def make_data(n_users: int, n_orders: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    idx = np.arange(n_users)
    parent = np.where((rng.random(n_users) < 0.99) & (idx > 0), (rng.random(n_users) * idx).astype(np.int64), -1)
    width = len(str(max(n_users, n_orders)))
    share_ids = np.array([f"s{i:0{width}d}" for i in range(n_users)], dtype=object)
    users = np.array([f"u{i:0{width}d}" for i in range(n_users)], dtype=object)
    sharers = users[rng.permutation(n_users)]
    parents = np.where(parent >= 0, share_ids[np.maximum(parent, 0)], None)
    has = rng.random(n_orders) < 0.95
    orders = pd.DataFrame({
        "id": pd.array([f"o{i:0{width}d}" for i in range(n_orders)], dtype="str"),
        "buyer": pd.array(users[rng.integers(0, n_users, n_orders)], dtype="str"),
        "share": pd.array(np.where(has, share_ids[rng.integers(0, n_users, n_orders)], None), dtype="str"),
        "amount_minor": rng.integers(100, 100_000, n_orders).astype(np.int64),
        "currency": pd.array(["CNY"] * n_orders, dtype="str"),
    })
    return {"share_ids": share_ids.tolist(), "sharers": sharers.tolist(), "parents": parents.tolist(),
            "orders": orders}


# ------------------------------------------------------------------------------------------ plain numpy
class NumpyIndex:
    """What a hand-written numpy implementation needs: int ids, parent, root, depth, sharer."""

    def __init__(self, share_ids: list[str], sharers: list[str], parents: list[str | None]) -> None:
        sid = pa.array(share_ids, type=pa.large_string())
        self.sid = sid
        enc = pa.array(sharers, type=pa.large_string()).dictionary_encode()
        self.people = enc.dictionary
        self.sharer = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        par = pc.index_in(pa.array(parents, type=pa.large_string()), value_set=sid).fill_null(-1)
        self.parent = np.asarray(par.to_numpy(zero_copy_only=False), dtype=np.int64)
        n = len(self.parent)
        up = np.where(self.parent >= 0, self.parent, np.arange(n))
        depth = (self.parent >= 0).astype(np.int64)
        while True:  # pointer jumping: root and depth in O(log depth) vector steps
            nxt = up[up]
            if np.array_equal(nxt, up):
                break
            depth = depth + depth[up] * (up != np.arange(n))
            up = nxt
        self.root, self.depth = up, depth


def numpy_policy(ix: NumpyIndex, orders: pd.DataFrame, kind: str) -> pd.DataFrame:
    """One policy over the orders, in plain numpy (same output as ``compute_batch``)."""
    node = np.asarray(pc.index_in(pa.array(orders["share"]), value_set=ix.sid).fill_null(-1)
                      .to_numpy(zero_copy_only=False), dtype=np.int64)
    buyer = np.asarray(pc.index_in(pa.array(orders["buyer"]), value_set=ix.people).fill_null(-1)
                       .to_numpy(zero_copy_only=False), dtype=np.int64)
    base = orders["amount_minor"].to_numpy()
    rows = np.flatnonzero(node >= 0)
    nd, b = node[rows], buyer[rows]
    if kind == "first_sharer":
        # walk up to the root once, noting whether the buyer is on the path and its child on the path
        cur, prev = nd.copy(), np.full(len(nd), -1)
        on = np.zeros(len(nd), dtype=bool)
        below_buyer = np.full(len(nd), -1)  # the share just below the buyer's share on the path
        while True:
            live = cur >= 0
            if not live.any():
                break
            hit = live & (ix.sharer[np.maximum(cur, 0)] == b)
            on |= hit
            below_buyer = np.where(hit, prev, below_buyer)
            prev = np.where(live, cur, prev)
            cur = np.where(live, ix.parent[np.maximum(cur, 0)], -1)
        root = ix.root[nd]
        top = ix.sharer[root]
        # the buyer is the root sharer: chain[0] is the sharer of the share at depth 1
        second = np.where((top == b) & (below_buyer >= 0), below_buyer, -1)
        payee = np.where(top == b, np.where(second >= 0, ix.sharer[np.maximum(second, 0)], -1), top)
        level = ix.depth[nd] + 1 - on
        keep = payee >= 0
        pos, payee, level, pq = rows[keep], payee[keep], level[keep], (np.ones(keep.sum(), dtype=np.int64), 10)
        rate = np.zeros(len(pos), dtype=np.int64)
        texts = ["0.1"]
        amount = base[pos] * pq[0] // pq[1]
    elif kind == "last_sharer":
        near = ix.sharer[nd]
        up = ix.parent[nd]
        payee = np.where(near != b, near, np.where(up >= 0, ix.sharer[np.maximum(up, 0)], -1))
        keep = payee >= 0
        pos, payee = rows[keep], payee[keep]
        level = np.ones(len(pos), dtype=np.int64)
        rate = np.zeros(len(pos), dtype=np.int64)
        texts = ["0.1"]
        amount = base[pos] // 10
    else:
        rates = [Fraction(1, 10), Fraction(1, 20), Fraction(1, 50)]
        cap = Fraction(3, 20)
        grid = np.full((len(nd), 3), -1, dtype=np.int64)
        found = np.zeros(len(nd), dtype=np.int64)
        cur = nd.copy()
        for _ in range(4):  # three levels, plus one step when the buyer is skipped
            live = (cur >= 0) & (found < 3)
            if not live.any():
                break
            who = ix.sharer[np.maximum(cur, 0)]
            take = live & (who != b)
            r = np.flatnonzero(take)
            grid[r, found[r]] = who[r]
            found += take
            cur = np.where(live, ix.parent[np.maximum(cur, 0)], -1)
        table, texts = [], []
        for k in range(4):  # scaled rates when k levels are paid
            total = sum(rates[:k], Fraction(0))
            factor = cap / total if total > cap else Fraction(1)
            row = []
            for j in range(3):
                r = rates[j] * factor if j < k else Fraction(0)
                txt = f"{r.numerator}/{r.denominator}" if r.denominator not in (1, 2, 4, 5, 10, 20, 25, 50, 100) \
                    else str(Decimal(r.numerator) / Decimal(r.denominator))
                if txt not in texts:
                    texts.append(txt)
                row.append((r.numerator, r.denominator, texts.index(txt)))
            table.append(row)
        keep = (np.arange(3)[None, :] < found[:, None]).ravel()
        pos = np.repeat(rows, found)
        level = np.tile(np.arange(1, 4), len(rows))[keep]
        payee = grid.ravel()[keep]
        kk = np.repeat(found, found)
        num = np.array([[c[0] for c in r] for r in table])[kk, level - 1]
        den = np.array([[c[1] for c in r] for r in table])[kk, level - 1]
        rate = np.array([[c[2] for c in r] for r in table])[kk, level - 1]
        amount = base[pos] * num // den
    paid = amount != 0
    pos, payee, level, amount, rate = pos[paid], payee[paid], level[paid], amount[paid], rate[paid]
    ids = pa.array(orders["id"])
    cur = pa.array(orders["currency"])
    text = pd.StringDtype("pyarrow", na_value=np.nan)
    return pd.DataFrame({
        "order": pd.Series(pc.take(ids, pa.array(pos)), dtype=text),
        "payee": pd.Series(pc.take(ix.people, pa.array(payee)), dtype=text),
        "level": level, "amount_minor": amount,
        "currency": pd.Series(pc.take(cur, pa.array(pos)), dtype=text),
        "rate": pd.Series(pc.take(pa.array(texts, type=pa.large_string()), pa.array(rate)), dtype=text),
        "base_minor": base[pos],
    })


# ------------------------------------------------------------------------------------------ helpers
def best_of(k: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(k):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def same_lines(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    cols = ["order", "payee", "level", "amount_minor", "currency", "rate", "base_minor"]
    return bool(len(a) == len(b) and all((a[c].to_numpy() == b[c].to_numpy()).all() for c in cols))


def per_order_rate(graph: ShareGraph, orders: pd.DataFrame, policy: Any, sample: int) -> float:
    rows = orders.head(sample)
    evs = [OrderEvent(id=r.id, buyer=r.buyer, share=None if pd.isna(r.share) else r.share,
                      amount=Decimal(int(r.amount_minor)).scaleb(-2), currency="CNY", at=T0)
           for r in rows.itertuples(index=False)]
    t0 = time.perf_counter()
    for ev in evs:
        compute(ev, policy, graph=graph)
    return len(evs) / (time.perf_counter() - t0)


def main() -> None:
    args = bench_args("batch engine vs plain numpy vs per-order")
    n = 100_000 if args.quick else 1_000_000
    sample = 5_000 if args.quick else 20_000
    data = make_data(n, n, args.seed)
    orders: pd.DataFrame = data["orders"]

    with stopwatch() as sw_graph:
        graph = ShareGraph.from_columns(data["share_ids"], data["sharers"], data["parents"])
    with stopwatch() as sw_arrays:
        ga = graph_arrays(graph)
    with stopwatch() as sw_np_index:
        ix = NumpyIndex(data["share_ids"], data["sharers"], data["parents"])
    share_col, buyer_col = Strings.of_arrow(pa.array(orders["share"])), Strings.of_arrow(pa.array(orders["buyer"]))
    t_ids, _ = best_of(3, lambda: (_lookup(ga, "share", share_col), _lookup(ga, "people", buyer_col)))

    rows: list[list[Any]] = []
    results: dict[str, Any] = {}
    for name, cfg in POLICIES.items():
        policy = load_policy(cfg)
        t_batch, lines = best_of(3, lambda policy=policy: compute_batch(orders, policy=policy, graph=graph))
        assert lines.attrs["cps_engine"]["per_order"] == 0, lines.attrs
        t_np, np_lines = best_of(3, lambda name=name: numpy_policy(ix, orders, name))
        agree = same_lines(lines, np_lines)
        po = per_order_rate(graph, orders, policy, sample)
        batch_rate = n / t_batch
        e2e_batch = sw_graph.seconds + sw_arrays.seconds + t_batch
        e2e_np = sw_np_index.seconds + t_np
        results[name] = {
            "orders": n, "lines": len(lines), "batch_s": round(t_batch, 4), "batch_orders_per_s": round(batch_rate),
            "batch_incl_index_orders_per_s": round(n / e2e_batch),
            "id_resolution_s": round(t_ids, 4),
            "numpy_s": round(t_np, 4), "numpy_orders_per_s": round(n / t_np),
            "numpy_incl_index_orders_per_s": round(n / e2e_np),
            "ratio_numpy_over_batch": round(t_np / t_batch, 3),
            "ratio_incl_index": round(e2e_np / e2e_batch, 3),
            "per_order_orders_per_s": round(po), "speedup_vs_per_order": round(batch_rate / po, 1),
            "numpy_lines_identical": agree,
        }
        rows.append([name, len(lines), round(batch_rate), round(n / e2e_batch), round(n / t_np), round(n / e2e_np),
                     round(t_np / t_batch, 2), round(po), agree])
        print(f"{name}: batch {batch_rate:,.0f} orders/s, numpy {n / t_np:,.0f}, per-order {po:,.0f}, "
              f"identical={agree}", flush=True)
    print()
    print(f"{n:,} users/shares, {n:,} orders.  Index build: ShareGraph.from_columns {sw_graph.seconds:.2f} s, "
          f"batch arrays {sw_arrays.seconds:.2f} s; plain-numpy index {sw_np_index.seconds:.2f} s.  "
          f"Resolving share and buyer ids (Arrow) {t_ids:.2f} s of each batch run.")
    print(markdown_table(["policy", "lines", "batch /s", "batch incl. index /s", "numpy /s",
                          "numpy incl. index /s", "numpy/batch time", "per-order /s", "same lines"], rows))
    write_results("batch" + ("_quick" if args.quick else ""), {
        "users": n, "orders": n, "graph_build_s": round(sw_graph.seconds, 3),
        "batch_arrays_s": round(sw_arrays.seconds, 3), "numpy_index_s": round(sw_np_index.seconds, 3),
        "policies": results}, args=args)


if __name__ == "__main__":
    main()
