"""Import cost: ``import cps_engine`` and the names each kind of user starts with, each in a fresh
interpreter (median of repeats), against a bare interpreter start in the same run.

    .venv/bin/python benchmarks/bench_import.py [--quick] [--no-write]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_parser, markdown_table, write_results

CASES = {
    "bare interpreter": "pass",
    "import cps_engine": "import cps_engine",
    "core (compute path)": "from cps_engine import Money, ShareGraph, compute, load_events, load_policy",
    "backend (Ledger)": "from cps_engine import Ledger",
    "analyst (compute_batch)": "from cps_engine import compute_batch",
    "auditor (verify_statement)": "from cps_engine import verify_statement",
}


def once(code: str) -> float:
    prog = f"import time\nt = time.perf_counter()\n{code}\nprint(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, check=True).stdout)


def main() -> int:
    args = bench_parser(__doc__.splitlines()[0]).parse_args()
    repeats = 3 if args.quick else 9
    times: dict[str, list[float]] = {k: [] for k in CASES}
    for _ in range(repeats):  # interleaved: machine noise hits every case alike
        for name, code in CASES.items():
            times[name].append(once(code))
    rows = [[name, round(statistics.median(v) * 1000, 1)] for name, v in times.items()]
    print(markdown_table(["what", "median ms"], rows))
    write_results("import" + ("_quick" if args.quick else ""),
                  {"repeats": repeats, "median_ms": {r[0]: r[1] for r in rows}}, args=args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
