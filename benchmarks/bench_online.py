"""The online path: what a backend recording events one at a time pays, as ratios measured in one run.

1. **Deep chains** -- shares and orders interleaved (each new share re-shares the previous one, then
   an order is bought through it) on one 10,000-deep chain, against the same number of events on
   many depth-10 chains: per-order p50 of ``Ledger.record`` (one transaction each, SQLite in memory).
2. **Flat in history** -- one ``record`` of an order inside the caller's own transaction
   (``with engine.begin() as conn: Ledger(conn).record(order)``, a new ``Ledger`` object per
   transaction, as a web handler does) on PostgreSQL: p50 at a 100k-event history against a 1k-event
   history (``--quick``: 20k against 1k; SQLite with ``--backend sqlite``).
3. **Memory** -- peak RSS of a ledger process after recording ``--memory-events`` events (default
   1,000,000; ``--quick`` 100,000) of the synthetic programme, reported per user and per event.

    .venv/bin/python benchmarks/bench_online.py
    .venv/bin/python benchmarks/bench_online.py --quick --no-write
"""

from __future__ import annotations

import gc
import json
import os
import random
import resource
import secrets
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_parser, latency_summary, markdown_table, now_ns, write_results

from cps_engine.ledger import Ledger
from cps_engine.models import Event, OrderEvent, ShareEvent

POLICY = {"kind": "capped_multilevel", "name": "three-level capped 15%", "rates": ["10%", "5%", "2%"], "cap": "15%"}
TZ = timezone(timedelta(hours=8))
T0 = datetime(2026, 3, 1, tzinfo=TZ)
PG_URL = os.environ.get("CPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def interleaved(n_pairs: int, depth: int) -> list[Event]:
    """``n_pairs`` (share, order) pairs; shares form chains of ``depth`` (a new chain every ``depth``)."""
    out: list[Event] = []
    for i in range(n_pairs):
        parent = f"s{i - 1}" if i % depth else None
        at = T0 + timedelta(seconds=2 * i)
        out.append(ShareEvent(id=f"s{i}", sharer=f"u{i}", parent=parent, at=at))
        out.append(OrderEvent(id=f"o{i}", buyer=f"b{i}", share=f"s{i}", amount=Decimal("100.00"), currency="CNY",
                              at=at + timedelta(seconds=1)))
    return out


def order_latencies(events: list[Event]) -> dict[str, float]:
    led = Ledger.open(":memory:", POLICY, hold_days=7)
    samples: list[int] = []
    for ev in events:
        t = now_ns()
        led.record(ev)
        if ev.type == "order":
            samples.append(now_ns() - t)
    led.close()
    return latency_summary(samples[len(samples) // 10:])  # past the first tenth: the chain is deep


def deep_chains(pairs: int, rounds: int) -> dict[str, Any]:
    deep, shallow = interleaved(pairs, pairs), interleaved(pairs, 10)
    runs: dict[str, list[float]] = {"deep": [], "shallow": []}
    for _ in range(rounds):  # interleaved repeats: the machine's noise hits both alike
        for name, evs in (("deep", deep), ("shallow", shallow)):
            gc.collect()
            runs[name].append(order_latencies(evs)["p50_us"])
    d, s = sorted(runs["deep"])[rounds // 2], sorted(runs["shallow"])[rounds // 2]
    return {"pairs": pairs, "depth": pairs, "deep_p50_us": round(d, 1), "depth10_p50_us": round(s, 1),
            "ratio": round(d / s, 2), "rounds": rounds}


def history_events(n: int, seed: int) -> list[Event]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_ledger import programme

    evs = programme(max(50, int(n / 1.15)), seed)
    return evs[:n]


def flat_history(backend: str, small: int, large: int, samples: int, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": backend, "small": small, "large": large, "samples": samples}
    with tempfile.TemporaryDirectory() as tmp:
        if backend == "postgresql":
            admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
            name = f"cps_bench_{secrets.token_hex(3)}"
            with admin.connect() as c:
                c.exec_driver_sql(f"CREATE DATABASE {name}")
            engine = sa.create_engine(sa.make_url(PG_URL).set(database=name))
        else:
            from cps_engine.ledger import sqlite_engine

            engine, admin, name = sqlite_engine(Path(tmp) / "h.db", synchronous="NORMAL"), None, ""
        try:
            for size in (small, large):
                prefix = f"h{size}_"
                base = Ledger(engine, POLICY, hold_days=7, prefix=prefix)
                hist = history_events(size, seed)
                base.record_many(hist, batch_size=1000)
                shares = [e.id for e in hist if e.type == "share"]
                rnd = random.Random(seed)
                lat: list[int] = []
                last = max(e.at for e in hist)
                for i in range(samples):
                    o = OrderEvent(id=f"new{i}", buyer=f"n{i}", share=rnd.choice(shares), amount=Decimal("88.00"),
                                   currency="CNY", at=last + timedelta(seconds=i + 1))
                    t = now_ns()
                    with engine.begin() as conn:  # the backend's own transaction
                        Ledger(conn, prefix=prefix).record(o)
                    lat.append(now_ns() - t)
                out[f"p50_us_{size}"] = round(latency_summary(lat[samples // 10:])["p50_us"], 1)
            out["ratio"] = round(out[f"p50_us_{large}"] / out[f"p50_us_{small}"], 2)
        finally:
            engine.dispose()
            if admin is not None:
                with admin.connect() as c:
                    c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                admin.dispose()
    return out


def memory_child(path: str, events_file: str) -> None:
    """Record the events of ``events_file`` (JSON Lines, streamed) and print the peak RSS before and
    after: the growth is what the ledger process holds (graph, interned ids, caches)."""
    from cps_engine.models import parse_event

    before = _hwm_kib()
    people: set[str] = set()

    def stream() -> Any:
        with open(events_file, encoding="utf-8") as f:
            for line in f:
                ev = parse_event(json.loads(line))
                for who in (getattr(ev, "sharer", None), getattr(ev, "buyer", None)):
                    if who is not None:
                        people.add(who)
                yield ev

    led = Ledger.open(path, POLICY, hold_days=7, synchronous="OFF")
    summary = led.record_many(stream(), batch_size=2000)
    led.close()
    people_bytes = sum(sys.getsizeof(p) for p in people) + sys.getsizeof(people)  # the counter's own set
    peak = _hwm_kib()
    print(f"{summary.total} {len(people)} {before} {peak} {people_bytes}")


def _hwm_kib() -> int:
    """Peak resident set of this process in KiB (``VmHWM``; ``ru_maxrss`` would include the parent's
    peak, which Linux carries across ``exec``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # pragma: no cover - not Linux


def memory(n: int, seed: int) -> dict[str, Any]:
    from cps_engine.models import event_to_json

    with tempfile.TemporaryDirectory() as tmp:
        events_file = Path(tmp) / "events.jsonl"
        with events_file.open("w", encoding="utf-8") as f:
            for ev in history_events(n, seed):
                f.write(event_to_json(ev) + "\n")
        res = subprocess.run([sys.executable, __file__, "--memory-child", str(events_file), "--seed", str(seed),
                              "--db", str(Path(tmp) / "m.db")], capture_output=True, text=True, check=True)
    events, people, before, peak, counter = (int(x) for x in res.stdout.split()[-5:])
    grown = (peak - before) * 1024 - counter
    return {"events": events, "people": people, "baseline_rss_mib": round(before / 1024, 1),
            "peak_rss_mib": round(peak / 1024, 1),
            "rss_growth_mib": round(grown / 2**20, 1), "bytes_per_event": round(grown / events),
            "bytes_per_person": round(grown / people)}


def main() -> int:
    p = bench_parser(__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=None, help="share+order pairs on the deep chain (default 10000)")
    p.add_argument("--backend", default="postgresql", help="postgresql or sqlite, for the flat-history figure")
    p.add_argument("--memory-events", type=int, default=None)
    p.add_argument("--only-memory", action="store_true", help="measure the memory figure only")
    p.add_argument("--memory-child", default=None, help=argparse_hidden())
    p.add_argument("--db", default=None, help=argparse_hidden())
    args = p.parse_args()
    if args.memory_child:
        memory_child(args.db, args.memory_child)
        return 0
    if args.only_memory:
        mem = memory(args.memory_events or (100_000 if args.quick else 1_000_000), args.seed)
        print(mem)
        write_results("online_memory" + ("_quick" if args.quick else ""), {"memory": mem, "policy": POLICY},
                      args=args)
        return 0
    pairs = args.pairs or (2_000 if args.quick else 10_000)
    deep = deep_chains(pairs, 1 if args.quick else 3)
    print(markdown_table(["pairs", "deep p50 µs", "depth-10 p50 µs", "deep / depth-10"],
                         [[deep["pairs"], deep["deep_p50_us"], deep["depth10_p50_us"], deep["ratio"]]]))
    small, large = 1_000, (20_000 if args.quick else 100_000)
    try:
        flat = flat_history(args.backend, small, large, 200 if args.quick else 500, args.seed)
    except sa.exc.OperationalError as exc:
        flat = {"skipped": str(exc).splitlines()[0]}
    print(flat)
    mem = memory(args.memory_events or (100_000 if args.quick else 1_000_000), args.seed)
    print(mem)
    write_results("online" + ("_quick" if args.quick else ""),
                  {"deep_chain": deep, "flat_history": flat, "memory": mem, "policy": POLICY}, args=args)
    return 0


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    raise SystemExit(main())
