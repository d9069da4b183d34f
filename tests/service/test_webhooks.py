"""Webhooks: messages from the legs a write posted, the outbox in the write's transaction, signed
delivery at least once with retries, and a receiver that sums messages gets the ledger's balances."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from cps_engine.service import Deliverer
from cps_engine.service.store import TABLES
from cps_engine.service.webhooks import sign, verify_signature
from tests.service.conftest import Api, Receiver, order, programme, share

FAR = "2030-01-01T00:00:00Z"


def outbox(api: Api, tenant: str) -> list[Any]:
    o = TABLES.outbox
    with api.admin.engine.connect() as conn:
        return list(conn.execute(sa.select(o).where(o.c.tenant == tenant).order_by(o.c.id)))


def sums(messages: Any, payee: str) -> dict[str, Decimal]:
    """pending / available / paid / fee of ``payee`` from the signed amounts of the messages."""
    out = dict.fromkeys(("pending", "available", "paid", "fee"), Decimal(0))
    for m in messages:
        d = m["data"]
        if d["payee"] != payee:
            continue
        amount = Decimal(d["amount"])
        if m["type"] == "commission.pending":
            out["pending"] += amount
        elif m["type"] == "commission.available":
            if d["available_at"] is not None and d["available_at"] > d["effective_at"]:
                out["pending"] -= amount  # the hold ended
            out["available"] += amount
        elif m["type"] == "commission.clawed_back":
            out["available"] += amount
        elif m["type"] == "payout.paid":
            out["available"] -= amount
            out["paid"] += Decimal(d["paid"])
            out["fee"] += Decimal(d["fee"])
    return out


def test_signature_round_trip_and_replay_window() -> None:
    body = b'{"id":"evt_1"}'
    header = sign("s3cret", body, timestamp=1_000)
    assert verify_signature("s3cret", body, header, now=1_100)
    assert not verify_signature("s3cret", body, header, now=2_000)  # too old: a replay
    assert not verify_signature("other", body, header, now=1_100)
    assert not verify_signature("s3cret", body + b" ", header, now=1_100)
    assert not verify_signature("s3cret", body, "garbage", now=1_100)


def test_no_endpoint_no_rows_and_rows_commit_with_the_write(api: Api, receiver: Receiver) -> None:
    a = api.a
    api.post(a, "/v1/events", [share("s1", "amy"), order("o1", "s1", "100.00")])
    assert outbox(api, a) == []  # no endpoint registered yet
    _, receiver.secret = api.admin.add_webhook(a, receiver.url)
    api.post(a, "/v1/events", order("o2", "s1", "50.00", at="2026-03-02T00:00:00+08:00"))
    rows = outbox(api, a)
    assert [r.type for r in rows] == ["commission.pending", "commission.available"]
    # a batch refused as a whole (an id reused with another payload) leaves no outbox rows either
    r = api.post(a, "/v1/events", [order("o3", "s1", "10.00"), order("o1", "s1", "1.00")])
    assert r.status_code == 409
    assert len(outbox(api, a)) == 2
    assert outbox(api, api.b) == []  # never another tenant's endpoint


def test_delivered_signed_at_least_once_and_sums_match_balances(api: Api, receiver: Receiver) -> None:
    a = api.a
    _, receiver.secret = api.admin.add_webhook(a, receiver.url)
    receiver.fail_first = 3  # the receiver is down for the first three requests
    events = programme("w", 40)
    assert api.post(a, "/v1/events", events).status_code == 200
    # a payout and a refund after the hold (a clawback)
    assert api.post(a, "/v1/payouts", {"id": "p1", "payee": "wu1", "amount": "3.00", "currency": "CNY",
                                       "at": "2026-02-20T00:00:00Z"}).status_code == 201
    assert api.post(a, "/v1/events", {"type": "refund", "id": "late", "order": "wo1", "at": "2026-02-21T00:00:00Z"}
                    ).json()["counts"] == {"applied": 1}
    d = Deliverer(api.admin.engine, base_delay_s=0.01, max_delay_s=0.05, tenant=a)
    try:
        for _ in range(100):
            d.drain(timeout_s=5)
            if d.pending() == 0:
                break
    finally:
        d.client.close()
    assert d.pending() == 0
    assert receiver.bad_signatures == 0 and receiver.requests >= len(receiver.received) + 3
    got = receiver.unique()
    rows = outbox(api, a)
    assert set(got) == {r.message_id for r in rows} and all(r.state == "delivered" for r in rows)
    assert any(r.attempts > 1 for r in rows)  # the failures were retried
    types = {m["type"] for m in got.values()}
    assert types == {"commission.pending", "commission.available", "commission.clawed_back", "payout.paid"}
    for payee in ("wu0", "wu1", "wu2", "wu5"):
        bal = api.get(a, f"/v1/payees/{payee}/balance", as_of=FAR).json()["balances"]
        want = {k: Decimal(bal[0][k]) for k in ("pending", "available", "paid", "fee")} if bal else \
            dict.fromkeys(("pending", "available", "paid", "fee"), Decimal(0))
        assert sums(got.values(), payee) == want, payee


def test_held_commission_is_announced_available_when_the_hold_ends(api: Api, receiver: Receiver) -> None:
    a = api.a
    _, receiver.secret = api.admin.add_webhook(a, receiver.url)
    future = "2099-01-01T00:00:00Z"
    api.post(a, "/v1/events", [share("s1", "amy", at=future), order("o1", "s1", "100.00", at=future)])
    d = Deliverer(api.admin.engine, tenant=a)
    try:
        d.drain(timeout_s=5)
    finally:
        d.client.close()
    got = receiver.unique().values()
    assert [m["type"] for m in got] == ["commission.pending"]
    assert d.pending() == 1  # commission.available waits for 2099-01-08


def test_backoff_grows_and_is_capped(api: Api) -> None:
    d = Deliverer(api.admin.engine, base_delay_s=1, max_delay_s=60)
    try:
        delays = [d.backoff_us(n) for n in range(1, 12)]
    finally:
        d.client.close()
    assert 500_000 <= delays[0] <= 1_000_000 and 4_000_000 <= delays[3] <= 8_000_000
    assert max(delays) <= 60_000_000
