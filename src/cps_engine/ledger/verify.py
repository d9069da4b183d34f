"""Verification of a stored ledger: what :meth:`Ledger.verify` checks, and why it is enough.

The hash chain alone commits to the entries in the order they were written, nothing else: it says
nothing about the events the entries were derived from (``events``), the rate snapshots later
refunds are computed with (``orders.awards``), the refunds or the terms; and anyone who can write
the database can rewrite an entry and recompute every sha256 after it.  So verification commits the
ledger to its inputs and offers two anchors outside the database:

1. **The chain** (``hashing``): every entry's hash is recomputed from its content and the previous
   hash, the sequence numbers run 1..n, and every event's legs balance per currency.
2. **Payloads**: every stored event is parsed again and its payload hash recomputed; its kind, id and
   time must match the columns the ledger queries.  An edited payload whose hash was not recomputed
   shows here.
3. **Replay**: the stored events are recorded again, in the order they were recorded (their
   sequence numbers), into a fresh in-memory ledger with the same terms versions, binding mode and
   posting rules.  Recording is deterministic given that order, so every entry (payee, account,
   amounts, effective and hold-end times, rate, level, line, revision, config hash), every order
   snapshot (base, hold end, rate snapshot), every refund and every parked/rejected row must come out
   identical.  This catches what the chain cannot: an edited payload *with* a recomputed payload hash
   (its entries no longer follow from it), an edited rate snapshot, entries removed from the tail
   (the events still post them), and a leg redirected to another payee with the whole chain
   re-hashed (the events give the old payee).  Each difference is reported by event, entry and field.
4. **Anchors outside the database** catch a rewrite of events *and* entries together, which no
   check inside the database can: ``expect_head=(seq, hash)`` pins a head published earlier (every
   statement's manifest carries one) -- entry ``seq`` must still exist with that hash; and a
   **keyed** chain (``Ledger(..., chain_key=...)``): HMAC-SHA256 instead of sha256, with a key the
   ledger never stores (the ``meta`` table records ``chain = keyed`` and an HMAC of a fixed text that
   tells a wrong key from a tampered log).  Without the key nobody can forge a chain, and without it
   nobody can check one: verify says so instead of passing.

Replay costs one re-recording of the ledger into in-memory SQLite (about as long as recording it;
0.3 s for a 60-event history, most of it creating the schema); ``replay=False``
runs checks 1, 2 and 4 only.  Every check reads inside one read transaction (a deferred transaction
on SQLite, which never blocks writers; ``REPEATABLE READ`` on PostgreSQL and MariaDB when the ledger
owns the engine) and bounds its queries by the last event and entry committed when it started, so a
verify running next to writers sees one consistent ledger.

Posting rules are versioned like the encoding (``meta.postings``, ``2:<first event seq>``): version 2
(issue 11: amount-less refunds re-resolved, restatement posting only the difference) applies to
events from that sequence number on; a ledger written before keeps version 1 for its earlier events,
so its replay reproduces exactly what was posted then.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cps_engine.errors import CpsError
from cps_engine.graph import to_micros
from cps_engine.ledger.hashing import GENESIS, chain_hash, payload_hash
from cps_engine.ledger.holds import LedgerEvent, parse_ledger_event
from cps_engine.ledger.store import ENTRY_COLUMNS, sqlite_engine
from cps_engine.ledger.types import ChainHead, Verification
from cps_engine.policies import load_policy

if TYPE_CHECKING:
    from cps_engine.ledger.ledger import Ledger

__all__ = ["verify_ledger"]

_MAX_REPORTED = 20
_ENTRY_FIELDS = tuple(c for c in ENTRY_COLUMNS if c != "hash")


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.counts: dict[str, int] = {}

    def add(self, kind: str, text: str) -> None:
        n = self.counts[kind] = self.counts.get(kind, 0) + 1
        if n <= _MAX_REPORTED:
            self.items.append(text)

    def done(self) -> tuple[str, ...]:
        out = list(self.items)
        for kind, n in sorted(self.counts.items()):
            if n > _MAX_REPORTED:
                out.append(f"... and {n - _MAX_REPORTED} more {kind} problems")
        return tuple(out)


def verify_ledger(led: Ledger, conn: sa.Connection, *, expect_head: ChainHead | tuple[int, str] | None,
                  replay: bool) -> Verification:
    t = led.tables
    ev, en = t.events, t.entries
    last_event, last_entry = conn.execute(sa.select(sa.select(sa.func.max(ev.c.seq)).scalar_subquery(),
                                                    sa.select(sa.func.max(en.c.seq)).scalar_subquery())).one()
    last_event, last_entry = int(last_event or 0), int(last_entry or 0)
    problems = _Problems()
    unchecked: list[str] = []
    key = led._chain_key
    keyed = led._key_check is not None
    check_chain = True
    if keyed and key is None:
        unchecked.append("the chain is keyed (HMAC-SHA256): without the key its hashes cannot be checked "
                         "(give the key: Ledger(..., chain_key=...), --key-file)")
        check_chain = False
    elif keyed and not led._key_ok():
        problems.add("key", "the chain key given is wrong: it is not the key this ledger's chain was written with "
                            "(nothing about the entries can be concluded from their hashes with it)")
        check_chain = False
    # payloads (read first: entries name their event)
    labels: dict[int, str] = {}
    events: list[LedgerEvent] = []
    readable = True
    for seq, kind, event_id, at_us, payload, stored_hash in conn.execute(
            sa.select(ev.c.seq, ev.c.kind, ev.c.event_id, ev.c.at_us, ev.c.payload, ev.c.payload_hash)
            .where(ev.c.seq <= last_event).order_by(ev.c.seq)):
        labels[int(seq)] = f"{kind}:{event_id}"
        label = f"event #{seq} ({kind}:{event_id})"
        try:
            event = parse_ledger_event(json.loads(payload))
        except (CpsError, ValueError) as exc:
            problems.add("payload", f"{label}: the stored payload cannot be read ({str(exc)[:120]})")
            readable = False
            continue
        events.append(event)
        if payload_hash(event) != stored_hash:
            problems.add("payload", f"{label}: the stored payload does not match its payload hash (edited)")
        if (event.type, event.id, to_micros(event.at)) != (kind, event_id, int(at_us)):
            problems.add("payload", f"{label}: the stored payload is {event.type}:{event.id} at {to_micros(event.at)}"
                                    f" µs, the columns say {kind}:{event_id} at {at_us} µs")
    # 1. the chain, the sequence numbers, balanced postings
    prev, n = GENESIS, 0
    sums: dict[tuple[int, str], int] = {}
    hashes: dict[int, str] = {}
    rows = list(conn.execute(sa.select(en).where(en.c.seq <= last_entry).order_by(en.c.seq)))
    if isinstance(expect_head, ChainHead):
        expect_head = (expect_head.seq, expect_head.hash)
    pin = None if expect_head is None else (int(expect_head[0]), str(expect_head[1]))
    for r in rows:
        n += 1
        if r.seq != n:
            problems.add("sequence", f"entry seq {r.seq} where {n} was expected (gap or reorder)")
            n = int(r.seq)
        if check_chain:
            h = chain_hash(prev, _encodable(r, labels), key if keyed else None)
            if h != r.hash:
                problems.add("hash", f"entry {r.seq}: hash does not match its content and the previous hash")
        prev = r.hash
        if pin is not None and r.seq == pin[0]:
            hashes[pin[0]] = r.hash
        k = (int(r.event_seq), r.currency)
        sums[k] = sums.get(k, 0) + int(r.amount)
    for (seq, cur), total in sorted(sums.items()):
        if total:
            problems.add("balance", f"event #{seq}: {cur} legs sum to {total}, not 0")
    if pin is not None:
        seq, h = pin
        if seq > n:
            problems.add("pin", f"the pinned head #{seq} is beyond the last entry #{n}: entries were removed "
                                "after it was published (truncated)")
        elif seq > 0 and hashes.get(seq) != h.lower():
            problems.add("pin", f"entry #{seq} no longer has the pinned hash {h[:16]}…: the log up to it was "
                                "rewritten after the head was published")
    for tv in conn.execute(sa.select(t.terms).order_by(t.terms.c.version)):
        try:
            ok = load_policy(json.loads(tv.policy)).config_hash == tv.config_hash
        except (CpsError, ValueError):
            ok = False
        if not ok:
            problems.add("terms", f"terms version {tv.version}: the stored policy does not match its config hash")
    # 3. replay
    if replay and readable:
        _replay(led, conn, events, last_event, rows, labels, problems)
    elif replay:
        unchecked.append("the events were not replayed: a stored payload cannot be read")
    head = ChainHead(n, prev)
    return Verification(n, head, problems.done(), tuple(unchecked))


def _encodable(r: Any, labels: dict[int, str]) -> dict[str, Any]:
    return {"seq": int(r.seq), "event": labels.get(int(r.event_seq), f"#{r.event_seq}"), "kind": r.kind,
            "account": r.account, "payee": r.payee,
            "currency": r.currency, "amount": int(r.amount), "effective_us": int(r.effective_us),
            "available_us": None if r.available_us is None else int(r.available_us), "order": r.order_id,
            "revision": r.revision, "line": r.line, "level": r.level, "rate": r.rate, "config_hash": r.config_hash}


def _rows(conn: sa.Connection, table: sa.Table, bound: sa.ColumnElement[bool], order: Sequence[Any]) -> list[Any]:
    return [tuple(r) for r in conn.execute(sa.select(table).where(bound).order_by(*order))]


def _replay(led: Ledger, conn: sa.Connection, events: list[LedgerEvent], last_event: int, entries: list[Any],
            labels: dict[int, str], problems: _Problems) -> None:
    from cps_engine.ledger.ledger import Ledger

    t = led.tables
    terms = conn.execute(sa.select(t.terms).order_by(t.terms.c.version)).all()
    if not terms:
        return
    engine = sqlite_engine(":memory:", synchronous="OFF")
    try:
        twin = Ledger(engine, load_policy(json.loads(terms[0].policy)), binding=led.binding, protect=False,
                      horizon_days=None, prefix=t.prefix)
        tt = twin.tables
        with engine.begin() as wconn:
            wconn.execute(tt.terms.delete())
            wconn.execute(tt.terms.insert(), [dict(r._mapping) for r in terms])
            wconn.execute(tt.meta.delete().where(tt.meta.c.key == "postings"))
            wconn.execute(tt.meta.insert(), [{"key": "postings", "value": f"2:{led._postings_from}"}])
            twin._load_terms(wconn)
        twin._postings_from = led._postings_from
        twin._planner.postings_from = led._postings_from
        try:
            twin.record_many(events, batch_size=10_000)
        except CpsError as exc:  # pragma: no cover - stored events always record again
            problems.add("replay", f"the stored events could not be recorded again: {exc}")
            return
        with engine.connect() as rconn:
            mine = [tuple(getattr(r, c) for c in _ENTRY_FIELDS) for r in entries]
            theirs = [tuple(r) for r in rconn.execute(sa.select(*(tt.entries.c[c] for c in _ENTRY_FIELDS))
                                                      .order_by(tt.entries.c.seq))]
            _compare_entries(labels, mine, theirs, problems)
            for name, order, what in (("orders", ("order_id", "revision"), "order snapshot"),
                                      ("refunds", ("event_seq",), "refund"),
                                      ("parked", ("event_seq",), "parked event")):
                a, b = getattr(t, name), getattr(tt, name)
                stored = _rows(conn, a, a.c.event_seq <= last_event, [a.c[c] for c in order])
                replayed = _rows(rconn, b, sa.true(), [b.c[c] for c in order])
                _compare_rows(what, [c.name for c in a.columns], stored, replayed, len(order), problems)
    finally:
        engine.dispose()


def _compare_entries(labels: dict[int, str], mine: list[tuple[Any, ...]], theirs: list[tuple[Any, ...]],
                     problems: _Problems) -> None:
    for a, b in zip(mine, theirs, strict=False):
        if _norm(a) != _norm(b):
            diffs = [f"{name} is {x!r}, the events give {y!r}" for name, x, y in zip(_ENTRY_FIELDS, a, b, strict=True)
                     if _norm((x,)) != _norm((y,))]
            event = labels.get(int(b[1]), f"#{b[1]}")
            problems.add("entry", f"entry #{a[0]} (event {event}): " + "; ".join(diffs))
    if len(theirs) > len(mine):
        first = theirs[len(mine)]
        problems.add("entry", f"entries #{first[0]}..#{theirs[-1][0]} are missing: the events post them "
                              f"(from event {labels.get(int(first[1]), first[1])}): removed from the log")
    elif len(mine) > len(theirs):
        problems.add("entry", f"entries #{mine[len(theirs)][0]}..#{mine[-1][0]} follow from no event")


def _norm(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(int(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in values)


def _compare_rows(what: str, columns: list[str], stored: list[tuple[Any, ...]], replayed: list[tuple[Any, ...]],
                  key_len: int, problems: _Problems) -> None:
    a = {row[:key_len]: row for row in stored}
    b = {row[:key_len]: row for row in replayed}
    for k in sorted(set(a) | set(b), key=str):
        x, y = a.get(k), b.get(k)
        name = "/".join(str(v) for v in k)
        if x is None:
            problems.add(what, f"{what} {name} is missing: the events give it")
        elif y is None:
            problems.add(what, f"{what} {name} follows from no event")
        elif _norm(x) != _norm(y):
            diffs = [f"{c} is {str(p)[:80]!r}, the events give {str(q)[:80]!r}"
                     for c, p, q in zip(columns, x, y, strict=True) if _norm((p,)) != _norm((q,))]
            problems.add(what, f"{what} {name}: " + "; ".join(diffs))
