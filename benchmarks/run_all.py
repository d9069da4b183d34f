"""Run every ``benchmarks/bench_*.py`` one after another, each in its own Python process.

    .venv/bin/python benchmarks/run_all.py            # full sizes (minutes; the numbers to report)
    .venv/bin/python benchmarks/run_all.py --quick    # small sizes, for CI smoke runs
    .venv/bin/python benchmarks/run_all.py --quick -k core   # only files whose name contains "core"

Each benchmark gets the same Python interpreter and the flags ``--quick`` / ``--no-write`` when
given; it writes its own ``benchmarks/results/<name>.json``.  Benchmarks run sequentially (never in
parallel: they would disturb each other's timings).  Exits non-zero if any benchmark fails or times out.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent


def discover(pattern: str | None = None) -> list[Path]:
    """The ``bench_*.py`` files next to this script, sorted by name, optionally filtered by ``pattern``."""
    files = sorted(HERE.glob("bench_*.py"))
    return [f for f in files if pattern is None or pattern in f.stem]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run every benchmarks/bench_*.py")
    p.add_argument("--quick", action="store_true", help="pass --quick to every benchmark (CI smoke run)")
    p.add_argument("--no-write", action="store_true", help="pass --no-write (do not touch results/)")
    p.add_argument("-k", dest="pattern", default=None, help="only benchmarks whose file name contains this")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds per benchmark (default: 900 with --quick, 1800 otherwise)")
    args = p.parse_args(argv)
    timeout = args.timeout or (900.0 if args.quick else 1800.0)
    files = discover(args.pattern)
    if not files:
        print("no benchmarks found", file=sys.stderr)
        return 1
    flags = [f for f, on in (("--quick", args.quick), ("--no-write", args.no_write)) if on]
    summary: list[tuple[str, str, float]] = []
    for f in files:
        print(f"\n=== {f.name} {' '.join(flags)}", flush=True)
        t0 = time.perf_counter()
        try:
            rc = subprocess.run([sys.executable, str(f), *flags], cwd=HERE.parent, timeout=timeout).returncode
            status = "ok" if rc == 0 else f"failed (exit {rc})"
        except subprocess.TimeoutExpired:
            status = f"timed out after {timeout:.0f} s"
        summary.append((f.name, status, time.perf_counter() - t0))
    print("\n=== summary")
    for name, status, secs in summary:
        print(f"{name:40s} {status:24s} {secs:8.1f} s")
    failed = sum(status != "ok" for _, status, _ in summary)
    print(f"benchmarks ok: {len(summary) - failed} of {len(summary)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
