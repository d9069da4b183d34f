"""The commission ledger: every commission through its life, exactly once, never losing a cent.

``Ledger(store, policy)`` records the events of the core issue (share, bind, order, refund,
payout) into SQLite (``Ledger.open("commissions.db", policy=...)``), PostgreSQL or MariaDB/MySQL
(any SQLAlchemy 2 engine, or a connection inside the caller's own transaction).

Design (decided here)
---------------------
**Modules.**  ``types`` (the public value types), ``planner`` (a pure planner: what to post for one
event, from the state it reads through the small ``Store`` interface), ``store`` (the SQL statements
and the unit of work of one write transaction: the one place that speaks SQL on the write path),
``ledger`` (the thin :class:`Ledger` facade: set-up, terms, queries), ``graphs`` (what the ledger
adds to the one appendable share graph), ``postings`` (pure posting rules), ``hashing`` (canonical
encodings and the chain), ``statement`` (a pure function of a payee's entries).

**Entries.**  Every applied event posts legs that balance per currency (``postings``): an order's
lines are ``+x`` on each payee's ``commission`` account against ``-x`` on the merchant's ``expense``;
a refund posts the difference between the lines on the old and the new net base; a payout of ``A``
with fee ``F`` is ``-A`` commission, ``+(A-F)`` paid, ``+F`` fee.  Rows are only ever inserted
(triggers refuse UPDATE/DELETE); a correction is new legs.

**States are derived, not posted.**  A commission leg carries when it happened (``effective``) and
when its order's hold ends (``available``: order time + ``hold_days`` of the terms in force).
As of a time ``T`` (the caller's clock, never the wall clock unless the caller asks for "now") a
leg counts if ``effective <= T``; it is *pending* while ``T < available`` and *available* after.
Payouts draw on *available*; a refund after the hold (or after a payout) reduces *available*, which
may go negative (clawback) until later commissions offset it.  So ``pending``, ``available``,
``paid`` and ``fee`` of any payee at any time are sums over entries, and for every payee
``earned - reversed == pending + available + paid + fee``.

**Events that cannot be applied yet are parked** (kept, listed by :meth:`Ledger.parked`, applied
when what they wait for arrives, in (time, type, id) order): an order whose share (or an ancestor
share) is unknown, a refund of an unknown order, a payout larger than the available balance (retried
whenever the payee earns).  Events that can never apply are **rejected** and kept with the reason:
a refund beyond what was paid, a payout below the minimum, a share or bind the graph refuses (a
share re-shared from itself, dated before its parent or re-shared from a refused share; a bind that
would close a loop of uplines at its time), an order through a refused share.  A re-share whose
parent has not arrived is parked until it does.  ``record(event, strict=True)`` (and
:meth:`Ledger.request_payout`) raise the typed error
instead (:class:`InsufficientBalance`, :class:`BelowMinimumPayout`, ``UnknownReference``,
``InvalidEvent``) and store nothing.

**Idempotency.**  The key is ``(type, id)`` (a unique constraint); the payload is fingerprinted by
sha256 of its canonical JSON with amounts compared as numbers and times as instants
(:func:`hashing.payload_hash`).  Same key and payload: ``DUPLICATE``, nothing changes; another
payload: :class:`~cps_engine.errors.IdempotencyConflict`, nothing changes (a batch is all or
nothing).

**Arrival order does not change the result.**  An order's chain is computed from the share graph
*as of the order's time* by the one appendable share graph (``graphs``): its share path, the binding
history read at the order's time, and participation (shared, or had a downline, at or before the
order).  The graph is kept per database and table prefix in the process, shared by every ``Ledger``
object opened on the same engine (a backend that builds ``Ledger(connection)`` per request pays
nothing for it), and caught up by sequence number: only rows written since it last looked are
read.  A bind dated before binds already applied replays only the binds of the users it can affect.
When a share or bind dated at
or before orders already applied arrives late, those orders are recomputed and, if their awards
changed, *restated*: the order's whole life (accrual, then each refund in time order) is
recomputed as a new revision and only the
difference from what was posted is posted (posting rules 2; see ``verify``); the same happens when a
refund arrives after a later-dated refund of the same order.  Hence the ledger's
positions -- legs netted per order, payee, account, effective time and hold end -- are a function
of the *set* of events recorded, checked by :meth:`Ledger.state_digest`.  Three caveats, by nature:

- the hash chain records what happened in the order it happened, so two ledgers fed the same events
  in different orders have the same balances and digest but different chain heads (duplicates
  never change the head);
- a payout is money that left: it is checked against the balance known when it is recorded and is
  never undone.  If a refund dated before it arrives afterwards, the refund claws back (negative
  available) instead of the payout being refused; of two payouts that together exceed the balance,
  the first to arrive is paid.
- an amount-less refund is "what is left at its time" and is re-resolved when an earlier refund
  arrives late; but a refund already applied is never undone, so one that in time order would have
  been refused (over-refunding, or a partial refund dated after an amount-less one) stays applied
  when it arrives first, and the later arrival is refused or takes what is left.
- a bind's outcome is decided when it is recorded: if a bind dated *before* it arrives later and
  turns it into a loop of uplines (or frees one that was refused), the graph -- and so every chain
  and balance -- follows time order, but the bind's recorded outcome (applied / rejected) stays as
  it was reported, so the parked list in the digest can differ from an in-order delivery.

**Terms are versioned.**  The policy and the ledger rules (hold days, minimum payout, payout fee)
form a terms version with the time it takes effect from; an order uses the version in force at its
time, a payout the rules in force at its time.  Opening a ledger with different terms adds a version
effective after every event recorded so far (or from ``effective_from``, never earlier), so orders
already recorded keep their rates.  Every commission leg stores the config hash and exact rate it
was computed with; refunds reuse the order's rate snapshot (its awards).

**Concurrency and crashes.**  One call is one transaction (``record_many``: one per batch).  Each
transaction first takes the ledger's write lock (PostgreSQL ``pg_advisory_xact_lock``; SQLite
``BEGIN IMMEDIATE`` and a lock row; MariaDB a row lock, with READ COMMITTED on engines the ledger
creates), then reads the chain head: entries get gap-free sequence numbers and one chain even with
many writer processes.  A crash at any point leaves every event all or nothing; redelivery is
idempotent.  ``Ledger.fault_hook`` lets tests kill the process inside a write.

**Hash chain and verification.**  ``hash[n] = sha256(hash[n-1] + canonical(entry[n]))`` (``hashing``,
frozen by golden vectors in the tests), or HMAC-SHA256 with a key the ledger never stores
(``Ledger(..., chain_key=...)``).  :meth:`Ledger.verify` (``verify``) recomputes the chain, checks
every posting balances and every stored payload against its hash, and replays the stored events into
a fresh ledger to compare every entry, order snapshot and refund; ``expect_head`` pins a head
published before (statements carry one), which with a keyed chain is what catches a rewrite of
events and entries together.

**Limits.**  Times outside 1970..9000 (``as_of`` included) and ids with a NUL character are refused
with typed errors; an event dated more than ``horizon_days`` (default 366) after the latest one is
refused (a typo would otherwise delay every later terms version); hold days are bounded by
:data:`cps_engine.limits.MAX_DAYS`.

Agreement with :func:`cps_engine.compute_events` (which replays a whole history at once): a refund
without an amount refunds what is *left* of the order, and the compliant policy's "is the buyer a
participant" is answered as of the order's time, in both.  The ledger's net lines equal the
engine's to the unit (a property test checks it).

>>> led = Ledger.open(":memory:", policy={"kind": "first_sharer", "rate": "10%"}, hold_days=7)
>>> _ = led.record_many([
...     {"type": "share", "id": "s1", "sharer": "amy", "at": "2026-03-01T10:00:00+08:00"},
...     {"type": "order", "id": "o1", "buyer": "bo", "share": "s1", "amount": "80.00", "currency": "CNY",
...      "at": "2026-03-01T12:00:00+08:00"}])
>>> led.balance("amy", "CNY", as_of="2026-03-09T00:00:00+08:00").as_json()["available"]
'8.00'
"""

from cps_engine.ledger.demo import demo_summary, run_demo
from cps_engine.ledger.errors import BelowMinimumPayout, InsufficientBalance, LedgerIntegrityError, PayoutRefused
from cps_engine.ledger.export import account_component, payee_of_component, to_beancount, write_beancount
from cps_engine.ledger.ledger import (
    Balance,
    ChainHead,
    Entry,
    Ledger,
    Outcome,
    ParkedEvent,
    Recorded,
    RecordSummary,
    TermsVersion,
    Verification,
    sqlite_engine,
)
from cps_engine.ledger.postings import LedgerRules
from cps_engine.ledger.schema import ledger_ddl, ledger_metadata
from cps_engine.ledger.statement import AccountLine, AccountStatement, Statement, StatementLine, build_statement

__all__ = [
    "AccountLine",
    "AccountStatement",
    "Balance",
    "BelowMinimumPayout",
    "ChainHead",
    "Entry",
    "InsufficientBalance",
    "Ledger",
    "LedgerIntegrityError",
    "LedgerRules",
    "Outcome",
    "ParkedEvent",
    "PayoutRefused",
    "RecordSummary",
    "Recorded",
    "Statement",
    "StatementLine",
    "TermsVersion",
    "Verification",
    "account_component",
    "build_statement",
    "demo_summary",
    "ledger_ddl",
    "ledger_metadata",
    "payee_of_component",
    "run_demo",
    "sqlite_engine",
    "to_beancount",
    "write_beancount",
]
