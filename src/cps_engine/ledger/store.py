"""The SQL store: statements built once per ledger, and the unit of work of one write transaction
(the write lock, the chain head, buffered rows flushed as tuples at commit, per-call caches).  The
one module that speaks SQL on the write path; the planner reaches it only through
:class:`cps_engine.ledger.planner.Store`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from cps_engine.errors import (
    InvalidPolicyConfig,
)
from cps_engine.graph import to_micros
from cps_engine.ledger.hashing import GENESIS, event_payload
from cps_engine.ledger.holds import HOLD_ACCOUNT, HOLD_CURRENCY, LedgerEvent, parse_ledger_event
from cps_engine.ledger.planner import _OrderState, _Park
from cps_engine.ledger.postings import (
    CAPPED,
    Leg,
    awards_from_json,
    caps_from_json,
    merchant_legs,
)
from cps_engine.ledger.schema import LedgerTables
from cps_engine.ledger.types import Entry
from cps_engine.models import (
    OrderEvent,
    RefundEvent,
)
from cps_engine.money import Rounding

if TYPE_CHECKING:
    from cps_engine.ledger.ledger import Ledger

__all__ = ["ENTRY_COLUMNS", "Statements", "UnitOfWork", "engine_for_url", "entry_from_row", "sqlite_engine"]

_RANK = {"share": 0, "bind": 1, "order": 2, "refund": 3, "payout": 4, "role": 5, "hold": 6, "release": 7}
ENTRY_COLUMNS: Final = ("seq", "event_seq", "kind", "account", "payee", "currency", "amount", "order_id", "revision",
                        "line", "level", "rate", "config_hash", "effective_us", "available_us", "hash")
_MIN_US = -(2**62)


def sqlite_engine(path: str | Path, *, synchronous: str = "FULL", timeout: float = 60.0) -> sa.Engine:
    """A SQLAlchemy engine on a SQLite file (``":memory:"`` for a private in-memory database) set up
    for the ledger: WAL journal, ``synchronous`` (``FULL`` default, ``NORMAL`` is faster and still
    atomic), ``BEGIN IMMEDIATE`` write transactions so concurrent writers queue instead of failing, and
    deferred ``BEGIN`` for connections with the ``cps_read`` execution option (the ledger's reads), so
    a reader never takes the write lock and never blocks a writer."""
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
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("cps_read") else "BEGIN IMMEDIATE")

    return engine


def engine_for_url(url: str) -> sa.Engine:
    if url.startswith(("mysql", "mariadb")):
        return sa.create_engine(url, isolation_level="READ COMMITTED", pool_pre_ping=True)
    return sa.create_engine(url, pool_pre_ping=True)


def entry_from_row(r: Any) -> Entry:
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


class Statements:
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
        latest_event = sa.select(sa.func.max(ev.c.at_us)).scalar_subquery()
        any_hold = sa.select(ev.c.seq).where(ev.c.kind == "hold").limit(1).scalar_subquery()
        self.start = sa.select(last_ev, last_eh, last_en, last_hh, terms, live, latest, latest_event, any_hold)
        self.prefetch = sa.select(ev.c.event_id, ev.c.seq, ev.c.payload_hash).where(
            ev.c.kind == bp("kind"), ev.c.event_id.in_(bp("ids", expanding=True)))
        self.lookup = sa.select(ev.c.seq, ev.c.payload_hash).where(ev.c.kind == bp("kind"), ev.c.event_id == bp("id"))
        self.payload = sa.select(ev.c.payload).where(ev.c.seq == bp("seq"))
        # the bulk inserts go straight to the driver as tuples (SQLAlchemy's per-row parameter
        # processing of dict rows cost more than the database on SQLite)
        self.inserts = [(table, *_raw_insert(table, dialect_obj)) for table in (ev, o, r, en)]
        assert self.inserts[3][2] == ENTRY_COLUMNS, "Tx.post builds entry rows in this column order"
        self.order_row = (sa.select(o).where(o.c.order_id == bp("order")).order_by(o.c.revision.desc()).limit(1))
        self.order_refunds = (sa.select(r.c.at_us, r.c.refund_id, r.c.amount_minor, ev.c.payload)
                              .join(ev, ev.c.seq == r.c.event_seq).where(r.c.order_id == bp("order")))
        # positions over every revision: a restatement nets the old revision's lines to zero (rules 1 by
        # reversing them, rules 2 by posting the difference), so these are the current revision's
        # (and the capped excess of each line, account ``capped``: what payee caps withheld)
        self.order_posted = (sa.select(en.c.account, en.c.line, sa.func.sum(en.c.amount))
                             .where(en.c.order_id == bp("order"), en.c.account.in_(("commission", CAPPED)))
                             .group_by(en.c.account, en.c.line))
        # the same three reads for every order a batch's refunds name, one query each (record_many)
        ids: sa.BindParameter[Any] = bp("ids", expanding=True)
        self.orders_rows = sa.select(o).where(o.c.order_id.in_(ids))
        self.orders_refunds = (sa.select(r.c.order_id, r.c.at_us, r.c.refund_id, r.c.amount_minor, ev.c.payload)
                               .join(ev, ev.c.seq == r.c.event_seq).where(r.c.order_id.in_(ids)))
        self.orders_posted = (sa.select(en.c.order_id, en.c.account, en.c.line, sa.func.sum(en.c.amount))
                              .where(en.c.order_id.in_(ids), en.c.account.in_(("commission", CAPPED)))
                              .group_by(en.c.order_id, en.c.account, en.c.line))
        cols = (en.c.payee, en.c.line, en.c.level, en.c.rate, en.c.config_hash, en.c.effective_us, en.c.available_us)
        self.revision_legs = (sa.select(*cols, en.c.account, sa.func.sum(en.c.amount))
                              .where(en.c.order_id == bp("order"), en.c.account.in_(("commission", CAPPED)))
                              .group_by(*cols, en.c.account).order_by(en.c.effective_us, en.c.line))
        # a payee's commission on the orders dated in a period (payee caps per period), one order left out
        in_period = sa.select(o.c.order_id).where(o.c.at_us >= bp("start", type_=sa.BigInteger),
                                                  o.c.at_us < bp("end", type_=sa.BigInteger), o.c.revision == 0)
        self.period_commission = sa.select(sa.func.coalesce(sa.func.sum(en.c.amount), 0)).where(
            en.c.payee == bp("payee"), en.c.currency == bp("currency"), en.c.account == "commission",
            en.c.order_id.in_(in_period), en.c.order_id != bp("order"))
        at = bp("at", type_=sa.BigInteger)
        cond = (en.c.kind == "payout") | ((en.c.effective_us <= at) & (en.c.available_us <= at))
        self.funds = sa.select(sa.func.coalesce(sa.func.sum(en.c.amount), 0)).where(
            en.c.payee == bp("payee"), en.c.currency == bp("currency"), en.c.account == "commission", cond)
        base = sa.select(o.c.order_id).where(o.c.at_us >= bp("at", type_=sa.BigInteger), o.c.revision == 0)
        self.orders_from = base.order_by(o.c.at_us, o.c.order_id)
        self.orders_from_buyer = base.where(o.c.buyer == bp("buyer")).order_by(o.c.at_us, o.c.order_id)
        self.hold_markers = sa.select(en.c.kind, en.c.effective_us).where(
            en.c.payee == bp("payee"), en.c.currency == HOLD_CURRENCY, en.c.account == HOLD_ACCOUNT)
        self.park = p.insert()
        self.unpark = p.delete().where(p.c.event_seq == bp("seq"))
        self.waiting = sa.select(p.c.event_seq, p.c.at_us, p.c.kind, p.c.event_id, p.c.waits_for).where(
            p.c.waits_for.in_(bp("keys", expanding=True)))


class UnitOfWork:
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
        self.latest_event: int | None = None
        self.known: dict[tuple[str, str], tuple[int, str] | None] = {}
        self.events: dict[int, LedgerEvent] = {}
        #: hold markers per payee read (or posted) in this transaction; ``any_hold``: the ledger has holds
        self.holds: dict[str, list[tuple[str, int]]] = {}
        self.any_hold = False
        self.orders: dict[str, _OrderState | None] = {}
        self.rows_events: list[dict[str, Any]] = []
        self.rows_orders: list[dict[str, Any]] = []
        self.rows_refunds: list[dict[str, Any]] = []
        self.rows_entries: list[tuple[Any, ...]] = []
        #: commission legs posted in this transaction, in order (what ``Recorded.legs`` reports)
        self.legs: list[Leg] = []
        #: capped excess legs posted in this transaction (what ``Recorded.capped`` reports)
        self.capped: list[Leg] = []

    def start(self) -> None:
        conn = self.conn
        conn.execute(self.sql.lock)
        row = conn.execute(self.sql.start).one()
        self.latest_order = _MIN_US if row[6] is None else int(row[6])
        self.latest_event = None if row[7] is None else int(row[7])
        self.event_seq = int(row[0] or 0)
        self.head_seq = int(row[2] or 0)
        self.head_hash = row[3] or GENESIS
        if int(row[4] or 0) != len(self.ledger._terms):
            self.ledger._load_terms(conn)
        self.parked_live = int(row[5] or 0)
        self.any_hold = row[8] is not None
        self.ledger._refresh(conn, self.event_seq, row[1] or "")
        self.start_token = self.ledger.graph.token

    # ------------------------------------------------------------------ events
    def prefetch(self, events: Sequence[LedgerEvent]) -> None:
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
        self._prefetch_orders(sorted({ev.order for ev in events if isinstance(ev, RefundEvent)} - set(self.orders)))

    def _prefetch_orders(self, order_ids: Sequence[str]) -> None:
        """Load the state of every order in ``order_ids`` with three queries in all (per 500 orders),
        instead of three per refund: what :meth:`order_state` reads, in bulk."""
        sql = self.sql
        for i in range(0, len(order_ids), 500):
            chunk = {"ids": list(order_ids[i:i + 500])}
            latest: dict[str, Any] = {}
            for row in self.conn.execute(sql.orders_rows, chunk):
                if row.order_id not in latest or row.revision > latest[row.order_id].revision:
                    latest[row.order_id] = row
            refunds: dict[str, list[tuple[int, str, int, bool]]] = {}
            for oid, a, rid, m, p in self.conn.execute(sql.orders_refunds, chunk):
                refunds.setdefault(oid, []).append((int(a), rid, int(m), json.loads(p).get("amount") is None))
            posted: dict[str, dict[tuple[str, int], int]] = {}
            for oid, account, line, total in self.conn.execute(sql.orders_posted, chunk):
                posted.setdefault(oid, {})[(account, int(line))] = int(total)
            for oid in chunk["ids"]:
                found = latest.get(oid)
                self.orders[oid] = None if found is None else self._state(
                    found, sorted(refunds.get(oid, [])), posted.get(oid, {}))

    def _state(self, row: Any, refunds: list[tuple[int, str, int, bool]],
               posted_by_line: dict[tuple[str, int], int]) -> _OrderState:
        awards = awards_from_json(row.awards)
        posted = [0] * len(awards)
        excess = [0] * len(awards)
        for (account, line), total in posted_by_line.items():
            if total:  # lines of an earlier, longer rate snapshot net to zero
                (posted if account == "commission" else excess)[line] = total
        caps = caps_from_json(row.awards)
        return _OrderState(row.order_id, int(row.origin_seq), int(row.revision), int(row.event_seq), row.buyer,
                           int(row.at_us), row.currency, int(row.amount_minor), int(row.gross_base),
                           int(row.terms_version), row.config_hash, row.policy_label, Rounding(row.rounding),
                           int(row.available_us), awards, row.awards, refunds, posted,
                           caps if any(c is not None for c in caps) else [], excess)

    def lookup(self, key: tuple[str, str]) -> tuple[int, str] | None:
        if key not in self.known:
            row = self.conn.execute(self.sql.lookup, {"kind": key[0], "id": key[1]}).first()
            self.known[key] = (int(row[0]), row[1]) if row else None
        return self.known[key]

    def insert_event(self, ev: LedgerEvent, h: str, payload: str | None = None) -> int:
        self.event_seq += 1
        seq = self.event_seq
        self.known[ev.key] = (seq, h)
        self.events[seq] = ev
        at = to_micros(ev.at)
        self.latest_event = at if self.latest_event is None else max(self.latest_event, at)
        self.rows_events.append({"seq": seq, "kind": ev.type, "event_id": ev.id, "at_us": at,
                                 "payload": event_payload(ev) if payload is None else payload, "payload_hash": h})
        self.ledger.graph.token = (seq, h)
        return seq

    def event_at(self, seq: int) -> LedgerEvent:
        ev = self.events.get(seq)
        if ev is None:
            payload = self.conn.execute(self.sql.payload, {"seq": seq}).scalar_one()
            ev = self.events[seq] = parse_ledger_event(json.loads(payload))
        return ev

    def order_event(self, seq: int) -> OrderEvent:
        ev = self.event_at(seq)
        assert isinstance(ev, OrderEvent)
        return ev

    # ------------------------------------------------------------------ postings
    def post(self, event_seq: int, ev: LedgerEvent, legs: Sequence[Leg]) -> None:
        key = f"{ev.type}:{ev.id}"
        all_legs = [leg for leg in legs if leg.amount or leg.account == HOLD_ACCOUNT] + merchant_legs(legs)
        for leg in legs:
            if leg.account == HOLD_ACCOUNT and leg.payee is not None:
                self.hold_markers(leg.payee).append((leg.kind, leg.effective_us))
                self.any_hold = True
        rows = self.rows_entries
        chain = self.ledger._chain
        self.legs += [leg for leg in legs if leg.amount and leg.payee is not None and leg.account != CAPPED]
        self.capped += [leg for leg in legs if leg.amount and leg.account == CAPPED]
        for leg in all_legs:
            self.head_seq += 1
            seq = self.head_seq
            self.head_hash = h = chain(self.head_hash, {
                "seq": seq, "event": key, "kind": leg.kind, "account": leg.account, "payee": leg.payee,
                "currency": leg.currency, "amount": leg.amount, "effective_us": leg.effective_us,
                "available_us": leg.available_us, "order": leg.order, "revision": leg.revision, "line": leg.line,
                "level": leg.level, "rate": leg.rate, "config_hash": leg.config_hash})
            rows.append((seq, event_seq, leg.kind, leg.account, leg.payee, leg.currency, leg.amount, leg.order,
                         leg.revision, leg.line, leg.level, leg.rate, leg.config_hash, leg.effective_us,
                         leg.available_us, h))  # the entries table's column order (checked in Statements)
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
        refunds = sorted((int(a), i, int(m), json.loads(p).get("amount") is None)
                         for a, i, m, p in self.conn.execute(sql.order_refunds, args))
        posted = {(account, int(line)): int(total)
                  for account, line, total in self.conn.execute(sql.order_posted, args)}
        st = self.orders[order_id] = self._state(row, refunds, posted)
        return st

    def revision_legs(self, st: _OrderState) -> list[tuple[Any, ...]]:
        self.flush()
        rows = self.conn.execute(self.sql.revision_legs, {"order": st.order_id})
        return [(p, int(li), int(lv), rate, ch, int(eff), int(av), acc, int(s))
                for p, li, lv, rate, ch, eff, av, acc, s in rows]

    def period_commission(self, payee: str, currency: str, start: int, end: int, order_id: str) -> int:
        """``payee``'s commission on the orders dated in ``[start, end)`` but ``order_id`` (payee caps)."""
        self.flush()
        return int(self.conn.execute(self.sql.period_commission, {
            "payee": payee, "currency": currency, "start": start, "end": end, "order": order_id}).scalar() or 0)

    def hold_markers(self, payee: str) -> list[tuple[str, int]]:
        """The payee's hold and release markers ``(kind, time)`` (see :mod:`cps_engine.ledger.holds`)."""
        found = self.holds.get(payee)
        if found is None:
            found = self.holds[payee] = [] if not self.any_hold else [
                (k, int(t)) for k, t in self.conn.execute(self.sql.hold_markers, {"payee": payee})]
        return found

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
    def park(self, seq: int, ev: LedgerEvent, plan: _Park) -> None:
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
