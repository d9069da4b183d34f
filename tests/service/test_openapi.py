"""The OpenAPI document: checked in (docs/openapi.json, a test fails when it is stale) and fuzzed
with schemathesis against the app on SQLite (bounded: a few examples per operation), which must
never answer 500, and must answer what the document says (status codes, content types, bodies)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from cps_engine.service import Admin, create_app, openapi_document
from tests.service.conftest import POLICY, ROOT, programme

DOC = ROOT / "docs" / "openapi.json"


def test_checked_in_document_is_current() -> None:
    current = json.dumps(openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert DOC.read_text(encoding="utf-8") == current, (
        "docs/openapi.json is stale: regenerate it with `cps-engine serve openapi -o docs/openapi.json`")


def test_money_is_a_decimal_string_in_the_document() -> None:
    schemas = openapi_document()["components"]["schemas"]
    assert schemas["OrderEvent"]["properties"]["amount"]["type"] == "string"
    assert schemas["PayoutRequest"]["properties"]["amount"]["type"] == "string"
    assert '"type": "number"' not in json.dumps(schemas["RefundEvent"]["properties"]["amount"])


_state: dict[str, str] = {}


def _app_for_fuzzing(tmp: Path) -> object:
    app = create_app(f"sqlite:///{tmp / 'fuzz.db'}", deliver=False)
    admin: Admin = app.state.service.admin
    admin.add_tenant("fuzz", POLICY, hold_days=0)
    _state["key"] = admin.add_key("fuzz")
    from fastapi.testclient import TestClient
    with TestClient(app) as client:  # some data to read back
        client.post("/v1/events", json=programme("f", 20), headers={"Authorization": f"Bearer {_state['key']}"})
    return app


_tmpdir = tempfile.TemporaryDirectory(prefix="cps_fuzz_")
schema = schemathesis.openapi.from_asgi("/openapi.json", _app_for_fuzzing(Path(_tmpdir.name)))


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz_no_server_errors_and_conformant_answers(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {_state['key']}"},
                           checks=[checks.not_a_server_error, checks.status_code_conformance,
                                   checks.content_type_conformance, checks.response_schema_conformance])
