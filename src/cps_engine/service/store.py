"""The service's own tables, beside the tenants' ledgers in the same database: tenants, API keys,
webhook endpoints, the webhook outbox and stored ``Idempotency-Key`` responses.

Each tenant (a merchant's programme) has its own ledger tables, prefix ``t_<tenant>_``
(:func:`ledger_prefix`), so its own terms versions and hash chain.  The service's tables share the
prefix ``svc_``.

**API keys** look like ``cpsk_<key id>_<secret>``.  Only ``sha256(salt || secret)`` is stored, with a
random salt per key; a presented key is looked up by its id and its digest compared with
:func:`hmac.compare_digest` (constant time).  A tenant may hold several active keys at once, so a key
is rotated without downtime: add the new key, move the clients, revoke the old one.

>>> import sqlalchemy as sa
>>> engine = sa.create_engine("sqlite://")
>>> admin = Admin(engine)
>>> admin.add_tenant("acme", {"kind": "first_sharer", "rate": "10%"}, hold_days=7)
'acme'
>>> key = admin.add_key("acme")
>>> admin.authenticate(key), admin.authenticate(key[:-1] + "x")
('acme', None)
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import sqlalchemy as sa

from cps_engine.errors import CpsError
from cps_engine.ledger import Ledger, sqlite_engine
from cps_engine.policies import PolicyConfig

__all__ = [
    "KEY_PREFIX",
    "Admin",
    "KeyInfo",
    "ServiceTables",
    "TenantError",
    "WebhookInfo",
    "ledger_prefix",
    "make_engine",
    "now_us",
]

KEY_PREFIX: Final = "cpsk_"
#: tenant ids become table-name prefixes: lower-case letters, digits and ``_``, a letter first
TENANT_ID: Final = re.compile(r"[a-z][a-z0-9_]{0,23}")
_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER keys only


class TenantError(CpsError, ValueError):
    """A tenant, key or webhook that does not exist or cannot be created as asked."""


def now_us() -> int:
    """Wall-clock time in µs since the epoch."""
    return time.time_ns() // 1000


def ledger_prefix(tenant: str) -> str:
    """The table prefix of a tenant's ledger."""
    return f"t_{tenant}_"


def make_engine(db: str) -> sa.Engine:
    """An engine for a database URL, or a SQLite file (a single-node trial) for a plain path.

    MariaDB/MySQL engines run READ COMMITTED, as the ledger requires there."""
    if "://" not in db:
        return sqlite_engine(Path(db))
    url = sa.make_url(db)
    if url.get_backend_name() == "sqlite":
        return sqlite_engine(Path(url.database or ":memory:"))
    kw: dict[str, Any] = {"pool_size": 8, "max_overflow": 8, "pool_pre_ping": True}
    if url.get_backend_name() in ("mysql", "mariadb"):
        kw["isolation_level"] = "READ COMMITTED"
    return sa.create_engine(url, **kw)


class ServiceTables:
    """The ``svc_`` tables (created if missing by :meth:`create`)."""

    def __init__(self) -> None:
        md = self.metadata = sa.MetaData()
        self.tenants = sa.Table(
            "svc_tenants", md,
            sa.Column("id", sa.String(32), primary_key=True),
            sa.Column("created_us", sa.BigInteger, nullable=False))
        self.keys = sa.Table(
            "svc_keys", md,
            sa.Column("key_id", sa.String(32), primary_key=True),
            sa.Column("tenant", sa.String(32), sa.ForeignKey("svc_tenants.id"), nullable=False, index=True),
            sa.Column("salt", sa.String(64), nullable=False),
            sa.Column("digest", sa.String(64), nullable=False),
            sa.Column("label", sa.String(200), nullable=False, default=""),
            sa.Column("created_us", sa.BigInteger, nullable=False),
            sa.Column("revoked_us", sa.BigInteger))
        self.webhooks = sa.Table(
            "svc_webhooks", md,
            sa.Column("id", _BigId, primary_key=True, autoincrement=True),
            sa.Column("tenant", sa.String(32), sa.ForeignKey("svc_tenants.id"), nullable=False, index=True),
            sa.Column("url", sa.Text, nullable=False),
            sa.Column("secret", sa.String(100), nullable=False),
            sa.Column("created_us", sa.BigInteger, nullable=False),
            sa.Column("disabled_us", sa.BigInteger))
        self.outbox = sa.Table(
            "svc_outbox", md,
            sa.Column("id", _BigId, primary_key=True, autoincrement=True),
            sa.Column("message_id", sa.String(40), nullable=False),
            sa.Column("webhook_id", sa.BigInteger, nullable=False),
            sa.Column("tenant", sa.String(32), nullable=False),
            sa.Column("type", sa.String(40), nullable=False),
            sa.Column("body", sa.Text, nullable=False),
            sa.Column("state", sa.String(10), nullable=False),  # pending | delivered | dead
            sa.Column("due_us", sa.BigInteger, nullable=False),
            sa.Column("attempts", sa.Integer, nullable=False),
            sa.Column("lease_us", sa.BigInteger),
            sa.Column("delivered_us", sa.BigInteger),
            sa.Column("last_error", sa.Text),
            sa.Column("created_us", sa.BigInteger, nullable=False),
            sa.UniqueConstraint("message_id", "webhook_id", name="svc_outbox_message_endpoint"),
            sa.Index("svc_outbox_due", "state", "due_us"))
        self.idempotency = sa.Table(
            "svc_idempotency", md,
            sa.Column("tenant", sa.String(32), primary_key=True),
            sa.Column("route", sa.String(40), primary_key=True),
            sa.Column("key", sa.String(255), primary_key=True),
            sa.Column("request_sha256", sa.String(64), nullable=False),
            sa.Column("status", sa.Integer, nullable=False),
            sa.Column("body", sa.Text, nullable=False),
            sa.Column("created_us", sa.BigInteger, nullable=False))

    def create(self, engine: sa.Engine) -> None:
        self.metadata.create_all(engine, checkfirst=True)


TABLES: Final = ServiceTables()


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    tenant: str
    label: str
    created_us: int
    revoked_us: int | None


@dataclass(frozen=True, slots=True)
class WebhookInfo:
    id: int
    tenant: str
    url: str
    created_us: int
    disabled_us: int | None


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


def _split_key(key: str) -> tuple[str, str] | None:
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    key_id, sep, secret = key[len(KEY_PREFIX):].partition("_")
    if not sep or not key_id or not secret:
        return None
    return key_id, secret


class Admin:
    """Tenants, keys and webhook endpoints of one service database (the admin CLI's back end)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.t = TABLES
        self.t.create(engine)

    # ------------------------------------------------------------------ tenants
    def add_tenant(self, tenant: str, policy: PolicyConfig | Mapping[str, Any] | str | Path, **terms: Any) -> str:
        """Create a tenant and its ledger (``terms``: ``hold_days``, ``min_payout``, ``payout_fee``,
        ``binding``).  Refused if the tenant exists."""
        if not isinstance(tenant, str) or not TENANT_ID.fullmatch(tenant):
            raise TenantError("a tenant id is 1-24 lower-case letters, digits or '_', starting with a letter",
                              record=str(tenant), field="tenant")
        with self.engine.begin() as conn:
            if conn.execute(sa.select(self.t.tenants.c.id).where(self.t.tenants.c.id == tenant)).first():
                raise TenantError("this tenant exists already (change its terms with `tenant terms`)",
                                  record=tenant, field="tenant")
        # the ledger first (MariaDB commits DDL at once); a failed registration leaves an unused ledger only
        Ledger(self.engine, policy, prefix=ledger_prefix(tenant),
               **{k: v for k, v in terms.items() if v is not None})
        with self.engine.begin() as conn:
            conn.execute(self.t.tenants.insert().values(id=tenant, created_us=now_us()))
        return tenant

    def set_terms(self, tenant: str, policy: PolicyConfig | Mapping[str, Any] | str | Path | None,
                  **terms: Any) -> int:
        """Add a terms version (policy and/or rules) to a tenant's ledger; returns the latest version.
        Running servers pick new terms up when restarted."""
        self.require_tenant(tenant)
        led = Ledger(self.engine, policy, prefix=ledger_prefix(tenant),
                     **{k: v for k, v in terms.items() if v is not None})
        return led.terms[-1].version

    def tenants(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(self.t.tenants.c.id).order_by(self.t.tenants.c.id)).scalars())

    def require_tenant(self, tenant: str) -> None:
        with self.engine.connect() as conn:
            if conn.execute(sa.select(self.t.tenants.c.id).where(self.t.tenants.c.id == tenant)).first() is None:
                raise TenantError("no such tenant", record=tenant, field="tenant")

    # ------------------------------------------------------------------ keys
    def add_key(self, tenant: str, label: str = "") -> str:
        """A new API key of ``tenant``: returned once, stored only as a salted digest."""
        self.require_tenant(tenant)
        key_id, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(32), secrets.token_hex(16)
        with self.engine.begin() as conn:
            conn.execute(self.t.keys.insert().values(key_id=key_id, tenant=tenant, salt=salt,
                                                     digest=_digest(salt, secret), label=label[:200],
                                                     created_us=now_us(), revoked_us=None))
        return f"{KEY_PREFIX}{key_id}_{secret}"

    def revoke_key(self, key_id: str) -> None:
        """Revoke a key (by its id, or the whole key): refused from the next request on."""
        parts = _split_key(key_id)
        if parts is not None:
            key_id = parts[0]
        with self.engine.begin() as conn:
            done = conn.execute(self.t.keys.update().where(self.t.keys.c.key_id == key_id,
                                                           self.t.keys.c.revoked_us.is_(None))
                                .values(revoked_us=now_us())).rowcount
        if not done:
            raise TenantError("no such active key", record=key_id, field="key")

    def keys(self, tenant: str | None = None) -> list[KeyInfo]:
        k = self.t.keys
        q = sa.select(k.c.key_id, k.c.tenant, k.c.label, k.c.created_us, k.c.revoked_us).order_by(k.c.created_us)
        if tenant is not None:
            q = q.where(k.c.tenant == tenant)
        with self.engine.connect() as conn:
            return [KeyInfo(*row) for row in conn.execute(q)]

    def authenticate(self, key: str, conn: sa.Connection | None = None) -> str | None:
        """The tenant of an active key, or ``None`` (unknown, wrong secret or revoked)."""
        parts = _split_key(key)
        if parts is None:
            return None
        key_id, secret = parts
        k = self.t.keys
        q = sa.select(k.c.tenant, k.c.salt, k.c.digest, k.c.revoked_us).where(k.c.key_id == key_id)
        if conn is None:
            with self.engine.connect() as c:
                row = c.execute(q).first()
        else:
            row = conn.execute(q).first()
        if row is None:
            _digest("00" * 16, secret)  # the same work for an unknown id as for a wrong secret
            return None
        ok = hmac.compare_digest(_digest(row.salt, secret), row.digest)
        return str(row.tenant) if ok and row.revoked_us is None else None

    # ------------------------------------------------------------------ webhooks
    def add_webhook(self, tenant: str, url: str) -> tuple[int, str]:
        """Register an endpoint for the tenant's balance changes; returns its id and signing secret."""
        self.require_tenant(tenant)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TenantError("a webhook URL is http(s)://host/...", record=url, field="url")
        secret = "whsec_" + secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            wid = conn.execute(self.t.webhooks.insert().values(tenant=tenant, url=url, secret=secret,
                                                               created_us=now_us(), disabled_us=None)
                               ).inserted_primary_key[0]  # type: ignore[index]
        return int(wid), secret

    def remove_webhook(self, webhook_id: int) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(self.t.webhooks.update().where(self.t.webhooks.c.id == webhook_id,
                                                               self.t.webhooks.c.disabled_us.is_(None))
                                .values(disabled_us=now_us())).rowcount
        if not done:
            raise TenantError("no such active webhook", record=str(webhook_id), field="webhook")

    def webhooks(self, tenant: str | None = None) -> list[WebhookInfo]:
        w = self.t.webhooks
        q = sa.select(w.c.id, w.c.tenant, w.c.url, w.c.created_us, w.c.disabled_us).order_by(w.c.id)
        if tenant is not None:
            q = q.where(w.c.tenant == tenant)
        with self.engine.connect() as conn:
            return [WebhookInfo(*row) for row in conn.execute(q)]
