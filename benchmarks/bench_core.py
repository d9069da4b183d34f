"""Core benchmark: build the share graph for 1M users and compute 1M orders per policy.

What it measures (full mode; ``--quick`` shrinks users and orders to 100k for CI smoke runs):

1. **Graph build** — ``ShareGraph.from_columns`` over 1M shares, one per user: a random recursive
   tree (1% roots) with a long depth tail (3% of shares continue Zipf-popular "viral cascades", so a
   few cascades are thousands deep and their re-shares inherit that depth), plus three chains of
   10,000 consecutive re-shares.  Wall time (untraced), then memory per user with tracemalloc
   (retained and peak), split into the index arrays (``graph.index.nbytes()``) and the id
   dictionaries.  ``ShareGraph.from_events`` over 100k share events for comparison, and the build
   time / memory of the networkx graph the naive baseline uses.
2. **Per-order latency with the graph warm** — 1M real ``OrderEvent`` objects (built in chunks of
   50k; not timed), 5% of them through the deepest 1,000 shares of the three chains.  For
   first-sharer 10%, last-sharer 10% and three-level 10/5/2% capped at 15%:

   - *policy step*: ``graph.chain_for(order)`` + ``policy.awards(chain, OrderView(order, base))``
     (``base`` = ``policy.base.of(order)``, inside the timed region);
   - *compute*: ``compute(order, graph, policy)`` (awards -> exact money lines + provenance);
   - *throughput*: orders / wall time of that per-order ``compute`` loop over all orders (orders/s;
     the ~45 ns timer per order is included).

   Latencies are p50/p99/p99.9 over every order, and separately over the deep-chain orders.
3. **Naive baseline, same run** — a networkx ``DiGraph`` of the shares; per order, walk
   ``G.predecessors`` from the order's share to the root, dedupe people (nearest occurrence wins,
   the buyer is dropped) and pick the payees; timed on a sample (5k random orders plus 150 deep
   ones; 2k + 60 with ``--quick``).  Also an "early stop" walk for last-sharer/three-level, which
   stops after the levels it needs.  The naive payees are checked against the engine's awards on
   that sample.

Run: ``.venv/bin/python benchmarks/bench_core.py [--quick]``.  Writes
``benchmarks/results/core.json`` (``core_quick.json`` with ``--quick``) and prints markdown tables.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    bench_args,
    freeze_heap,
    latency_summary,
    loadavg,
    markdown_table,
    stopwatch,
    timer_overhead_ns,
    traced,
    write_results,
)

from cps_engine.engine import compute
from cps_engine.graph import ShareGraph
from cps_engine.models import OrderEvent, ShareEvent
from cps_engine.policies import CappedMultilevel, FirstSharer, LastSharer, PolicyConfig
from cps_engine.policies.base import OrderView

T0 = datetime(2026, 3, 1, tzinfo=timezone(timedelta(hours=8)))
now_ns = time.perf_counter_ns


# ============================================================================================ data
def make_forest(n_users: int, rng: np.random.Generator, *, n_chains: int = 3, chain_len: int = 10_000,
                root_frac: float = 0.01, cascade_frac: float = 0.03, n_cascades: int = 2_000,
                zipf_a: float = 1.6) -> tuple[np.ndarray, list[np.ndarray]]:
    """Parent index of every share (-1: root) and the share indices of each deep chain.

    Shares ``0..n_tree-1`` form a random recursive tree (parent = a uniformly random earlier share,
    ``root_frac`` roots); a ``cascade_frac`` of them instead continue one of ``n_cascades`` cascades
    picked Zipf(``zipf_a``), re-sharing the cascade's previous share.  The last
    ``n_chains * chain_len`` shares are chains of consecutive re-shares hanging off random tree shares.
    """
    n_tree = n_users - n_chains * chain_len
    if n_tree < 2:
        raise ValueError("too few users for the chains")
    i = np.arange(n_tree, dtype=np.int64)
    parent = np.floor(rng.random(n_tree) * i).astype(np.int64)
    kind = rng.random(n_tree)
    casc = np.flatnonzero(kind < cascade_frac)
    casc = casc[casc > 0]
    c = np.minimum(rng.zipf(zipf_a, casc.size) - 1, n_cascades - 1)
    order = np.lexsort((casc, c))
    cs, ci = c[order], casc[order]
    first = np.r_[True, cs[1:] != cs[:-1]]
    prev = np.r_[-1, ci[:-1]]
    parent[ci[~first]] = prev[~first]  # the first share of a cascade keeps its uniform parent
    parent[kind > 1 - root_frac] = -1
    parent[0] = -1
    parts, chains = [parent], []
    start = n_tree
    for _ in range(n_chains):
        idx = np.arange(start, start + chain_len, dtype=np.int64)
        up = idx - 1
        up[0] = rng.integers(0, n_tree)
        parts.append(up)
        chains.append(idx)
        start += chain_len
    return np.concatenate(parts), chains


def columns(parent: np.ndarray) -> tuple[list[str], list[str], list[str | None]]:
    """String columns for ``ShareGraph.from_columns``: share ``s<i>`` by user ``u<i>``."""
    n = len(parent)
    share_ids = [f"s{i}" for i in range(n)]
    sharers = [f"u{i}" for i in range(n)]
    parents = [None if p < 0 else share_ids[p] for p in parent.tolist()]
    return share_ids, sharers, parents


def order_plan(n_orders: int, n_users: int, chains: list[np.ndarray], rng: np.random.Generator,
               deep_frac: float, deep_tail: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Share index, deep flag, buyer code and amount (minor units) of every order.

    A ``deep_frac`` of orders go through the deepest ``deep_tail`` shares of the chains; the rest
    through uniformly random shares.  Half the buyers are users (who may sit on the path and are
    then left out of the chain), half walk-ins (buyer code < 0)."""
    deep_pool = np.concatenate([c[-deep_tail:] for c in chains])
    deep = rng.random(n_orders) < deep_frac
    share = rng.integers(0, n_users, n_orders)
    share[deep] = rng.choice(deep_pool, int(deep.sum()))
    buyer = np.where(rng.random(n_orders) < 0.5, rng.integers(0, n_users, n_orders), -1 - np.arange(n_orders))
    amount = rng.integers(100, 100_000, n_orders)
    return share, deep, buyer, amount


def make_orders(lo: int, hi: int, share_ids: list[str], plan: tuple[np.ndarray, ...]) -> list[OrderEvent]:
    """Real, validated ``OrderEvent`` objects for orders ``lo..hi-1`` (``model_construct`` would skip
    the validator that fills the private minor-unit amounts, leaving a base of 0)."""
    share, _, buyer, amount = plan
    out = []
    for k in range(lo, hi):
        b = int(buyer[k])
        minor = int(amount[k])
        shipping = Decimal(minor % 100).scaleb(-2) if k % 3 == 0 else None  # never above the amount
        out.append(OrderEvent(id=f"o{k}", buyer=f"u{b}" if b >= 0 else f"c{-b}", share=share_ids[int(share[k])],
                              amount=Decimal(minor).scaleb(-2), shipping=shipping, currency="CNY",
                              at=T0 + timedelta(seconds=k)))
    return out


# ============================================================================================ naive
def naive_path(G: nx.DiGraph[Any], share: str) -> list[str]:
    """Sharers from ``share`` up to its root (nearest first), one ``G.predecessors`` hop at a time."""
    out = []
    node: str | None = share
    nodes = G.nodes
    while node is not None:
        out.append(nodes[node]["sharer"])
        node = next(G.predecessors(node), None)
    return out


def naive_chain(G: nx.DiGraph[Any], share: str, buyer: str, limit: int | None = None) -> list[str]:
    """Payees nearest first: each person once (nearest occurrence), buyer left out.  ``limit``
    stops the walk once that many payees are found (the early-stop variant)."""
    seen = {buyer}
    chain: list[str] = []
    nodes = G.nodes
    node: str | None = share
    while node is not None:
        p = nodes[node]["sharer"]
        if p not in seen:
            seen.add(p)
            chain.append(p)
            if limit is not None and len(chain) >= limit:
                break
        node = next(G.predecessors(node), None)
    return chain


def naive_awards(kind: str, chain: list[str]) -> list[tuple[str, int, Fraction]]:
    """The payees and exact rates a naive implementation derives from the chain (nearest first)."""
    if not chain:
        return []
    if kind == "first_sharer":
        return [(chain[-1], len(chain), Fraction(1, 10))]
    if kind == "last_sharer":
        return [(chain[0], 1, Fraction(1, 10))]
    rates = [Fraction(1, 10), Fraction(1, 20), Fraction(1, 50)][:len(chain)]
    total = sum(rates, Fraction(0))
    cap = Fraction(3, 20)
    factor = cap / total if total > cap else Fraction(1)
    return [(chain[k], k + 1, r * factor) for k, r in enumerate(rates)]


NAIVE_LIMIT = {"first_sharer": None, "last_sharer": 1, "capped_multilevel": 3}


# ============================================================================================ timing
def time_policy_step(graph: ShareGraph, policy: PolicyConfig, orders: Sequence[OrderEvent],
                     out: np.ndarray, at: int) -> None:
    chain_for = graph.chain_for
    awards = policy.awards
    base_of = policy.base.of
    for k, o in enumerate(orders):
        t0 = now_ns()
        awards(chain_for(o), OrderView(o, base_of(o)))
        out[at + k] = now_ns() - t0


def time_compute(graph: ShareGraph, policy: PolicyConfig, orders: Sequence[OrderEvent],
                 out: np.ndarray, at: int) -> None:
    for k, o in enumerate(orders):
        t0 = now_ns()
        compute(o, policy, graph=graph)
        out[at + k] = now_ns() - t0


def time_naive(G: nx.DiGraph[Any], kind: str, items: Sequence[tuple[str, str]],
               limit: int | None) -> tuple[np.ndarray, list[list[tuple[str, int, Fraction]]]]:
    out = np.empty(len(items), dtype=np.int64)
    got = []
    for k, (share, buyer) in enumerate(items):
        t0 = now_ns()
        awards = naive_awards(kind, naive_chain(G, share, buyer, limit))
        out[k] = now_ns() - t0
        got.append(awards)
    return out, got


# ============================================================================================ main
def main(argv: Sequence[str] | None = None) -> int:
    args = bench_args(__doc__.splitlines()[0] if __doc__ else "core benchmark", argv)
    quick = args.quick
    n_users = 100_000 if quick else 1_000_000
    n_orders = 100_000 if quick else 1_000_000
    n_events = 20_000 if quick else 100_000
    chunk = 50_000
    naive_random, naive_deep = (2_000, 60) if quick else (5_000, 150)
    nx_mem_users = min(n_users, 200_000)
    deep_frac, deep_tail = 0.05, 1_000
    rng = np.random.default_rng(args.seed)
    started = now_ns()
    log = print

    load_start = loadavg()
    log(f"# cps_engine core benchmark ({'quick' if quick else 'full'}): {n_users:,} users, {n_orders:,} orders; "
        f"load average {load_start}")
    overhead = timer_overhead_ns()

    # ----------------------------------------------------------------- data
    with stopwatch() as sw_gen:
        parent, chains = make_forest(n_users, rng)
        share_ids, sharers, parents = columns(parent)
    log(f"generated data in {sw_gen.seconds:.1f} s")

    # ----------------------------------------------------------------- build (time, then memory)
    gc.collect()
    with stopwatch() as sw_build:
        graph = ShareGraph.from_columns(share_ids, sharers, parents)
    del graph
    gc.collect()
    with traced() as mem:
        graph = ShareGraph.from_columns(share_ids, sharers, parents)
    index_bytes = graph.index.nbytes()
    id_bytes = mem.current - index_bytes
    strings_bytes = sum(sys.getsizeof(s) for s in share_ids) + sum(sys.getsizeof(s) for s in sharers)
    depth = graph.index.np("depth")
    tree_depth = depth[: n_users - sum(len(c) for c in chains)]
    build = {
        "users": n_users, "shares": graph.n_shares, "people": graph.n_people,
        "seconds": round(sw_build.seconds, 3), "us_per_user": round(sw_build.ns / n_users / 1e3, 3),
        "retained_bytes_per_user": round(mem.current / n_users, 1),
        "index_bytes_per_user": round(index_bytes / n_users, 1),
        "id_dicts_bytes_per_user": round(id_bytes / n_users, 1),
        "peak_bytes_per_user": round(mem.peak / n_users, 1),
        "input_strings_bytes_per_user": round(strings_bytes / n_users, 1),
        "depth": {"max": int(depth.max()), "tree_p50": float(np.percentile(tree_depth, 50)),
                  "tree_p99": float(np.percentile(tree_depth, 99)), "tree_max": int(tree_depth.max()),
                  "chain_ends": [int(depth[c[-1]]) for c in chains], "roots": int((parent < 0).sum())},
    }
    log(f"from_columns: {build['seconds']} s, {build['retained_bytes_per_user']} B/user retained "
        f"(index {build['index_bytes_per_user']}, id dicts {build['id_dicts_bytes_per_user']}), "
        f"peak {build['peak_bytes_per_user']} B/user; depth {build['depth']}")

    # ----------------------------------------------------------------- from_events (comparison)
    ev_rng = np.random.default_rng(args.seed + 1)
    ev_parent, _ = make_forest(n_events, ev_rng, n_chains=1, chain_len=min(10_000, n_events // 10))
    share_events = [ShareEvent(id=f"e{i}", sharer=f"u{i}", parent=None if p < 0 else f"e{p}",
                               at=T0 + timedelta(seconds=i)) for i, p in enumerate(ev_parent.tolist())]
    gc.collect()
    with stopwatch() as sw_ev:
        ShareGraph.from_events(share_events)
    from_events = {"events": n_events, "seconds": round(sw_ev.seconds, 3),
                   "us_per_event": round(sw_ev.ns / n_events / 1e3, 3)}
    del share_events
    log(f"from_events: {from_events}")

    # ----------------------------------------------------------------- networkx graph (naive)
    def build_nx(n: int) -> nx.DiGraph[Any]:
        """Shares ``0..n-1`` (a prefix is closed under parents: a parent always has a smaller index,
        except the chains' first shares, which hang off the tree)."""
        G: nx.DiGraph[Any] = nx.DiGraph()
        G.add_nodes_from((share_ids[i], {"sharer": sharers[i]}) for i in range(n))
        G.add_edges_from((parents[i], share_ids[i]) for i in range(n) if parents[i] is not None)
        return G

    gc.collect()
    with stopwatch() as sw_nx:
        G = build_nx(n_users)
    with traced() as nx_mem:  # tracemalloc makes allocation slow: measure memory on a prefix
        G_prefix = build_nx(nx_mem_users)
    del G_prefix
    networkx_build = {"seconds": round(sw_nx.seconds, 3), "us_per_user": round(sw_nx.ns / n_users / 1e3, 3),
                      "retained_bytes_per_user": round(nx_mem.current / nx_mem_users, 1),
                      "memory_measured_on_users": nx_mem_users}
    log(f"networkx DiGraph: {networkx_build}")

    # ----------------------------------------------------------------- orders and policies
    plan = order_plan(n_orders, n_users, chains, rng, deep_frac, deep_tail)
    deep_mask = plan[1]
    policies: dict[str, PolicyConfig] = {
        "first_sharer": FirstSharer(rate="10%"),
        "last_sharer": LastSharer(rate="10%"),
        "capped_multilevel": CappedMultilevel(rates=["10%", "5%", "2%"], cap="15%"),
    }
    step_ns = {k: np.empty(n_orders, dtype=np.int64) for k in policies}
    compute_ns = {k: np.empty(n_orders, dtype=np.int64) for k in policies}
    compute_wall_ns = dict.fromkeys(policies, 0)

    # warm-up: code paths, caches and the graph's arrays
    warm = make_orders(0, min(20_000, n_orders), share_ids, plan)
    scratch = np.empty(len(warm), dtype=np.int64)
    for policy in policies.values():
        time_policy_step(graph, policy, warm, scratch, 0)
        time_compute(graph, policy, warm, scratch, 0)
    del warm
    freeze_heap()

    build_orders_ns = 0
    timed_wall, timed_cpu = 0, 0
    for lo in range(0, n_orders, chunk):
        hi = min(lo + chunk, n_orders)
        t0 = now_ns()
        orders = make_orders(lo, hi, share_ids, plan)
        build_orders_ns += now_ns() - t0
        freeze_heap()
        w0, c0 = now_ns(), time.process_time_ns()
        for name, policy in policies.items():
            time_policy_step(graph, policy, orders, step_ns[name], lo)
            t0 = now_ns()
            time_compute(graph, policy, orders, compute_ns[name], lo)
            compute_wall_ns[name] += now_ns() - t0
        timed_wall += now_ns() - w0
        timed_cpu += time.process_time_ns() - c0
        del orders
        gc.unfreeze()
        log(f"  orders {hi:,}/{n_orders:,} ({(now_ns() - started) / 1e9:.0f} s)")
    gc.collect()

    # ----------------------------------------------------------------- naive sample, checked
    share_idx = plan[0]
    deep_ids = np.flatnonzero(deep_mask)[:naive_deep]
    rand_ids = np.flatnonzero(~deep_mask)[:naive_random]
    sample_ids = np.concatenate([rand_ids, deep_ids])
    sample_orders = [o for lo in range(0, len(sample_ids), chunk)
                     for o in _orders_at(sample_ids[lo:lo + chunk], share_ids, plan)]
    items = [(o.share or "", o.buyer) for o in sample_orders]
    is_deep = np.r_[np.zeros(len(rand_ids), dtype=bool), np.ones(len(deep_ids), dtype=bool)]
    sample_depth = depth[share_idx[sample_ids]]
    freeze_heap()
    naive: dict[str, dict[str, Any]] = {}
    mismatches = 0
    for name, policy in policies.items():
        ours = []
        for o in sample_orders:
            mine = [(a.payee, a.level, a.rate) for a in policy.awards(graph.chain_for(o), OrderView(o, 0))]
            ours.append(sorted(mine, key=lambda t: t[1]))
        full, got = time_naive(G, name, items, None)
        mismatches += sum(a != b for a, b in zip(ours, got, strict=True))
        entry = {"walk_to_root": {"random": latency_summary(full[~is_deep]), "deep": latency_summary(full[is_deep])}}
        if NAIVE_LIMIT[name] is not None:
            early, got = time_naive(G, name, items, NAIVE_LIMIT[name])
            mismatches += sum(a != b for a, b in zip(ours, got, strict=True))
            entry["early_stop"] = {"random": latency_summary(early[~is_deep]), "deep": latency_summary(early[is_deep])}
        naive[name] = entry
        log(f"naive {name}: {entry['walk_to_root']['random']}")
    gc.unfreeze()

    # ----------------------------------------------------------------- report
    results: dict[str, Any] = {}
    for name in policies:
        s, c = step_ns[name], compute_ns[name]
        results[name] = {
            "policy_step": {"all": latency_summary(s), "random": latency_summary(s[~deep_mask]),
                            "deep": latency_summary(s[deep_mask])},
            "compute": {"all": latency_summary(c), "random": latency_summary(c[~deep_mask]),
                        "deep": latency_summary(c[deep_mask])},
            "throughput_orders_per_s": round(n_orders / (compute_wall_ns[name] / 1e9)),
            "naive": naive[name],
        }
    payload = {
        "quick": quick, "seed": args.seed,
        "config": {"users": n_users, "orders": n_orders, "deep_fraction": deep_frac, "deep_tail": deep_tail,
                   "chains": [len(c) for c in chains], "naive_sample": [len(rand_ids), len(deep_ids)],
                   "naive_sample_depth_mean": round(float(sample_depth[~is_deep].mean()), 1),
                   "gc": "enabled; gc.freeze() after setup"},
        "timer_overhead_ns": overhead, "loadavg_at_start": load_start,
        "cpu_share_timed": round(timed_cpu / timed_wall, 3),
        "build": build, "from_events": from_events, "networkx_build": networkx_build,
        "order_construction_us": round(build_orders_ns / n_orders / 1e3, 3),
        "policies": results, "naive_check_mismatches": mismatches,
        "runtime_seconds": round((now_ns() - started) / 1e9, 1),
    }
    path = write_results("core_quick" if quick else "core", payload, args=args)
    log("")
    log(report(payload))
    if path is not None:
        log(f"\nwrote {path}")
    if mismatches:
        log(f"ERROR: {mismatches} orders where the engine and the naive walk disagree")
        return 1
    return 0


def _orders_at(ids: np.ndarray, share_ids: list[str], plan: tuple[np.ndarray, ...]) -> list[OrderEvent]:
    return [make_orders(int(k), int(k) + 1, share_ids, plan)[0] for k in ids]


def report(p: dict[str, Any]) -> str:
    """Markdown tables of a result payload (as written to ``results/core.json``)."""
    b, nb = p["build"], p["networkx_build"]
    lines = [f"## Build ({b['users']:,} users)", "", markdown_table(
        ["what", "value"],
        [["from_columns wall time (s)", b["seconds"]],
         ["from_columns per user (µs)", b["us_per_user"]],
         ["retained memory per user (B)", b["retained_bytes_per_user"]],
         ["  of which index arrays (B)", b["index_bytes_per_user"]],
         ["  of which id dictionaries (B)", b["id_dicts_bytes_per_user"]],
         ["peak memory during build per user (B)", b["peak_bytes_per_user"]],
         ["caller's id strings, kept alive (B/user)", b["input_strings_bytes_per_user"]],
         [f"from_events, {p['from_events']['events']:,} events (s)", p["from_events"]["seconds"]],
         ["from_events per event (µs)", p["from_events"]["us_per_event"]],
         ["networkx DiGraph build (s)", nb["seconds"]],
         ["networkx DiGraph memory per user (B)", nb["retained_bytes_per_user"]]]), ""]
    rows = []
    for name, r in p["policies"].items():
        for what in ("policy_step", "compute"):
            for part in ("all", "deep"):
                s = r[what][part]
                rows.append([name, what.replace("_", " "), part, s["n"], s["p50_us"], s["p99_us"], s["p99.9_us"]])
    lines += ["## Per-order latency (µs, graph warm)", "",
              markdown_table(["policy", "measure", "orders", "n", "p50", "p99", "p99.9"], rows), ""]
    rows = []
    for name, r in p["policies"].items():
        for part in ("random", "deep"):
            ours = r["policy_step"][part]
            nv = r["naive"]["walk_to_root"][part]
            early = r["naive"].get("early_stop", {}).get(part)
            rows.append([name, part, ours["p50_us"], ours["p99_us"], nv["p50_us"], nv["p99_us"],
                         round(nv["p50_us"] / ours["p50_us"], 1), round(nv["p99_us"] / ours["p99_us"], 1),
                         early["p50_us"] if early else "-", early["p99_us"] if early else "-"])
    lines += ["## Policy step vs naive networkx walk (µs; x = naive / ours)", "",
              markdown_table(["policy", "orders", "ours p50", "ours p99", "naive p50", "naive p99",
                              "x p50", "x p99", "early-stop p50", "early-stop p99"], rows), ""]
    rows = [[name, r["throughput_orders_per_s"]] for name, r in p["policies"].items()]
    cfg = p["config"]
    lines += ["## Throughput of compute() over all orders (per-order path, one core)", "",
              markdown_table(["policy", "orders/s"], rows), "",
              f"naive sample: {cfg['naive_sample'][0]:,} random + {cfg['naive_sample'][1]:,} deep orders "
              f"(mean depth of the random ones {cfg['naive_sample_depth_mean']}); "
              f"naive/engine payee mismatches: {p['naive_check_mismatches']}",
              f"timer overhead {p['timer_overhead_ns']:.0f} ns per sample (included); CPU share of this process "
              f"in the timed loop {p['cpu_share_timed']:.0%}; load average at start {p['loadavg_at_start']}; "
              f"runtime {p['runtime_seconds']} s"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
