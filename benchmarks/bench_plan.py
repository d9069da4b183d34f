"""Plan benchmark (issue 10): every built-in policy on the batch path, the graph build, and the CLI.

All figures are ratios measured in one run, as medians of interleaved repeats (the machine is
shared: absolute seconds drift with the load, ratios much less):

* **Pools vs capped multi-level** — ``compute_batch`` over the same string-id orders for
  three-level 10/5/2% capped at 15%, linear 9%, position-based 10% (40/20/40), time-decay 10%
  (7-day half-life) and first-sharer / three-level with designated distributors and payee rates
  (all of these fell back to one order at a time before the plan kernel).
* **from_columns** — ``ShareGraph.from_columns`` on the forest, and on the forest plus one chain
  of ``deep`` re-shares (the Euler tour no longer loops per level).
* **CLI** — ``cps-engine compute`` (in process) on a JSONL file of the same orders, next to
  ``polars.read_ndjson`` of the same file, and the old per-order body
  (``write_lines(compute_events(...))``) whose bytes it must reproduce (checked).

Run: ``.venv/bin/python benchmarks/bench_plan.py [--quick]``; writes ``benchmarks/results/plan.json``.
``--users N --orders N`` set the sizes, ``--policies a,b`` picks the policies (three-level is always
measured: it is the reference), ``--batch-only`` skips from_columns and the CLI.
"""

from __future__ import annotations

import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import bench_parser, markdown_table, write_results

from cps_engine import ShareGraph, compute_events, load_events, load_policy
from cps_engine.batch import compute_batch

T0 = datetime(2026, 3, 1, tzinfo=timezone(timedelta(hours=8)))
POLICIES: dict[str, dict[str, Any]] = {
    "three_level": {"kind": "capped_multilevel", "rates": ["10%", "5%", "2%"], "cap": "15%"},
    "first_sharer": {"kind": "first_sharer", "rate": "10%"},
    "linear": {"kind": "linear", "rate": "9%"},
    "position_based": {"kind": "position_based", "rate": "10%"},
    "time_decay": {"kind": "time_decay", "rate": "10%", "half_life_days": "7"},
    "three_level_distributors": {"kind": "capped_multilevel", "rates": ["10%", "5%", "2%"], "cap": "15%",
                                 "distributors": [], "payee_rates": {}},
    "first_sharer_fixed": {"kind": "first_sharer", "rate": "2.00 CNY/item"},
}


def make(n_users: int, n_orders: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    idx = np.arange(n_users)
    parent = np.where((rng.random(n_users) < 0.99) & (idx > 0), (rng.random(n_users) * idx).astype(np.int64), -1)
    w = len(str(max(n_users, n_orders)))
    sids = [f"s{i:0{w}d}" for i in range(n_users)]
    users = np.array([f"u{i:0{w}d}" for i in range(n_users)], dtype=object)[rng.permutation(n_users)].tolist()
    parents = [sids[p] if p >= 0 else None for p in parent.tolist()]
    share_t = np.sort(rng.integers(0, 20 * 86_400, n_users))
    import pandas as pd

    has = rng.random(n_orders) < 0.95
    shares = rng.integers(0, n_users, n_orders)
    at = T0 + pd.to_timedelta(20 * 86_400 + rng.integers(0, 86_400, n_orders), unit="s")
    orders = pd.DataFrame({
        "id": pd.array([f"o{i:0{w}d}" for i in range(n_orders)], dtype="str"),
        "buyer": pd.array(np.array(users, dtype=object)[rng.integers(0, n_users, n_orders)], dtype="str"),
        "share": pd.array(np.where(has, np.array(sids, dtype=object)[shares], None), dtype="str"),
        "amount_minor": rng.integers(100, 100_000, n_orders).astype(np.int64),
        "currency": pd.array(["CNY"] * n_orders, dtype="str"),
        "at": pd.Series(at).dt.tz_convert("UTC"),
    })
    return {"sids": sids, "users": users, "parents": parents, "times": [T0 + timedelta(seconds=int(s))
                                                                        for s in share_t.tolist()],
            "orders": orders}


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Median seconds of each function, run in turn ``rounds`` times."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def jsonl(data: dict[str, Any], n_orders: int, path: Path) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for sid, who, par, t in zip(data["sids"], data["users"], data["parents"], data["times"], strict=True):
            fh.write(json.dumps({"type": "share", "id": sid, "sharer": who, "parent": par, "at": t.isoformat()}) + "\n")
        o = data["orders"].head(n_orders)
        for oid, b, s, a, at in zip(o["id"], o["buyer"], o["share"], o["amount_minor"], o["at"], strict=True):
            rec = {"type": "order", "id": oid, "buyer": b, "share": None if not isinstance(s, str) else s,
                   "amount": f"{a // 100}.{a % 100:02d}", "currency": "CNY", "at": at.isoformat()}
            fh.write(json.dumps(rec) + "\n")


def main() -> None:
    parser = bench_parser(__doc__ or "")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, help="people / shares (default 1M, 100k with --quick)")
    parser.add_argument("--orders", type=int, help="orders (default 1M, 100k with --quick)")
    parser.add_argument("--policies", help=f"comma-separated subset of {', '.join(POLICIES)}")
    parser.add_argument("--batch-only", action="store_true", help="only compute_batch per policy")
    args = parser.parse_args()
    n_users = args.users or (100_000 if args.quick else 1_000_000)
    n_orders = args.orders or (100_000 if args.quick else 1_000_000)
    chosen = ["three_level", *[k for k in (args.policies.split(",") if args.policies else POLICIES)
                               if k != "three_level"]]
    unknown = [k for k in chosen if k not in POLICIES]
    if unknown:
        parser.error(f"unknown policies {unknown}; choose from {list(POLICIES)}")
    deep = 10_000 if args.quick else 100_000
    cli_orders = 20_000 if args.quick else 100_000
    data = make(n_users, n_orders, args.seed)
    out: dict[str, Any] = {"users": n_users, "orders": n_orders, "rounds": args.rounds}

    # ---- from_columns, forest vs forest + one deep chain
    fc: dict[str, float] = {}
    if not args.batch_only:
        fc = from_columns(data, deep, n_users, args.rounds, out)
    graph = ShareGraph.from_columns(data["sids"], data["users"], data["parents"], times=data["times"])
    pols = {k: load_policy({**POLICIES[k], **({"distributors": data["users"][::2],
                                               "payee_rates": {data["users"][1]: "12%"}}
                                              if k == "three_level_distributors" else {})}) for k in chosen}
    orders = data["orders"]
    compute_batch(orders.head(1000), graph=graph, policy=pols["three_level"])  # warm the graph arrays
    batch = interleaved({k: (lambda p=p: compute_batch(orders, graph=graph, policy=p)) for k, p in pols.items()},
                        args.rounds)
    per_order = {k: int(compute_batch(orders.head(20_000), graph=graph, policy=p).attrs["cps_engine"]["per_order"])
                 for k, p in pols.items()}
    out["batch_s"] = batch
    out["batch_vs_three_level"] = {k: v / batch["three_level"] for k, v in batch.items()}
    out["orders_per_s"] = {k: n_orders / v for k, v in batch.items()}
    out["per_order_in_20k"] = per_order
    lines = {k: len(compute_batch(orders.head(20_000), graph=graph, policy=p)) for k, p in pols.items()}
    out["lines_per_order"] = {k: v / min(20_000, n_orders) for k, v in lines.items()}
    rows = [[k, f"{batch[k]:.3f}", f"{out['batch_vs_three_level'][k]:.2f}", f"{out['orders_per_s'][k]:,.0f}",
             f"{out['lines_per_order'][k]:.2f}", per_order[k]] for k in batch]
    print(markdown_table(["policy", "median s", "× three-level", "orders/s", "lines/order", "per-order of 20k"],
                         rows))
    if not args.batch_only:
        print(markdown_table(["from_columns", "median s"], [[k, f"{v:.3f}"] for k, v in fc.items()]))
        print(f"deep chain overhead beyond its own shares: {out['deep_chain_overhead']:+.1%}")
        cli_body(data, pols["three_level"], n_users, cli_orders, args.rounds, out)
        print(markdown_table(["CLI body", "median s"], [[k, f"{v:.3f}"] for k, v in out["cli_s"].items()]))
    write_results("plan_quick" if args.quick else "plan", out, args=args)


def from_columns(data: dict[str, Any], deep: int, n_users: int, rounds: int, out: dict[str, Any]
                 ) -> dict[str, float]:
    """ShareGraph.from_columns on the forest, and on the forest plus one chain of ``deep`` re-shares."""
    d_sids = data["sids"] + [f"d{i}" for i in range(deep)]
    d_users = data["users"] + [f"v{i}" for i in range(deep)]
    d_par = data["parents"] + [data["sids"][5]] + [f"d{i}" for i in range(deep - 1)]
    fc = interleaved({"forest": lambda: ShareGraph.from_columns(data["sids"], data["users"], data["parents"]),
                      "forest+deep": lambda: ShareGraph.from_columns(d_sids, d_users, d_par)}, rounds)
    out["from_columns_s"] = fc
    out["deep_chain_overhead"] = fc["forest+deep"] / fc["forest"] - 1 - deep / n_users
    return fc


def cli_body(data: dict[str, Any], pol: Any, n_users: int, cli_orders: int, rounds: int, out: dict[str, Any]) -> None:
    """The CLI body: batch path vs per order vs polars.read_ndjson."""
    from cps_engine.cli import write_batch_lines, write_lines

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        jsonl({k: v[: n_users // 10] if isinstance(v, list) else v for k, v in data.items()}, cli_orders, path)

        def new() -> str:
            evs = load_events(path)
            buf = io.StringIO()
            write_batch_lines(compute_batch(evs, graph=None, policy=pol, provenance=True), pol, "csv", buf)
            return buf.getvalue()

        def old() -> str:
            buf = io.StringIO()
            write_lines(compute_events(load_events(path), pol), "csv", buf)
            return buf.getvalue()

        assert new() == old(), "the batch CLI path must write the per-order bytes"
        fns: dict[str, Callable[[], Any]] = {"cli_batch": new, "cli_per_order": old}
        try:
            import polars as pl

            fns["polars_read_ndjson"] = lambda: pl.read_ndjson(path, infer_schema_length=None)
        except ImportError:  # pragma: no cover
            pass
        t0 = time.perf_counter()
        load_events(path)
        load_s = time.perf_counter() - t0
        cli = interleaved(fns, max(1, rounds - 1))
        cli["load_events_once"] = load_s
        out["cli_s"] = cli
        out["cli_bytes"] = path.stat().st_size
        if "polars_read_ndjson" in cli:
            out["cli_vs_polars"] = cli["cli_batch"] / cli["polars_read_ndjson"]
        out["cli_batch_vs_per_order"] = cli["cli_batch"] / cli["cli_per_order"]


if __name__ == "__main__":
    main()
