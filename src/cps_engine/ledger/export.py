"""The ledger as a `beancount <https://beancount.github.io/>`_ file: plain-text double entry for accountants.

Every stored leg becomes a posting; the legs one event posted at one effective time become one
transaction (they balance per currency, so each transaction balances), dated by that time's day in
the export's zone, with the event (``event: "order:o1"``), the exact time and, on each posting, the
leg's sequence number and chain hash in metadata.  The ledger's accounts map to:

========================================  ====================================================
beancount account                         ledger account
========================================  ====================================================
``Expenses:Cps:Commissions``              the merchant's ``expense``
``Liabilities:Cps:Payees:<P>:Pending``    a payee's ``commission`` still on hold
``Liabilities:Cps:Payees:<P>:Available``  a payee's ``commission`` after its hold
``Assets:Cps:Paid:<P>``                   ``paid``: what left to the payee (net of fees)
``Income:Cps:PayoutFees:<P>``             ``fee``: payout fees withheld
========================================  ====================================================

A hold on a payee (:mod:`cps_engine.ledger.holds`) keeps their commission pending until the
release, as the ledger's balances do; its marker entries are ``note`` directives on the payee's
pending account (with their sequence number and hash).  Memo accounts that move no payee money
(e.g. what a payee cap withheld) go under ``Equity:Cps``.

Amounts carry beancount's signs, which are the ledger's flipped: what is owed to a payee is a
credit (negative) on a liability, the merchant's expense is positive.  So each balance the ledger
reports (``ledger balance``) is the *negated* balance of the matching account.  Pending becomes
available when a hold ends: a ``release`` transaction at the hold end moves the amount between the
two accounts (the ledger derives this from the leg's hold end; releases are not stored entries).

``<P>`` is the payee id mapped injectively to beancount's account grammar (:func:`account_component`):
letters and digits are kept, every other character (``-`` included) becomes ``-`` and the hex of
its UTF-8 bytes, after a fixed ``P-``; so markup, CSV formulas, terminal escapes and non-ASCII ids
all give distinct plain-ASCII names, and :func:`payee_of_component` maps back.  The real id is also
kept in the ``open`` directive's metadata (``payee``; an id with characters beancount's strings
cannot carry, such as control characters, goes to ``payee-json`` as a JSON string instead; the same
for ``event`` and ``order``).  This function does not verify the ledger; ``cps-engine ledger
export`` does first, as for a statement.

At the end, ``balance`` assertions state every payee account's balance as the ledger itself
computes it (:meth:`~cps_engine.ledger.Ledger.balances`, a separate SQL sum), so ``bean-check`` on
the file proves the export agrees with the ledger.

>>> from cps_engine.ledger import Ledger
>>> led = Ledger.open(":memory:", policy={"kind": "first_sharer", "rate": "10%"}, hold_days=1)
>>> _ = led.record_many([
...     {"type": "share", "id": "s1", "sharer": "amy", "at": "2026-03-01T00:00:00Z"},
...     {"type": "order", "id": "o1", "buyer": "bo", "share": "s1", "amount": "50.00", "currency": "CNY",
...      "at": "2026-03-01T10:00:00Z"}])
>>> text = to_beancount(led)
>>> print(text[text.index("2026-03-01 * "):text.index("2026-03-02 * ")].strip())
2026-03-01 * "order o1"
  event: "order:o1"
  time: "2026-03-01T10:00:00Z"
  Liabilities:Cps:Payees:P-amy:Pending  -5.00 CNY
    seq: 1
    kind: "accrual"
    order: "o1"
    level: 1
    rate: "1/10"
    hash: "1fa9bca139b89156527f0931fc6303bdaf8680d77a5b475cdabe302b5aeddc6e"
  Expenses:Cps:Commissions  5.00 CNY
    seq: 2
    kind: "accrual"
    order: "o1"
    hash: "eda1a18db5f04f5622f8255f62cfdc6ea630c01beec03e2cfc8feb336a9c6909"
"""

from __future__ import annotations

import inspect
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, tzinfo
from typing import IO, TYPE_CHECKING

from cps_engine._version import library_version
from cps_engine.ledger.holds import HOLD_ACCOUNT, hold_windows
from cps_engine.ledger.statement import display_time, parse_zone, recorded_zone, zone_label
from cps_engine.ledger.types import MAX_US, Entry
from cps_engine.money import Money
from cps_engine.times import from_micros, to_micros

if TYPE_CHECKING:
    from cps_engine.ledger.ledger import Ledger

__all__ = ["EXPORT_FORMATS", "account_component", "payee_accounts", "payee_of_component", "to_beancount",
           "write_beancount"]

EXPORT_FORMATS = ("beancount",)
MERCHANT = "Expenses:Cps:Commissions"
_KEEP = re.compile(r"[A-Za-z0-9]")
_ESCAPE = re.compile(r"-([0-9a-f]{2})")


def account_component(payee: str) -> str:
    """``payee`` as one beancount account component: ``P-`` then letters and digits as they are and
    every other character as ``-`` and the lowercase hex of each of its UTF-8 bytes (deterministic and
    injective: :func:`payee_of_component` inverts it).

    >>> account_component("amy"), account_component("=SUM(A1)"), account_component("张")
    ('P-amy', 'P--3dSUM-28A1-29', 'P--e5-bc-a0')
    >>> payee_of_component(account_component("a-2d\\x1b[0m"))
    'a-2d\\x1b[0m'
    """
    out = ["P-"]
    for ch in payee:
        if _KEEP.fullmatch(ch):
            out.append(ch)
        else:
            out.extend(f"-{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)


def payee_of_component(component: str) -> str:
    """The payee id an :func:`account_component` came from (``ValueError`` if it is not one)."""
    if not component.startswith("P-"):
        raise ValueError(f"{component!r} is not a payee account component")
    body = component[2:]
    data = bytearray()
    i = 0
    while i < len(body):
        if body[i] == "-":
            m = _ESCAPE.match(body, i)
            if m is None:
                raise ValueError(f"{component!r}: '-' at {i + 2} is not followed by two hex digits")
            data.append(int(m.group(1), 16))
            i = m.end()
        elif _KEEP.fullmatch(body[i]):
            data.append(ord(body[i]))
            i += 1
        else:
            raise ValueError(f"{component!r}: {body[i]!r} cannot appear in a payee account component")
    return data.decode("utf-8", "surrogatepass")


def payee_accounts(payee: str) -> dict[str, str]:
    """The beancount accounts of one payee, by ledger state (``pending``, ``available``, ``paid``, ``fee``)."""
    c = account_component(payee)
    return {"pending": f"Liabilities:Cps:Payees:{c}:Pending", "available": f"Liabilities:Cps:Payees:{c}:Available",
            "paid": f"Assets:Cps:Paid:{c}", "fee": f"Income:Cps:PayoutFees:{c}"}


_STRING_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _exact(text: str) -> bool:
    """Whether beancount's string syntax carries ``text`` exactly as printable text (its only escapes
    are ``\\\\``, ``\\"``, ``\\n``, ``\\t`` and ``\\r``; a raw control character would reach a terminal)."""
    return all(ch.isprintable() or ch in "\n\t\r" for ch in text)


def _string(text: str) -> str:
    """A beancount string literal; characters it cannot carry printably are shown as ``\\uXXXX`` text
    (for labels; exact values go through :func:`_meta`)."""
    out = []
    for ch in text:
        if ch in _STRING_ESCAPES:
            out.append(_STRING_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(json.dumps(ch)[1:-1].replace("\\", "\\\\"))
    return f'"{"".join(out)}"'


def _meta(key: str, text: str) -> str:
    """``key: "text"`` when beancount carries ``text`` exactly, else ``key-json:`` and ``text`` as a JSON
    string (ASCII: a control character or a bidi override never reaches the file raw)."""
    if _exact(text):
        return f"{key}: {_string(text)}"
    return f"{key}-json: {_string(json.dumps(text, ensure_ascii=True))}"


def _number(minor: int, currency: str) -> str:
    return f"{format(Money(minor, currency).amount, 'f')} {currency}"


@dataclass
class _Txn:
    at_us: int
    order_key: tuple[int, int]
    narration: str
    meta: list[str]
    postings: list[tuple[str, int, str, list[str]]] = field(default_factory=list)
    note: str | None = None  #: a ``note`` on this account instead of a transaction


def _label(e: Entry) -> str:
    kind, _, ident = e.event.partition(":")
    if kind == "refund" and e.order is not None:
        return f"refund {ident} of order {e.order}"
    return f"{kind} {ident}"


def _account(e: Entry) -> str:
    if e.account not in ("commission", "paid", "fee", "expense"):  # a memo account (e.g. what a cap withheld)
        name = e.account.capitalize() if e.account.isascii() and e.account.isalnum() else account_component(e.account)
        return f"Equity:Cps:{name}" + ("" if e.payee is None else f":{account_component(e.payee)}")
    if e.payee is None:
        return MERCHANT
    accounts = payee_accounts(e.payee)
    if e.account == "commission":
        pending = e.kind != "payout" and e.available_us is not None and e.effective_us < e.available_us
        return accounts["pending" if pending else "available"]
    return accounts[e.account]


def _all_entries(ledger: Ledger) -> list[Entry]:
    """Every stored entry, memo entries (hold markers, ...) included where the ledger leaves them out
    by default."""
    if "memo" in inspect.signature(ledger.entries).parameters:
        return ledger.entries(memo=True)  # type: ignore[call-arg,unused-ignore]
    return ledger.entries()


def _held(entries: list[Entry]) -> list[Entry]:
    """``entries`` with the hold end of each commission leg of a held payee moved to the release of the
    hold it fell in (never, for a hold not released), as the ledger's balances and statements count it."""
    markers: dict[str, list[tuple[str, int]]] = {}
    for e in entries:
        if e.account == HOLD_ACCOUNT and e.payee is not None:
            markers.setdefault(e.payee, []).append((e.kind, e.effective_us))
    if not markers:
        return entries
    windows = {p: hold_windows(m, MAX_US - 1) for p, m in markers.items()}
    out = []
    for e in entries:
        if e.account == "commission" and e.order is not None and e.available_us is not None and e.payee in windows:
            for a, b in windows[e.payee]:
                if a <= e.available_us < b:
                    e = replace(e, available_us=b)
                    break
        out.append(e)
    return out


def _transactions(entries: Iterable[Entry], zone: tzinfo) -> tuple[list[_Txn], dict[str, tuple[int, set[str], str]]]:
    """The transactions (one per event and effective time, plus the releases; a hold or release of a
    payee is a ``note``) and the accounts used: ``name -> (first µs, currencies, payee)``."""
    txns: dict[tuple[str, int], _Txn] = {}
    releases: dict[tuple[int, str | None], dict[tuple[str, str], int]] = {}
    accounts: dict[str, tuple[int, set[str], str]] = {}

    def use(name: str, at: int, currency: str | None, payee: str) -> None:
        first, curs, _ = accounts.setdefault(name, (at, set(), payee))
        if currency is not None:
            curs.add(currency)
        if at < first:
            accounts[name] = (at, curs, payee)

    for e in entries:
        if e.account == HOLD_ACCOUNT:  # a zero marker: when a hold of the payee began or ended
            name = payee_accounts(e.payee or "")["pending"]
            txns[(e.event, e.effective_us)] = _Txn(
                e.effective_us, (e.effective_us, e.seq), f"{e.kind} of payee {e.payee}",
                [_meta("event", e.event), f"time: {_string(display_time(e.effective_us, zone))}", f"seq: {e.seq}",
                 f"hash: {_string(e.hash)}"], note=name)
            use(name, e.effective_us, None, e.payee or "")
            continue
        t = txns.get((e.event, e.effective_us))
        if t is None:
            t = txns[(e.event, e.effective_us)] = _Txn(
                e.effective_us, (e.effective_us, e.seq), _label(e),
                [_meta("event", e.event), f"time: {_string(display_time(e.effective_us, zone))}"])
        name = _account(e)
        meta = [f"seq: {e.seq}", f"kind: {_string(e.kind)}"]
        if e.order is not None:
            meta.append(_meta("order", e.order))
        if e.level is not None:
            meta += [f"level: {e.level}", f"rate: {_string(e.rate or '')}"]
        meta.append(f"hash: {_string(e.hash)}")
        t.postings.append((name, -e.amount, e.currency, meta))
        use(name, e.effective_us, e.currency, e.payee or "")
        if e.payee is not None and name.endswith(":Pending"):
            assert e.available_us is not None
            rel = releases.setdefault((e.available_us, e.order), {})
            rel[(e.payee, e.currency)] = rel.get((e.payee, e.currency), 0) + e.amount
    out = list(txns.values())
    for (at, order), amounts in releases.items():
        if at >= MAX_US - 1:  # held, never released: stays pending
            continue
        t = _Txn(at, (at, 2**62), f"release of order {order}",
                 [_meta("order", order or ""), f"time: {_string(display_time(at, zone))}"])
        for (payee, cur), amount in sorted(amounts.items()):
            if amount:
                accts = payee_accounts(payee)
                t.postings += [(accts["pending"], amount, cur, []), (accts["available"], -amount, cur, [])]
                use(accts["available"], at, cur, payee)
        if t.postings:
            out.append(t)
    out.sort(key=lambda t: (t.at_us, t.order_key, t.narration))
    return out, accounts


def _day(us: int, zone: tzinfo) -> date:
    return from_micros(us).astimezone(zone).date()


def write_beancount(ledger: Ledger, out: IO[str], *, tz: str | tzinfo | None = None, assertions: bool = True) -> None:
    """Write the whole ledger to ``out`` as a beancount file (see the module docstring).

    ``tz``: the zone whose days date the transactions (``+08:00``, ``UTC``, an IANA name or a
    :class:`datetime.tzinfo`); default the one UTC offset the events were recorded with, else UTC.
    ``assertions``: end with ``balance`` directives holding the ledger's own balances.
    """
    zone, why = recorded_zone(ledger) if tz is None else (parse_zone(tz), "given")
    entries = _held(_all_entries(ledger))
    head = ledger.chain_head()
    txns, accounts = _transactions(entries, zone)
    w = out.write
    w(f"; cps-engine ledger export (library {library_version()}): {len(entries)} entries, chain head "
      f"#{head.seq} {head.hash}\n")
    w(f"; transactions dated by day in {zone_label(zone)} ({why}); amounts have beancount's signs, the ledger's "
      "flipped: a payee's pending, available, paid and fee are minus the balances of its accounts\n")
    w('option "title" "cps-engine ledger"\n\n')
    if not entries:
        return
    first = min(_day(t.at_us, zone) for t in txns)
    for cur in sorted({c for _, curs, _ in accounts.values() for c in curs}):
        w(f"{first.isoformat()} commodity {cur}\n")
    w("\n")
    for name in sorted(accounts, key=lambda n: (accounts[n][0], n)):
        at, curs, payee = accounts[name]
        w(f"{_day(at, zone).isoformat()} open {name} {','.join(sorted(curs))}".rstrip() + "\n")
        if name != MERCHANT:
            w(f"  {_meta('payee', payee)}\n")
    for t in txns:
        if t.note is not None:
            w(f"\n{_day(t.at_us, zone).isoformat()} note {t.note} {_string(t.narration)}\n")
            for m in t.meta:
                w(f"  {m}\n")
            continue
        w(f"\n{_day(t.at_us, zone).isoformat()} * {_string(t.narration)}\n")
        for m in t.meta:
            w(f"  {m}\n")
        for name, amount, cur, meta in t.postings:
            w(f"  {name}  {_number(amount, cur)}\n")
            for m in meta:
                w(f"    {m}\n")
    if assertions:
        last = max(_day(t.at_us, zone) for t in txns) + timedelta(days=1)
        as_of = to_micros(datetime.combine(last, time(0), tzinfo=zone)) - 1  # everything dated before `last`
        w(f"\n; the ledger's balances as of {display_time(as_of + 1, zone)} (exclusive), as it computes them\n")
        owed: dict[tuple[str, str], int] = {}
        for b in ledger.balances(as_of=as_of):
            accts = payee_accounts(b.payee)
            for state, money in (("pending", b.pending), ("available", b.available), ("paid", b.paid),
                                 ("fee", b.fee)):
                owed[(accts[state], b.currency)] = -money.minor
        merchant: dict[str, int] = {}
        for e in entries:
            if e.account == "expense":
                merchant[e.currency] = merchant.get(e.currency, 0) - e.amount
        for name in sorted(accounts):
            if name.startswith("Equity:"):  # memo accounts: no balance of the ledger to state
                continue
            for cur in sorted(accounts[name][1]):
                amount = merchant.get(cur, 0) if name == MERCHANT else owed.get((name, cur), 0)
                w(f"{last.isoformat()} balance {name}  {_number(amount, cur)}\n")


def to_beancount(ledger: Ledger, *, tz: str | tzinfo | None = None, assertions: bool = True) -> str:
    """:func:`write_beancount` as text."""
    buf = io.StringIO()
    write_beancount(ledger, buf, tz=tz, assertions=assertions)
    return buf.getvalue()
