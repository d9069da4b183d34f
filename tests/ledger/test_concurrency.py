"""Several processes record overlapping, duplicated events, each in its own random order, into one
database at the same time: every event is applied exactly once and the balances are exact.

"Exact" is checked against one process recording the history once, in order: the same events, the
same commission per order and payee, the same balances, the same ``state_digest``, and a log that
verifies.  Runs on a SQLite file, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa

from cps_engine.ledger import Ledger
from tests.ledger import workers
from tests.ledger.conftest import BACKENDS, Server, new_prefix
from tests.ledger.helpers import POLICY, history, with_payouts

WORKERS = 3
HOLD = 2


@pytest.mark.parametrize("kind", BACKENDS)
def test_concurrent_writers_apply_each_event_once(kind: str, servers: dict[str, Server], tmp_path: object,
                                                  engine_for: Callable[[str], sa.Engine]) -> None:
    events = with_payouts(history(7, n_orders=25, payouts=False), HOLD)
    assert sum(e.type == "payout" for e in events) == 3
    reference = Ledger.open(":memory:", POLICY, hold_days=HOLD)
    reference.record_many(events)
    if kind == "sqlite":
        target, prefix = str(tmp_path) + "/shared.db", "cps_"
        engine = engine_for(kind)
        engine.dispose()
        shared = Ledger.open(target, POLICY, hold_days=HOLD)
    else:
        engine = servers[kind].get()
        target, prefix = engine.url.render_as_string(hide_password=False), new_prefix()
        shared = Ledger(engine, POLICY, hold_days=HOLD, prefix=prefix)  # creates the tables once
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    procs = [ctx.Process(target=workers.concurrent_worker,
                         args=(target, prefix, workers.dump(events), POLICY, HOLD, 100 + i, errors))
             for i in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    problems = [errors.get() for _ in range(errors.qsize())] if not errors.empty() else []
    assert not problems, problems[0]
    assert [p.exitcode for p in procs] == [0] * WORKERS
    assert shared.event_count() == len(events)
    assert shared.parked() == reference.parked() == []
    assert shared.state_digest() == reference.state_digest()
    end = max(e.at for e in events) + timedelta(days=HOLD + 1)
    for t in (events[len(events) // 2].at, end):
        assert shared.balances(as_of=t) == reference.balances(as_of=t)
    v = shared.verify()
    assert v.ok, v.problems
    # each event posted once: the commission of every order is posted by its own event exactly once
    accruals = [(e.order, e.line) for e in shared.entries() if e.kind == "accrual" and e.revision == 0]
    assert len(accruals) == len(set(accruals))
    shared.close()
