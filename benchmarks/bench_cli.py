"""CLI benchmark: ``cps-engine compute`` on a JSON Lines file of 1M orders over ~100k shares, to CSV,
next to ``polars.read_ndjson`` reading the same file (the floor: parsing alone, no validation).

What it measures (full mode; ``--quick``: 100k orders, 10k shares):

* **Data** — written to a temporary directory: shares ``s0000001``... by users ``u...`` (10% roots,
  each re-share picks a uniformly random earlier share), 5% of users bound to another, orders with
  a random buyer, 95% through a random share, amounts ``"123.45"`` CNY, times with a ``+08:00``
  zone; 2% of orders refunded in part.  Plain JSON as a pipeline writes it (no item lines).
* **polars** — ``polars.read_ndjson(path)`` in this process, best of 3.
* **CLI** — ``cps-engine compute --events F --policy P -o out.csv`` (three-level capped, 10/5/2%)
  in a subprocess, once: wall time, and its peak RSS from ``resource.getrusage(RUSAGE_CHILDREN)``
  (the largest resident set of any child waited for; the CLI is the only child started).

Reported: both wall times and CPU times (user + system; polars uses every core), the ratios
``cli / polars`` (the target is ≤ 5), the CLI's peak RSS (target ≤ 1.2 GB), lines written, and the
load average (on a shared machine the wall times are only comparable at equal load).  Nothing is
asserted.

Measured 2026-12-04 (2 shared cores, full mode): polars 1.97 s; the CLI 27.6 s wall, 26.8 s CPU
(13.6x polars' CPU), peak RSS 1.97 GB: both targets missed.  Where the CLI's CPU goes, in process:
reading and checking the events in columns 8.6 s (peak 1.4 GB), share graph 1.8 s, order columns
and refunds 1.3 s, batch kernels with provenance 7.1 s (peak 2.0 GB), CSV writing 5.1 s, imports 0.8 s.

Run: ``.venv/bin/python benchmarks/bench_cli.py [--quick]``; writes ``benchmarks/results/cli.json``.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import bench_args, write_results

POLICY = {"kind": "capped_multilevel", "rates": ["10%", "5%", "2%"], "cap": "15%"}


def generate(path: Path, n_orders: int, n_shares: int, seed: int) -> None:
    rnd = random.Random(seed)
    users = max(n_shares, 1000)
    with open(path, "w", encoding="utf-8") as fh:
        write = fh.write
        for i in range(1, n_shares + 1):
            parent = "null" if i == 1 or rnd.random() < 0.1 else f'"s{rnd.randrange(1, i):07d}"'
            at = f"2026-03-{1 + i // 86400:02d}T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}+08:00"
            write(f'{{"type":"share","id":"s{i:07d}","sharer":"u{rnd.randrange(users):07d}","parent":{parent},'
                  f'"at":"{at}"}}\n')
        for i in range(users // 20):
            u, v = rnd.randrange(users), rnd.randrange(users)
            if u != v:
                write(f'{{"type":"bind","id":"b{i:07d}","user":"x{u:07d}","upline":"u{v:07d}",'
                      f'"at":"2026-03-02T00:00:00+08:00"}}\n')
        for i in range(1, n_orders + 1):
            share = f'"share":"s{rnd.randrange(1, n_shares + 1):07d}",' if rnd.random() < 0.95 else ""
            day, sec = 3 + i % 20, i % 86400
            write(f'{{"type":"order","id":"o{i:08d}","buyer":"x{rnd.randrange(users):07d}",{share}'
                  f'"amount":"{rnd.randrange(100, 100000) // 100}.{rnd.randrange(100):02d}","currency":"CNY",'
                  f'"at":"2026-03-{day:02d}T{sec // 3600:02d}:{(sec // 60) % 60:02d}:{sec % 60:02d}+08:00"}}\n')
            if rnd.random() < 0.02:
                write(f'{{"type":"refund","id":"r{i:08d}","order":"o{i:08d}","amount":"0.50",'
                      f'"at":"2026-03-28T00:00:00+08:00"}}\n')


def main() -> None:
    args = bench_args("cps-engine compute on a JSON Lines file vs polars.read_ndjson")
    n_orders, n_shares = (100_000, 10_000) if args.quick else (1_000_000, 100_000)
    import polars as pl

    with tempfile.TemporaryDirectory(prefix="cps-bench-cli-") as tmp:
        events, policy, out = Path(tmp) / "events.jsonl", Path(tmp) / "policy.json", Path(tmp) / "out.csv"
        t = time.perf_counter()
        generate(events, n_orders, n_shares, args.seed)
        gen_s = time.perf_counter() - t
        policy.write_text(json.dumps(POLICY), encoding="utf-8")
        size = events.stat().st_size
        polars_s, polars_cpu = [], []
        for _ in range(3):
            t, c = time.perf_counter(), time.process_time()
            frame = pl.read_ndjson(events, infer_schema_length=None)
            polars_s.append(time.perf_counter() - t)
            polars_cpu.append(time.process_time() - c)
        rows = frame.height
        del frame
        cli = [sys.executable, "-c", "from cps_engine.cli import main; main()", "compute", "--events", str(events),
               "--policy", str(policy), "-o", str(out)]
        t = time.perf_counter()
        proc = subprocess.run(cli, capture_output=True, text=True, check=False)
        cli_s = time.perf_counter() - t
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak_kib = usage.ru_maxrss  # KiB on Linux
        cli_cpu = usage.ru_utime + usage.ru_stime
        if proc.returncode != 0:
            raise SystemExit(f"cps-engine compute failed ({proc.returncode}): {proc.stderr[-2000:]}")
        with open(out, "rb") as fh:
            lines = sum(1 for _ in fh) - 1
    best = min(polars_s)
    result = {"orders": n_orders, "shares": n_shares, "file_rows": rows, "file_mib": round(size / 2**20, 1),
              "generate_s": round(gen_s, 2), "polars_read_ndjson_s": round(best, 3), "cli_compute_s": round(cli_s, 2),
              "ratio_cli_over_polars": round(cli_s / best, 2),
              "polars_cpu_s": round(min(polars_cpu), 3), "cli_cpu_s": round(cli_cpu, 2),
              "ratio_cpu_cli_over_polars": round(cli_cpu / min(polars_cpu), 2),
              "loadavg_1m_at_end": round(os.getloadavg()[0], 2), "cli_peak_rss_mib": round(peak_kib / 1024, 1),
              "commission_lines": lines, "policy": POLICY}
    print(json.dumps(result, indent=2))
    write_results("cli" + ("_quick" if args.quick else ""), result, args=args)


if __name__ == "__main__":
    main()
