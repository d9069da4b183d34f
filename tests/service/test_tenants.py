"""Tenants and keys: a key sees only its tenant on every endpoint; keys are stored hashed; rotation
(several active keys, revoke one) needs no downtime."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from cps_engine.service import Admin
from cps_engine.service.store import TABLES, TenantError
from tests.service.conftest import POLICY, Api, order, programme, share

#: every route with what a request to it needs (method, path, body or query)
ROUTES = [
    ("POST", "/v1/events", None),
    ("POST", "/v1/payouts", {"id": "pX", "payee": "bu1", "amount": "1.00", "currency": "CNY",
                             "at": "2026-03-01T00:00:00Z"}),
    ("GET", "/v1/payees/bu1/balance", {"as_of": "2026-06-01"}),
    ("GET", "/v1/orders/bo3/lines", None),
    ("GET", "/v1/statements/2026-01", {"tz": "+08:00"}),
    ("GET", "/v1/parked", None),
    ("GET", "/v1/verify", None),
]


def _call(api: Api, tenant: str, method: str, path: str, arg: object) -> tuple[int, str]:
    if method == "POST":
        body = arg if arg is not None else [share("as1", "amy")]
        r = api.post(tenant, path, body)
    else:
        r = api.get(tenant, path, **(arg or {}))  # type: ignore[arg-type]
    return r.status_code, r.text


def test_a_key_of_tenant_a_never_sees_tenant_b(api: Api) -> None:
    b_events = [*programme("b", 30), order("bo_parked", "nowhere", "10.00")]
    assert api.post(api.b, "/v1/events", b_events).status_code == 200
    b_before = {path: _call(api, api.b, m, path, arg) for m, path, arg in ROUTES if m == "GET"}
    assert "bu1" in b_before["/v1/payees/bu1/balance"][1] and "bo3" in b_before["/v1/orders/bo3/lines"][1]
    b_names = {ev["id"] for ev in b_events} | {ev.get("sharer") for ev in b_events if ev.get("sharer")}
    for method, path, arg in ROUTES:
        status, text = _call(api, api.a, method, path, arg)
        assert status < 500, (path, text)
        body = json.loads(text)
        # no id or payee of tenant B anywhere in the answer (paths echo the id asked for, so drop those)
        leaked = {n for n in b_names if f'"{n}"' in text and n not in path}
        assert not leaked, (path, leaked)
        if path == "/v1/payees/bu1/balance":
            assert body["balances"] == []
        if path == "/v1/orders/bo3/lines":
            assert body["lines"] == []
        if path == "/v1/payouts":
            assert status == 422 and body["error"] == "InsufficientBalance"
    # tenant A's writes changed nothing of B's
    b_after = {path: _call(api, api.b, m, path, arg) for m, path, arg in ROUTES if m == "GET"}
    assert b_after == b_before


def test_no_key_a_wrong_key_or_a_revoked_key_is_401_everywhere(api: Api) -> None:
    key = api.keys[api.a]
    wrong = key[:-2] + ("xx" if not key.endswith("xx") else "yy")
    for method, path, arg in ROUTES:
        for headers in ({}, {"Authorization": f"Bearer {wrong}"}, {"Authorization": "Bearer nonsense"},
                        {"Authorization": f"Basic {key}"}):
            r = api.client.request(method, path, headers=headers,
                                   content=json.dumps(arg or [share("s", "x")]) if method == "POST" else None,
                                   params=arg if method == "GET" else None)  # type: ignore[arg-type]
            assert r.status_code == 401, (path, headers, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.headers["www-authenticate"] == "Bearer"


def test_rotation_without_downtime(api: Api) -> None:
    old = api.keys[api.a]
    new = api.admin.add_key(api.a, label="rotated")
    for k in (old, new):  # both work at once
        r = api.client.get("/v1/verify", headers={"Authorization": f"Bearer {k}"})
        assert r.status_code == 200
    api.admin.revoke_key(old.split("_")[1])
    assert api.client.get("/v1/verify", headers={"Authorization": f"Bearer {old}"}).status_code == 401
    assert api.client.get("/v1/verify", headers={"Authorization": f"Bearer {new}"}).status_code == 200
    with pytest.raises(TenantError):
        api.admin.revoke_key(old)  # already revoked
    infos = {k.key_id: k for k in api.admin.keys(api.a)}
    assert infos[old.split("_")[1]].revoked_us is not None and infos[new.split("_")[1]].revoked_us is None


def test_keys_are_stored_salted_and_hashed(api: Api) -> None:
    k1, k2 = api.admin.add_key(api.a), api.admin.add_key(api.a)
    with api.admin.engine.connect() as conn:
        rows = conn.execute(sa.select(TABLES.keys)).all()
    text = repr(rows)
    for key in (k1, k2, *api.keys.values()):
        assert key.split("_", 2)[2] not in text  # no secret stored
    assert len({r.salt for r in rows}) == len(rows)  # a salt per key


def test_tenant_ids_are_table_prefixes_so_they_are_checked() -> None:
    admin = Admin(sa.create_engine("sqlite://"))
    for bad in ("", "A", "1a", "a-b", "a" * 25, "a;drop"):
        with pytest.raises(TenantError):
            admin.add_tenant(bad, POLICY)
    admin.add_tenant("ok_1", POLICY)
    with pytest.raises(TenantError):
        admin.add_tenant("ok_1", POLICY)
    with pytest.raises(TenantError):
        admin.add_key("nobody")
    assert admin.authenticate(admin.add_key("ok_1")) == "ok_1"
