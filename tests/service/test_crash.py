"""Crash safety of the service: a uvicorn server is killed (SIGKILL, its whole process group) while
it records a batch, and again while it delivers webhooks.  Each batch is one transaction, so the
ledger holds all of it or none of it; the client retries; in the end the ledger equals the library
fed the same events, and every webhook message committed with it reaches the receiver (127.0.0.1)
at least once, their sums equal to the balances."""

from __future__ import annotations

import random
import threading
import time
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


def post_in_thread(base: str, key: str, body: list[dict[str, Any]]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(httpx.post(base + "/v1/events", json=body, headers={"Authorization": f"Bearer {key}"},
                                  timeout=120))
        except httpx.HTTPError as exc:
            out.append(exc)

    t = threading.Thread(target=run)
    t.start()
    return t, out


def counts(engine: sa.Engine, tenant: str) -> tuple[int, int, bool]:
    with engine.connect() as conn:
        led = Ledger(conn, prefix=ledger_prefix(tenant))
        o = TABLES.outbox
        rows = int(conn.execute(sa.select(sa.func.count()).select_from(o).where(o.c.tenant == tenant)).scalar() or 0)
        return led.event_count(), rows, led.verify().ok


def test_kill_mid_batch_and_mid_delivery(db: str, receiver: Receiver, tmp_path: Path,
                                         uvicorn_server: Callable[..., Uvicorn]) -> None:
    rnd = random.Random(14)
    engine = engine_of(db)
    admin = Admin(engine)
    tenant = tenant_id("crash")
    admin.add_tenant(tenant, POLICY, hold_days=7)
    key = admin.add_key(tenant)
    _, receiver.secret = admin.add_webhook(tenant, receiver.url)
    big, small = programme("k", 1500), programme("m", 60)
    killed_mid_request = 0

    for round_ in range(2):  # kill while the big batch is being recorded
        server = uvicorn_server(db, deliver=False)
        thread, out = post_in_thread(server.base, key, big)
        time.sleep(rnd.uniform(0.3, 1.0))
        server.kill()
        thread.join(30)
        n_events, n_rows, ok = counts(engine, tenant)
        assert ok
        assert n_events in (0, len(big)), f"round {round_}: {n_events} events stored of a batch of {len(big)}"
        assert (n_rows == 0) == (n_events == 0)
        if isinstance(out[0], Exception):
            killed_mid_request += 1
    assert killed_mid_request, "no kill landed inside a request (batch too small for this machine?)"

    # the client retries; more events; the server is killed while it delivers webhooks
    server = uvicorn_server(db, deliver=True, lease_s=1)
    r = httpx.post(server.base + "/v1/events", json=big, headers={"Authorization": f"Bearer {key}"}, timeout=120)
    assert r.status_code == 200
    r = httpx.post(server.base + "/v1/events", json=small, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert r.status_code == 200
    time.sleep(rnd.uniform(0.05, 0.3))
    server.kill()
    assert len(receiver.unique()) < counts(engine, tenant)[1], "everything was delivered before the kill"

    server = uvicorn_server(db, deliver=True)
    o = TABLES.outbox
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            left = conn.execute(sa.select(sa.func.count()).select_from(o).where(
                o.c.tenant == tenant, o.c.state != "delivered")).scalar()
        if not left:
            break
        time.sleep(0.3)
    assert not left, f"{left} webhook messages never delivered"
    server.stop()

    with engine.connect() as conn:
        ids = set(conn.execute(sa.select(o.c.message_id).where(o.c.tenant == tenant)).scalars())
        led = Ledger(conn, prefix=ledger_prefix(tenant))
        digest, ok = led.state_digest(), led.verify().ok
        payees = sorted({b.payee for b in led.balances(as_of=FAR)})
        balances = {b.payee: b for b in led.balances(as_of=FAR)}
    got = receiver.unique()
    assert set(got) == ids and receiver.bad_signatures == 0
    with Ledger.open(tmp_path / "reference.db", POLICY, hold_days=7, synchronous="OFF") as ref:
        ref.record_many(big + small)
        assert ref.state_digest() == digest and ok
    for payee in payees:
        b = balances[payee]
        want = {"pending": b.pending.amount, "available": b.available.amount, "paid": b.paid.amount,
                "fee": b.fee.amount}
        assert sums(got.values(), payee) == {k: Decimal(v) for k, v in want.items()}, payee
    engine.dispose()
