"""The :class:`Ledger`: the one stateful piece of cps_engine (see the package docstring for the design).

>>> from cps_engine.models import parse_event
>>> led = Ledger.open(":memory:", policy={"kind": "capped_multilevel", "rates": ["10%", "5%"]}, hold_days=7)
>>> [led.record(raw).outcome.value for raw in [
...     {"type": "share", "id": "s1", "sharer": "amy", "at": "2026-03-01T10:00:00+08:00"},
...     {"type": "share", "id": "s2", "sharer": "bob", "parent": "s1", "at": "2026-03-01T11:00:00+08:00"},
...     {"type": "order", "id": "o1", "buyer": "cat", "share": "s2", "amount": "100.00", "currency": "CNY",
...      "at": "2026-03-01T12:00:00+08:00"}]]
['applied', 'applied', 'applied']
>>> b = led.balance("bob", "CNY", as_of="2026-03-02T00:00:00+08:00")
>>> str(b.pending), str(b.available)
('10.00 CNY', '0.00 CNY')
>>> str(led.balance("bob", "CNY", as_of="2026-03-09T00:00:00+08:00").available)
'10.00 CNY'
"""

from __future__ import annotations

import bisect
import enum
import hashlib
import json
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from cps_engine.engine import CommissionLine, compute
from cps_engine.errors import (
    CpsError,
    IdempotencyConflict,
    InvalidEvent,
    InvalidPolicyConfig,
    UnknownReference,
)
from cps_engine.graph import BindingConfig, BindingMode, to_micros
from cps_engine.ledger.errors import BelowMinimumPayout, InsufficientBalance, LedgerIntegrityError
from cps_engine.ledger.graphs import LedgerGraph, Missing, Refused
from cps_engine.ledger.hashing import GENESIS, canonical_json, chain_hash, event_payload, payload_hash
from cps_engine.ledger.postings import (
    DAY_US,
    LedgerRules,
    Leg,
    awards_from_json,
    awards_to_json,
    line_amounts,
    merchant_legs,
    payout_legs,
)
from cps_engine.ledger.schema import LedgerTables, ensure_schema, schema_version
from cps_engine.models import (
    BindEvent,
    Event,
    OrderEvent,
    PayoutEvent,
    RefundEvent,
    RoleEvent,
    ShareEvent,
    parse_event,
)
from cps_engine.money import Money, Rounding, parse_amount
from cps_engine.policies import PolicyConfig, load_policy
from cps_engine.policies.base import Award

if TYPE_CHECKING:
    from cps_engine.ledger.statement import Statement

__all__ = [
    "Balance",
    "ChainHead",
    "Entry",
    "Ledger",
    "Outcome",
    "ParkedEvent",
    "RecordSummary",
    "Recorded",
    "TermsVersion",
    "Verification",
    "as_micros",
    "sqlite_engine",
]

_RANK = {"share": 0, "bind": 1, "order": 2, "refund": 3, "payout": 4, "role": 5}
ENTRY_COLUMNS: Final = ("seq", "event_seq", "kind", "account", "payee", "currency", "amount", "order_id", "revision",
                        "line", "level", "rate", "config_hash", "effective_us", "available_us", "hash")
#: the share graph of each database (engine) and table prefix, shared by the ledgers of this process
_GRAPHS: weakref.WeakKeyDictionary[sa.Engine, dict[str, LedgerGraph]] = weakref.WeakKeyDictionary()
_MIN_US = -(2**62)


class Outcome(enum.StrEnum):
    """What recording one event did."""

    APPLIED = "applied"      #: posted (or, for shares and binds, placed in the graph)
    DUPLICATE = "duplicate"  #: seen before with the same payload: nothing changed
    PARKED = "parked"        #: kept, waiting for a predecessor (``waits_for``); applied when it arrives
    REJECTED = "rejected"    #: kept and visible, never applied (e.g. a refund larger than the order)


@dataclass(frozen=True, slots=True)
class Recorded:
    """The outcome of recording one event.

    ``released`` lists the parked events it let through; ``lines`` are the commission lines of an
    applied order, with their provenance (the engine's :class:`~cps_engine.engine.CommissionLine`);
    ``legs`` every commission leg the call posted (its own, and those of restated or released
    events), so a caller can see each balance it changed.
    """

    kind: str
    id: str
    outcome: Outcome
    reason: str | None = None
    released: tuple[tuple[str, str], ...] = ()
    lines: tuple[CommissionLine, ...] = ()
    legs: tuple[Leg, ...] = ()


@dataclass
class RecordSummary:
    """Counts per outcome of a :meth:`Ledger.record_many` call."""

    counts: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    released: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, r: Recorded) -> None:
        self.counts[r.outcome] += 1
        self.released += len(r.released)

    def __str__(self) -> str:
        parts = ", ".join(f"{n} {o.value}" for o, n in self.counts.items() if n)
        return f"{self.total} events: {parts or 'none'}" + (f" ({self.released} parked released)"
                                                            if self.released else "")


@dataclass(frozen=True, slots=True)
class Balance:
    """One payee's balances in one currency as of a time (all derived from entries)."""

    payee: str
    currency: str
    pending: Money
    available: Money
    paid: Money
    fee: Money
    earned: Money
    reversed: Money

    def as_json(self) -> dict[str, str]:
        """Decimal strings, e.g. ``{"payee": "bob", "currency": "CNY", "pending": "10.00", ...}``."""
        return {"payee": self.payee, "currency": self.currency, "pending": str(self.pending.amount),
                "available": str(self.available.amount), "paid": str(self.paid.amount),
                "fee": str(self.fee.amount)}


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored leg of the log."""

    seq: int
    event: str
    kind: str
    account: str
    payee: str | None
    currency: str
    amount: int
    effective_us: int
    available_us: int | None
    order: str | None
    revision: int | None
    line: int | None
    level: int | None
    rate: str | None
    config_hash: str | None
    hash: str

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)

    def encodable(self) -> dict[str, Any]:
        return {"seq": self.seq, "event": self.event, "kind": self.kind, "account": self.account,
                "payee": self.payee, "currency": self.currency, "amount": self.amount,
                "effective_us": self.effective_us, "available_us": self.available_us, "order": self.order,
                "revision": self.revision, "line": self.line, "level": self.level, "rate": self.rate,
                "config_hash": self.config_hash}


@dataclass(frozen=True, slots=True)
class ParkedEvent:
    kind: str
    id: str
    at_us: int
    status: str
    waits_for: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class ChainHead:
    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class Verification:
    """Result of :meth:`Ledger.verify`: ``ok`` when the chain, the seqs and every posting check out."""

    entries: int
    head: ChainHead
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class TermsVersion:
    """A policy version with the ledger rules, in force for orders dated at or after ``effective_us``."""

    version: int
    effective_us: int
    policy: PolicyConfig
    rules: LedgerRules

    @property
    def config_hash(self) -> str:
        return self.policy.config_hash


# ---------------------------------------------------------------------------------------------- plans
@dataclass(frozen=True, slots=True)
class _Park:
    waits_for: str | None
    reason: str
    error: type[CpsError]
    field: str | None = None

    @property
    def status(self) -> str:
        return "parked" if self.waits_for is not None else "rejected"


@dataclass(slots=True)
class _OrderState:
    order_id: str
    origin_seq: int  # the order event's seq
    revision: int
    event_seq: int
    buyer: str
    at_us: int
    currency: str
    amount_minor: int
    gross_base: int
    terms_version: int
    config_hash: str
    policy_label: str
    rounding: Rounding
    available_us: int
    awards: tuple[Award, ...]
    awards_json: str
    refunds: list[tuple[int, str, int]]  # (at_us, refund id, minor), canonical order
    posted: list[int]

    @property
    def refunded(self) -> int:
        return sum(r[2] for r in self.refunds)

    def amounts(self, refunded: int) -> list[int]:
        return line_amounts(self.order_id, self.currency, self.gross_base, refunded, self.awards,
                            self.policy_label, self.config_hash, self.rounding)

    def row(self) -> dict[str, Any]:
        return {"order_id": self.order_id, "revision": self.revision, "event_seq": self.event_seq,
                "origin_seq": self.origin_seq, "buyer": self.buyer, "at_us": self.at_us, "currency": self.currency,
                "amount_minor": self.amount_minor, "gross_base": self.gross_base,
                "terms_version": self.terms_version, "config_hash": self.config_hash,
                "policy_label": self.policy_label, "rounding": self.rounding.value,
                "available_us": self.available_us, "awards": self.awards_json}


@dataclass(frozen=True, slots=True)
class _OrderPlan:
    terms: TermsVersion
    awards: tuple[Award, ...]
    base: int
    amounts: list[int]  # per award on the gross base
    lines: tuple[CommissionLine, ...]  # the engine's lines, with provenance


_Plan = _Park | _OrderPlan | tuple[_OrderState, int] | int | None


def as_micros(value: datetime | str | int | None, *, default_now: bool = True) -> int:
    """A time as µs since the epoch: an aware ``datetime``, ISO text with a zone, or µs already.

    >>> as_micros("1970-01-01T00:00:01Z"), as_micros(5)
    (1000000, 5)
    """
    if value is None:
        if not default_now:
            raise ValueError("a time is required")
        return to_micros(datetime.now(UTC))
    if isinstance(value, bool):
        raise TypeError("a time must be a datetime, ISO text or µs, not a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    if value.tzinfo is None:
        raise ValueError(f"time {value.isoformat()} has no zone; give e.g. +08:00 or Z")
    return to_micros(value)


def sqlite_engine(path: str | Path, *, synchronous: str = "FULL", timeout: float = 60.0) -> sa.Engine:
    """A SQLAlchemy engine on a SQLite file (``":memory:"`` for a private in-memory database) set up
    for the ledger: WAL journal, ``synchronous`` (``FULL`` default, ``NORMAL`` is faster and still
    atomic), ``BEGIN IMMEDIATE`` transactions so concurrent writers queue instead of failing."""
    if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ValueError("synchronous must be OFF, NORMAL, FULL or EXTRA")
    memory = str(path) == ":memory:"
    if memory:
        engine = sa.create_engine("sqlite://", poolclass=StaticPool,
                                  connect_args={"check_same_thread": False})
    else:
        engine = sa.create_engine(f"sqlite:///{Path(path)}", connect_args={"timeout": timeout})

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cur.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _engine_for_url(url: str) -> sa.Engine:
    if url.startswith(("mysql", "mariadb")):
        return sa.create_engine(url, isolation_level="READ COMMITTED", pool_pre_ping=True)
    return sa.create_engine(url, pool_pre_ping=True)


class Ledger:
    """Commission ledger over a SQLAlchemy engine or connection (see the package docstring).

    ``store`` is an :class:`sqlalchemy.Engine` (the ledger runs one transaction per call), a
    :class:`sqlalchemy.Connection` (the ledger runs inside the caller's transaction and never
    commits: record commissions in the same transaction as the order), or a database URL.

    ``policy``, ``hold_days``, ``min_payout`` and ``payout_fee`` are the terms.  A new ledger needs a
    policy; opening an existing one with different terms adds a new terms version, in force for
    events dated after every event recorded so far (or from ``effective_from``), so orders already
    recorded keep the rates they were computed with.
    """

    def __init__(
        self,
        store: sa.Engine | sa.Connection | str,
        policy: PolicyConfig | Mapping[str, Any] | str | Path | None = None,
        *,
        hold_days: int | None = None,
        min_payout: str | Money | Iterable[str | Money] | None = None,
        payout_fee: Any = None,
        binding: BindingConfig | BindingMode | str | None = None,
        effective_from: datetime | str | None = None,
        prefix: str = "cps_",
        schema: str | None = None,
        protect: bool = True,
    ) -> None:
        self._owned = isinstance(store, str)
        if isinstance(store, str):
            store = _engine_for_url(store)
        self._engine: sa.Engine | None = store if isinstance(store, sa.Engine) else None
        self._conn: sa.Connection | None = store if isinstance(store, sa.Connection) else None
        self.tables = LedgerTables(prefix, schema)
        self.dialect = (self._engine or self._conn).dialect.name  # type: ignore[union-attr]
        qualified = f"{schema or ''}.{prefix}"
        self._lock_key = int.from_bytes(hashlib.sha256(f"cps_engine.ledger:{qualified}".encode()).digest()[:8],
                                        "big", signed=True)
        self._sql = _Sql(self.tables, (self._engine or self._conn).dialect, self._lock_key)  # type: ignore[union-attr]
        self._graph_key = (qualified, self._engine if self._engine is not None else self._conn.engine)  # type: ignore[union-attr]
        self._terms: list[TermsVersion] = []
        self._terms_starts: list[int] = []
        self._binding = BindingConfig()
        #: called with a stage name at points inside a write (crash tests inject faults here)
        self.fault_hook: Callable[[str], None] | None = None
        # validate every input before touching the database (MariaDB commits DDL at once)
        pol = load_policy(policy) if policy is not None else None
        LedgerRules.of(hold_days=7 if hold_days is None else hold_days, min_payout=min_payout, payout_fee=payout_fee)
        if binding is not None and not isinstance(binding, BindingConfig):
            binding = BindingConfig(mode=BindingMode(binding))
        with self._connection() as conn:
            if pol is None and schema_version(conn, self.tables) is None:
                raise InvalidPolicyConfig("a new ledger needs a policy", field="policy")
            ensure_schema(conn, self.tables, protect=protect)
            self._init_meta(conn, binding)
            self._init_terms(conn, pol, hold_days, min_payout, payout_fee, effective_from)

    @classmethod
    def open(cls, path: str | Path, policy: PolicyConfig | Mapping[str, Any] | str | Path | None = None, *,
             synchronous: str = "FULL", **kwargs: Any) -> Ledger:
        """The embedded default: a ledger in one SQLite file (``":memory:"`` for a throwaway one).

        Closing the ledger (:meth:`close`, or ``with Ledger.open(...) as led``) closes the file.
        """
        led = cls(sqlite_engine(path, synchronous=synchronous), policy, **kwargs)
        led._owned = True
        return led

    def close(self) -> None:
        """Dispose of the engine if the ledger created it."""
        if self._owned and self._engine is not None:
            self._engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ setup
    @contextmanager
    def _connection(self) -> Iterator[sa.Connection]:
        if self._conn is not None:
            yield self._conn
        else:
            assert self._engine is not None
            with self._engine.begin() as conn:
                yield conn

    def _init_meta(self, conn: sa.Connection, binding: BindingConfig | BindingMode | str | None) -> None:
        t = self.tables
        stored = conn.execute(sa.select(t.meta.c.value).where(t.meta.c.key == "binding")).scalar()
        wanted = None
        if binding is not None:
            wanted = binding if isinstance(binding, BindingConfig) else BindingConfig(mode=BindingMode(binding))
        if stored is None:
            self._binding = wanted or BindingConfig()
            conn.execute(t.meta.insert(), [{"key": "binding", "value": self._binding.model_dump_json()}])
        else:
            self._binding = BindingConfig.model_validate_json(stored)
            if wanted is not None and wanted != self._binding:
                raise InvalidPolicyConfig(f"this ledger was created with binding {self._binding.mode.value!r}; "
                                          "the binding mode cannot change", field="binding")

    def _load_terms(self, conn: sa.Connection) -> None:
        t = self.tables.terms
        rows = conn.execute(sa.select(t).order_by(t.c.version)).all()
        self._terms = [TermsVersion(r.version, r.effective_us, load_policy(json.loads(r.policy)),
                                    LedgerRules.from_json(r.settings)) for r in rows]
        self._terms_starts = [v.effective_us for v in self._terms]

    def _init_terms(self, conn: sa.Connection, policy: Any, hold_days: int | None, min_payout: Any,
                    payout_fee: Any, effective_from: datetime | str | None) -> None:
        self._load_terms(conn)
        pol = load_policy(policy) if policy is not None else None
        latest = self._terms[-1] if self._terms else None
        if latest is None:
            if pol is None:
                raise InvalidPolicyConfig("a new ledger needs a policy", field="policy")
            rules = LedgerRules.of(hold_days=7 if hold_days is None else hold_days, min_payout=min_payout,
                                   payout_fee=payout_fee)
            self._add_terms(conn, 1, _MIN_US, pol, rules)
            return
        prev = json.loads(latest.rules.to_json())
        rules = LedgerRules.of(hold_days=prev["hold_days"] if hold_days is None else hold_days,
                               min_payout=prev["min_payout"] if min_payout is None else min_payout,
                               payout_fee=prev["payout_fee"] if payout_fee is None else payout_fee)
        pol = pol or latest.policy
        if pol.config_hash == latest.policy.config_hash and rules == latest.rules:
            return
        last_event = conn.execute(sa.select(sa.func.max(self.tables.events.c.at_us))).scalar()
        floor = (int(last_event) + 1) if last_event is not None else _MIN_US
        start = floor if effective_from is None else as_micros(effective_from)
        if start < floor:
            raise InvalidPolicyConfig("new terms cannot take effect before events already recorded "
                                      f"(earliest allowed {floor} µs)", field="effective_from")
        if start <= latest.effective_us:
            raise InvalidPolicyConfig("new terms must take effect after the current ones", field="effective_from")
        self._add_terms(conn, latest.version + 1, start, pol, rules)

    def _add_terms(self, conn: sa.Connection, version: int, start: int, policy: PolicyConfig,
                   rules: LedgerRules) -> None:
        conn.execute(self.tables.terms.insert(), [{
            "version": version, "effective_us": start, "config_hash": policy.config_hash,
            "policy": json.dumps(policy.to_dict(), sort_keys=True, ensure_ascii=False), "settings": rules.to_json()}])
        self._load_terms(conn)

    def terms_at(self, at_us: int) -> TermsVersion:
        """The terms version in force at ``at_us``."""
        i = bisect.bisect_right(self._terms_starts, at_us) - 1
        return self._terms[max(i, 0)]

    @property
    def terms(self) -> list[TermsVersion]:
        """Every terms version, oldest first."""
        return list(self._terms)

    @property
    def policy(self) -> PolicyConfig:
        """The latest policy version."""
        return self._terms[-1].policy

    @property
    def graph(self) -> LedgerGraph:
        """The ledger's share graph: one per database and table prefix in this process, shared by every
        ledger opened on the same engine, caught up by sequence number before each write."""
        qualified, engine = self._graph_key
        graphs = _GRAPHS.setdefault(engine, {})
        g = graphs.get(qualified)
        if g is None or g.graph.binding != self._binding:
            g = graphs[qualified] = LedgerGraph(self._binding)
        return g

    def _drop_graph(self) -> None:
        qualified, engine = self._graph_key
        _GRAPHS.get(engine, {}).pop(qualified, None)

    # ------------------------------------------------------------------ recording
    def record(self, event: Event | Mapping[str, Any], *, strict: bool = False) -> Recorded:
        """Record one event; idempotent by ``(type, id)``.

        Returns the :class:`Outcome`.  With ``strict=True`` an event that cannot be applied now
        (parked or rejected) raises its typed error instead — :class:`InsufficientBalance`,
        :class:`BelowMinimumPayout`, :class:`~cps_engine.errors.UnknownReference`,
        :class:`~cps_engine.errors.InvalidEvent` — and nothing is stored.  An event id seen before
        with a different payload raises :class:`~cps_engine.errors.IdempotencyConflict` (never stored).
        """
        ev = parse_event(dict(event)) if isinstance(event, Mapping) else parse_event(event)
        with self._tx() as tx:
            return self._record_one(tx, ev, strict)

    def record_many(self, events: Iterable[Event | Mapping[str, Any]], *, batch_size: int = 1000,
                    progress: Callable[[int], None] | None = None) -> RecordSummary:
        """Record events in order, ``batch_size`` per transaction (each batch all-or-nothing).

        The result is the same as recording them one by one.  ``progress`` is called with the number
        of events done after each batch.
        """
        summary = RecordSummary()
        batch: list[Event] = []

        def run() -> None:
            with self._tx() as tx:
                tx.prefetch(batch)
                results = [self._record_one(tx, ev, False) for ev in batch]
            for r in results:
                summary.add(r)
            if progress is not None:
                progress(len(batch))
            batch.clear()

        for item in events:
            batch.append(parse_event(dict(item)) if isinstance(item, Mapping) else parse_event(item))
            if len(batch) >= batch_size:
                run()
        if batch:
            run()
        return summary

    def request_payout(self, payee: str, amount: Money, *, at: datetime | str, id: str) -> Recorded:
        """A payout a payee asks for now: applied, or refused with :class:`InsufficientBalance` /
        :class:`BelowMinimumPayout` (nothing stored).  Same as ``record(PayoutEvent, strict=True)``."""
        ev = PayoutEvent(id=id, payee=payee, amount=amount.amount, currency=amount.currency,
                         at=datetime.fromisoformat(at) if isinstance(at, str) else at)
        return self.record(ev, strict=True)

    def _record_one(self, tx: _Tx, ev: Event, strict: bool) -> Recorded:
        h = payload_hash(ev)
        seen = tx.lookup(ev.key)
        if seen is not None:
            if seen[1] == h:
                return Recorded(ev.type, ev.id, Outcome.DUPLICATE)
            raise IdempotencyConflict(f"{ev.type} {ev.id!r} was recorded before with a different payload",
                                      record=ev.id, field="id")
        plan = self._plan(tx, ev)
        if isinstance(plan, _Park) and strict:
            raise plan.error(plan.reason, record=ev.id, field=plan.field)
        seq = tx.insert_event(ev, h)
        self._fault("event")
        if isinstance(plan, _Park):
            tx.park(seq, ev, plan)
            if isinstance(ev, ShareEvent) and plan.waits_for is None:  # its waiting re-shares are refused too
                self.graph.refuse_share(ev, plan.reason)
                tx.cache_touched = True
                released = self._cascade(tx, [f"share:{ev.id}"])
                return Recorded(ev.type, ev.id, Outcome.REJECTED, plan.reason, tuple(released))
            return Recorded(ev.type, ev.id, Outcome.PARKED if plan.waits_for else Outcome.REJECTED, plan.reason)
        mark = len(tx.legs)
        keys = self._apply(tx, seq, ev, plan)
        released = self._cascade(tx, keys)
        lines = plan.lines if isinstance(plan, _OrderPlan) else ()
        return Recorded(ev.type, ev.id, Outcome.APPLIED, None, tuple(released), lines, tuple(tx.legs[mark:]))

    def _fault(self, stage: str) -> None:
        if self.fault_hook is not None:
            self.fault_hook(stage)

    # ------------------------------------------------------------------ planning (no writes)
    def _plan(self, tx: _Tx, ev: Event) -> _Plan:
        if isinstance(ev, ShareEvent):
            share = self.graph.check_share(ev)
            if isinstance(share, Missing):
                return _Park(share.waits_for, share.reason, UnknownReference, "parent")
            if isinstance(share, Refused):
                return _Park(None, share.reason, share.error, share.field)
            return None
        if isinstance(ev, BindEvent):  # the graph decides by applying it (undone with the graph on rollback)
            tx.cache_touched = True
            refused = self.graph.add_bind(ev)
            if refused is not None:
                return _Park(None, refused.reason, refused.error, refused.field)
            return None
        if isinstance(ev, OrderEvent):
            return self._plan_order(ev)
        if isinstance(ev, RefundEvent):
            return self._plan_refund(tx, ev)
        if isinstance(ev, PayoutEvent):
            return self._plan_payout(tx, ev)
        return None

    def _plan_order(self, ev: OrderEvent) -> _Park | _OrderPlan:
        terms = self.terms_at(to_micros(ev.at))
        policy = terms.policy
        chain = self.graph.chain_for(ev, self_purchase=policy.self_purchase)
        if isinstance(chain, Missing):
            return _Park(chain.waits_for, chain.reason, UnknownReference, "share")
        if isinstance(chain, Refused):
            return _Park(None, chain.reason, chain.error, chain.field)
        try:
            settlement = compute(ev, chain, policy)
        except CpsError as exc:
            return _Park(None, str(exc), type(exc), exc.field)
        amounts = [0] * len(settlement.awards)
        lines = settlement.lines
        j = 0
        for i, a in enumerate(settlement.awards):  # lines follow the awards, zero amounts left out
            if j < len(lines) and (lines[j].payee, lines[j].level, lines[j].rate) == (a.payee, a.level, a.rate):
                amounts[i] = lines[j].amount.minor
                j += 1
        return _OrderPlan(terms, settlement.awards, settlement.gross_base, amounts, settlement.lines)

    def _plan_refund(self, tx: _Tx, ev: RefundEvent) -> _Park | tuple[_OrderState, int]:
        st = tx.order_state(ev.order)
        if st is None:
            return _Park(f"order:{ev.order}", f"order {ev.order!r} has not been applied yet", UnknownReference, "order")
        try:
            amount = ev.amount_minor(st.currency)
        except CpsError as exc:
            return _Park(None, exc.message, InvalidEvent, exc.field)
        minor = st.amount_minor - st.refunded if amount is None else amount  # no amount: all that is left
        if minor <= 0:
            return _Park(None, f"order {ev.order!r} is already fully refunded", InvalidEvent, "amount")
        if st.refunded + minor > st.amount_minor:
            paid = Money(st.amount_minor, st.currency)
            return _Park(None, f"refunds of order {ev.order!r} would exceed the {paid} paid "
                               f"({Money(st.refunded, st.currency)} refunded before)", InvalidEvent, "amount")
        return (st, minor)

    def _plan_payout(self, tx: _Tx, ev: PayoutEvent) -> _Park | int:
        at = to_micros(ev.at)
        rules = self.terms_at(at).rules
        minor = parse_amount(ev.amount, ev.currency)
        low = rules.minimum(ev.currency)
        if minor < low:
            return _Park(None, f"{Money(minor, ev.currency)} is below the minimum payout {Money(low, ev.currency)}",
                         BelowMinimumPayout, "amount")
        available = tx.payout_funds(ev.payee, ev.currency, at)
        if available < minor:
            return _Park(f"funds:{ev.currency}:{ev.payee}",
                         f"{Money(available, ev.currency)} available to {ev.payee!r} at {ev.at.isoformat()}, "
                         f"{Money(minor, ev.currency)} requested", InsufficientBalance, "amount")
        return rules.fee(minor, ev.currency)

    # ------------------------------------------------------------------ applying
    def _apply(self, tx: _Tx, seq: int, ev: Event, plan: _Plan) -> list[str]:
        if isinstance(ev, ShareEvent):
            self.graph.add_share(ev)
            tx.cache_touched = True
            return [f"share:{ev.id}", *self._recompute_after(tx, seq, ev, to_micros(ev.at), ev.sharer)]
        if isinstance(ev, BindEvent):  # already in the graph (planning applied it)
            return self._recompute_after(tx, seq, ev, to_micros(ev.at), None)
        if isinstance(ev, OrderEvent):
            assert isinstance(plan, _OrderPlan)
            return self._apply_order(tx, seq, ev, plan)
        if isinstance(ev, RefundEvent):
            assert isinstance(plan, tuple)
            return self._apply_refund(tx, seq, ev, plan[0], plan[1])
        if isinstance(ev, RoleEvent):  # kept for the compliance report; posts nothing
            return []
        assert isinstance(ev, PayoutEvent) and isinstance(plan, int)
        minor = parse_amount(ev.amount, ev.currency)
        tx.post(seq, ev, payout_legs(ev.payee, ev.currency, minor, plan, to_micros(ev.at)))
        return []

    def _apply_order(self, tx: _Tx, seq: int, ev: OrderEvent, plan: _OrderPlan) -> list[str]:
        at = to_micros(ev.at)
        terms = plan.terms
        policy = terms.policy
        st = _OrderState(ev.id, seq, 0, seq, ev.buyer, at, ev.currency, ev.amount_minor, plan.base, terms.version,
                         policy.config_hash, policy.label, policy.rounding, at + terms.rules.hold_days * DAY_US,
                         plan.awards, awards_to_json(plan.awards), [], [0] * len(plan.awards))
        tx.insert_order(st)
        legs = self._timeline(st, plan.amounts)
        tx.post(seq, ev, legs)
        for leg in legs:
            if leg.line is not None:
                st.posted[leg.line] += leg.amount
        return [f"order:{ev.id}", *sorted({f"funds:{ev.currency}:{leg.payee}" for leg in legs
                                           if leg.account == "commission" and leg.amount > 0})]

    def _timeline(self, st: _OrderState, gross: list[int] | None = None) -> list[Leg]:
        """Commission legs of the order's whole life so far: accrual on the gross base at the order's
        time, then one step per refund in (time, id) order.  ``gross``: the amounts on the gross base
        when already known."""
        legs: list[Leg] = []
        prev = [0] * len(st.awards)
        refunded = 0
        steps: list[tuple[str, int, int]] = [("accrual", st.at_us, 0)]
        steps += [("refund", max(at, st.at_us), minor) for at, _, minor in st.refunds]
        for kind, eff, minor in steps:
            refunded += minor
            now = gross if gross is not None and refunded == 0 else st.amounts(refunded)
            for i, (a, old, new) in enumerate(zip(st.awards, prev, now, strict=True)):
                if new != old:
                    legs.append(self._leg(st, kind, i, a, new - old, eff))
            prev = now
        return legs

    def _leg(self, st: _OrderState, kind: str, line: int, a: Award, amount: int, eff: int) -> Leg:
        return Leg(kind, "commission", a.payee, st.currency, amount, eff, st.available_us, st.order_id,
                   st.revision, line, a.level, str(a.rate), st.config_hash)

    def _apply_refund(self, tx: _Tx, seq: int, ev: RefundEvent, st: _OrderState, minor: int) -> list[str]:
        at = to_micros(ev.at)
        tx.insert_refund(seq, ev, at, minor)
        entry = (at, ev.id, minor)
        late = bool(st.refunds) and entry < st.refunds[-1]
        if late:  # an earlier refund arrived after later ones: restate the order's life in order
            bisect.insort(st.refunds, entry)
            return self._restate(tx, seq, ev, st, st.awards, st.awards_json)
        st.refunds.append(entry)
        now = st.amounts(st.refunded)
        legs = [self._leg(st, "refund", i, a, new - old, max(at, st.at_us))
                for i, (a, old, new) in enumerate(zip(st.awards, st.posted, now, strict=True)) if new != old]
        tx.post(seq, ev, legs)
        st.posted = now
        return sorted({f"funds:{st.currency}:{leg.payee}" for leg in legs if leg.amount > 0})

    def _restate(self, tx: _Tx, seq: int, ev: Event, st: _OrderState, awards: tuple[Award, ...],
                 awards_json: str) -> list[str]:
        """Reverse every commission leg of the order's current revision (same times) and post its whole
        life again as a new revision: the result is what in-order delivery would have posted."""
        old = tx.revision_legs(st)
        legs = [Leg("correction", "commission", payee, st.currency, -amount, eff, avail, st.order_id, st.revision,
                    line, level, rate, chash) for payee, line, level, rate, chash, eff, avail, amount in old if amount]
        st.revision += 1
        st.awards, st.awards_json = awards, awards_json
        st.event_seq = seq
        tx.insert_order(st)
        new = self._timeline(st)
        tx.post(seq, ev, legs + new)
        st.posted = [0] * len(awards)
        for leg in new:
            assert leg.line is not None
            st.posted[leg.line] += leg.amount
        return sorted({f"funds:{st.currency}:{leg.payee}" for leg in new if leg.amount > 0})

    def _recompute_after(self, tx: _Tx, seq: int, ev: Event, at_us: int, buyer: str | None) -> list[str]:
        """A share or bind dated at or before applied orders arrived: recompute those orders' chains;
        restate the ones whose awards changed.  Returns the keys the new commissions satisfy."""
        keys: list[str] = []
        for order_id in tx.orders_from(at_us, buyer):
            st = tx.order_state(order_id)
            assert st is not None
            order = tx.order_event(st.origin_seq)
            plan = self._plan_order(order)
            if not isinstance(plan, _OrderPlan):  # pragma: no cover - an applied order's share stays known
                continue
            js = awards_to_json(plan.awards)
            if js != st.awards_json:
                keys += self._restate(tx, seq, ev, st, plan.awards, js)
        return keys

    def _cascade(self, tx: _Tx, keys: list[str]) -> list[tuple[str, str]]:
        released: list[tuple[str, str]] = []
        queue = keys
        while queue and tx.parked_live > 0:
            rows = tx.parked_waiting(queue)
            queue = []
            for seq, waits in rows:
                ev = tx.event_at(seq)
                plan = self._plan(tx, ev)
                if isinstance(plan, _Park):
                    if plan.waits_for != waits:
                        tx.unpark(seq, waits is not None)
                        tx.park(seq, ev, plan)
                    continue
                tx.unpark(seq, True)
                queue += self._apply(tx, seq, ev, plan)
                released.append(ev.key)
        return released

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def _tx(self) -> Iterator[_Tx]:
        tx: _Tx | None = None
        try:
            with self._connection() as conn:
                tx = _Tx(self, conn)
                tx.start()
                yield tx
                tx.flush()
                self._fault("commit")
        except BaseException:
            if tx is None or tx.cache_touched:
                self._drop_graph()
            else:  # only orders, refunds, payouts: the graph is as it was; forget the rolled-back rows
                self.graph.token = tx.start_token
            raise

    def _refresh(self, conn: sa.Connection, last_seq: int, last_hash: str) -> None:
        """Bring the share graph up to the database: read only the share and bind rows after the last
        one it has seen (another writer's, or another ledger object's on the same database); rebuild
        only when the row it saw last is gone or changed (a rolled-back outer transaction)."""
        t = self.tables.events
        g = self.graph
        seq, h = g.token
        if (seq, h) == (last_seq, last_hash):
            return
        if seq > last_seq or (seq and conn.execute(sa.select(t.c.payload_hash).where(t.c.seq == seq)).scalar() != h):
            self._drop_graph()
            g, seq = self.graph, 0
        rows = conn.execute(sa.select(t.c.payload).where(t.c.seq > seq, t.c.kind.in_(("share", "bind")))
                            .order_by(t.c.seq))
        for (payload,) in rows:
            ev = parse_event(json.loads(payload))
            assert isinstance(ev, (ShareEvent, BindEvent))
            g.catch_up(ev)
        g.token = (last_seq, last_hash)

    # ------------------------------------------------------------------ queries
    def _read(self) -> Any:
        return self._connection()

    def balances(self, payee: str | None = None, currency: str | None = None, *,
                 as_of: datetime | str | int | None = None) -> list[Balance]:
        """Balances per payee and currency as of ``as_of`` (default: now), sorted by payee, currency.

        ``earned`` and ``reversed`` sum the positive and negative commission positions (legs of one
        order and payee netted per effective time and hold end), so a restated order counts once.
        Payees whose balances are all zero are left out.
        """
        t = self.tables.entries
        at = as_micros(as_of)
        inner = sa.select(t.c.payee, t.c.currency, t.c.account, t.c.order_id, t.c.available_us,
                          sa.func.sum(t.c.amount).label("s")).where(t.c.payee.is_not(None), t.c.effective_us <= at)
        if payee is not None:
            inner = inner.where(t.c.payee == payee)
        if currency is not None:
            inner = inner.where(t.c.currency == currency)
        g = inner.group_by(t.c.payee, t.c.currency, t.c.account, t.c.order_id, t.c.effective_us,
                           t.c.available_us).subquery()
        com = g.c.account == "commission"

        def total(cond: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
            return sa.func.coalesce(sa.func.sum(sa.case((cond, g.c.s), else_=0)), 0)

        q = (sa.select(g.c.payee, g.c.currency, total(com & (g.c.available_us > at)),
                       total(com & (g.c.available_us <= at)), total(g.c.account == "paid"), total(g.c.account == "fee"),
                       total(com & g.c.order_id.is_not(None) & (g.c.s > 0)),
                       total(com & g.c.order_id.is_not(None) & (g.c.s < 0)))
             .group_by(g.c.payee, g.c.currency).order_by(g.c.payee, g.c.currency))
        with self._read() as conn:
            rows = conn.execute(q).all()
        out = []
        for p, cur, *values in rows:
            pending, available, paid, fee, earned, rev = (int(v) for v in values)
            if not any((pending, available, paid, fee, earned, rev)):
                continue
            out.append(Balance(p, cur, Money(pending, cur), Money(available, cur), Money(paid, cur), Money(fee, cur),
                               Money(earned, cur), Money(-rev, cur)))
        return out

    def balance(self, payee: str, currency: str, *, as_of: datetime | str | int | None = None) -> Balance:
        """One payee's balance in one currency (zeros when the payee has no entries)."""
        rows = self.balances(payee, currency, as_of=as_of)
        if rows:
            return rows[0]
        z = Money(0, currency)
        return Balance(payee, currency, z, z, z, z, z, z)

    def entries(self, *, order: str | None = None, payee: str | None = None,
                start: datetime | str | int | None = None, end: datetime | str | int | None = None,
                event: tuple[str, str] | None = None) -> list[Entry]:
        """Stored entries, in log order, filtered by order, payee, event key and/or effective time in
        ``[start, end)``."""
        t, e = self.tables.entries, self.tables.events
        q = sa.select(t, e.c.kind.label("event_kind"), e.c.event_id).join(e, e.c.seq == t.c.event_seq)
        if order is not None:
            q = q.where(t.c.order_id == order)
        if payee is not None:
            q = q.where(t.c.payee == payee)
        if start is not None:
            q = q.where(t.c.effective_us >= as_micros(start))
        if end is not None:
            q = q.where(t.c.effective_us < as_micros(end))
        if event is not None:
            q = q.where(e.c.kind == event[0], e.c.event_id == event[1])
        with self._read() as conn:
            return [_entry(r) for r in conn.execute(q.order_by(t.c.seq))]

    def order_lines(self, order: str) -> list[tuple[str, int, Money]]:
        """Current commission of each line of an order: ``(payee, level, amount)`` (net of refunds)."""
        totals: dict[tuple[str, int], int] = {}
        cur = ""
        for e in self.entries(order=order):
            if e.account == "commission" and e.payee is not None and e.level is not None:
                totals[(e.payee, e.level)] = totals.get((e.payee, e.level), 0) + e.amount
                cur = e.currency
        return [(p, lv, Money(a, cur)) for (p, lv), a in sorted(totals.items(), key=lambda kv: (kv[0][1], kv[0][0]))
                if a]

    def statement(self, payee: str, start: datetime | str | int, end: datetime | str | int) -> Statement:
        """The payee's statement for ``[start, end)`` (see :mod:`cps_engine.ledger.statement`)."""
        from cps_engine.ledger.statement import build_statement

        return build_statement(self, payee, start, end)

    def parked(self) -> list[ParkedEvent]:
        """Events kept but not applied: ``status`` ``parked`` (waiting for ``waits_for``) or ``rejected``."""
        t = self.tables.parked
        with self._read() as conn:
            rows = conn.execute(sa.select(t).order_by(t.c.at_us, t.c.kind, t.c.event_id)).all()
        return [ParkedEvent(r.kind, r.event_id, r.at_us, r.status, r.waits_for, r.reason) for r in rows]

    @property
    def binding(self) -> BindingConfig:
        """The binding mode the ledger's graph uses (fixed when the ledger was created)."""
        return self._binding

    def applied_events(self) -> list[Event]:
        """Every event the ledger has applied, in the order it recorded them (parked and rejected
        events left out): the input an auditor replays to rebuild a statement from this ledger."""
        ev, p = self.tables.events, self.tables.parked
        query = (sa.select(ev.c.payload).where(ev.c.seq.not_in(sa.select(p.c.event_seq)))
                 .order_by(ev.c.seq))
        with self._read() as conn:
            payloads = conn.execute(query).scalars().all()
        return [parse_event(json.loads(text)) for text in payloads]

    def event_count(self) -> int:
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(self.tables.events)).scalar() or 0)

    def chain_head(self) -> ChainHead:
        """Sequence number and hash of the last entry (``0`` and the genesis hash when empty)."""
        t = self.tables.entries
        with self._read() as conn:
            row = conn.execute(sa.select(t.c.seq, t.c.hash).order_by(t.c.seq.desc()).limit(1)).first()
        return ChainHead(int(row[0]), row[1]) if row else ChainHead(0, GENESIS)

    def verify(self, *, raise_on_error: bool = False) -> Verification:
        """Walk the whole log: recompute the hash chain, check seqs are 1..n without gaps and that every
        event's legs balance per currency."""
        problems: list[str] = []
        prev = GENESIS
        n = 0
        sums: dict[tuple[int, str], int] = {}
        t, e = self.tables.entries, self.tables.events
        q = (sa.select(t, e.c.kind.label("event_kind"), e.c.event_id).join(e, e.c.seq == t.c.event_seq, isouter=True)
             .order_by(t.c.seq))
        with self._read() as conn:
            for r in conn.execute(q):
                n += 1
                entry = _entry(r)
                if entry.seq != n:
                    problems.append(f"entry seq {entry.seq} where {n} was expected (gap or reorder)")
                    n = entry.seq
                h = chain_hash(prev, entry.encodable())
                if h != entry.hash:
                    problems.append(f"entry {entry.seq}: hash does not match its content and the previous hash")
                prev = entry.hash
                k = (r.event_seq, entry.currency)
                sums[k] = sums.get(k, 0) + entry.amount
        for (seq, cur), total in sorted(sums.items()):
            if total:
                problems.append(f"event #{seq}: {cur} legs sum to {total}, not 0")
        result = Verification(n, ChainHead(n, prev), tuple(problems))
        if raise_on_error and problems:
            raise LedgerIntegrityError("; ".join(problems[:5]))
        return result

    def state_digest(self) -> str:
        """sha256 over the ledger's positions, independent of the order events arrived in.

        Positions are the sums of legs per (order, payee, account, currency, effective time, hold end),
        zero sums dropped, plus the set of parked/rejected events.  Two ledgers fed the same events
        in any order (and any number of times) have the same digest, while their hash chains record
        the order things actually happened in.
        """
        t = self.tables.entries
        q = (sa.select(t.c.order_id, t.c.payee, t.c.account, t.c.currency, t.c.effective_us, t.c.available_us,
                       sa.func.sum(t.c.amount))
             .group_by(t.c.order_id, t.c.payee, t.c.account, t.c.currency, t.c.effective_us, t.c.available_us))
        with self._read() as conn:
            rows = sorted((tuple("" if v is None else v for v in r[:6]), int(r[6])) for r in conn.execute(q))
        positions = [[*k, total] for k, total in rows if total]
        parked = sorted([p.kind, p.id, p.status] for p in self.parked())
        return hashlib.sha256(canonical_json({"positions": positions, "parked": parked}).encode()).hexdigest()


def _entry(r: Any) -> Entry:
    event = f"{r.event_kind}:{r.event_id}" if r.event_kind is not None else f"#{r.event_seq}"
    return Entry(int(r.seq), event, r.kind, r.account, r.payee, r.currency, int(r.amount), int(r.effective_us),
                 None if r.available_us is None else int(r.available_us), r.order_id, r.revision, r.line, r.level,
                 r.rate, r.config_hash, r.hash)


def _raw_insert(table: sa.Table, dialect: sa.Dialect) -> tuple[str, tuple[str, ...]]:
    """``INSERT`` text for the driver's ``executemany`` with positional parameters (tuples), and the
    column order of those tuples."""
    prep = dialect.identifier_preparer
    cols = tuple(c.name for c in table.columns)
    style = dialect.paramstyle
    if style == "qmark":
        marks = ["?"] * len(cols)
    elif style in ("format", "pyformat"):
        marks = ["%s"] * len(cols)
    elif style == "numeric":
        marks = [f":{i + 1}" for i in range(len(cols))]
    else:  # pragma: no cover - no supported driver uses named parameters only
        raise InvalidPolicyConfig(f"unsupported driver parameter style {style!r}", field="store")
    text = (f"INSERT INTO {prep.format_table(table)} ({', '.join(prep.quote(c) for c in cols)}) "
            f"VALUES ({', '.join(marks)})")
    return text, cols


class _Sql:
    """Statements of the write path, built once per ledger (building a Core statement costs more than
    running it on SQLite)."""

    def __init__(self, t: LedgerTables, dialect_obj: sa.Dialect, lock_key: int) -> None:
        dialect = dialect_obj.name
        bp = sa.bindparam
        ev, en, o, r, p = t.events, t.entries, t.orders, t.refunds, t.parked
        if dialect == "postgresql":
            self.lock: sa.Executable = sa.select(sa.func.pg_advisory_xact_lock(sa.literal(lock_key, sa.BigInteger)))
        else:
            self.lock = t.lock.update().where(t.lock.c.id == 1).values(n=t.lock.c.n)
        last_ev = sa.select(ev.c.seq).order_by(ev.c.seq.desc()).limit(1).scalar_subquery()
        last_eh = sa.select(ev.c.payload_hash).order_by(ev.c.seq.desc()).limit(1).scalar_subquery()
        last_en = sa.select(en.c.seq).order_by(en.c.seq.desc()).limit(1).scalar_subquery()
        last_hh = sa.select(en.c.hash).order_by(en.c.seq.desc()).limit(1).scalar_subquery()
        terms = sa.select(sa.func.max(t.terms.c.version)).scalar_subquery()
        live = sa.select(sa.func.count()).select_from(p).where(p.c.waits_for.is_not(None)).scalar_subquery()
        latest = sa.select(sa.func.max(o.c.at_us)).scalar_subquery()
        self.start = sa.select(last_ev, last_eh, last_en, last_hh, terms, live, latest)
        self.prefetch = sa.select(ev.c.event_id, ev.c.seq, ev.c.payload_hash).where(
            ev.c.kind == bp("kind"), ev.c.event_id.in_(bp("ids", expanding=True)))
        self.lookup = sa.select(ev.c.seq, ev.c.payload_hash).where(ev.c.kind == bp("kind"), ev.c.event_id == bp("id"))
        self.payload = sa.select(ev.c.payload).where(ev.c.seq == bp("seq"))
        # the bulk inserts go straight to the driver as tuples (SQLAlchemy's per-row parameter
        # processing of dict rows cost more than the database on SQLite)
        self.inserts = [(table, *_raw_insert(table, dialect_obj)) for table in (ev, o, r, en)]
        assert self.inserts[3][2] == ENTRY_COLUMNS, "Tx.post builds entry rows in this column order"
        self.order_row = (sa.select(o).where(o.c.order_id == bp("order")).order_by(o.c.revision.desc()).limit(1))
        self.order_refunds = sa.select(r.c.at_us, r.c.refund_id, r.c.amount_minor).where(r.c.order_id == bp("order"))
        self.order_posted = (sa.select(en.c.line, sa.func.sum(en.c.amount))
                             .where(en.c.order_id == bp("order"), en.c.revision == bp("revision"),
                                    en.c.account == "commission").group_by(en.c.line))
        cols = (en.c.payee, en.c.line, en.c.level, en.c.rate, en.c.config_hash, en.c.effective_us, en.c.available_us)
        self.revision_legs = (sa.select(*cols, sa.func.sum(en.c.amount))
                              .where(en.c.order_id == bp("order"), en.c.revision == bp("revision"),
                                     en.c.account == "commission")
                              .group_by(*cols).order_by(en.c.effective_us, en.c.line))
        at = bp("at", type_=sa.BigInteger)
        cond = (en.c.kind == "payout") | ((en.c.effective_us <= at) & (en.c.available_us <= at))
        self.funds = sa.select(sa.func.coalesce(sa.func.sum(en.c.amount), 0)).where(
            en.c.payee == bp("payee"), en.c.currency == bp("currency"), en.c.account == "commission", cond)
        base = sa.select(o.c.order_id).where(o.c.at_us >= bp("at", type_=sa.BigInteger), o.c.revision == 0)
        self.orders_from = base.order_by(o.c.at_us, o.c.order_id)
        self.orders_from_buyer = base.where(o.c.buyer == bp("buyer")).order_by(o.c.at_us, o.c.order_id)
        self.park = p.insert()
        self.unpark = p.delete().where(p.c.event_seq == bp("seq"))
        self.waiting = sa.select(p.c.event_seq, p.c.at_us, p.c.kind, p.c.event_id, p.c.waits_for).where(
            p.c.waits_for.in_(bp("keys", expanding=True)))


class _Tx:
    """One write transaction: holds the lock, the chain head, buffered rows and per-call caches."""

    def __init__(self, ledger: Ledger, conn: sa.Connection) -> None:
        self.ledger = ledger
        self.conn = conn
        self.t = ledger.tables
        self.sql = ledger._sql
        self.cache_touched = False
        self.start_token: tuple[int, str] = (0, "")
        self.event_seq = 0
        self.head_seq = 0
        self.head_hash = GENESIS
        self.parked_live = 0
        self.latest_order = _MIN_US
        self.known: dict[tuple[str, str], tuple[int, str] | None] = {}
        self.events: dict[int, Event] = {}
        self.orders: dict[str, _OrderState | None] = {}
        self.rows_events: list[dict[str, Any]] = []
        self.rows_orders: list[dict[str, Any]] = []
        self.rows_refunds: list[dict[str, Any]] = []
        self.rows_entries: list[tuple[Any, ...]] = []
        #: commission legs posted in this transaction, in order (what ``Recorded.legs`` reports)
        self.legs: list[Leg] = []

    def start(self) -> None:
        conn = self.conn
        conn.execute(self.sql.lock)
        row = conn.execute(self.sql.start).one()
        self.latest_order = _MIN_US if row[6] is None else int(row[6])
        self.event_seq = int(row[0] or 0)
        self.head_seq = int(row[2] or 0)
        self.head_hash = row[3] or GENESIS
        if int(row[4] or 0) != len(self.ledger._terms):
            self.ledger._load_terms(conn)
        self.parked_live = int(row[5] or 0)
        self.ledger._refresh(conn, self.event_seq, row[1] or "")
        self.start_token = self.ledger.graph.token

    # ------------------------------------------------------------------ events
    def prefetch(self, events: Sequence[Event]) -> None:
        by_kind: dict[str, set[str]] = {}
        for ev in events:
            if ev.key not in self.known:
                by_kind.setdefault(ev.type, set()).add(ev.id)
        for kind, id_set in sorted(by_kind.items()):
            ids = sorted(id_set)
            for i in range(0, len(ids), 500):
                for eid, seq, h in self.conn.execute(self.sql.prefetch, {"kind": kind, "ids": ids[i:i + 500]}):
                    self.known[(kind, eid)] = (int(seq), h)
        for ev in events:
            self.known.setdefault(ev.key, None)

    def lookup(self, key: tuple[str, str]) -> tuple[int, str] | None:
        if key not in self.known:
            row = self.conn.execute(self.sql.lookup, {"kind": key[0], "id": key[1]}).first()
            self.known[key] = (int(row[0]), row[1]) if row else None
        return self.known[key]

    def insert_event(self, ev: Event, h: str) -> int:
        self.event_seq += 1
        seq = self.event_seq
        self.known[ev.key] = (seq, h)
        self.events[seq] = ev
        self.rows_events.append({"seq": seq, "kind": ev.type, "event_id": ev.id, "at_us": to_micros(ev.at),
                                 "payload": event_payload(ev), "payload_hash": h})
        self.ledger.graph.token = (seq, h)
        return seq

    def event_at(self, seq: int) -> Event:
        ev = self.events.get(seq)
        if ev is None:
            payload = self.conn.execute(self.sql.payload, {"seq": seq}).scalar_one()
            ev = self.events[seq] = parse_event(json.loads(payload))
        return ev

    def order_event(self, seq: int) -> OrderEvent:
        ev = self.event_at(seq)
        assert isinstance(ev, OrderEvent)
        return ev

    # ------------------------------------------------------------------ postings
    def post(self, event_seq: int, ev: Event, legs: Sequence[Leg]) -> None:
        key = f"{ev.type}:{ev.id}"
        all_legs = [leg for leg in legs if leg.amount] + merchant_legs(legs)
        rows = self.rows_entries
        self.legs += [leg for leg in legs if leg.amount and leg.payee is not None]
        for leg in all_legs:
            self.head_seq += 1
            seq = self.head_seq
            self.head_hash = h = chain_hash(self.head_hash, {
                "seq": seq, "event": key, "kind": leg.kind, "account": leg.account, "payee": leg.payee,
                "currency": leg.currency, "amount": leg.amount, "effective_us": leg.effective_us,
                "available_us": leg.available_us, "order": leg.order, "revision": leg.revision, "line": leg.line,
                "level": leg.level, "rate": leg.rate, "config_hash": leg.config_hash})
            rows.append((seq, event_seq, leg.kind, leg.account, leg.payee, leg.currency, leg.amount, leg.order,
                         leg.revision, leg.line, leg.level, leg.rate, leg.config_hash, leg.effective_us,
                         leg.available_us, h))  # the entries table's column order (checked in _Sql)
        if all_legs:
            self.ledger._fault("post")

    def insert_order(self, st: _OrderState) -> None:
        self.orders[st.order_id] = st
        self.latest_order = max(self.latest_order, st.at_us)
        self.rows_orders.append(st.row())

    def insert_refund(self, seq: int, ev: RefundEvent, at: int, minor: int) -> None:
        self.rows_refunds.append({"event_seq": seq, "refund_id": ev.id, "order_id": ev.order, "at_us": at,
                                  "amount_minor": minor})

    def flush(self) -> None:
        pending: tuple[list[Any], ...] = (self.rows_events, self.rows_orders, self.rows_refunds, self.rows_entries)
        for (table, text, cols), rows in zip(self.sql.inserts, pending, strict=True):
            if rows:
                self.conn.exec_driver_sql(text, [row if isinstance(row, tuple) else tuple(row[c] for c in cols)
                                                 for row in rows])
                rows.clear()
                self.ledger._fault(f"flush:{table.name[len(self.t.prefix):]}")

    # ------------------------------------------------------------------ state reads
    def order_state(self, order_id: str) -> _OrderState | None:
        if order_id in self.orders:  # applied in this transaction (or loaded before): authoritative
            return self.orders[order_id]
        sql, args = self.sql, {"order": order_id}
        row = self.conn.execute(sql.order_row, args).first()
        if row is None:
            self.orders[order_id] = None
            return None
        refunds = sorted((int(a), i, int(m)) for a, i, m in self.conn.execute(sql.order_refunds, args))
        awards = awards_from_json(row.awards)
        posted = [0] * len(awards)
        for line, total in self.conn.execute(sql.order_posted, {"order": order_id, "revision": row.revision}):
            posted[int(line)] = int(total)
        st = _OrderState(order_id, int(row.origin_seq), int(row.revision), int(row.event_seq), row.buyer,
                         int(row.at_us), row.currency, int(row.amount_minor), int(row.gross_base),
                         int(row.terms_version), row.config_hash, row.policy_label, Rounding(row.rounding),
                         int(row.available_us), awards, row.awards, refunds, posted)
        self.orders[order_id] = st
        return st

    def revision_legs(self, st: _OrderState) -> list[tuple[Any, ...]]:
        self.flush()
        rows = self.conn.execute(self.sql.revision_legs, {"order": st.order_id, "revision": st.revision})
        return [(p, int(li), int(lv), rate, ch, int(eff), int(av), int(s)) for p, li, lv, rate, ch, eff, av, s in rows]

    def payout_funds(self, payee: str, currency: str, at: int) -> int:
        """Available commission at ``at`` less every payout already made (whatever its date)."""
        self.flush()
        return int(self.conn.execute(self.sql.funds, {"payee": payee, "currency": currency, "at": at}).scalar() or 0)

    def orders_from(self, at: int, buyer: str | None) -> list[str]:
        if at > self.latest_order:
            return []
        self.flush()
        if buyer is None:
            return [r[0] for r in self.conn.execute(self.sql.orders_from, {"at": at})]
        return [r[0] for r in self.conn.execute(self.sql.orders_from_buyer, {"at": at, "buyer": buyer})]

    # ------------------------------------------------------------------ parked
    def park(self, seq: int, ev: Event, plan: _Park) -> None:
        self.conn.execute(self.sql.park, [{
            "event_seq": seq, "kind": ev.type, "event_id": ev.id, "at_us": to_micros(ev.at), "status": plan.status,
            "waits_for": plan.waits_for, "reason": plan.reason}])
        if plan.waits_for is not None:
            self.parked_live += 1

    def unpark(self, seq: int, live: bool) -> None:
        self.conn.execute(self.sql.unpark, {"seq": seq})
        if live:
            self.parked_live -= 1

    def parked_waiting(self, keys: Sequence[str]) -> list[tuple[int, str]]:
        rows: list[tuple[int, int, str, str, int]] = []
        uniq = sorted(set(keys))
        for i in range(0, len(uniq), 500):
            for r in self.conn.execute(self.sql.waiting, {"keys": uniq[i:i + 500]}):
                rows.append((int(r.at_us), _RANK[r.kind], r.event_id, r.waits_for, int(r.event_seq)))
        rows.sort()
        return [(seq, waits) for _, _, _, waits, seq in rows]

