"""The HTTP service against the library, in the same run, on PostgreSQL (127.0.0.1 only).

- library: ``Ledger(connection).record_many`` in batches of 500 (one transaction each);
- service, batches: ``POST /v1/events`` with 500 events per request (uvicorn, ``--workers`` = cores);
- service, singly: one event per request, from as many client threads as cores.

Every run records the same kind of programme (shares in chains, orders through them, refunds) into a
fresh tenant; the service's ledger must end equal to the library's (``state_digest``), else the
benchmark fails.  Bounded: at most ``--events`` events per phase and ``--seconds`` per phase.
Needs PostgreSQL (``CPS_BENCH_POSTGRES_URL``, default the local test server).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_parser, latency_summary, markdown_table, write_results

from cps_engine.ledger import Ledger
from cps_engine.service import Admin, ledger_prefix

PG = os.environ.get("CPS_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
POLICY = {"kind": "capped_multilevel", "rates": ["10%", "5%"]}
BATCH = 500


def programme(prefix: str, n_events: int, people: int = 50) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(people):
        out.append({"type": "share", "id": f"{prefix}s{i}", "sharer": f"{prefix}u{i}",
                    "parent": f"{prefix}s{i // 2}" if i else None, "at": f"2026-01-01T00:{i % 60:02d}:00Z"})
    k = 0
    while len(out) < n_events:
        at = f"2026-01-{2 + (k // 86400) % 27:02d}T{(k // 3600) % 24:02d}:{(k // 60) % 60:02d}:{k % 60:02d}Z"
        out.append({"type": "order", "id": f"{prefix}o{k}", "buyer": f"b{k % 97}", "share": f"{prefix}s{k % people}",
                    "amount": f"{10 + k % 90}.00", "currency": "CNY", "at": at})
        if k % 9 == 4:
            out.append({"type": "refund", "id": f"{prefix}r{k}", "order": f"{prefix}o{k}", "amount": "3.00",
                        "at": at.replace("Z", ".5Z")})
        k += 1
    return out[:n_events]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(db: str, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "CPS_SERVICE_DB": db, "CPS_SERVICE_DELIVER": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "cps_engine.service.app:create_app_from_env",
                             "--factory", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
                             "--log-level", "warning", "--no-access-log"], env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError("uvicorn did not start")


def library_run(engine: sa.Engine, events: list[dict[str, Any]], limit_s: float) -> tuple[int, float, list[int]]:
    prefix = f"lib{secrets.token_hex(3)}_"
    Ledger(engine, POLICY, prefix=prefix, hold_days=7)
    lat: list[int] = []
    done = 0
    t0 = time.perf_counter()
    for i in range(0, len(events), BATCH):
        s = time.perf_counter_ns()
        with engine.begin() as conn:
            Ledger(conn, prefix=prefix).record_many(events[i:i + BATCH], batch_size=BATCH)
        lat.append(time.perf_counter_ns() - s)
        done += len(events[i:i + BATCH])
        if time.perf_counter() - t0 > limit_s:
            break
    return done, time.perf_counter() - t0, lat


def service_batches(base: str, key: str, events: list[dict[str, Any]], limit_s: float) -> tuple[int, float, list[int]]:
    lat: list[int] = []
    done = 0
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}",
                                              "Content-Type": "application/json"}, timeout=120) as c:
        t0 = time.perf_counter()
        for i in range(0, len(events), BATCH):
            body = json.dumps(events[i:i + BATCH])
            s = time.perf_counter_ns()
            r = c.post("/v1/events", content=body)
            lat.append(time.perf_counter_ns() - s)
            if r.status_code != 200:
                raise RuntimeError(r.text[:500])
            done += len(events[i:i + BATCH])
            if time.perf_counter() - t0 > limit_s:
                break
    return done, time.perf_counter() - t0, lat


def service_singly(base: str, key: str, events: list[dict[str, Any]], clients: int,
                   limit_s: float) -> tuple[int, float, list[int]]:
    lat: list[int] = []
    lock = threading.Lock()
    stop = time.perf_counter() + limit_s
    shares = [e for e in events if e["type"] == "share"]
    rest = [e for e in events if e["type"] != "share"]
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
        c.post("/v1/events", content=json.dumps(shares)).raise_for_status()
    counts = [0] * clients

    def run(n: int) -> None:
        mine = [e for i, e in enumerate(rest) if i % clients == n and e["type"] == "order"]
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}",
                                                  "Content-Type": "application/json"}, timeout=60) as c:
            for ev in mine:
                s = time.perf_counter_ns()
                r = c.post("/v1/events", content=json.dumps(ev))
                d = time.perf_counter_ns() - s
                if r.status_code != 200:
                    raise RuntimeError(r.text[:300])
                with lock:
                    lat.append(d)
                counts[n] += 1
                if time.perf_counter() > stop:
                    break

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts), time.perf_counter() - t0, lat


def main() -> None:
    p = bench_parser("HTTP service vs library record_many (PostgreSQL)")
    p.add_argument("--events", type=int, default=10_000, help="events per phase")
    p.add_argument("--single", type=int, default=2_000, help="events posted one per request")
    p.add_argument("--seconds", type=float, default=60.0, help="time limit per phase")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = p.parse_args()
    if args.quick:
        args.events, args.single, args.seconds = 2_000, 300, 20.0

    admin_url = sa.make_url(PG)
    name = f"cps_bench_{secrets.token_hex(4)}"
    admin_engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    engine = sa.create_engine(url, pool_size=4)
    proc = None
    try:
        events = programme("x", args.events)
        lib_n, lib_s, lib_lat = library_run(engine, events, args.seconds)

        admin = Admin(engine)
        admin.add_tenant("bench", POLICY, hold_days=7)
        key = admin.add_key("bench")
        admin.add_tenant("single", POLICY, hold_days=7)
        key_single = admin.add_key("single")
        proc, base = start_server(url, args.workers)
        svc_n, svc_s, svc_lat = service_batches(base, key, events[:lib_n], args.seconds)
        one_n, one_s, one_lat = service_singly(base, key_single, programme("y", args.single), args.workers,
                                               args.seconds)

        with engine.connect() as conn:  # the service's ledger equals the library's
            ours = Ledger(conn, prefix=ledger_prefix("bench"))
            if svc_n == lib_n:
                lib_prefix = next(t for t in sa.inspect(conn).get_table_names() if t.startswith("lib"))
                lib = Ledger(conn, prefix=lib_prefix.split("_")[0] + "_")
                if lib.state_digest() != ours.state_digest():
                    raise SystemExit("service ledger differs from the library's")
            if not ours.verify().ok:
                raise SystemExit("service ledger does not verify")
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        engine.dispose()
        with admin_engine.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin_engine.dispose()

    lib_rate, svc_rate, one_rate = lib_n / lib_s, svc_n / svc_s, one_n / one_s
    ratio = svc_s / lib_s * lib_n / svc_n
    rows = [
        ["library record_many (500/tx)", lib_n, round(lib_rate), latency_summary(lib_lat).get("p50_us", 0) / 1e3,
         latency_summary(lib_lat).get("p99_us", 0) / 1e3, 1.0],
        [f"POST /v1/events, 500 per request ({args.workers} workers)", svc_n, round(svc_rate),
         latency_summary(svc_lat).get("p50_us", 0) / 1e3, latency_summary(svc_lat).get("p99_us", 0) / 1e3,
         round(ratio, 2)],
        [f"POST /v1/events, 1 per request ({args.workers} clients)", one_n, round(one_rate),
         latency_summary(one_lat).get("p50_us", 0) / 1e3, latency_summary(one_lat).get("p99_us", 0) / 1e3,
         round(lib_rate / one_rate, 2)],
    ]
    print(markdown_table(["path", "events", "events/s", "p50 ms (per call)", "p99 ms (per call)",
                          "cost vs library"], rows))
    write_results("service" + ("_quick" if args.quick else ""), {
        "workers": args.workers, "batch": BATCH,
        "library": {"events": lib_n, "seconds": lib_s, "events_per_s": lib_rate, "latency": latency_summary(lib_lat)},
        "service_batches": {"events": svc_n, "seconds": svc_s, "events_per_s": svc_rate,
                            "latency": latency_summary(svc_lat), "cost_vs_library": ratio},
        "service_single": {"events": one_n, "seconds": one_s, "events_per_s": one_rate,
                           "latency": latency_summary(one_lat)},
    }, args=args)


if __name__ == "__main__":
    main()
