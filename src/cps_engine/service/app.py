"""The HTTP API (FastAPI): the engine and ledger for backends that are not Python.

Routes (all under ``/v1``, each authenticated by a tenant's API key, ``Authorization: Bearer cpsk_...``;
a key sees only its tenant's ledger):

- ``POST /events``: one event (a JSON object) or a batch (an array), recorded in one transaction:
  idempotent by ``(type, id)`` exactly as the ledger is; an ``Idempotency-Key`` header replays the
  first response of that key (the same key with another body is refused);
- ``GET /payees/{payee}/balance?as_of=&currency=``; ``GET /orders/{order}/lines``;
  ``GET /statements/{period}?tz=&payee=`` (manifest and an inclusion proof per line);
- ``POST /payouts``: applied, or refused with the ledger's typed error (``InsufficientBalance``...);
- ``GET /parked``; ``GET /verify``.

Money is exact: amounts are decimal strings in and out; a JSON number where money goes is refused
with a problem naming the record and field.  Errors are RFC 9457 problems (:mod:`.problems`).

One request is one database transaction: the ledger's entries, the webhook outbox rows
(:mod:`.webhooks`) and the stored idempotent response commit together or not at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from fractions import Fraction
from typing import Annotated, Any, Final

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from cps_engine.audit import statement_from_ledger
from cps_engine.audit.merkle import node_hash
from cps_engine.errors import CpsError, EventValidationError, InvalidEvent, InvalidInput
from cps_engine.ledger import Ledger, Recorded
from cps_engine.limits import MAX_ID_LENGTH
from cps_engine.models import Event, parse_event
from cps_engine.money import Money, format_rate
from cps_engine.service import problems
from cps_engine.service.problems import Problem, ProblemDetail
from cps_engine.service.store import TABLES, Admin, ledger_prefix, make_engine, now_us
from cps_engine.service.webhooks import Deliverer, messages_for, write_outbox
from cps_engine.textio import loads_json
from cps_engine.times import iso_micros

__all__ = ["MAX_BATCH", "MAX_BODY", "MONEY_FIELDS", "Service", "create_app", "create_app_from_env", "openapi_document"]

#: most events in one ``POST /v1/events``; most bytes in one request body
MAX_BATCH: Final = 10_000
MAX_BODY: Final = 16 * 1024 * 1024
#: fields that carry money (JSON numbers are refused there)
MONEY_FIELDS: Final = frozenset({"amount", "shipping", "tax", "unit_price"})
_MAX_ERRORS: Final = 100


# ---------------------------------------------------------------------------------------------- JSON shapes
def _money_number(raw: dict[str, Any], record: str | None) -> CpsError | None:
    """A JSON number (not a decimal string) in a money field, with where it is."""
    def bad(path: str, value: object) -> CpsError:
        return InvalidEvent(f"{path.rsplit('.', 1)[-1]} {value!r} is a JSON number; give money as a decimal "
                            "string (e.g. \"199.00\") to stay exact", record=record, field=path)

    for key, value in raw.items():
        if key in MONEY_FIELDS and isinstance(value, (int, float)) and not isinstance(value, bool):
            return bad(key, value)
        if key == "lines" and isinstance(value, list):
            for i, line in enumerate(value):
                if isinstance(line, dict):
                    price = line.get("unit_price")
                    if isinstance(price, (int, float)) and not isinstance(price, bool):
                        return bad(f"lines.{i}.unit_price", price)
    return None


def parse_body_event(raw: Any, index: int | None = None) -> Event:
    """One event of a request body, validated by the library (its messages), money as strings only."""
    if not isinstance(raw, dict):
        raise InvalidEvent("an event is a JSON object", field=None if index is None else f"[{index}]")
    record = raw.get("id") if isinstance(raw.get("id"), str) else None
    err = _money_number(raw, record)
    if err is not None:
        raise err
    return parse_event(raw)


def line_json(line: Any) -> dict[str, Any]:
    row = line.as_row()
    row["path"] = list(line.provenance.path)
    return dict(row)


def recorded_json(r: Recorded) -> dict[str, Any]:
    return {"type": r.kind, "id": r.id, "outcome": r.outcome.value, "reason": r.reason,
            "released": [{"type": k, "id": i} for k, i in r.released], "lines": [line_json(x) for x in r.lines]}


def _iso(us: int | None) -> str | None:
    return None if us is None else iso_micros(us)


def all_proofs(hashes: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The RFC 6962 root and every leaf's inclusion proof in O(n log n) (the same proofs as
    :func:`cps_engine.audit.merkle.inclusion_proof`, which costs O(n) per leaf)."""
    if not hashes:
        from cps_engine.audit.merkle import EMPTY_ROOT
        return EMPTY_ROOT, []
    if len(hashes) == 1:
        return hashes[0], [[]]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    left_root, left = all_proofs(hashes[:k])
    right_root, right = all_proofs(hashes[k:])
    return node_hash(left_root, right_root), [[*p, right_root] for p in left] + [[*p, left_root] for p in right]


# ---------------------------------------------------------------------------------------------- response models
class Released(BaseModel):
    type: str
    id: str


class Line(BaseModel):
    order: str
    payee: str
    level: int
    amount: str
    currency: str
    rate: str
    rule: str
    policy: str
    config_hash: str
    base: str
    path: list[str]
    rounding: str


class Result(BaseModel):
    type: str
    id: str
    outcome: str
    reason: str | None
    released: list[Released]
    lines: list[Line]


class EventsResponse(BaseModel):
    results: list[Result]
    counts: dict[str, int]


class PayoutResponse(BaseModel):
    result: Result


class BalanceRow(BaseModel):
    payee: str
    currency: str
    pending: str
    available: str
    paid: str
    fee: str
    earned: str
    reversed: str


class BalanceResponse(BaseModel):
    payee: str
    as_of: str
    balances: list[BalanceRow]


class OrderCommissionLine(BaseModel):
    """One commission line of an order, net of refunds, with its provenance."""

    payee: str
    level: int
    amount: str
    currency: str
    rate: str | None
    config_hash: str | None
    policy: str | None
    policy_kind: str | None
    revision: int | None
    line: int | None
    effective_at: str | None
    available_at: str | None
    #: the policy rule that produced the line, and the chain path (share or bind ids) behind it
    rule: str | None = None
    path: list[str] | None = None
    #: the net base the line is computed on (decimal string) and the rounding mode
    base: str | None = None
    rounding: str | None = None


class OrderLinesResponse(BaseModel):
    order: str
    lines: list[OrderCommissionLine]


class StatementLineOut(BaseModel):
    index: int
    payee: str
    order: str
    level: int | None
    currency: str
    base: str | None
    rate: str | None
    amount: str
    state: str | None
    leaf_hash: str
    proof: list[str]


class StatementResponse(BaseModel):
    manifest: dict[str, Any]
    lines: list[StatementLineOut]


class ParkedOut(BaseModel):
    type: str
    id: str
    at: str | None
    status: str
    waits_for: str | None
    reason: str


class ParkedResponse(BaseModel):
    parked: list[ParkedOut]


class Head(BaseModel):
    seq: int
    hash: str


class VerifyResponse(BaseModel):
    ok: bool
    entries: int
    head: Head
    problems: list[str]


_PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {"model": ProblemDetail, "description": desc, "content": {problems.MEDIA_TYPE: {}}}
    for code, desc in ((401, "missing, unknown or revoked API key"), (422, "invalid input (names record and field)"))}
_WRITE_PROBLEMS: dict[int | str, dict[str, Any]] = {
    **_PROBLEMS,
    409: {"model": ProblemDetail, "description": "an event id seen before with another payload, or an "
          "Idempotency-Key reused with another body", "content": {problems.MEDIA_TYPE: {}}},
    413: {"model": ProblemDetail, "description": "body or batch too large", "content": {problems.MEDIA_TYPE: {}}}}

IdemHeader = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255,
                                          description="replays the first response of this key")]


# ---------------------------------------------------------------------------------------------- the service
class Service:
    """What the app holds: the engine, the admin tables, a write lock per tenant, the deliverer."""

    def __init__(self, engine: sa.Engine, *, deliverer: Deliverer | None = None) -> None:
        self.engine = engine
        self.admin = Admin(engine)
        self.deliverer = deliverer
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def lock(self, tenant: str) -> threading.Lock:
        """One writer per tenant in this process (the ledger's database lock orders processes)."""
        with self._guard:
            return self._locks.setdefault(tenant, threading.Lock())

    @contextmanager
    def reading(self, tenant: str) -> Iterator[Ledger]:
        with self.engine.connect() as conn:
            yield Ledger(conn, prefix=ledger_prefix(tenant))

    # ------------------------------------------------------------------ writes
    def write(self, tenant: str, route: str, idem_key: str | None, request_hash: str,
              work: Callable[[Ledger], tuple[int, dict[str, Any], list[Recorded]]]) -> tuple[int, dict[str, Any]]:
        """Run ``work`` on the tenant's ledger in one transaction with its outbox rows and stored
        idempotent response; replay the stored response of ``idem_key``."""
        idem = TABLES.idempotency

        def stored(conn: sa.Connection) -> tuple[int, dict[str, Any]] | None:
            if idem_key is None:
                return None
            row = conn.execute(sa.select(idem.c.request_sha256, idem.c.status, idem.c.body).where(
                idem.c.tenant == tenant, idem.c.route == route, idem.c.key == idem_key)).first()
            if row is None:
                return None
            if row.request_sha256 != request_hash:
                raise Problem(409, "idempotency-key-reused", "this Idempotency-Key was used with another request "
                              "body", field="Idempotency-Key")
            return int(row.status), json.loads(row.body)

        with self.lock(tenant):
            try:
                with self.engine.begin() as conn:
                    replay = stored(conn)
                    if replay is not None:
                        return replay
                    led = Ledger(conn, prefix=ledger_prefix(tenant))
                    status, body, results = work(led)
                    rows = write_outbox(conn, tenant, messages_for(tenant, results))
                    if idem_key is not None:
                        conn.execute(idem.insert().values(tenant=tenant, route=route, key=idem_key,
                                                          request_sha256=request_hash, status=status,
                                                          body=json.dumps(body), created_us=now_us()))
            except sa.exc.IntegrityError:
                if idem_key is None:
                    raise
                with self.engine.connect() as conn:  # another process stored this key first: replay it
                    replay = stored(conn)
                if replay is None:
                    raise
                return replay
        if rows and self.deliverer is not None:
            self.deliverer.wake()
        return status, body


def _service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def _tenant(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    svc = _service(request)
    scheme, _, key = (authorization or "").partition(" ")
    tenant = svc.admin.authenticate(key.strip()) if scheme.lower() == "bearer" else None
    if tenant is None:
        raise Problem(401, "unauthorized", "a valid API key is required: Authorization: Bearer cpsk_...",
                      headers={"WWW-Authenticate": "Bearer"})
    return tenant


TenantDep = Annotated[str, Depends(_tenant)]


async def _body(request: Request) -> tuple[Any, str]:
    """The JSON body (strict: no duplicate keys, bounded nesting) and its sha256."""
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        raise Problem(413, "body-too-large", f"a request body is at most {MAX_BODY} bytes")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY:
            raise Problem(413, "body-too-large", f"a request body is at most {MAX_BODY} bytes")
    return loads_json(bytes(data), source="request body", error=InvalidInput), hashlib.sha256(data).hexdigest()


def _check_id(value: str, field: str) -> str:
    if not value.strip() or len(value) > MAX_ID_LENGTH:
        raise InvalidInput(f"an id is 1 to {MAX_ID_LENGTH} characters", record=value[:80], field=field)
    return value


def _when(text: str | None, field: str) -> datetime | None:
    if text is None:
        return None
    from cps_engine.cli_ledger import parse_when  # the CLI's own parser, so the same messages

    return parse_when(text, field=field)


def create_app(db: str | sa.Engine, *, deliver: bool = True, poll_s: float = 1.0,
               deliverer: Deliverer | None = None) -> FastAPI:
    """The app on a database (URL, SQLite path or engine).  ``deliver``: run the webhook delivery
    worker in this process (a thread, woken after every write that adds outbox rows)."""
    engine = make_engine(db) if isinstance(db, str) else db
    worker = deliverer if deliverer is not None else (Deliverer(engine) if deliver else None)
    service = Service(engine, deliverer=worker)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if worker is not None:
            worker.start(poll_s=poll_s)
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()

    app = FastAPI(title="cps_engine commission service", version="1", lifespan=lifespan,
                  description="Distribution commissions (CPS) and an exact double-entry commission ledger over "
                              "HTTP. Amounts are decimal strings; errors are RFC 9457 problem+json.")
    app.state.service = service

    # -------------------------------------------------------------- errors
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problems.response(problems.problem(exc.status, exc.slug, exc.detail, **exc.extra), exc.headers)

    @app.exception_handler(CpsError)
    async def _cps(request: Request, exc: CpsError) -> JSONResponse:
        return problems.response(problems.from_error(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in err.get("loc", ())]
        field = loc[-1] if loc else None
        detail = f"field {field!r}: {err.get('msg', 'invalid')}" if field else str(err.get("msg", "invalid"))
        return problems.response(problems.problem(422, "invalid-input", detail, field=field))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        return problems.response(problems.problem(exc.status_code, "http", str(exc.detail)), headers)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        return problems.response(problems.problem(500, "internal", "internal error (see the server log)"))

    # -------------------------------------------------------------- routes
    @app.get("/healthz", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    events_body = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "oneOf": [{"$ref": "#/components/schemas/Event"},
                  {"type": "array", "maxItems": MAX_BATCH, "items": {"$ref": "#/components/schemas/Event"}}]}}}}}

    @app.post("/v1/events", response_model=EventsResponse, responses=_WRITE_PROBLEMS, openapi_extra=events_body,
              summary="Record one event or a batch (one transaction)")
    async def post_events(request: Request, tenant: TenantDep, idempotency_key: IdemHeader = None) -> JSONResponse:
        doc, digest = await _body(request)
        raws = doc if isinstance(doc, list) else [doc]
        if len(raws) > MAX_BATCH:
            raise Problem(413, "batch-too-large", f"a batch is at most {MAX_BATCH} events, not {len(raws)}")
        events: list[Event] = []
        errors: list[tuple[int, CpsError]] = []
        for i, raw in enumerate(raws):
            try:
                events.append(parse_body_event(raw, i))
            except CpsError as exc:
                errors.append((i, exc))
                if len(errors) >= _MAX_ERRORS:
                    break
        if errors:
            if len(errors) == 1:
                index, first = errors[0]
                raise Problem(422, problems.from_error(first)["type"].rsplit(":", 1)[-1], str(first),
                              error=type(first).__name__, record=first.record, field=first.field, index=index)
            raise Problem(422, "event-validation-error", str(EventValidationError([e for _, e in errors])),
                          error="EventValidationError", errors=[
                              {"index": i, "detail": str(e), "record": e.record, "field": e.field,
                               "error": type(e).__name__} for i, e in errors])

        def work(led: Ledger) -> tuple[int, dict[str, Any], list[Recorded]]:
            # one batch in the request's transaction: the ledger's batch path (prefetched idempotency
            # look-ups, one flush), every event's Recorded kept for the answer and the outbox
            results = led.record_many(events, batch_size=max(len(events), 1), results=True).recorded
            counts: dict[str, int] = {}
            for r in results:
                counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
            return 200, {"results": [recorded_json(r) for r in results], "counts": counts}, results

        status, body = await run_in_threadpool(service.write, tenant, "events", idempotency_key, digest, work)
        return JSONResponse(body, status_code=status)

    payout_body = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/PayoutRequest"}}}}}

    @app.post("/v1/payouts", response_model=PayoutResponse, status_code=201, responses=_WRITE_PROBLEMS,
              openapi_extra=payout_body, summary="Pay out now, or be refused (over balance, below minimum)")
    async def post_payout(request: Request, tenant: TenantDep, idempotency_key: IdemHeader = None) -> JSONResponse:
        doc, digest = await _body(request)
        if not isinstance(doc, dict):
            raise InvalidInput("a payout request is a JSON object")
        raw = {"type": "payout", **{k: v for k, v in doc.items() if k != "type"}}
        if "at" not in raw:
            raw["at"] = datetime.now(UTC).isoformat()
        ev = parse_body_event(raw)

        def work(led: Ledger) -> tuple[int, dict[str, Any], list[Recorded]]:
            r = led.record(ev, strict=True)
            return 201, {"result": recorded_json(r)}, [r]

        status, body = await run_in_threadpool(service.write, tenant, "payouts", idempotency_key, digest, work)
        return JSONResponse(body, status_code=status)

    @app.get("/v1/payees/{payee}/balance", response_model=BalanceResponse, responses=_PROBLEMS,
             summary="A payee's balances per currency as of a time")
    def get_balance(tenant: TenantDep, payee: Annotated[str, Path(max_length=MAX_ID_LENGTH)],
                    as_of: Annotated[str | None, Query(description="ISO time or date; default now")] = None,
                    currency: Annotated[str | None, Query(max_length=3)] = None) -> dict[str, Any]:
        _check_id(payee, "payee")
        when = _when(as_of, "as_of") or datetime.now(UTC)
        if currency is not None:
            Money(0, currency.upper())  # an unknown code is refused by name
            currency = currency.upper()
        with service.reading(tenant) as led:
            rows = led.balances(payee, currency, as_of=when)
        return {"payee": payee, "as_of": when.isoformat(), "balances": [
            {**b.as_json(), "earned": str(b.earned.amount), "reversed": str(b.reversed.amount)} for b in rows]}

    @app.get("/v1/orders/{order}/lines", response_model=OrderLinesResponse, responses=_PROBLEMS,
             summary="An order's current commission lines (net of refunds) with provenance")
    def get_order_lines(tenant: TenantDep, order: Annotated[str, Path(max_length=MAX_ID_LENGTH)]) -> dict[str, Any]:
        _check_id(order, "order")
        with service.reading(tenant) as led:
            lines = led.order_lines(order)
            entries = [e for e in led.entries(order=order) if e.account == "commission" and e.payee is not None]
            policies = {t.config_hash: t.policy for t in led.terms}
            snap = led.order_snapshot(order)
        latest = {(e.payee, e.level): e for e in entries}
        awards = {(a.payee, a.level): a for a in snap.awards} if snap is not None else {}
        out = []
        for payee, level, amount in lines:
            e = latest.get((payee, level))
            award = awards.get((payee, level))
            pol = policies.get(e.config_hash) if e is not None and e.config_hash else None
            out.append({"payee": payee, "level": level, "amount": str(amount.amount), "currency": amount.currency,
                        "rate": format_rate(Fraction(e.rate)) if e and e.rate else None,
                        "config_hash": e.config_hash if e else None,
                        "policy": pol.label if pol else None, "policy_kind": pol.kind if pol else None,
                        "revision": e.revision if e else None, "line": e.line if e else None,
                        "effective_at": _iso(e.effective_us) if e else None,
                        "available_at": _iso(e.available_us) if e else None,
                        "rule": award.rule if award else None, "path": list(award.path) if award else None,
                        "base": str(Money(snap.net_base, snap.currency).amount) if snap and award else None,
                        "rounding": snap.rounding if snap and award else None})
        return {"order": order, "lines": out}

    @app.get("/v1/statements/{period}", response_model=StatementResponse, responses=_PROBLEMS,
             summary="The statement of a period with its manifest and an inclusion proof per line")
    def get_statement(tenant: TenantDep, period: Annotated[str, Path(max_length=40)],
                      tz: Annotated[str, Query(max_length=10)] = "UTC",
                      payee: Annotated[str | None, Query(max_length=MAX_ID_LENGTH)] = None) -> dict[str, Any]:
        with service.reading(tenant) as led:
            st = statement_from_ledger(led, period, tz=tz)
        hashes = st.leaf_hashes()
        _, proofs = all_proofs(hashes)
        lines = []
        for i, (line, h, proof) in enumerate(zip(st.lines, hashes, proofs, strict=True)):
            if payee is not None and line.payee != payee:
                continue
            lines.append({"index": i, **line.as_dict(), "leaf_hash": h.hex(), "proof": [p.hex() for p in proof]})
        return {"manifest": st.manifest.as_dict(leaf_hashes=False) if st.manifest else {}, "lines": lines}

    @app.get("/v1/parked", response_model=ParkedResponse, responses=_PROBLEMS,
             summary="Events kept but not applied: parked (waiting) or rejected")
    def get_parked(tenant: TenantDep) -> dict[str, Any]:
        with service.reading(tenant) as led:
            rows = led.parked()
        return {"parked": [{"type": p.kind, "id": p.id, "at": _iso(p.at_us), "status": p.status,
                            "waits_for": p.waits_for, "reason": p.reason} for p in rows]}

    @app.get("/v1/verify", response_model=VerifyResponse, responses=_PROBLEMS,
             summary="Recompute the tenant's hash chain and check every posting balances")
    def get_verify(tenant: TenantDep) -> dict[str, Any]:
        with service.reading(tenant) as led:
            v = led.verify()
        return {"ok": v.ok, "entries": v.entries, "head": {"seq": v.head.seq, "hash": v.head.hash},
                "problems": list(v.problems)}

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


# ---------------------------------------------------------------------------------------------- OpenAPI
_MONEY_SCHEMA: Final = {"type": "string", "pattern": r"^[0-9]{1,15}(\.[0-9]{1,4})?$", "examples": ["199.00"],
                        "description": "a decimal string in major units (JSON numbers are refused)"}


def _money_only(schema: dict[str, Any]) -> dict[str, Any]:
    """A field schema of the library (number or string, maybe null) made decimal-string only."""
    nullable = any(s.get("type") == "null" for s in schema.get("anyOf", ()))
    out: dict[str, Any] = {"anyOf": [_MONEY_SCHEMA, {"type": "null"}]} if nullable else dict(_MONEY_SCHEMA)
    if "default" in schema:
        out["default"] = schema["default"]
    return out


def event_schemas() -> dict[str, Any]:
    """The library's event models as OpenAPI components (money fields as decimal strings)."""
    from cps_engine.models import _ADAPTER

    schema = _ADAPTER.json_schema(ref_template="#/components/schemas/{model}")
    defs: dict[str, Any] = schema.pop("$defs")
    for d in defs.values():
        for name, prop in d.get("properties", {}).items():
            if name in MONEY_FIELDS:
                d["properties"][name] = _money_only(prop)
    defs["Event"] = schema
    payout = json.loads(json.dumps(defs["PayoutEvent"]))
    payout["properties"].pop("type", None)
    payout["required"] = [r for r in payout["required"] if r != "at"]
    payout["title"] = "PayoutRequest"
    payout["description"] = "A payout now (``at`` defaults to the server's clock)."
    defs["PayoutRequest"] = payout
    return defs


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    comps = doc.setdefault("components", {})
    comps.setdefault("schemas", {}).update(event_schemas())
    comps["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer",
                                           "description": "a tenant's API key, cpsk_<id>_<secret>"}}
    problem_content = {problems.MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}}
    for path, ops in doc["paths"].items():
        for op in ops.values():
            for code, resp in op.get("responses", {}).items():
                if code.isdigit() and int(code) >= 400:
                    resp["content"] = problem_content
            if path.startswith("/v1/"):
                op["security"] = [{"apiKey": []}]
                # the key is read from the Authorization header by the security scheme, not a parameter
                op["parameters"] = [p for p in op.get("parameters", []) if p.get("name") != "authorization"]
                if not op["parameters"]:
                    del op["parameters"]
    app.openapi_schema = doc
    return doc


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the service (``docs/openapi.json``; no database is touched)."""
    app = create_app(sa.create_engine("sqlite://"), deliver=False)
    return app.openapi()


def create_app_from_env() -> FastAPI:
    """The app for ``uvicorn --factory`` (``cps-engine serve``): ``CPS_SERVICE_DB``;
    ``CPS_SERVICE_DELIVER=0`` leaves webhook delivery to ``cps-engine serve deliver``;
    ``CPS_SERVICE_POLL`` / ``CPS_SERVICE_LEASE``: the delivery poll interval and claim lease (s)."""
    db = os.environ["CPS_SERVICE_DB"]
    deliver = os.environ.get("CPS_SERVICE_DELIVER", "1") != "0"
    lease = float(os.environ.get("CPS_SERVICE_LEASE", "30"))  # ok: seconds, not money
    poll = float(os.environ.get("CPS_SERVICE_POLL", "1.0"))  # ok: seconds, not money
    engine = make_engine(db)
    return create_app(engine, deliver=deliver, deliverer=Deliverer(engine, lease_s=lease) if deliver else None,
                      poll_s=poll)
