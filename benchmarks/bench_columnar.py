"""Columnar ids: compute_batch on integer codes vs plain numpy; string ids end to end vs DuckDB.

What it measures (1M users × 1M orders; ``--quick``: 100k × 100k):

* **Index build** — ``ShareGraph.from_columns`` from Arrow columns (share id, sharer, parent), on a
  random recursive tree, and on the same tree with its last 100k shares replaced by one 100k-deep
  chain (the cost a deep chain adds).
* **Integer codes** — orders whose ``share`` and ``buyer`` columns are the graph's own integer codes
  (``graph.encode``, done once, untimed) and whose ``id`` is a categorical (so ``order`` comes out as
  codes too): ``compute_batch`` against a plain numpy kernel written below on the same integer ids
  (first sharer, last sharer, three levels 10/5/2% capped at 15%, a linear 10% pool).  The numpy
  kernel walks each path up with ``parent[]`` (one vector step per level) and returns integer
  columns.  Its index (roots and depths by pointer jumping) is built once, untimed.  Reported:
  ``numpy time / batch time`` (1.0: as fast as the hand-written kernel; the target is >= 0.5).
* **String ids, end to end** — from the Arrow tables of shares and orders (string ids):
  ``ShareGraph.from_columns`` + ``compute_batch`` (orders/s including the index build; the target is
  >= 1M/s) against DuckDB doing the same job in SQL from the same Arrow tables (a recursive CTE of
  every share's ancestors, joined to the orders, the buyer left out, levels ranked), for first sharer
  and three levels.

Every comparison is cross-checked: the lines (order, payee, level, amount) must be identical, or the
benchmark exits 1.  Timings are best of ``--repeat`` (default 3; DuckDB once at full size).

Run: ``.venv/bin/python benchmarks/bench_columnar.py [--quick]``; needs the ``bench`` dependency group
(``pip install --group bench``: duckdb, polars); writes ``benchmarks/results/columnar.json``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import bench_parser, markdown_table, write_results

from cps_engine import ShareGraph
from cps_engine.batch import compute_batch
from cps_engine.money import format_rate

POLICIES: dict[str, dict[str, Any]] = {
    "first_sharer": {"kind": "first_sharer", "rate": "10%"},
    "last_sharer": {"kind": "last_sharer", "rate": "10%"},
    "three_level": {"kind": "capped_multilevel", "rates": ["10%", "5%", "2%"], "cap": "15%"},
    "linear_pool": {"kind": "linear", "rate": "10%"},
}
THREE = [Fraction(1, 10), Fraction(1, 20), Fraction(1, 50)]
CAP = Fraction(3, 20)


# ------------------------------------------------------------------------------------------ data
def make_data(n_users: int, n_orders: int, seed: int, deep: int = 0) -> dict[str, Any]:
    """Arrow tables: shares (one per user, a random recursive tree; the last ``deep`` shares one
    chain) and orders (95% through a random share, buyers random users)."""
    rng = np.random.default_rng(seed)
    idx = np.arange(n_users)
    parent = np.where((rng.random(n_users) < 0.99) & (idx > 0), (rng.random(n_users) * idx).astype(np.int64), -1)
    if deep:
        start = n_users - deep
        parent[start:] = np.arange(start - 1, n_users - 1)  # one chain hanging off share start-1
    w = len(str(max(n_users, n_orders)))
    share_ids = pa.array([f"s{i:0{w}d}" for i in range(n_users)], type=pa.large_string())
    users = pa.array([f"u{i:0{w}d}" for i in range(n_users)], type=pa.large_string())
    sharers = pc.take(users, pa.array(rng.permutation(n_users)))
    parents = pc.if_else(pa.array(parent < 0), pa.scalar(None, pa.large_string()),
                         pc.take(share_ids, pa.array(np.maximum(parent, 0))))
    has = rng.random(n_orders) < 0.95
    share_pos = rng.integers(0, n_users, n_orders)
    orders = pa.table({
        "id": pa.array([f"o{i:0{w}d}" for i in range(n_orders)], type=pa.large_string()),
        "buyer": pc.take(users, pa.array(rng.integers(0, n_users, n_orders))),
        "share": pc.if_else(pa.array(has), pc.take(share_ids, pa.array(share_pos)), pa.scalar(None, pa.large_string())),
        "amount_minor": pa.array(rng.integers(100, 100_000, n_orders), type=pa.int64()),
        "currency": pa.array(["CNY"] * n_orders, type=pa.large_string()),
    })
    shares = pa.table({"share_id": share_ids, "sharer": sharers, "parent": parents})
    return {"shares": shares, "orders": orders}


def build(shares: pa.Table) -> ShareGraph:
    return ShareGraph.from_columns(shares["share_id"], shares["sharer"], shares["parent"])


# ------------------------------------------------------------------------------------------ plain numpy
class Index:
    """The plain kernel's own index over integer ids: parent, sharer, depth (pointer jumping)."""

    def __init__(self, graph: ShareGraph) -> None:
        ix = graph.index
        self.parent = ix.np("parent").astype(np.int64)
        self.sharer = ix.np("sharer").astype(np.int64)
        n = len(self.parent)
        up = np.where(self.parent >= 0, self.parent, np.arange(n))
        depth = (self.parent >= 0).astype(np.int64)
        while True:
            nxt = up[up]
            if np.array_equal(nxt, up):
                break
            depth = depth + depth[up] * (up != np.arange(n))
            up = nxt
        self.root, self.depth = up, depth


def _walk(ix: Index, node: np.ndarray, buyer: np.ndarray, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the sharers on the path nearest first, the buyer left out, at most ``limit``:
    a (rows × width) grid of person ids (-1 past the end) and the count."""
    width = limit if limit is not None else int(ix.depth[node].max()) + 1 if len(node) else 0
    grid = np.full((len(node), width), -1, dtype=np.int64)
    found = np.zeros(len(node), dtype=np.int64)
    live = np.flatnonzero(node >= 0)
    cur = node[live]
    b = buyer[live]
    while live.size:
        who = ix.sharer[cur]
        take = who != b
        r = live[take]
        grid[r, found[r]] = who[take]
        found[r] += 1
        cur = ix.parent[cur]
        keep = (cur >= 0) & (found[live] < width)
        live, cur, b = live[keep], cur[keep], b[keep]
    return grid, found


def numpy_kernel(ix: Index, share: np.ndarray, buyer: np.ndarray, base: np.ndarray, kind: str
                 ) -> dict[str, np.ndarray]:
    """Lines (row position, payee id, level, amount, rate index) of one policy; rates in ``texts``."""
    rows = np.flatnonzero(share >= 0)
    nd, b = share[rows], buyer[rows]
    if kind == "last_sharer":
        near = ix.sharer[nd]
        up = ix.parent[nd]
        payee = np.where(near != b, near, np.where(up >= 0, ix.sharer[np.maximum(up, 0)], -1))
        keep = payee >= 0
        pos, payee = rows[keep], payee[keep]
        level = np.ones(len(pos), dtype=np.int64)
        amount, rate, texts = base[pos] // 10, np.zeros(len(pos), dtype=np.int64), ["0.1"]
    elif kind == "first_sharer":
        top = ix.sharer[ix.root[nd]]
        n_links = ix.depth[nd] + 1
        grid, found = _walk(ix, np.where(top == b, nd, -1), b, None)  # only when the buyer is the root sharer
        at_top = top == b
        last = np.where(found > 0, grid[np.arange(len(nd)), np.maximum(found - 1, 0)], -1)
        payee = np.where(at_top, last, top)
        level = np.where(at_top, found, n_links - _on_path(ix, nd, b))
        keep = payee >= 0
        pos, payee, level = rows[keep], payee[keep], level[keep]
        amount, rate, texts = base[pos] // 10, np.zeros(len(pos), dtype=np.int64), ["0.1"]
    elif kind == "three_level":
        grid, found = _walk(ix, nd, b, 3)
        texts, num, den, ridx = [], np.zeros((4, 3), np.int64), np.ones((4, 3), np.int64), np.zeros((4, 3), np.int64)
        for k in range(1, 4):
            total = sum(THREE[:k], Fraction(0))
            factor = CAP / total if total > CAP else Fraction(1)
            for j in range(k):
                r = THREE[j] * factor
                t = format_rate(r)
                if t not in texts:
                    texts.append(t)
                num[k, j], den[k, j], ridx[k, j] = r.numerator, r.denominator, texts.index(t)
        keep = (np.arange(3)[None, :] < found[:, None]).ravel()
        pos = np.repeat(rows, found)
        level = np.tile(np.arange(1, 4), len(rows))[keep]
        payee = grid.ravel()[keep]
        k = np.repeat(found, found)
        amount = base[pos] * num[k, level - 1] // den[k, level - 1]
        rate = ridx[k, level - 1]
    else:  # linear pool: pool = base // 10, split equally, leftover units to the farthest links
        grid, found = _walk(ix, nd, b, None)
        width = grid.shape[1]
        keep = (np.arange(width)[None, :] < found[:, None]).ravel()
        pos = np.repeat(rows, found)
        level = np.tile(np.arange(1, width + 1), len(rows))[keep]
        payee = grid.ravel()[keep]
        k = np.repeat(found, found)
        pool = base[pos] // 10
        amount = pool // k + (level > k - pool % k)  # the pool % k farthest links get one unit more
        kmax = int(found.max()) if len(found) else 0
        texts = [format_rate(Fraction(1, 10) / j) if j else "" for j in range(kmax + 1)]
        rate = k
    paid = amount != 0
    return {"pos": pos[paid], "payee": payee[paid], "level": level[paid], "amount": amount[paid],
            "rate": rate[paid], "texts": np.asarray(texts, dtype=object)}


def _on_path(ix: Index, node: np.ndarray, buyer: np.ndarray) -> np.ndarray:
    """Whether the buyer shared ``node`` or an ancestor (walking up)."""
    on = np.zeros(len(node), dtype=np.int64)
    live = np.flatnonzero(node >= 0)
    cur, b = node[live], buyer[live]
    while live.size:
        hit = ix.sharer[cur] == b
        on[live[hit]] = 1
        cur = ix.parent[cur]
        keep = (cur >= 0) & ~hit
        live, cur, b = live[keep], cur[keep], b[keep]
    return on


# ------------------------------------------------------------------------------------------ DuckDB
ANCESTORS = """
CREATE OR REPLACE TEMP TABLE anc AS
WITH RECURSIVE a(share_id, up, sharer, lvl) AS (
    SELECT share_id, parent, sharer, 0 FROM shares
    UNION ALL
    SELECT a.share_id, s.parent, s.sharer, a.lvl + 1 FROM a JOIN shares s ON s.share_id = a.up
)
SELECT share_id, sharer, lvl FROM a
"""
CHAINS = """
CREATE OR REPLACE TEMP TABLE chain AS
SELECT o.id, o.amount_minor, a.sharer AS payee,
       row_number() OVER (PARTITION BY o.id ORDER BY a.lvl) AS level,
       count(*) OVER (PARTITION BY o.id) AS links
FROM orders o JOIN anc a ON a.share_id = o.share
WHERE a.sharer <> o.buyer
"""
SQL = {
    "first_sharer": "SELECT id AS \"order\", payee, level, amount_minor // 10 AS amount FROM chain "
                    "WHERE level = links AND amount_minor // 10 <> 0",
    "three_level": """
SELECT id AS "order", payee, level, amount FROM (
  SELECT id, payee, level,
         CASE WHEN least(links, 3) < 3 THEN amount_minor * [10, 5, 2][level] // 100
              ELSE amount_minor * [30, 15, 6][level] // 340 END AS amount
  FROM chain WHERE level <= 3) WHERE amount <> 0""",
}


def duckdb_lines(data: dict[str, Any], kind: str) -> tuple[float, pd.DataFrame]:
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads TO 2")
    t0 = time.perf_counter()
    con.register("shares", data["shares"])
    con.register("orders", data["orders"])
    con.execute(ANCESTORS)
    con.execute(CHAINS)
    out = con.execute(SQL[kind] + ' ORDER BY "order", level').df()  # the result as a pandas frame
    seconds = time.perf_counter() - t0
    con.close()
    return seconds, out


# ------------------------------------------------------------------------------------------ helpers
def best_of(k: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(k):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def same_coded(lines: pd.DataFrame, np_lines: dict[str, np.ndarray], person: np.ndarray) -> bool:
    """compute_batch lines (order and payee categorical) == the numpy kernel's, column by column."""
    if len(lines) != len(np_lines["pos"]):
        return False
    order = lines["order"].cat.codes.to_numpy().astype(np.int64)
    payee = person[lines["payee"].cat.codes.to_numpy().astype(np.int64)]
    rate = np_lines["texts"][np_lines["rate"]]
    return bool((order == np_lines["pos"]).all() and (payee == np_lines["payee"]).all()
                and (lines["level"].to_numpy() == np_lines["level"]).all()
                and (lines["amount_minor"].to_numpy() == np_lines["amount"]).all()
                and (lines["rate"].astype(object).to_numpy() == rate).all())


def same_text(lines: pd.DataFrame, other: pd.DataFrame) -> bool:
    a = lines[["order", "payee", "level", "amount_minor"]].astype({"order": object, "payee": object})
    b = other.rename(columns={"amount": "amount_minor"}).astype({"order": object, "payee": object})
    return bool(len(a) == len(b) and all((a[c].to_numpy() == b[c].to_numpy()).all() for c in a.columns))


def main() -> None:
    parser = bench_parser("columnar ids: integer codes vs numpy, string ids vs DuckDB")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (best of)")
    args = parser.parse_args()
    n = 100_000 if args.quick else 1_000_000
    deep = 10_000 if args.quick else 100_000
    ok = True
    data = make_data(n, n, args.seed)
    deep_data = make_data(n, n, args.seed, deep=deep)

    t_build, graph = best_of(args.repeat, lambda: build(data["shares"]))
    t_deep, _ = best_of(args.repeat, lambda: build(deep_data["shares"]))
    print(f"from_columns ({n:,} shares, Arrow columns): {t_build:.3f} s; with a {deep:,}-deep chain "
          f"{t_deep:.3f} s ({(t_deep / t_build - 1) * 100:+.0f}%)", flush=True)

    # ---- integer codes vs plain numpy
    orders = data["orders"]
    share_code = graph.encode(orders["share"])
    buyer_code = graph.encode(orders["buyer"], kind="user")
    ids = orders["id"].to_pandas()
    coded = pd.DataFrame({"id": pd.Categorical.from_codes(np.arange(n), categories=pd.Index(ids)),
                          "buyer": buyer_code, "share": share_code,
                          "amount_minor": orders["amount_minor"].to_numpy(),
                          "currency": pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=["CNY"])})
    base = coded["amount_minor"].to_numpy()
    ix = Index(graph)
    person = np.asarray(graph.encode(compute_batch(coded.head(1), POLICIES["first_sharer"], graph=graph)["payee"]
                                     .cat.categories.to_numpy(dtype=object), kind="user"))
    rows: list[list[Any]] = []
    results: dict[str, Any] = {"users": n, "orders": n, "from_columns_s": round(t_build, 3),
                               "from_columns_deep_s": round(t_deep, 3), "deep_chain": deep, "coded": {},
                               "strings": {}}
    for name, cfg in POLICIES.items():
        t_batch, lines = best_of(args.repeat, lambda cfg=cfg: compute_batch(coded, cfg, graph=graph))
        t_np, np_lines = best_of(args.repeat, lambda name=name: numpy_kernel(ix, share_code, buyer_code, base, name))
        agree = same_coded(lines, np_lines, person)
        ok &= agree
        rows.append([name, f"{len(lines):,}", f"{n / t_batch:,.0f}", f"{n / t_np:,.0f}", f"{t_np / t_batch:.2f}",
                     "yes" if agree else "NO"])
        results["coded"][name] = {"lines": len(lines), "batch_s": round(t_batch, 3), "numpy_s": round(t_np, 3),
                                  "ratio": round(t_np / t_batch, 3), "same_lines": agree}
        print(f"coded {name}: batch {t_batch:.3f} s, numpy {t_np:.3f} s, ratio {t_np / t_batch:.2f}, same={agree}",
              flush=True)
    print()
    print(markdown_table(["policy", "lines", "batch orders/s", "numpy orders/s", "numpy/batch time", "same lines"],
                         rows))

    # ---- string ids end to end vs DuckDB
    rows = []
    for name in ("first_sharer", "three_level"):
        cfg = POLICIES[name]

        def end_to_end(cfg: dict[str, Any] = cfg) -> pd.DataFrame:
            g = build(data["shares"])
            return compute_batch(data["orders"], cfg, graph=g)

        t_e2e, lines = best_of(args.repeat, end_to_end)
        t_duck, duck = duckdb_lines(data, name)
        agree = same_text(lines, duck)
        ok &= agree
        rows.append([name, f"{len(lines):,}", f"{t_e2e:.2f}", f"{n / t_e2e:,.0f}", f"{t_duck:.2f}",
                     f"{n / t_duck:,.0f}", f"{t_duck / t_e2e:.1f}", "yes" if agree else "NO"])
        results["strings"][name] = {"lines": len(lines), "end_to_end_s": round(t_e2e, 3),
                                    "orders_per_s": round(n / t_e2e), "duckdb_s": round(t_duck, 3),
                                    "duckdb_over_batch": round(t_duck / t_e2e, 2), "same_lines": agree}
        print(f"strings {name}: end to end {t_e2e:.3f} s ({n / t_e2e:,.0f} orders/s), DuckDB {t_duck:.3f} s, "
              f"same={agree}", flush=True)
    print()
    print(markdown_table(["policy", "lines", "index + batch s", "orders/s", "DuckDB s", "DuckDB orders/s",
                          "DuckDB/batch time", "same lines"], rows))
    write_results("columnar" + ("_quick" if args.quick else ""), results, args=args)
    if not ok:
        print("cross-check FAILED: results differ", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
