"""Crash safety: a child process recording events is killed (SIGKILL) at every fault point of a small
history, inside SQLite statements, and at random moments; after restart and redelivery of every event
the ledger equals the uninterrupted run: same events, same chain head (the redelivery replays the
rolled-back events in the same order), same positions, a log that verifies.

Fault points: the ledger's ``fault_hook`` fires after the event row is buffered, after each
posting, after each table is written and just before commit; SQLite's progress handler fires every
50 virtual-machine steps, so those kills land inside INSERTs and the COMMIT itself.

A deliberately broken ledger (committing each table as soon as it is written) must be caught: some
kill leaves an event stored without its entries, and redelivery then treats it as a duplicate.
"""

from __future__ import annotations

import multiprocessing
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from cps_engine.ledger import Ledger, sqlite_engine
from tests.ledger import workers
from tests.ledger.helpers import POLICY, history

HOLD = 1
EVENTS = history(3, n_orders=4, n_people=4)
PAYLOADS = workers.dump(EVENTS)


def run_child(path: Path, kill_at: int, mode: str, batch: int = 1) -> tuple[int | None, int]:
    """Run the recording child; returns its exit code and how many fault points it passed."""
    count_file = str(path) + ".count"
    Path(count_file).unlink(missing_ok=True)
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=workers.crash_child, args=(str(path), PAYLOADS, POLICY, HOLD, kill_at, mode, batch,
                                                       count_file))
    p.start()
    p.join(120)
    count = int(Path(count_file).read_text()) if Path(count_file).exists() else -1
    return p.exitcode, count


def fresh(path: Path) -> None:
    """An empty ledger file (the schema exists before any crash)."""
    for suffix in ("", "-wal", "-shm", ".count"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    template = path.parent / "template.db"
    if not template.exists():
        engine = sqlite_engine(template)
        Ledger(engine, POLICY, hold_days=HOLD).close()
        engine.dispose()  # the last connection closing checkpoints the WAL into the file
    shutil.copyfile(template, path)


def state_after_redelivery(path: Path) -> tuple[Any, ...]:
    with Ledger(sqlite_engine(path), POLICY, hold_days=HOLD) as led:
        led.record_many(EVENTS)
        v = led.verify()
        return led.event_count(), led.chain_head(), led.state_digest(), v.ok, len(led.parked())


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, ...]:
    path = tmp_path_factory.mktemp("ref") / "ref.db"
    fresh(path)
    with Ledger(sqlite_engine(path), POLICY, hold_days=HOLD) as led:
        led.record_many(EVENTS)
    return state_after_redelivery(path)


def kills(tmp_path: Path, mode: str, batch: int, points: list[int] | None = None,
          stop_at_first: bool = False) -> tuple[int, list[int]]:
    """Kill at every point (or ``points``); returns (number of points, points whose state differed)."""
    path = tmp_path / f"{mode}{batch}.db"
    fresh(path)
    code, n = run_child(path, 0, mode, batch)
    assert code == 0 and n > 0
    assert state_after_redelivery(path) == REF[0]  # uninterrupted, every variant is right
    bad = []
    for k in points or range(1, n + 1):
        fresh(path)
        code, _ = run_child(path, k, mode, batch)
        assert code == -9, f"the child was not killed at point {k}"
        if state_after_redelivery(path) != REF[0]:
            bad.append(k)
            if stop_at_first:
                break
    return n, bad


REF: list[tuple[Any, ...]] = []


@pytest.fixture(autouse=True)
def _ref(reference: tuple[Any, ...]) -> None:
    REF[:] = [reference]


@pytest.mark.parametrize("batch", [1, 4])
def test_kill_at_every_fault_hook(tmp_path: Path, batch: int) -> None:
    n, bad = kills(tmp_path, "hooks", batch)
    assert n >= len(EVENTS)
    assert bad == []


def test_kill_inside_sqlite_statements(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    fresh(path)
    _, n = run_child(path, 0, "progress")
    rnd = random.Random(5)
    points = sorted({*range(1, n + 1, max(1, n // 15)), *rnd.sample(range(1, n + 1), min(n, 10))})
    _, bad = kills(tmp_path, "progress", 1, points)
    assert bad == []


def test_random_sigkills(tmp_path: Path) -> None:
    import os
    import signal
    import time

    path = tmp_path / "r.db"
    rnd = random.Random(11)
    fresh(path)
    t0 = time.perf_counter()
    run_child(path, 0, "none")
    full = time.perf_counter() - t0
    for _ in range(8):
        fresh(path)
        ctx = multiprocessing.get_context("fork")
        p = ctx.Process(target=workers.crash_child, args=(str(path), PAYLOADS, POLICY, HOLD, 0, "none", 1,
                                                           str(path) + ".count"))
        p.start()
        time.sleep(rnd.uniform(0, full))
        if p.pid is not None:
            os.kill(p.pid, signal.SIGKILL)
        p.join(60)
        assert state_after_redelivery(path) == REF[0]


def test_the_crash_test_catches_a_ledger_that_is_not_all_or_nothing(tmp_path: Path) -> None:
    _, bad = kills(tmp_path, "broken", 1, stop_at_first=True)
    assert bad, "killing a ledger that commits table by table should leave partial writes behind"
