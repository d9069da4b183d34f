"""Ledger throughput: events recorded per second into SQLite and PostgreSQL (MariaDB with
``--backends``), one event per transaction and batches of 1,000, against a plain ``INSERT`` of the
same rows in the same run -- the ratio is what the ledger's guarantees cost (idempotency check,
chain computation, rate snapshot, double-entry legs, hash chain, write lock).

The programme: 5,000 shares in cascades, 100,000 orders through them (CNY, three-level capped
policy) and refunds on 10% of the orders (half partial, half full), delivered in time order.
``--quick`` uses 2,000 orders.  ``sqlite`` is the default ``Ledger.open`` set-up (WAL,
``synchronous=FULL``: every commit is fsynced); ``sqlite-normal`` uses ``synchronous=NORMAL`` (still
atomic and safe across process crashes; the last commits may be lost on power failure).
Single-event mode records the first ``--single-events`` events (one transaction each, the way a
backend records inside its order transaction); batch mode records all.

    .venv/bin/python benchmarks/bench_ledger.py                  # SQLite + PostgreSQL, full size
    .venv/bin/python benchmarks/bench_ledger.py --quick --no-write
    .venv/bin/python benchmarks/bench_ledger.py --backends sqlite,postgresql,mariadb

PostgreSQL and MariaDB URLs come from CPS_TEST_POSTGRES_URL / CPS_TEST_MARIADB_URL (the test
defaults); a throwaway database ``cps_bench_<random>`` is created and dropped.  An unreachable
server is reported and skipped.  Cross-check: every log must verify, and every backend must end with
the same chain head and balances as the others in each mode (same events, same order).
"""

from __future__ import annotations

import os
import random
import secrets
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_parser, machine_info, markdown_table, stopwatch, write_results

from cps_engine.ledger import Ledger, sqlite_engine
from cps_engine.models import Event, OrderEvent, RefundEvent, ShareEvent, event_to_json

POLICY = {"kind": "capped_multilevel", "name": "three-level capped 15%", "rates": ["10%", "5%", "2%"], "cap": "15%"}
TZ = timezone(timedelta(hours=8))
URLS = {"postgresql": os.environ.get("CPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
        "mariadb": os.environ.get("CPS_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")}


def programme(n_orders: int, seed: int) -> list[Event]:
    rnd = random.Random(seed)
    t0 = datetime(2026, 3, 1, tzinfo=TZ)
    n_shares = max(50, n_orders // 20)
    users = [f"u{i:06d}" for i in range(n_shares * 2)]
    out: list[Event] = []
    for i in range(n_shares):
        parent = f"s{rnd.randrange(i)}" if i and rnd.random() < 0.8 else None
        out.append(ShareEvent(id=f"s{i}", sharer=rnd.choice(users), parent=parent, at=t0 + timedelta(seconds=i)))
    start = t0 + timedelta(days=1)
    span = 30 * 86_400
    orders = []
    for i in range(n_orders):
        at = start + timedelta(seconds=span * i // n_orders)
        cents = rnd.randint(990, 60_000)
        orders.append(OrderEvent(id=f"o{i}", buyer=rnd.choice(users), share=f"s{rnd.randrange(n_shares)}",
                                 amount=Decimal(cents).scaleb(-2), currency="CNY", at=at))
    refunds = []
    for o in rnd.sample(orders, n_orders // 10):
        part = rnd.random() < 0.5
        amount = Decimal(rnd.randint(1, o.amount_minor)).scaleb(-2) if part else None
        refunds.append(RefundEvent(id=f"r{o.id}", order=o.id, amount=amount,
                                   at=o.at + timedelta(seconds=rnd.randint(60, 5 * 86_400))))
    out += sorted([*orders, *refunds], key=lambda e: (e.at, e.id))
    return out


def make_engine(kind: str, tmp: Path, name: str) -> tuple[sa.Engine, Any]:
    """An engine on a fresh database; returns (engine, cleanup)."""
    if kind.startswith("sqlite"):
        path = tmp / f"{name}.db"
        return sqlite_engine(path, synchronous="NORMAL" if kind == "sqlite-normal" else "FULL"), lambda: None
    admin = sa.create_engine(URLS[kind], isolation_level="AUTOCOMMIT")
    db = f"cps_bench_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {db}")
    kw = {"isolation_level": "READ COMMITTED"} if kind == "mariadb" else {}
    engine = sa.create_engine(sa.make_url(URLS[kind]).set(database=db), **kw)

    def drop() -> None:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {db}" + (" WITH (FORCE)" if kind == "postgresql" else ""))
        admin.dispose()

    return engine, drop


def plain_rows(events: list[Event]) -> list[dict[str, Any]]:
    return [{"kind": e.type, "event_id": e.id, "payload": event_to_json(e)} for e in events]


def plain_insert(engine: sa.Engine, rows: list[dict[str, Any]], batch: int) -> float:
    """Seconds to INSERT the rows into a bare table, ``batch`` rows per transaction."""
    md = sa.MetaData()
    t = sa.Table(f"plain_{secrets.token_hex(3)}", md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("kind", sa.String(16)), sa.Column("event_id", sa.String(256)), sa.Column("payload", sa.Text))
    md.create_all(engine)
    stmt = t.insert()
    with stopwatch() as sw:
        for i in range(0, len(rows), batch):
            with engine.begin() as conn:
                if batch == 1:
                    conn.execute(stmt, rows[i])
                else:
                    conn.execute(stmt, rows[i:i + batch])
    return sw.seconds


def run(kind: str, events: list[Event], single_n: int, tmp: Path) -> list[dict[str, Any]]:
    results = []
    rows = plain_rows(events)
    for mode, n, batch in (("single", single_n, 1), ("batch 1000", len(events), 1000)):
        engine, drop = make_engine(kind, tmp, f"{kind}_{batch}")
        try:
            led = Ledger(engine, POLICY, hold_days=7)
            evs = events[:n]
            with stopwatch() as sw:
                if batch == 1:
                    for e in evs:
                        led.record(e)
                else:
                    led.record_many(evs, batch_size=batch)
            v = led.verify()
            if not v.ok:
                raise SystemExit(f"{kind} {mode}: the log does not verify: {v.problems[:3]}")
            plain = plain_insert(engine, rows[:n], batch)
            end = max(e.at for e in evs) + timedelta(days=8)
            balances = {(b.payee, b.currency): b for b in led.balances(as_of=end)}
            results.append({"backend": kind, "mode": mode, "events": n, "entries": v.entries,
                            "seconds": round(sw.seconds, 3), "events_per_s": round(n / sw.seconds),
                            "plain_insert_per_s": round(n / plain), "ratio": round(sw.seconds / plain, 2),
                            "head": v.head.hash, "_balances": balances, "_n": n})
        finally:
            drop()
    return results


def main() -> int:
    p = bench_parser(__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=None, help="orders (default 100000, --quick 2000)")
    p.add_argument("--single-events", type=int, default=None,
                   help="events recorded one per transaction (default 20000, --quick 1000)")
    p.add_argument("--backends", default="sqlite,sqlite-normal,postgresql",
                   help="comma-separated: sqlite (synchronous=FULL, the default), sqlite-normal, postgresql, mariadb")
    args = p.parse_args()
    n_orders = args.orders or (2_000 if args.quick else 100_000)
    single_n = args.single_events or (1_000 if args.quick else 20_000)
    events = programme(n_orders, args.seed)
    single_n = min(single_n, len(events))
    print(f"programme: {n_orders} orders, {sum(e.type == 'refund' for e in events)} refunds, "
          f"{sum(e.type == 'share' for e in events)} shares = {len(events)} events")
    results: list[dict[str, Any]] = []
    skipped = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.backends.split(","):
            try:
                results += run(kind.strip(), events, single_n, Path(tmp))
            except sa.exc.OperationalError as exc:
                skipped[kind] = str(exc).splitlines()[0]
                print(f"{kind}: skipped ({skipped[kind]})")
    for mode in ("single", "batch 1000"):  # cross-check: the backends agree
        runs = [r for r in results if r["mode"] == mode]
        for r in runs[1:]:
            if r["_balances"] != runs[0]["_balances"] or r["head"] != runs[0]["head"]:
                raise SystemExit(f"{mode}: {r['backend']} and {runs[0]['backend']} disagree on the same events")
    batch_runs = [r for r in results if r["mode"] == "batch 1000"]
    table = [[r["backend"], r["mode"], r["events"], r["entries"], r["seconds"], r["events_per_s"],
              r["plain_insert_per_s"], r["ratio"]] for r in results]
    print(markdown_table(["backend", "mode", "events", "entries", "seconds", "events/s", "plain INSERT rows/s",
                          "ledger / plain time"], table))
    if batch_runs:
        print(f"all backends agree: same balances, batch chain head {batch_runs[0]['head'][:16]}...")
    for r in results:
        r.pop("_balances")
        r.pop("_n")
    write_results("ledger" + ("_quick" if args.quick else ""),
                  {"orders": n_orders, "events": len(events), "single_events": single_n, "results": results,
                   "skipped": skipped, "policy": POLICY, "machine_extra": machine_info().get("cpu")}, args=args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
