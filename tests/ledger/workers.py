"""Child-process helpers for the concurrency and crash tests (run in forked processes)."""

from __future__ import annotations

import json
import os
import random
import signal
import traceback
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from cps_engine.ledger import Ledger, sqlite_engine
from cps_engine.ledger import store as store_module
from cps_engine.models import event_to_json, parse_event

Events = list[str]  # canonical JSON payloads (picklable, fork-safe)


def dump(events: list[Any]) -> Events:
    return [event_to_json(e) for e in events]


def load(payloads: Events) -> list[Any]:
    return [parse_event(json.loads(p)) for p in payloads]


def open_store(target: str, prefix: str) -> tuple[sa.Engine, dict[str, Any]]:
    """An engine on a SQLite path or a database URL (new in this process)."""
    if "://" in target:
        kw = {"isolation_level": "READ COMMITTED"} if target.startswith("mysql") else {}
        return sa.create_engine(target, poolclass=sa.pool.NullPool, **kw), {"prefix": prefix}
    return sqlite_engine(target, synchronous="NORMAL"), {}


def concurrent_worker(target: str, prefix: str, payloads: Events, policy: dict[str, Any], hold: int, seed: int,
                      errors: Any) -> None:
    """Deliver every event 1-2 times in a private random order, in random small batches."""
    try:
        engine, kw = open_store(target, prefix)
        led = Ledger(engine, policy, hold_days=hold, **kw)
        rnd = random.Random(seed)
        events = load(payloads)
        deliveries = [e for e in events for _ in range(rnd.randint(1, 2))]
        rnd.shuffle(deliveries)
        i = 0
        while i < len(deliveries):
            n = rnd.randint(1, 4)
            if n == 1:
                led.record(deliveries[i])
            else:
                led.record_many(deliveries[i:i + n], batch_size=n)
            i += n
        engine.dispose()
    except BaseException:
        errors.put(traceback.format_exc())
        raise


def _broken_flush(self: Any) -> None:
    """A ledger that commits each table as soon as it is written: NOT all-or-nothing."""
    for (table, text, cols), rows in zip(self.sql.inserts, (self.rows_events, self.rows_orders, self.rows_refunds,
                                                             self.rows_entries), strict=True):
        if rows:
            self.conn.exec_driver_sql(text, [r if isinstance(r, tuple) else tuple(r[c] for c in cols) for r in rows])
            rows.clear()
            self.conn.exec_driver_sql("COMMIT")
            self.conn.exec_driver_sql("BEGIN IMMEDIATE")
            self.ledger._fault(f"flush:{table.name[len(self.t.prefix):]}")


def crash_child(path: str, payloads: Events, policy: dict[str, Any], hold: int, kill_at: int, mode: str,
                batch: int, count_file: str) -> None:
    """Record the events; SIGKILL this process at the ``kill_at``-th fault point (0: never).

    ``mode``: ``hooks`` (the ledger's fault hook: after each stage of a write, before commit),
    ``progress`` (SQLite's progress handler: every 50 virtual-machine steps, i.e. inside statements),
    ``broken`` (hooks, with a ledger that commits table by table), ``none``.
    """
    count = 0

    def hit(_stage: str | None = None) -> int:
        nonlocal count
        count += 1
        if count == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return 0

    engine = sqlite_engine(path, synchronous="NORMAL")  # WAL + NORMAL: atomic and durable across process kills
    if mode == "progress":
        @sa.event.listens_for(engine, "connect")
        def _progress(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.set_progress_handler(hit, 50)
    led = Ledger(engine, policy, hold_days=hold)
    if mode in ("hooks", "broken"):
        led.fault_hook = hit
    if mode == "broken":
        store_module.UnitOfWork.flush = _broken_flush  # type: ignore[method-assign]
    events = load(payloads)
    record: Callable[[list[Any]], object] = (lambda evs: led.record(evs[0])) if batch == 1 else (
        lambda evs: led.record_many(evs, batch_size=batch))
    for i in range(0, len(events), batch):
        record(events[i:i + batch])
    engine.dispose()
    with open(count_file, "w") as fh:
        fh.write(str(count))


def writer(target: str, prefix: str, payloads: Events, policy: dict[str, Any], timeout: float, errors: Any) -> None:
    """Record the events one by one with a short lock timeout (a reader holding the write lock fails it)."""
    try:
        if "://" in target:
            engine, kw = open_store(target, prefix)
        else:
            engine, kw = sqlite_engine(target, synchronous="NORMAL", timeout=timeout), {}
        led = Ledger(engine, policy, **kw)
        for ev in load(payloads):
            led.record(ev)
        engine.dispose()
    except BaseException:
        errors.put(traceback.format_exc())
        raise


def schema_kill_child(target: str, prefix: str, policy: dict[str, Any]) -> None:
    """Create a new ledger and SIGKILL this process right after its ``meta`` table is created (on
    MariaDB/MySQL that table is committed at once: DDL commits implicitly)."""
    def kill(table: sa.Table, *_: Any, **__: Any) -> None:
        if table.name.endswith("meta"):
            os.kill(os.getpid(), signal.SIGKILL)

    sa.event.listen(sa.Table, "after_create", kill)
    engine, kw = open_store(target, prefix)
    Ledger(engine, policy, **kw)
