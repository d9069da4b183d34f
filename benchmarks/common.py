"""Shared helpers for the ``benchmarks/bench_*.py`` scripts.

Timing uses :func:`time.perf_counter_ns`; latencies are summarised as percentiles in microseconds;
memory is measured with :mod:`tracemalloc` (bytes allocated by Python while a block runs: ``peak``
is the high-water mark, ``current`` what is still held when it ends); results are written as JSON to
``benchmarks/results/<name>.json``.

A benchmark script looks like::

    from common import bench_args, latency_summary, traced, write_results

    args = bench_args("my benchmark")            # --quick, --seed, --no-write
    with traced() as mem:
        thing = build()
    print(mem.current / n, "bytes per item")
    write_results("my_bench" + ("_quick" if args.quick else ""), {...}, args=args)

Nothing here asserts timings: benchmarks report numbers, tests never time anything.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "RESULTS_DIR",
    "MemoryTrace",
    "Stopwatch",
    "bench_args",
    "bench_parser",
    "freeze_heap",
    "latency_summary",
    "loadavg",
    "machine_info",
    "markdown_table",
    "percentiles",
    "stopwatch",
    "timer_overhead_ns",
    "traced",
    "write_results",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
now_ns = time.perf_counter_ns


# ---------------------------------------------------------------------------------------- timing
@dataclass
class Stopwatch:
    """Wall time of a ``with stopwatch() as sw:`` block: ``sw.ns`` / ``sw.seconds`` after it ends."""

    start: int = 0
    ns: int = 0

    @property
    def seconds(self) -> float:
        return self.ns / 1e9


@contextmanager
def stopwatch() -> Iterator[Stopwatch]:
    sw = Stopwatch(start=now_ns())
    try:
        yield sw
    finally:
        sw.ns = now_ns() - sw.start


def timer_overhead_ns(samples: int = 100_000) -> float:
    """Median cost of two back-to-back ``perf_counter_ns`` calls (included in every latency sample)."""
    out = np.empty(samples, dtype=np.int64)
    for i in range(samples):
        t0 = now_ns()
        out[i] = now_ns() - t0
    return float(np.median(out))


def percentiles(samples_ns: Sequence[int] | np.ndarray, qs: Sequence[float] = (50, 99, 99.9)) -> dict[str, float]:
    """Percentiles of nanosecond samples, in microseconds: ``{"p50": ..., "p99": ..., "p99.9": ...}``."""
    a = np.asarray(samples_ns, dtype=np.float64)
    if a.size == 0:
        return {f"p{q:g}": float("nan") for q in qs}
    vals = np.percentile(a, list(qs)) / 1e3
    return {f"p{q:g}": round(float(v), 3) for q, v in zip(qs, vals, strict=True)}


def latency_summary(samples_ns: Sequence[int] | np.ndarray) -> dict[str, float]:
    """Count, mean, p50, p99, p99.9 and max of nanosecond samples (times in microseconds)."""
    a = np.asarray(samples_ns, dtype=np.float64)
    out: dict[str, float] = {"n": int(a.size)}
    if a.size:
        out["mean_us"] = round(float(a.mean()) / 1e3, 3)
        out.update({f"{k}_us": v for k, v in percentiles(a).items()})
        out["max_us"] = round(float(a.max()) / 1e3, 3)
    return out


def freeze_heap() -> None:
    """Collect, then move every live object to the permanent GC generation (``gc.freeze``), so the
    cyclic collector does not rescan the big, long-lived setup data (graph, order pool) during timed
    loops.  The collector stays enabled: young-generation pauses still show up in the tail."""
    gc.collect()
    gc.freeze()


# ---------------------------------------------------------------------------------------- memory
@dataclass
class MemoryTrace:
    """Bytes allocated through Python's allocators inside a ``traced()`` block."""

    current: int = 0  # still allocated when the block ended (what the result holds on to)
    peak: int = 0  # high-water mark during the block, above what was allocated before it


@contextmanager
def traced() -> Iterator[MemoryTrace]:
    """Measure allocations of a block with :mod:`tracemalloc` (slows allocation down: time blocks
    separately).  numpy buffers are traced too (numpy reports them to tracemalloc)."""
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    trace = MemoryTrace()
    try:
        yield trace
    finally:
        gc.collect()
        cur, peak = tracemalloc.get_traced_memory()
        trace.current, trace.peak = cur - base, peak - base
        if not was_tracing:
            tracemalloc.stop()


# ---------------------------------------------------------------------------------------- output
def machine_info() -> dict[str, Any]:
    """Python, numpy, OS, CPU count and total memory of this machine."""
    mem_gib = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem_gib = round(int(line.split()[1]) / 2**20, 1)
                    break
    except OSError:
        pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "numpy": np.__version__, "os": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(),
            "memory_gib": mem_gib, "loadavg_at_end": loadavg()}


def loadavg() -> list[float] | None:
    """1, 5 and 15 minute load averages (other work on the machine inflates latency tails)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def write_results(name: str, payload: dict[str, Any], *, args: argparse.Namespace | None = None) -> Path | None:
    """Write ``payload`` (plus machine info and a timestamp) to ``benchmarks/results/<name>.json``.
    Returns the path, or None when ``args.no_write`` is set."""
    if args is not None and getattr(args, "no_write", False):
        return None
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    doc = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(),
           "argv": sys.argv[1:], **payload}
    path.write_text(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    return path


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table (numbers right-aligned)."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(_is_num(row[i]) for row in rows) if rows else False for i in range(len(headers))]

    def fmt(row: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if numeric[i] else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(row, widths, strict=True))) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if numeric[i] else ("-" * (w + 2))
                         for i, w in enumerate(widths)) + "|"
    return "\n".join([fmt(cells[0]), sep, *(fmt(r) for r in cells[1:])])


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 1e5 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


# ---------------------------------------------------------------------------------------- CLI
def bench_parser(description: str) -> argparse.ArgumentParser:
    """Parser with the standard options (add your own before parsing): ``--quick`` (small sizes for
    CI smoke runs; ``run_all.py --quick`` passes it), ``--seed``, ``--no-write``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    p.add_argument("--seed", type=int, default=20260301, help="numpy seed for the generated data")
    p.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/<name>.json")
    return p


def bench_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the standard options (see :func:`bench_parser`)."""
    return bench_parser(description).parse_args(argv)
