"""Fixtures of the service tests: the app on SQLite and on PostgreSQL, tenants with keys, a local
webhook receiver (127.0.0.1 only) and uvicorn subprocesses.

PostgreSQL comes from ``CPS_TEST_POSTGRES_URL`` (a throwaway database per session, as in the ledger
tests); unreachable, its tests skip unless ``CPS_REQUIRE_DB=1``.  Every test gets its own tenants
(fresh ids, so fresh ledger table prefixes).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cps_engine.service import Admin, create_app
from cps_engine.service.webhooks import verify_signature
from tests.ledger.conftest import PG_URL, Server

POLICY = {"kind": "capped_multilevel", "rates": ["10%", "5%"]}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    s = Server("postgresql", PG_URL)
    yield s
    s.drop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL of the backend under test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    server: Server = request.getfixturevalue("pg_server")
    server.get()
    return server.url.render_as_string(hide_password=False)


@pytest.fixture
def pg_db(pg_server: Server) -> str:
    pg_server.get()
    return pg_server.url.render_as_string(hide_password=False)


def tenant_id(name: str) -> str:
    return f"{name}{secrets.token_hex(3)}"


@dataclass
class Api:
    """A test client of the app with two tenants (``a``, ``b``) and a key each."""

    client: TestClient
    admin: Admin
    a: str
    b: str
    keys: dict[str, str]

    def h(self, tenant: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}", **extra}

    def post(self, tenant: str, path: str, body: Any, **headers: str) -> httpx.Response:
        return self.client.post(path, content=json.dumps(body), headers=self.h(tenant, **headers))

    def get(self, tenant: str, path: str, **params: str) -> httpx.Response:
        return self.client.get(path, params=params, headers=self.h(tenant))


@pytest.fixture
def api(db: str) -> Iterator[Api]:
    app = create_app(db, deliver=False)
    admin: Admin = app.state.service.admin
    a, b = tenant_id("a"), tenant_id("b")
    for t in (a, b):
        admin.add_tenant(t, POLICY, hold_days=7, min_payout="1.00 CNY")
    keys = {a: admin.add_key(a), b: admin.add_key(b)}
    with TestClient(app) as client:
        yield Api(client, admin, a, b, keys)
    admin.engine.dispose()


# ---------------------------------------------------------------------------------------------- events
def share(sid: str, sharer: str, parent: str | None = None, at: str = "2026-03-01T10:00:00+08:00") -> dict[str, Any]:
    return {"type": "share", "id": sid, "sharer": sharer, "parent": parent, "at": at}


def order(oid: str, sh: str, amount: str, at: str = "2026-03-01T12:00:00+08:00", buyer: str = "cat") -> dict[str, Any]:
    return {"type": "order", "id": oid, "buyer": buyer, "share": sh, "amount": amount, "currency": "CNY", "at": at}


def programme(prefix: str, n_orders: int, *, people: int = 6) -> list[dict[str, Any]]:
    """Shares in chains and orders through them (refunds on some), time-ordered, as JSON dicts."""
    out: list[dict[str, Any]] = []
    for i in range(people):
        out.append(share(f"{prefix}s{i}", f"{prefix}u{i}", f"{prefix}s{i - 1}" if i else None,
                         at=f"2026-01-01T10:{i:02d}:00+08:00"))
    for k in range(n_orders):
        day, minute = 2 + k // 1000, k % 1000
        at = f"2026-01-{day:02d}T{minute // 60:02d}:{minute % 60:02d}:00+08:00"
        out.append(order(f"{prefix}o{k}", f"{prefix}s{k % people}", f"{10 + k % 90}.00", at=at))
        if k % 7 == 3:
            out.append({"type": "refund", "id": f"{prefix}r{k}", "order": f"{prefix}o{k}", "amount": "5.00",
                        "at": at.replace("T", "T").replace(":00+08:00", ":30+08:00")})
    return out


# ---------------------------------------------------------------------------------------------- webhooks
@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1: keeps every verified delivery; ``fail_first`` answers 500 to the
    first N requests."""

    secret: str = ""
    fail_first: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    requests: int = 0
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def unique(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {m["id"]: m for m in self.received}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with rec.lock:
                rec.requests += 1
                failing = rec.requests <= rec.fail_first
                ok = verify_signature(rec.secret, body, self.headers.get("Cps-Signature", ""))
                if not ok:
                    rec.bad_signatures += 1
                elif not failing:
                    msg = json.loads(body)
                    assert msg["id"] == self.headers["Cps-Webhook-Id"]
                    rec.received.append(msg)
            self.send_response(500 if failing or not ok else 204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------------------------------------- uvicorn
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Uvicorn:
    db: str
    workers: int = 1
    deliver: bool = True
    lease_s: float = 30
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> Uvicorn:
        self.port = free_port()
        env = {**os.environ, "CPS_SERVICE_DB": self.db, "CPS_SERVICE_DELIVER": "1" if self.deliver else "0",
               "CPS_SERVICE_POLL": "0.2",
               "CPS_SERVICE_LEASE": str(self.lease_s)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "cps_engine.service.app:create_app_from_env", "--factory",
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers),
             "--log-level", "warning", "--no-access-log"],
            env=env, cwd=ROOT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.proc.returncode}")
        raise RuntimeError("uvicorn did not start")

    def kill(self) -> None:
        """SIGKILL the whole process group (the supervisor and its workers): no cleanup runs."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def uvicorn_server() -> Iterator[Callable[..., Uvicorn]]:
    started: list[Uvicorn] = []

    def start(db: str, **kw: Any) -> Uvicorn:
        u = Uvicorn(db, **kw).start()
        started.append(u)
        return u

    yield start
    for u in started:
        u.stop()


def engine_of(db: str) -> sa.Engine:
    from cps_engine.service import make_engine
    return make_engine(db)
