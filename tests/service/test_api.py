"""The HTTP API against SQLite and PostgreSQL: recording, queries, payouts, idempotency, problems."""

from __future__ import annotations

import json

import pytest

from cps_engine.audit.merkle import inclusion_proof, verify_inclusion
from cps_engine.errors import CpsError
from cps_engine.ledger import Ledger
from cps_engine.models import parse_event
from cps_engine.service import ledger_prefix
from cps_engine.service.app import all_proofs
from tests.service.conftest import Api, order, programme, share

PROBLEM = "application/problem+json"


def test_record_one_and_a_batch_then_read(api: Api) -> None:
    a = api.a
    r = api.post(a, "/v1/events", share("s1", "amy"))
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["outcome"] == "applied"
    batch = [share("s2", "bob", "s1", at="2026-03-01T11:00:00+08:00"), order("o1", "s2", "100.00")]
    r = api.post(a, "/v1/events", batch)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["counts"] == {"applied": 2}
    lines = body["results"][1]["lines"]
    assert [(x["payee"], x["level"], x["amount"], x["rate"]) for x in lines] == [("bob", 1, "10.00", "0.1"),
                                                                                 ("amy", 2, "5.00", "0.05")]
    assert lines[0]["path"] and lines[0]["config_hash"] and lines[0]["rule"]
    # the same batch again: duplicates, nothing changes
    assert api.post(a, "/v1/events", batch).json()["counts"] == {"duplicate": 2}

    bal = api.get(a, "/v1/payees/bob/balance", as_of="2026-03-02T00:00:00+08:00").json()
    assert bal["balances"] == [{"payee": "bob", "currency": "CNY", "pending": "10.00", "available": "0.00",
                                "paid": "0.00", "fee": "0.00", "earned": "10.00", "reversed": "0.00"}]
    later = api.get(a, "/v1/payees/bob/balance", as_of="2026-03-09").json()["balances"][0]
    assert later["available"] == "10.00"
    assert api.get(a, "/v1/payees/nobody/balance").json()["balances"] == []

    ol = api.get(a, "/v1/orders/o1/lines").json()
    assert [(x["payee"], x["level"], x["amount"], x["rate"], x["policy_kind"]) for x in ol["lines"]] == [
        ("bob", 1, "10.00", "0.1", "capped_multilevel"), ("amy", 2, "5.00", "0.05", "capped_multilevel")]
    assert all(x["config_hash"] and x["available_at"] for x in ol["lines"])
    # provenance from the order's rate snapshot: rule, chain path, the net base, the rounding
    assert [(x["path"], x["base"], x["rounding"]) for x in ol["lines"]] == [
        (["s2"], "100.00", "down"), (["s2", "s1"], "100.00", "down")]
    assert all(x["rule"] for x in ol["lines"])
    refund = {"type": "refund", "id": "r1", "order": "o1", "amount": "40.00", "at": "2026-03-02T10:00:00+08:00"}
    assert api.post(a, "/v1/events", [refund]).status_code == 200
    after = api.get(a, "/v1/orders/o1/lines").json()["lines"]
    assert [(x["payee"], x["amount"], x["base"]) for x in after] == [("bob", "6.00", "60.00"), ("amy", "3.00", "60.00")]

    v = api.get(a, "/v1/verify").json()
    assert v["ok"] and v["entries"] > 0 and len(v["head"]["hash"]) == 64


def test_statement_with_manifest_and_proofs(api: Api) -> None:
    a = api.a
    assert api.post(a, "/v1/events", programme("x", 40)).status_code == 200
    st = api.get(a, "/v1/statements/2026-01", tz="+08:00").json()
    man = st["manifest"]
    assert man["period"] == "2026-01" and man["line_count"] == len(st["lines"]) > 10
    root = bytes.fromhex(man["merkle_root"])
    for line in st["lines"]:
        proof = [bytes.fromhex(p) for p in line["proof"]]
        assert verify_inclusion(bytes.fromhex(line["leaf_hash"]), line["index"], man["line_count"], proof, root)
    one = api.get(a, "/v1/statements/2026-01", tz="+08:00", payee="xu2").json()
    assert one["lines"] and {x["payee"] for x in one["lines"]} == {"xu2"}
    assert one["manifest"] == man


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13])
def test_all_proofs_equal_the_audit_proofs(n: int) -> None:
    hashes = [bytes([i]) * 32 for i in range(n)]
    _, proofs = all_proofs(hashes)
    assert proofs == [inclusion_proof(hashes, i) for i in range(n)]


def test_payout_refused_over_balance_with_a_typed_problem(api: Api) -> None:
    a = api.a
    api.post(a, "/v1/events", [share("s1", "amy"), order("o1", "s1", "100.00")])
    r = api.post(a, "/v1/payouts", {"id": "p1", "payee": "amy", "amount": "20.00", "currency": "CNY",
                                     "at": "2026-03-20T00:00:00+08:00"})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    p = r.json()
    assert (p["error"], p["record"], p["field"]) == ("InsufficientBalance", "p1", "amount")
    assert p["type"] == "urn:cps-engine:problem:insufficient-balance" and p["status"] == 422
    assert p["detail"].startswith("record 'p1', field 'amount': ")
    r = api.post(a, "/v1/payouts", {"id": "p1", "payee": "amy", "amount": "8.00", "currency": "CNY",
                                    "at": "2026-03-20T00:00:00+08:00"})
    assert r.status_code == 201, r.text
    assert r.json()["result"]["outcome"] == "applied"
    bal = api.get(a, "/v1/payees/amy/balance", as_of="2026-03-21").json()["balances"][0]
    assert (bal["available"], bal["paid"]) == ("2.00", "8.00")
    # nothing stored by the refusal: the parked list is empty
    assert api.get(a, "/v1/parked").json() == {"parked": []}


def test_parked_lists_waiting_events(api: Api) -> None:
    api.post(api.a, "/v1/events", order("o9", "missing", "10.00"))
    parked = api.get(api.a, "/v1/parked").json()["parked"]
    assert [(p["type"], p["id"], p["status"]) for p in parked] == [("order", "o9", "parked")]


@pytest.mark.parametrize("field,value,where", [
    ("amount", 100, "amount"), ("amount", 99.5, "amount"), ("shipping", 1, "shipping")])
def test_json_numbers_for_money_are_refused_naming_the_field(api: Api, field: str, value: object,
                                                              where: str) -> None:
    ev = order("o1", "s1", "100.00")
    ev[field] = value
    r = api.post(api.a, "/v1/events", [share("s1", "amy"), ev])
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    p = r.json()
    assert (p["record"], p["field"], p["index"]) == ("o1", where, 1)
    assert "decimal string" in p["detail"]
    # the whole batch was refused: the share is not there either
    assert api.get(api.a, "/v1/verify").json()["entries"] == 0
    assert api.get(api.a, "/v1/parked").json() == {"parked": []}


def test_unit_price_number_refused(api: Api) -> None:
    ev = order("o1", "s1", "100.00")
    ev["lines"] = [{"sku": "A", "unit_price": 50}]
    p = api.post(api.a, "/v1/events", ev).json()
    assert (p["record"], p["field"]) == ("o1", "lines.0.unit_price")


@pytest.mark.parametrize("raw", [
    {"type": "order", "id": "o1", "buyer": "b", "amount": "1.999", "currency": "CNY", "at": "2026-03-01T10:00:00Z"},
    {"type": "share", "id": "s1", "sharer": "amy", "at": "2026-03-01T10:00:00"},
    {"type": "share", "id": "s1", "sharer": "amy", "at": "2026-03-01T10:00:00Z", "parent_share": "x"},
    {"type": "refund", "id": "r1", "order": "o1", "amount": "-1", "at": "2026-03-01T10:00:00Z"},
])
def test_problem_detail_is_the_cli_message(api: Api, raw: dict[str, object]) -> None:
    with pytest.raises(CpsError) as info:
        parse_event(dict(raw))
    p = api.post(api.a, "/v1/events", raw).json()
    assert p["detail"] == str(info.value)
    assert (p["record"], p["field"]) == (info.value.record, info.value.field)


def test_idempotency_conflict_rolls_back_the_whole_batch(api: Api) -> None:
    a = api.a
    api.post(a, "/v1/events", [share("s1", "amy"), order("o1", "s1", "100.00")])
    head = api.get(a, "/v1/verify").json()["head"]
    r = api.post(a, "/v1/events", [share("s2", "bob", "s1"), order("o1", "s1", "999.00")])
    assert r.status_code == 409
    p = r.json()
    assert (p["error"], p["record"]) == ("IdempotencyConflict", "o1")
    assert api.get(a, "/v1/verify").json()["head"] == head
    assert api.post(a, "/v1/events", share("s2", "bob", "s1")).json()["results"][0]["outcome"] == "applied"


def test_idempotency_key_replays_the_first_response(api: Api) -> None:
    a = api.a
    body = [share("s1", "amy"), order("o1", "s1", "100.00")]
    first = api.post(a, "/v1/events", body, **{"Idempotency-Key": "k-1"})
    again = api.post(a, "/v1/events", body, **{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and first.json()["counts"] == {"applied": 2}
    other = api.post(a, "/v1/events", [share("s9", "zed")], **{"Idempotency-Key": "k-1"})
    assert other.status_code == 409 and other.json()["field"] == "Idempotency-Key"
    # the same key on another tenant is another key
    b = api.post(api.b, "/v1/events", [share("s9", "zed")], **{"Idempotency-Key": "k-1"})
    assert b.status_code == 200 and b.json()["counts"] == {"applied": 1}
    # a payout replayed by key is not paid twice, and keeps its 201
    api.post(a, "/v1/events", order("o2", "s1", "100.00", at="2026-03-02T00:00:00+08:00"))
    pay = {"id": "p1", "payee": "amy", "amount": "5.00", "currency": "CNY", "at": "2026-03-20T00:00:00+08:00"}
    r1 = api.post(a, "/v1/payouts", pay, **{"Idempotency-Key": "pay-1"})
    r2 = api.post(a, "/v1/payouts", pay, **{"Idempotency-Key": "pay-1"})
    assert r1.status_code == r2.status_code == 201 and r1.json() == r2.json()
    assert api.get(a, "/v1/payees/amy/balance", as_of="2026-03-21").json()["balances"][0]["paid"] == "5.00"


@pytest.mark.parametrize("body", [b"{", b"[1]", b'{"a": 1, "a": 2}', b"\xff", b'"x"', b"null", b"[" * 100])
def test_bad_bodies_are_problems_not_500s(api: Api, body: bytes) -> None:
    r = api.client.post("/v1/events", content=body, headers=api.h(api.a))
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, r.text
    assert json.loads(r.text)["detail"]


def test_bad_query_values_name_the_field(api: Api) -> None:
    p = api.get(api.a, "/v1/payees/amy/balance", as_of="yesterday").json()
    assert p["status"] == 422 and p["field"] == "as_of"
    p = api.get(api.a, "/v1/payees/amy/balance", currency="XXZ").json()
    assert p["status"] == 422


def test_the_ledger_behind_the_api_is_the_library_ledger(api: Api) -> None:
    api.post(api.a, "/v1/events", programme("p", 30))
    with api.admin.engine.connect() as conn:
        led = Ledger(conn, prefix=ledger_prefix(api.a))
        assert led.verify().ok and led.event_count() == len(programme("p", 30))
