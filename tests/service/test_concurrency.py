"""Concurrent clients posting the same events (two uvicorn worker processes, several client threads,
PostgreSQL): each event is applied exactly once across all answers, the ledger equals the library
fed the events once, and the webhook outbox holds one set of messages (its sums are the balances)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from cps_engine.ledger import Ledger
from cps_engine.service import Admin, ledger_prefix
from cps_engine.service.store import TABLES
from tests.service.conftest import POLICY, Receiver, Uvicorn, engine_of, programme, tenant_id
from tests.service.test_webhooks import sums

FAR = "2030-01-01T00:00:00Z"


def test_concurrent_clients_same_events_one_application_each(pg_db: str, tmp_path: Path, receiver: Receiver,
                                                             uvicorn_server: Callable[..., Uvicorn]) -> None:
    engine = engine_of(pg_db)
    admin = Admin(engine)
    tenant = tenant_id("conc")
    admin.add_tenant(tenant, POLICY, hold_days=7)
    key = admin.add_key(tenant)
    admin.add_webhook(tenant, receiver.url)
    server = uvicorn_server(pg_db, workers=2, deliver=False)
    events = programme("c", 150)
    chunks = [events[i:i + 40] for i in range(0, len(events), 40)]
    answers: list[dict[str, Any]] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
            for chunk in chunks:
                single = n == 3  # one client posts event by event
                bodies = [[e] for e in chunk] if single else [chunk]
                for body in bodies:
                    r = c.post("/v1/events", content=json.dumps(body))
                    with lock:
                        if r.status_code != 200:
                            failures.append(r.text)
                        else:
                            answers.append(r.json())

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures[:3]
    applied = Counter((r["type"], r["id"]) for a in answers for r in a["results"] if r["outcome"] == "applied")
    seen = Counter((r["type"], r["id"]) for a in answers for r in a["results"])
    assert set(seen) == {(e["type"], e["id"]) for e in events} and all(n == 4 for n in seen.values())
    assert all(n == 1 for n in applied.values()) and len(applied) == len(events)

    o = TABLES.outbox
    with engine.connect() as conn:
        led = Ledger(conn, prefix=ledger_prefix(tenant))
        digest, ok = led.state_digest(), led.verify().ok
        balances = {b.payee: b for b in led.balances(as_of=FAR)}
        bodies = [json.loads(b) for b in conn.execute(sa.select(o.c.body).where(o.c.tenant == tenant)).scalars()]
    with Ledger.open(tmp_path / "reference.db", POLICY, hold_days=7, synchronous="OFF") as ref:
        ref.record_many(events)
        assert ok and ref.state_digest() == digest
    for payee, b in balances.items():
        want = {"pending": b.pending.amount, "available": b.available.amount, "paid": b.paid.amount,
                "fee": b.fee.amount}
        assert sums(bodies, payee) == {k: Decimal(v) for k, v in want.items()}, payee
    engine.dispose()
