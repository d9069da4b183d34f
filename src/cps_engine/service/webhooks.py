"""Webhooks for balance changes: messages derived from the legs a write posted, an outbox written in
the ledger write's own transaction, and a delivery worker that drains it at least once.

**Messages.**  Every commission leg a call posted (:attr:`cps_engine.ledger.Recorded.legs`: its own,
and those of restated or released events) becomes signed amounts a receiver can sum into the same
balances the ledger shows:

- ``commission.pending``: a leg inside its hold (``+`` earned, ``-`` reversed before the hold ends);
- ``commission.available``: the same leg when its hold ends (scheduled for ``available_at``), or a
  leg posted after its hold ended with a positive amount;
- ``commission.clawed_back``: a negative leg posted after the hold ended (it reduces *available*);
- ``payout.paid``: a payout: ``amount`` left the payee's available balance, ``paid`` was sent and
  ``fee`` withheld.

Amounts are decimal strings.  Each message has an ``id`` (``evt_...``) to de-duplicate on: delivery
is at least once.

**Outbox.**  :func:`write_outbox` inserts one row per message and active endpoint of the tenant on
the connection the ledger just wrote on, so the messages commit or roll back with the entries: a
crash loses neither, and never announces what was not stored.

**Delivery.**  :class:`Deliverer` claims due rows with a lease (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL and MariaDB, so several server processes share the work), POSTs each with
``Cps-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` and the headers
``Cps-Webhook-Id`` / ``Cps-Webhook-Timestamp``, marks a 2xx delivered and retries anything else with
exponential backoff (1 s, 2 s, 4 s ... capped at an hour, with jitter).  A crash between sending and
marking only repeats a delivery once the lease lapses.

>>> sig = sign("whsec_x", b'{"id":"evt_1"}', timestamp=1700000000)
>>> sig.startswith("t=1700000000,v1=")
True
>>> verify_signature("whsec_x", b'{"id":"evt_1"}', sig, now=1700000100)
True
>>> verify_signature("whsec_x", b'{"id":"evt_2"}', sig, now=1700000100)
False
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import sqlalchemy as sa

from cps_engine.ledger import Recorded
from cps_engine.money import Money
from cps_engine.service.store import TABLES, now_us
from cps_engine.times import iso_micros

__all__ = [
    "MESSAGE_TYPES",
    "Deliverer",
    "DeliveryStats",
    "Message",
    "messages_for",
    "sign",
    "verify_signature",
    "write_outbox",
]

MESSAGE_TYPES: Final = ("commission.pending", "commission.available", "commission.clawed_back", "payout.paid")
SIGNATURE_HEADER: Final = "Cps-Signature"
ID_HEADER: Final = "Cps-Webhook-Id"
TIMESTAMP_HEADER: Final = "Cps-Webhook-Timestamp"


def _iso(us: int | None) -> str | None:
    return None if us is None else iso_micros(us)


def _decimal(minor: int, currency: str) -> str:
    return str(Money(minor, currency).amount)


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``Cps-Signature`` header value of ``body`` (Stripe's scheme: HMAC over ``"<t>.<body>"``)."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_signature(secret: str, body: bytes, header: str, *, tolerance: int = 300, now: int | None = None) -> bool:
    """Check a ``Cps-Signature`` header against the raw body, refusing timestamps older (or newer) than
    ``tolerance`` seconds (replays).  For receivers written in Python; others follow the same steps."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        k, _, v = item.strip().partition("=")
        parts.setdefault(k, []).append(v)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    current = int(time.time()) if now is None else now
    if abs(current - t) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, v) for v in parts.get("v1", []))


@dataclass(frozen=True, slots=True)
class Message:
    """One webhook message: ``body`` is what is POSTed (JSON), not before ``due_us``."""

    id: str
    type: str
    due_us: int
    body: dict[str, Any]


def messages_for(tenant: str, results: Iterable[Recorded], *, now: int | None = None) -> list[Message]:
    """The messages announcing the balance changes of ``results`` (see the module docstring)."""
    t_now = now_us() if now is None else now
    out: list[Message] = []

    def add(kind: str, due: int, data: dict[str, Any]) -> None:
        mid = "evt_" + uuid.uuid4().hex
        out.append(Message(mid, kind, due, {"id": mid, "type": kind, "tenant": tenant, "created_at": _iso(t_now),
                                            "data": data}))

    for r in results:
        source = {"type": r.kind, "id": r.id}
        payout: dict[str, Any] | None = None
        for leg in r.legs:
            if leg.payee is None:
                continue
            if leg.kind == "payout":
                if leg.account == "commission":
                    payout = {"payee": leg.payee, "currency": leg.currency,
                              "amount": _decimal(-leg.amount, leg.currency),
                              "paid": _decimal(0, leg.currency), "fee": _decimal(0, leg.currency),
                              "effective_at": _iso(leg.effective_us), "recorded": source}
                    add("payout.paid", t_now, payout)
                elif payout is not None and leg.account in ("paid", "fee"):
                    payout[leg.account] = _decimal(leg.amount, leg.currency)
                continue
            if leg.account != "commission":
                continue
            data = {"payee": leg.payee, "currency": leg.currency, "amount": _decimal(leg.amount, leg.currency),
                    "order": leg.order, "level": leg.level, "revision": leg.revision, "kind": leg.kind,
                    "effective_at": _iso(leg.effective_us), "available_at": _iso(leg.available_us),
                    "recorded": source}
            held = leg.available_us is not None and leg.available_us > leg.effective_us
            if held:
                assert leg.available_us is not None
                add("commission.pending", t_now, data)
                add("commission.available", max(t_now, leg.available_us), data)
            elif leg.amount > 0:
                add("commission.available", t_now, data)
            else:
                add("commission.clawed_back", t_now, data)
    return out


def write_outbox(conn: sa.Connection, tenant: str, messages: Sequence[Message], *,
                 now: int | None = None) -> int:
    """Insert the messages for every active endpoint of ``tenant`` on ``conn`` (the ledger write's
    transaction); returns the number of rows."""
    if not messages:
        return 0
    w = TABLES.webhooks
    hooks = conn.execute(sa.select(w.c.id).where(w.c.tenant == tenant, w.c.disabled_us.is_(None))).scalars().all()
    if not hooks:
        return 0
    t_now = now_us() if now is None else now
    rows = [{"message_id": m.id, "webhook_id": hook, "tenant": tenant, "type": m.type,
             "body": json.dumps(m.body, separators=(",", ":"), ensure_ascii=False), "state": "pending",
             "due_us": m.due_us, "attempts": 0, "lease_us": None, "delivered_us": None, "last_error": None,
             "created_us": t_now} for m in messages for hook in hooks]
    conn.execute(TABLES.outbox.insert(), rows)
    return len(rows)


@dataclass
class DeliveryStats:
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return self.delivered + self.failed


class Deliverer:
    """Drains the outbox (of every tenant, or of ``tenant``): claim due rows (a lease), POST them signed,
    mark delivered or back off."""

    def __init__(self, engine: sa.Engine, *, client: httpx.Client | None = None, lease_s: float = 30.0,
                 timeout_s: float = 10.0, base_delay_s: float = 1.0, max_delay_s: float = 3600.0,
                 max_attempts: int = 25, batch: int = 200, tenant: str | None = None) -> None:
        self.engine = engine
        self.tenant = tenant
        self.client = client or httpx.Client(timeout=timeout_s, follow_redirects=False)
        self.lease_us = int(lease_s * 1_000_000)
        self.base_delay_s, self.max_delay_s, self.max_attempts, self.batch = (base_delay_s, max_delay_s,
                                                                             max_attempts, batch)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def backoff_us(self, attempts: int) -> int:
        """Delay before attempt ``attempts + 1``: ``base * 2**(attempts-1)`` capped, times a 0.5-1.0 jitter."""
        delay = min(self.max_delay_s, self.base_delay_s * 2 ** max(attempts - 1, 0))
        return int(delay * (0.5 + random.random() / 2) * 1_000_000)

    def _claim(self) -> list[sa.Row[Any]]:
        o, w = TABLES.outbox, TABLES.webhooks
        now = now_us()
        with self.engine.begin() as conn:
            due = (sa.select(o.c.id).where(o.c.state == "pending", o.c.due_us <= now,
                                           sa.or_(o.c.lease_us.is_(None), o.c.lease_us < now))
                   .order_by(o.c.due_us, o.c.id).limit(self.batch))
            if self.tenant is not None:
                due = due.where(o.c.tenant == self.tenant)
            if conn.dialect.name != "sqlite":
                due = due.with_for_update(skip_locked=True)
            ids = list(conn.execute(due).scalars())
            if not ids:
                return []
            conn.execute(o.update().where(o.c.id.in_(ids)).values(lease_us=now + self.lease_us))
            q = (sa.select(o.c.id, o.c.message_id, o.c.body, o.c.attempts, w.c.url, w.c.secret, w.c.disabled_us)
                 .join(w, w.c.id == o.c.webhook_id).where(o.c.id.in_(ids)).order_by(o.c.due_us, o.c.id))
            return list(conn.execute(q))

    def _post(self, row: sa.Row[Any]) -> str | None:
        """POST one message; ``None`` when the endpoint took it (2xx), else the error."""
        if row.disabled_us is not None:
            return "endpoint removed"
        body = row.body.encode()
        ts = int(time.time())
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(row.secret, body, timestamp=ts),
                   ID_HEADER: row.message_id, TIMESTAMP_HEADER: str(ts), "User-Agent": "cps-engine-webhooks"}
        try:
            resp = self.client.post(row.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {str(exc)[:200]}"
        return None if 200 <= resp.status_code < 300 else f"HTTP {resp.status_code}"

    def run_once(self) -> DeliveryStats:
        """Deliver one batch of due messages: POST each, then mark them in one transaction."""
        stats = DeliveryStats()
        o = TABLES.outbox
        rows = self._claim()
        if not rows:
            return stats
        outcomes = [(row, self._post(row)) for row in rows]
        now = now_us()
        delivered = [row.id for row, error in outcomes if error is None]
        with self.engine.begin() as conn:
            if delivered:
                conn.execute(o.update().where(o.c.id.in_(delivered)).values(
                    state="delivered", delivered_us=now, attempts=o.c.attempts + 1, lease_us=None, last_error=None))
                stats.delivered += len(delivered)
            for row, error in outcomes:
                if error is None:
                    continue
                attempts = row.attempts + 1
                dead = attempts >= self.max_attempts or row.disabled_us is not None
                conn.execute(o.update().where(o.c.id == row.id).values(
                    state="dead" if dead else "pending", attempts=attempts, lease_us=None, last_error=error,
                    due_us=now + self.backoff_us(attempts)))
                stats.failed += 1
                stats.dead += dead
                stats.errors.append(error)
        return stats

    def drain(self, *, timeout_s: float = 60.0) -> DeliveryStats:
        """Deliver until nothing is due now (failures wait for their backoff) or ``timeout_s`` passes."""
        total = DeliveryStats()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            s = self.run_once()
            total.delivered += s.delivered
            total.failed += s.failed
            total.dead += s.dead
            total.errors += s.errors
            if not s.attempted:
                break
        return total

    def pending(self) -> int:
        """Rows not yet delivered (due or not)."""
        o = TABLES.outbox
        q = sa.select(sa.func.count()).select_from(o).where(o.c.state == "pending")
        if self.tenant is not None:
            q = q.where(o.c.tenant == self.tenant)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar() or 0)

    # ------------------------------------------------------------------ background thread
    def wake(self) -> None:
        """Deliver now rather than at the next poll (called after a write added rows)."""
        self._wake.set()

    def start(self, *, poll_s: float = 1.0) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                try:
                    busy = self.run_once().attempted > 0
                except Exception:  # a database hiccup: try again at the next poll
                    busy = False
                if not busy:
                    self._wake.wait(poll_s)
                    self._wake.clear()

        self._thread = threading.Thread(target=loop, name="cps-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self.client.close()
