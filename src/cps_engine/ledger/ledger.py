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
import hashlib
import hmac
import json
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cps_engine.errors import (
    CpsError,
    IdempotencyConflict,
    InvalidEvent,
    InvalidInput,
    InvalidPolicyConfig,
)
from cps_engine.graph import BindingConfig, BindingMode, to_micros
from cps_engine.ledger.errors import LedgerIntegrityError
from cps_engine.ledger.graphs import LedgerGraph
from cps_engine.ledger.hashing import GENESIS, canonical_json, chain_hash, iso_us, key_check, payload_hash
from cps_engine.ledger.holds import (
    HOLD_ACCOUNT,
    HOLD_CURRENCY,
    HOLD_KINDS,
    LedgerEvent,
    PayeeHold,
    held_since,
    hold_windows,
    parse_ledger_event,
)
from cps_engine.ledger.planner import Planner
from cps_engine.ledger.postings import (
    CAPPED,
    DAY_US,
    RETAINED,
    LedgerRules,
    awards_from_json,
)
from cps_engine.ledger.schema import LedgerTables, ensure_schema, schema_version
from cps_engine.ledger.store import Statements, UnitOfWork, engine_for_url, entry_from_row, sqlite_engine
from cps_engine.ledger.types import (
    MAX_US,
    Balance,
    ChainHead,
    Entry,
    OrderSnapshot,
    Outcome,
    ParkedEvent,
    Recorded,
    RecordSummary,
    TermsVersion,
    Verification,
    as_micros,
)
from cps_engine.limits import check_days
from cps_engine.models import (
    BindEvent,
    Event,
    PayoutEvent,
    ShareEvent,
    parse_event,
)
from cps_engine.money import Money
from cps_engine.policies import PolicyConfig, load_policy

if TYPE_CHECKING:
    from cps_engine.audit.abuse import AbuseReport
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

#: the share graph of each database (engine) and table prefix, shared by the ledgers of this process
_GRAPHS: weakref.WeakKeyDictionary[sa.Engine, dict[str, LedgerGraph]] = weakref.WeakKeyDictionary()
_MIN_US = -(2**62)
#: default of ``Ledger(horizon_days=...)``: an event dated more than this after the latest event is refused
DEFAULT_HORIZON_DAYS = 366


@dataclass(frozen=True, slots=True)
class _Setup:
    """What opening a ledger checked and built, kept per database and prefix for the next opening."""

    tables: LedgerTables
    sql: Statements
    lock_key: int
    binding: BindingConfig
    terms: list[TermsVersion]
    terms_starts: list[int]
    key_check: str | None
    postings_from: int


_SETUPS: weakref.WeakKeyDictionary[sa.Engine, dict[str, _Setup]] = weakref.WeakKeyDictionary()


def _nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, (list, tuple)):
        return any(_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_nul(v) for v in value.values())
    fields = getattr(value, "__dict__", None)
    return fields is not None and any(_nul(v) for v in fields.values())


def _clean(ev: LedgerEvent) -> LedgerEvent:
    """``ev`` itself, unless a text field holds a NUL character: PostgreSQL cannot store one (its driver
    would raise an error that is not ours), and no id needs it.  Refused here, for every backend."""
    for name, value in vars(ev).items():
        if _nul(value):
            raise InvalidEvent("a NUL character (\\x00) is not allowed in an event's text", record=ev.id.replace(
                "\x00", "\\x00"), field=name)
    return ev


#: accounts of entries that move no money to or from a payee's balances (see :meth:`Ledger.entries`)
MEMO_ACCOUNTS = (HOLD_ACCOUNT, CAPPED, RETAINED)


def _held_entry(e: Entry, windows: list[tuple[int, int]]) -> Entry:
    """``e`` with its hold end moved to the release of the payee's hold it fell in (commission of orders
    only: payouts are not held)."""
    if e.account != "commission" or e.order is None or e.available_us is None:
        return e
    for a, b in windows:
        if a <= e.available_us < b:
            return replace(e, available_us=b)
    return e


def _text_arg(value: str | None, field: str) -> None:
    if value is not None and "\x00" in value:
        raise InvalidInput("a NUL character (\\x00) is not allowed here", field=field)


class Ledger:
    """Commission ledger over a SQLAlchemy engine or connection (see the package docstring).

    ``store`` is an :class:`sqlalchemy.Engine` (the ledger runs one transaction per call), a
    :class:`sqlalchemy.Connection` (the ledger runs inside the caller's transaction and never
    commits: record commissions in the same transaction as the order), or a database URL.

    ``policy``, ``hold_days``, ``min_payout``, ``payout_fee`` and ``payee_caps`` are the terms.  A new
    ledger needs a policy; opening an existing one with different terms adds a new terms version, in
    force for events dated after every event recorded so far (or from ``effective_from``), so orders
    already recorded keep the rates they were computed with.

    ``payee_caps`` (:class:`~cps_engine.ledger.postings.PayeeCaps`), e.g. ``{"per_order": "50.00 CNY",
    "per_period": {"days": 30, "max": "500.00 CNY"}}``: a payee's commission above a cap is reduced
    when it is recorded; the excess stays with the merchant and is recorded beside the commission
    (account ``capped``), reported by :class:`Recorded` / :class:`RecordSummary` and balances, and
    reversed with refunds of the order.  ``payee_caps={}`` removes the caps (from a new terms version).
    """

    def __init__(
        self,
        store: sa.Engine | sa.Connection | str,
        policy: PolicyConfig | Mapping[str, Any] | str | Path | None = None,
        *,
        hold_days: int | None = None,
        min_payout: str | Money | Iterable[str | Money] | None = None,
        payout_fee: Any = None,
        payee_caps: Mapping[str, Any] | None = None,
        binding: BindingConfig | BindingMode | str | None = None,
        effective_from: datetime | str | None = None,
        prefix: str = "cps_",
        schema: str | None = None,
        protect: bool = True,
        chain_key: bytes | None = None,
        horizon_days: int | None = DEFAULT_HORIZON_DAYS,
    ) -> None:
        self._owned = isinstance(store, str)
        if isinstance(store, str):
            store = engine_for_url(store)
        self._engine: sa.Engine | None = store if isinstance(store, sa.Engine) else None
        self._conn: sa.Connection | None = store if isinstance(store, sa.Connection) else None
        self.dialect = (self._engine or self._conn).dialect.name  # type: ignore[union-attr]
        qualified = f"{schema or ''}.{prefix}"
        engine = self._engine if self._engine is not None else self._conn.engine  # type: ignore[union-attr]
        self._graph_key = (qualified, engine)
        #: called with a stage name at points inside a write (crash tests inject faults here)
        self.fault_hook: Callable[[str], None] | None = None
        self._planner = Planner(lambda: self.graph, self.terms_at, self._fault)
        if chain_key is not None and (not isinstance(chain_key, bytes) or len(chain_key) < 16):
            raise InvalidPolicyConfig("a chain key is bytes, at least 16 of them", field="chain_key")
        self._chain_key = chain_key
        if horizon_days is not None:
            check_days(horizon_days, field="horizon_days")
        self.horizon_days = horizon_days
        self._planner.horizon_us = None if horizon_days is None else horizon_days * DAY_US
        #: the terms version opening this ledger added (``None``: the terms were unchanged)
        self.new_terms: TermsVersion | None = None
        setups = _SETUPS.setdefault(engine, {})
        known = setups.get(qualified)
        if known is not None and policy is None and binding is None and effective_from is None \
                and hold_days is None and min_payout is None and payout_fee is None and payee_caps is None:
            # a ledger this process opened before, no new terms: nothing to check or build again (a
            # backend that opens ``Ledger(connection)`` per request pays no query and no metadata)
            self.tables, self._sql, self._lock_key, self._binding = known.tables, known.sql, known.lock_key, \
                known.binding
            self._terms: list[TermsVersion] = known.terms
            self._terms_starts: list[int] = known.terms_starts
            self._key_check: str | None = known.key_check
            self._set_postings(known.postings_from)
            self._check_key_mode()
            return
        self.tables = LedgerTables(prefix, schema)
        self._lock_key = int.from_bytes(hashlib.sha256(f"cps_engine.ledger:{qualified}".encode()).digest()[:8],
                                        "big", signed=True)
        self._sql = Statements(self.tables, engine.dialect, self._lock_key)
        self._terms = []
        self._terms_starts = []
        self._binding = BindingConfig()
        self._key_check = None
        self._postings_from = 1
        # validate every input before touching the database (MariaDB commits DDL at once)
        pol = load_policy(policy) if policy is not None else None
        LedgerRules.of(hold_days=7 if hold_days is None else hold_days, min_payout=min_payout, payout_fee=payout_fee,
                       payee_caps=payee_caps)
        if binding is not None:
            binding = BindingConfig.of(binding)
        with self._connection() as conn:
            if pol is None and schema_version(conn, self.tables) is None:
                raise InvalidPolicyConfig("a new ledger needs a policy", field="policy")
            ensure_schema(conn, self.tables, protect=protect)
            self._init_meta(conn, binding)
            self._init_terms(conn, pol, hold_days, min_payout, payout_fee, effective_from, payee_caps)
        self._check_key_mode()
        setups[qualified] = _Setup(self.tables, self._sql, self._lock_key, self._binding, self._terms,
                                   self._terms_starts, self._key_check, self._postings_from)

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
            wanted = BindingConfig.of(binding)
        meta = {str(k): str(v) for k, v in conn.execute(sa.select(t.meta.c.key, t.meta.c.value))}
        new = stored is None
        if new:
            self._binding = wanted or BindingConfig()
            conn.execute(t.meta.insert(), [{"key": "binding", "value": self._binding.model_dump_json()}])
            chain = f"keyed:{key_check(self._chain_key)}" if self._chain_key is not None else "sha256"
            conn.execute(t.meta.insert(), [{"key": "chain", "value": chain}])
            meta["chain"] = chain
        if "postings" not in meta:  # a ledger written before posting rules version 2: from its next event on
            first = 1 if new else int(conn.execute(sa.select(sa.func.max(t.events.c.seq))).scalar() or 0) + 1
            meta["postings"] = f"2:{first}"
            try:  # another process may be adding it at the same time
                with conn.begin_nested():
                    conn.execute(t.meta.insert(), [{"key": "postings", "value": meta["postings"]}])
            except sa.exc.IntegrityError:
                meta["postings"] = conn.execute(sa.select(t.meta.c.value)
                                                .where(t.meta.c.key == "postings")).scalar_one()
        self._set_postings(int(meta["postings"].split(":", 1)[1]))
        chain = meta.get("chain", "sha256")
        self._key_check = chain.split(":", 1)[1] if chain.startswith("keyed:") else None
        if stored is not None:
            self._binding = BindingConfig.model_validate_json(stored)
            if wanted is not None and wanted != self._binding:
                raise InvalidPolicyConfig(f"this ledger was created with binding {self._binding.mode.value!r}; "
                                          "the binding mode cannot change", field="binding")

    def _set_postings(self, first: int) -> None:
        self._postings_from = first
        self._planner.postings_from = first

    def _check_key_mode(self) -> None:
        if self._chain_key is not None and self._key_check is None:
            raise InvalidPolicyConfig("this ledger's chain is not keyed: open it without chain_key", field="chain_key")

    def _key_ok(self) -> bool:
        return self._key_check is None or (
            self._chain_key is not None and hmac.compare_digest(key_check(self._chain_key), self._key_check))

    def _chain(self, prev: str, entry: Mapping[str, Any]) -> str:
        return chain_hash(prev, entry, self._chain_key if self._key_check is not None else None)

    def _load_terms(self, conn: sa.Connection) -> None:
        t = self.tables.terms
        rows = conn.execute(sa.select(t).order_by(t.c.version)).all()
        self._terms = [TermsVersion(r.version, r.effective_us, load_policy(json.loads(r.policy)),
                                    LedgerRules.from_json(r.settings)) for r in rows]
        self._terms_starts = [v.effective_us for v in self._terms]
        qualified, engine = self._graph_key
        known = _SETUPS.get(engine, {}).get(qualified)
        if known is not None:  # the next Ledger opened on this database starts from these terms
            _SETUPS[engine][qualified] = _Setup(known.tables, known.sql, known.lock_key, known.binding, self._terms,
                                                self._terms_starts, known.key_check, known.postings_from)

    def _init_terms(self, conn: sa.Connection, policy: Any, hold_days: int | None, min_payout: Any,
                    payout_fee: Any, effective_from: datetime | str | None,
                    payee_caps: Mapping[str, Any] | None = None) -> None:
        self._load_terms(conn)
        pol = load_policy(policy) if policy is not None else None
        latest = self._terms[-1] if self._terms else None
        if latest is None:
            if pol is None:
                raise InvalidPolicyConfig("a new ledger needs a policy", field="policy")
            rules = LedgerRules.of(hold_days=7 if hold_days is None else hold_days, min_payout=min_payout,
                                   payout_fee=payout_fee,
                                   payee_caps=payee_caps)
            self._add_terms(conn, 1, _MIN_US, pol, rules)
            return
        prev = json.loads(latest.rules.to_json())
        rules = LedgerRules.of(hold_days=prev["hold_days"] if hold_days is None else hold_days,
                               min_payout=prev["min_payout"] if min_payout is None else min_payout,
                               payout_fee=prev["payout_fee"] if payout_fee is None else payout_fee,
                               payee_caps=prev.get("payee_caps") if payee_caps is None else payee_caps)
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
        if version > 1:
            self.new_terms = self._terms[-1]

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
    def record(self, event: LedgerEvent | Mapping[str, Any], *, strict: bool = False) -> Recorded:
        """Record one event; idempotent by ``(type, id)``.

        Returns the :class:`Outcome`.  With ``strict=True`` an event that cannot be applied now
        (parked or rejected) raises its typed error instead — :class:`InsufficientBalance`,
        :class:`BelowMinimumPayout`, :class:`~cps_engine.errors.UnknownReference`,
        :class:`~cps_engine.errors.InvalidEvent` — and nothing is stored.  An event id seen before
        with a different payload raises :class:`~cps_engine.errors.IdempotencyConflict` (never stored).
        """
        ev = _clean(parse_ledger_event(event))
        with self._tx() as tx:
            return self._planner.record_one(tx, ev, strict)

    def record_many(self, events: Iterable[LedgerEvent | Mapping[str, Any]], *, batch_size: int = 1000,
                    progress: Callable[[int], None] | None = None, results: bool = False) -> RecordSummary:
        """Record events in order, ``batch_size`` per transaction (each batch all-or-nothing).

        The result is the same as recording them one by one.  ``progress`` is called with the number
        of events done after each batch.  With ``results=True`` the summary keeps every event's
        :class:`Recorded` (outcome, lines, legs) in ``summary.recorded``, in input order.
        """
        summary = RecordSummary()
        batch: list[LedgerEvent] = []

        def run() -> None:
            with self._tx() as tx:
                tx.prefetch(batch)
                done = [self._planner.record_one(tx, ev, False) for ev in batch]
            for r in done:
                summary.add(r)
            if results:
                summary.recorded += done
            if progress is not None:
                progress(len(batch))
            batch.clear()

        for item in events:
            batch.append(_clean(parse_ledger_event(item)))
            if len(batch) >= batch_size:
                run()
        if batch:
            run()
        return summary

    def preflight(self, events: Iterable[LedgerEvent]) -> list[CpsError]:
        """What recording ``events`` would refuse, found before anything is written (nothing is): an id
        seen before (in the ledger or earlier in ``events``) with another payload, an event dated beyond
        the horizon after the latest one before it, a NUL character.  ``ledger record`` runs it on the
        whole file before its first commit, so a bad event at line 2,501 commits nothing."""
        out: list[CpsError] = []
        evs: list[LedgerEvent] = []
        for ev in events:
            try:
                evs.append(_clean(ev))
            except CpsError as exc:
                out.append(exc)
        e = self.tables.events
        stored: dict[tuple[str, str], str] = {}
        by_kind: dict[str, set[str]] = {}
        for ev in evs:
            by_kind.setdefault(ev.type, set()).add(ev.id)
        with self._read() as conn:
            latest = conn.execute(sa.select(sa.func.max(e.c.at_us))).scalar()
            for kind, id_set in sorted(by_kind.items()):
                ids = sorted(id_set)
                for i in range(0, len(ids), 500):
                    for eid, h in conn.execute(sa.select(e.c.event_id, e.c.payload_hash).where(
                            e.c.kind == kind, e.c.event_id.in_(ids[i:i + 500]))):
                        stored[(kind, eid)] = h
        latest_us = None if latest is None else int(latest)
        for n, ev in enumerate(evs, 1):
            h = payload_hash(ev)
            seen = stored.get(ev.key)
            if seen is None:
                try:
                    self._planner.check_horizon(ev, latest_us)
                except CpsError as exc:
                    out.append(exc)
                    continue
                stored[ev.key] = h
                at = to_micros(ev.at)
                latest_us = at if latest_us is None else max(latest_us, at)
            elif seen != h:
                out.append(IdempotencyConflict(f"{ev.type} {ev.id!r} (event {n} of the input) was recorded or "
                                               "given before with a different payload", record=ev.id, field="id"))
        return out

    def request_payout(self, payee: str, amount: Money, *, at: datetime | str, id: str) -> Recorded:
        """A payout a payee asks for now: applied, or refused with :class:`InsufficientBalance` /
        :class:`BelowMinimumPayout` (nothing stored).  Same as ``record(PayoutEvent, strict=True)``."""
        ev = PayoutEvent(id=id, payee=payee, amount=amount.amount, currency=amount.currency,
                         at=datetime.fromisoformat(at) if isinstance(at, str) else at)
        return self.record(ev, strict=True)

    # ------------------------------------------------------------------ holds (see cps_engine.ledger.holds)
    def hold(self, payee: str, reason: str, *, at: datetime | str, id: str) -> Recorded:
        """Hold ``payee`` from ``at`` on: their commissions whose hold period ends while they are held
        stay pending, and payouts dated while they are held are refused with
        :class:`~cps_engine.ledger.errors.PayeeHeld`.  Recorded as a ``hold`` event (idempotent by
        ``id``: the same hold again is ``DUPLICATE``, another with the same id an
        :class:`~cps_engine.errors.IdempotencyConflict`) and a marker entry on the hash chain.
        Holding a payee already held adds its reason.

        >>> led = Ledger.open(":memory:", policy={"kind": "first_sharer", "rate": "10%"}, hold_days=1)
        >>> led.hold("amy", "ring finding", at="2026-03-01T00:00:00Z", id="h1").outcome.value
        'applied'
        >>> [(h.payee, h.reason) for h in led.holds(as_of="2026-03-02T00:00:00Z")]
        [('amy', 'ring finding')]
        """
        return self.record({"type": "hold", "id": id, "payee": payee, "reason": reason, "at": at}, strict=True)

    def release(self, payee: str, *, at: datetime | str, id: str, reason: str | None = None) -> Recorded:
        """End ``payee``'s hold at ``at``: what it kept pending becomes available then.  A payee not held
        at ``at`` is refused with :class:`~cps_engine.ledger.errors.PayeeNotHeld` (nothing stored)."""
        return self.record({"type": "release", "id": id, "payee": payee, "reason": reason, "at": at}, strict=True)

    def hold_flagged(self, report: AbuseReport, *, at: datetime | str, signals: Iterable[str] | None = None,
                     id_prefix: str = "abuse") -> RecordSummary:
        """Hold every person named by a finding of an abuse report (:func:`cps_engine.audit.abuse_report`)
        -- optionally only findings of ``signals`` --, one hold per person and finding, with the
        finding's signal and key as the reason.  The hold ids are ``<id_prefix>:<finding key>:<person>``,
        so running it again on the same report records nothing new (``DUPLICATE``)."""
        wanted = None if signals is None else set(signals)
        events: list[LedgerEvent] = []
        for f in report.findings:
            if wanted is not None and f.signal not in wanted:
                continue
            for person in f.people:
                events.append(parse_ledger_event({"type": "hold", "id": f"{id_prefix}:{f.key}:{person}",
                                                  "payee": person, "reason": f"abuse report: {f.signal} {f.key}",
                                                  "at": at}))
        return self.record_many(events, results=True)

    def _markers(self, conn: sa.Connection, payee: str | None, until: int | None = None) -> list[Any]:
        t, e = self.tables.entries, self.tables.events
        q = (sa.select(t.c.payee, t.c.kind, t.c.effective_us, e.c.event_id, e.c.payload)
             .join(e, e.c.seq == t.c.event_seq)
             .where(t.c.account == HOLD_ACCOUNT, t.c.currency == HOLD_CURRENCY))
        if payee is not None:
            q = q.where(t.c.payee == payee)
        if until is not None:
            q = q.where(t.c.effective_us <= until)
        return list(conn.execute(q.order_by(t.c.seq)))

    def _has_holds(self, conn: sa.Connection) -> bool:
        e = self.tables.events
        return conn.execute(sa.select(e.c.seq).where(e.c.kind == "hold").limit(1)).first() is not None

    def holds(self, payee: str | None = None, *, as_of: datetime | str | int | None = None) -> list[PayeeHold]:
        """The payees held as of ``as_of`` (default now), sorted by payee: since when, and the hold events
        (id, reason) of the hold in force."""
        at = as_micros(as_of)
        _text_arg(payee, "payee")
        with self._read() as conn:
            rows = self._markers(conn, payee, at) if self._has_holds(conn) else []
        by_payee: dict[str, list[Any]] = {}
        for r in rows:
            by_payee.setdefault(r.payee, []).append(r)
        out = []
        for p, marks in sorted(by_payee.items()):
            since = held_since([(m.kind, int(m.effective_us)) for m in marks], at)
            if since is None:
                continue
            holds = tuple((m.event_id, json.loads(m.payload)["reason"]) for m in marks
                          if m.kind == "hold" and since <= int(m.effective_us))
            out.append(PayeeHold(p, since, holds))
        return out

    def _fault(self, stage: str) -> None:
        if self.fault_hook is not None:
            self.fault_hook(stage)

    @contextmanager
    def _tx(self) -> Iterator[UnitOfWork]:
        if self._key_check is not None and not self._key_ok():
            raise InvalidPolicyConfig("this ledger's chain is keyed: recording needs its key (chain_key=...)"
                                      if self._chain_key is None else
                                      "the chain key given is not the key this ledger was created with",
                                      field="chain_key")
        tx: UnitOfWork | None = None
        try:
            with self._connection() as conn:
                tx = UnitOfWork(self, conn)
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
            ev = parse_ledger_event(json.loads(payload))
            assert isinstance(ev, (ShareEvent, BindEvent))
            g.catch_up(ev)
        g.token = (last_seq, last_hash)

    # ------------------------------------------------------------------ queries
    @contextmanager
    def _read(self, *, snapshot: bool = False) -> Iterator[sa.Connection]:
        """A read transaction that never blocks a writer: on SQLite a deferred ``BEGIN`` (WAL lets
        readers and one writer run together; the write path's ``BEGIN IMMEDIATE`` is for writes only);
        PostgreSQL and MariaDB reads take no lock.  ``snapshot``: ``REPEATABLE READ`` on a server
        database, so several queries see one state (verify).  Inside the caller's connection: that."""
        if self._conn is not None:
            yield self._conn
            return
        assert self._engine is not None
        with self._engine.connect() as conn:
            options: dict[str, Any] = {"cps_read": True}
            if snapshot and self.dialect != "sqlite":
                options["isolation_level"] = "REPEATABLE READ"
            conn.execution_options(**options)
            with conn.begin():
                yield conn

    def balances(self, payee: str | None = None, currency: str | None = None, *,
                 as_of: datetime | str | int | None = None) -> list[Balance]:
        """Balances per payee and currency as of ``as_of`` (default: now), sorted by payee, currency.

        ``earned`` and ``reversed`` sum the positive and negative commission positions (legs of one
        order and payee netted per effective time and hold end), so a restated order counts once.
        Payees whose balances are all zero are left out.

        Sums stay exact: one event's amount is at most :data:`~cps_engine.limits.MAX_EVENT_MINOR`
        (10**15 minor units), so one payee's sum reaches 2**63 only after 9,223 such events; PostgreSQL
        and MariaDB sum BIGINT as NUMERIC/DECIMAL (no overflow at all) and SQLite raises "integer
        overflow" rather than wrapping, so a sum is exact or an error, never wrong.
        """
        t = self.tables.entries
        at = as_micros(as_of)
        _text_arg(payee, "payee")
        _text_arg(currency, "currency")
        inner = sa.select(t.c.payee, t.c.currency, t.c.account, t.c.order_id, t.c.available_us,
                          sa.func.sum(t.c.amount).label("s")).where(t.c.payee.is_not(None), t.c.effective_us <= at)
        if payee is not None:
            inner = inner.where(t.c.payee == payee)
        if currency is not None:
            inner = inner.where(t.c.currency == currency)
        g = inner.group_by(t.c.payee, t.c.currency, t.c.account, t.c.order_id, t.c.effective_us,
                           t.c.available_us).subquery()
        com = g.c.account == "commission"
        capped = g.c.account == CAPPED

        def total(cond: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
            return sa.func.coalesce(sa.func.sum(sa.case((cond, g.c.s), else_=0)), 0)

        with self._read() as conn:
            held = self._held_since(payee, at) if self._has_holds(conn) else None
            if held is None:
                q = (sa.select(g.c.payee, g.c.currency, total(com & (g.c.available_us > at)),
                               total(com & (g.c.available_us <= at)), total(g.c.account == "paid"),
                               total(g.c.account == "fee"), total(com & g.c.order_id.is_not(None) & (g.c.s > 0)),
                               total(com & g.c.order_id.is_not(None) & (g.c.s < 0)), total(capped), sa.null())
                     .group_by(g.c.payee, g.c.currency).order_by(g.c.payee, g.c.currency))
            else:  # a held payee's commission whose hold period ended since the hold began stays pending
                kept = com & g.c.order_id.is_not(None) & held.c.since.is_not(None) & (g.c.available_us >= held.c.since)
                q = (sa.select(g.c.payee, g.c.currency, total(com & ((g.c.available_us > at) | kept)),
                               total(com & (g.c.available_us <= at) & ~kept), total(g.c.account == "paid"),
                               total(g.c.account == "fee"), total(com & g.c.order_id.is_not(None) & (g.c.s > 0)),
                               total(com & g.c.order_id.is_not(None) & (g.c.s < 0)), total(capped),
                               sa.func.max(held.c.since))
                     .select_from(g.outerjoin(held, held.c.payee == g.c.payee))
                     .group_by(g.c.payee, g.c.currency).order_by(g.c.payee, g.c.currency))
            rows = conn.execute(q).all()
        out = []
        for p, cur, *values, since in rows:
            pending, available, paid, fee, earned, rev, cut = (int(v) for v in values)
            if not any((pending, available, paid, fee, earned, rev, cut)):
                continue
            out.append(Balance(p, cur, Money(pending, cur), Money(available, cur), Money(paid, cur), Money(fee, cur),
                               Money(earned, cur), Money(-rev, cur), None if since is None else int(since),
                               Money(cut, cur) if cut else None))
        return out

    def _held_since(self, payee: str | None, at: int) -> sa.Subquery:
        """``(payee, since)`` of every payee held at ``at``: the earliest hold after their last release
        (:func:`cps_engine.ledger.holds.held_since` in SQL, over the marker entries)."""
        t = self.tables.entries
        m, r = t.alias("hold_m"), t.alias("hold_r")

        def marks(a: Any, kind: str) -> list[sa.ColumnElement[bool]]:
            cond = [a.c.account == HOLD_ACCOUNT, a.c.currency == HOLD_CURRENCY, a.c.kind == kind,
                    a.c.effective_us <= at]
            return cond + ([a.c.payee == payee] if payee is not None else [])

        last = sa.select(r.c.payee, sa.func.max(r.c.effective_us).label("r")).where(*marks(r, "release")) \
            .group_by(r.c.payee).subquery("hold_last")
        return (sa.select(m.c.payee, sa.func.min(m.c.effective_us).label("since"))
                .select_from(m.outerjoin(last, last.c.payee == m.c.payee))
                .where(*marks(m, "hold"), last.c.r.is_(None) | (m.c.effective_us > last.c.r))
                .group_by(m.c.payee).subquery("held"))

    def balance(self, payee: str, currency: str, *, as_of: datetime | str | int | None = None) -> Balance:
        """One payee's balance in one currency (zeros when the payee has no entries)."""
        rows = self.balances(payee, currency, as_of=as_of)
        if rows:
            return rows[0]
        z = Money(0, currency)
        held = self.holds(payee, as_of=as_of)
        return Balance(payee, currency, z, z, z, z, z, z, held[0].since_us if held else None)

    def entries(self, *, order: str | None = None, payee: str | None = None,
                start: datetime | str | int | None = None, end: datetime | str | int | None = None,
                event: tuple[str, str] | None = None, memo: bool = False) -> list[Entry]:
        """Stored entries, in log order, filtered by order, payee, event key and/or effective time in
        ``[start, end)``.  Memo entries are left out unless ``memo=True``: the markers of holds and
        releases (account ``hold``, amount 0; :mod:`cps_engine.ledger.holds`) and what payee caps withheld
        (accounts ``capped`` and ``retained``; :class:`~cps_engine.ledger.postings.PayeeCaps`), which
        move no money to or from a payee's balances."""
        t, e = self.tables.entries, self.tables.events
        _text_arg(order, "order")
        _text_arg(payee, "payee")
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
        if not memo:
            q = q.where(t.c.account.not_in(MEMO_ACCOUNTS))
        with self._read() as conn:
            return [entry_from_row(r) for r in conn.execute(q.order_by(t.c.seq))]

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

    def order_snapshot(self, order: str) -> OrderSnapshot | None:
        """The applied order's current revision: its rate snapshot (each award's payee, level, exact
        rate, rule and chain path), its base and what was refunded (None: not applied).

        >>> led = Ledger.open(":memory:", policy={"kind": "first_sharer", "rate": "10%"}, hold_days=0)
        >>> _ = led.record_many([
        ...     {"type": "share", "id": "s1", "sharer": "amy", "at": "2026-03-01T00:00:00Z"},
        ...     {"type": "order", "id": "o1", "buyer": "bo", "share": "s1", "amount": "50.00", "currency": "CNY",
        ...      "at": "2026-03-01T10:00:00Z"},
        ...     {"type": "refund", "id": "r1", "order": "o1", "amount": "20.00", "at": "2026-03-02T10:00:00Z"}])
        >>> snap = led.order_snapshot("o1")
        >>> [(a.payee, str(a.rate), a.path) for a in snap.awards], snap.gross_base, snap.net_base
        ([('amy', '1/10', ('s1',))], 5000, 3000)
        """
        o, r = self.tables.orders, self.tables.refunds
        _text_arg(order, "order")
        with self._read() as conn:
            row = conn.execute(sa.select(o).where(o.c.order_id == order)
                               .order_by(o.c.revision.desc()).limit(1)).first()
            if row is None:
                return None
            refunded = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(r.c.amount_minor), 0))
                                    .where(r.c.order_id == order)).scalar()
        return OrderSnapshot(order, int(row.revision), row.currency, int(row.gross_base), int(refunded or 0),
                             tuple(awards_from_json(row.awards)), row.config_hash, row.policy_label, row.rounding)

    def statement(self, payee: str, start: datetime | str | int, end: datetime | str | int) -> Statement:
        """The payee's statement for ``[start, end)`` (see :mod:`cps_engine.ledger.statement`).

        For a payee held at some time before ``end``, commission whose hold period ended while they were
        held is released (pending -> available) when the hold was released, not before (an unreleased
        hold: not in the statement); the manifest then lists the holds (``holds``: since, until, reasons)."""
        from cps_engine.ledger.statement import statement_of

        s, e = as_micros(start, default_now=False), as_micros(end, default_now=False)
        entries = self.entries(payee=payee, end=e)
        with self._read() as conn:
            marks = self._markers(conn, payee) if self._has_holds(conn) else []
        windows = hold_windows([(m.kind, int(m.effective_us)) for m in marks], max(e, MAX_US - 1))
        if windows:
            entries = [_held_entry(x, windows) for x in entries]
        st = statement_of(entries, payee, s, e, chain_head=self.chain_head(),
                          rounding=sorted({t.policy.rounding.value for t in self.terms}))
        cut: dict[str, int] = {}
        for x in self.entries(payee=payee, start=s, end=e, memo=True):
            if x.account == CAPPED:
                cut[x.currency] = cut.get(x.currency, 0) + x.amount
        if any(cut.values()):  # what payee caps withheld from the payee's commission in the period
            st.manifest["capped"] = {c: str(Money(v, c).amount) for c, v in sorted(cut.items()) if v}
        shown = [(a, b) for a, b in windows if a < e and b > s]
        if shown:
            st.manifest["holds"] = [
                {"since": iso_us(a), "until": None if b >= e else iso_us(b),
                 "reasons": [json.loads(m.payload)["reason"] for m in marks
                             if m.kind == "hold" and a <= int(m.effective_us) < b]}
                for a, b in shown]
        return st

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
        query = (sa.select(ev.c.payload).where(ev.c.seq.not_in(sa.select(p.c.event_seq)),
                                               ev.c.kind.not_in(HOLD_KINDS))
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

    def verify(self, *, expect_head: ChainHead | tuple[int, str] | None = None, replay: bool = True,
               raise_on_error: bool = False) -> Verification:
        """Check the whole ledger (see :mod:`cps_engine.ledger.verify`): the hash chain (keyed with the
        key the ledger was opened with), gap-free seqs, balanced postings, every stored payload against
        its hash, and -- ``replay`` -- every entry, order snapshot, refund and parked row against a
        fresh re-recording of the stored events.  ``expect_head=(seq, hash)``: a head published before
        (a statement's manifest); entry ``seq`` must still have that hash.  Problems name the event,
        entry and field that changed."""
        from cps_engine.ledger.verify import verify_ledger

        with self._read(snapshot=True) as conn:
            result = verify_ledger(self, conn, expect_head=expect_head, replay=replay)
        if raise_on_error and not result.ok:
            raise LedgerIntegrityError("; ".join([*result.problems[:5], *result.unchecked]))
        return result

    def state_digest(self) -> str:
        """sha256 over the ledger's positions, independent of the order events arrived in.

        Positions are the sums of legs per (order, payee, account, currency, effective time, hold end),
        zero sums dropped, plus the set of parked/rejected events.  Two ledgers fed the same events
        in any order (and any number of times) have the same digest, while their hash chains record
        the order things actually happened in.  An amount-less refund is "what is left at its time",
        re-resolved (and its order restated) when a refund dated before it arrives later.

        Order-sensitive by nature (the digest can differ; ``tests/ledger/test_arrival.py``): payouts
        (money that left is never undone: of two payouts exceeding the balance the first to arrive is
        paid, the other waits for funds); a refund applied on arrival that in time order would have
        been refused (over-refunding, or a partial refund dated after an amount-less one) stays
        applied, so the later arrival is refused or takes what is left; and the recorded outcome of a
        bind that a later, earlier-dated bind turns into a loop.
        """
        t = self.tables.entries
        q = (sa.select(t.c.order_id, t.c.payee, t.c.account, t.c.currency, t.c.effective_us, t.c.available_us,
                       sa.func.sum(t.c.amount))
             .group_by(t.c.order_id, t.c.payee, t.c.account, t.c.currency, t.c.effective_us, t.c.available_us))
        with self._read() as conn:
            rows = sorted((tuple("" if v is None else v for v in r[:6]), int(r[6])) for r in conn.execute(q))
        positions = [[*k, total] for k, total in rows if total]
        parked = sorted([p.kind, p.id, p.status] for p in self.parked())
        with self._read() as conn:
            holds = sorted([m.payee, m.kind, int(m.effective_us)] for m in self._markers(conn, None)) \
                if self._has_holds(conn) else None
        return hashlib.sha256(canonical_json({"positions": positions, "parked": parked, "holds": holds})
                              .encode()).hexdigest()
