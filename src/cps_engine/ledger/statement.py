"""Payee statements: every movement of a payee's balances over a period, as CSV or JSON.

A statement covers ``[start, end)``.  Each commission leg moves money into **pending** at its
effective time and from pending to **available** when its hold ends (a ``release`` line, derived
from the hold end: releases are not stored entries); a leg effective after its hold end goes
straight to available; a payout moves available to **paid** and **fee**.  So for each currency

    opening + sum(lines) == closing      (per state: pending, available, paid, fee)

where opening is the balance just before ``start`` and closing the balance just before ``end``.
The statement carries the Merkle root of its lines (the RFC 6962 tree of :mod:`cps_engine.merkle` over
each line's canonical JSON; before issue 11 an odd node was paired with itself) and a manifest
(the ledger's chain head, the policy config hashes and rounding modes of the lines, the library
version) for the audit tools to build on.

Times are shown in the payee's zone (``tz``: ``+08:00``, ``UTC`` or an IANA name such as
``Asia/Shanghai``; by default the one UTC offset the payee's events were recorded with, else UTC),
without microseconds when they are zero; the zone is in the statement's header (``tz`` in JSON, a
``tz`` column in CSV).  The Merkle root is over the lines as printed, so it can be recomputed from the
document alone (the same statement shown in another zone has another root).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import IO, TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from cps_engine._version import library_version
from cps_engine.errors import InvalidInput
from cps_engine.ledger.hashing import canonical_json, merkle_root
from cps_engine.ledger.types import ChainHead, Entry
from cps_engine.money import Money
from cps_engine.textio import CsvWriter
from cps_engine.times import from_micros

if TYPE_CHECKING:
    from cps_engine.ledger.ledger import Ledger

__all__ = ["STATES", "AccountLine", "AccountStatement", "Statement", "StatementLine", "build_statement", "display_time",
           "movements", "parse_zone", "recorded_zone", "statement_of", "zone_label"]

STATES = ("pending", "available", "paid", "fee")
CSV_COLUMNS = ("at", "kind", "event", "order", "level", "rate", "config_hash", "currency", "pending", "available",
               "paid", "fee", "entry", "tz")
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


def parse_zone(tz: str | tzinfo) -> tzinfo:
    """A zone from ``Z``/``UTC``, an offset (``+08:00``, ``UTC+08:00``, ``-0530``) or an IANA name
    (``Asia/Shanghai``).

    >>> parse_zone("+08:00"), parse_zone("Z"), parse_zone("Europe/Paris")
    (datetime.timezone(datetime.timedelta(seconds=28800)), datetime.timezone.utc, zoneinfo.ZoneInfo(key='Europe/Paris'))
    """
    if isinstance(tz, tzinfo):
        return tz
    text = tz.strip()
    if text.upper() in ("Z", "UTC", "+00:00", "-00:00", "+0000", "UTC+00:00"):
        return UTC
    m = _OFFSET.match(text[3:] if text.upper().startswith("UTC") else text)
    if m:
        minutes = int(m.group(2)) * 60 + int(m.group(3))
        if minutes >= 24 * 60 or int(m.group(3)) >= 60:
            raise InvalidInput(f"{text!r} is not a UTC offset", field="tz")
        return timezone(timedelta(minutes=-minutes if m.group(1) == "-" else minutes))
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"time zone {text[:80]!r} is not Z, UTC, an offset such as +08:00 or an IANA name such "
                           "as Asia/Shanghai", field="tz") from None


def zone_label(zone: tzinfo) -> str:
    """``UTC``, ``UTC+08:00`` (a fixed offset: never a leading ``+``, which a spreadsheet reads as a
    formula) or the IANA name of a zone; :func:`parse_zone` reads each back."""
    if zone is UTC:
        return "UTC"
    if isinstance(zone, ZoneInfo):
        return zone.key
    offset = zone.utcoffset(None)
    if offset is None:
        return str(zone)
    if not offset:
        return "UTC"
    sign, minutes = ("-" if offset < timedelta(0) else "+"), abs(offset) // timedelta(minutes=1)
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def display_time(us: int, zone: tzinfo = UTC) -> str:
    """ISO text of ``us`` in ``zone``: ``Z`` for UTC, microseconds only when there are some.

    >>> display_time(1_772_330_400_000_000, parse_zone("+08:00")), display_time(1_772_330_400_000_001)
    ('2026-03-01T10:00:00+08:00', '2026-03-01T02:00:00.000001Z')
    """
    text = from_micros(us).astimezone(zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") and zone_label(zone) == "UTC" else text


def recorded_zone(ledger: Ledger, payee: str | None = None) -> tuple[tzinfo, str]:
    """The zone to show ``payee``'s (or the whole ledger's) times in by default, and why: the UTC offset
    the events that moved its balances were recorded with when they all share one, else UTC."""
    ev, en = ledger.tables.events, ledger.tables.entries
    moved = sa.select(en.c.event_seq)
    if payee is not None:
        moved = moved.where(en.c.payee == payee)
    offsets: set[timedelta | None] = set()
    with ledger._read() as conn:  # the ledger's own tables, read from inside its package
        for (payload,) in conn.execute(sa.select(ev.c.payload).where(ev.c.seq.in_(moved.distinct()))):
            at = json.loads(payload).get("at")
            offsets.add(datetime.fromisoformat(at).utcoffset() if isinstance(at, str) else None)
            if len(offsets) > 1:
                return UTC, "UTC: the events were recorded with several UTC offsets"
    if len(offsets) == 1:
        (offset,) = offsets
        if offset is not None:
            zone = UTC if not offset else timezone(offset)
            return zone, "the UTC offset the events were recorded with"
    return UTC, "UTC: no events"


@dataclass(frozen=True, slots=True)
class AccountLine:
    """One movement of a payee's balances; ``delta`` maps states to signed minor units."""

    at_us: int
    kind: str
    event: str
    currency: str
    delta: tuple[tuple[str, int], ...]
    order: str | None = None
    level: int | None = None
    rate: str | None = None
    config_hash: str | None = None
    entry: int | None = None

    def amount(self, state: str) -> int:
        return dict(self.delta).get(state, 0)

    def as_row(self, zone: tzinfo = UTC) -> dict[str, Any]:
        """Flat row: the time in ``zone`` (:func:`display_time`), amounts as decimal strings in major units."""
        row: dict[str, Any] = {"at": display_time(self.at_us, zone), "kind": self.kind, "event": self.event,
                               "order": self.order, "level": self.level, "rate": self.rate,
                               "config_hash": self.config_hash, "currency": self.currency, "entry": self.entry}
        for s in STATES:
            row[s] = str(Money(self.amount(s), self.currency).amount)
        return row


def movements(entries: Iterable[Entry]) -> list[AccountLine]:
    """Every balance movement of the given (one payee's) entries, in time order."""
    out: list[AccountLine] = []
    releases: dict[tuple[str | None, int | None, int, str], list[Any]] = {}
    for e in entries:
        if e.payee is None:
            continue
        if e.account == "commission" and e.kind != "payout":
            assert e.available_us is not None
            state = "pending" if e.effective_us < e.available_us else "available"
            out.append(AccountLine(e.effective_us, e.kind, e.event, e.currency, ((state, e.amount),), e.order,
                                     e.level, e.rate, e.config_hash, e.seq))
            if state == "pending":
                k = (e.order, e.line, e.available_us, e.currency)
                rel = releases.setdefault(k, [0, e])
                rel[0] += e.amount
        else:
            state = {"commission": "available", "paid": "paid", "fee": "fee"}[e.account]
            out.append(AccountLine(e.effective_us, e.kind, e.event, e.currency, ((state, e.amount),), e.order,
                                     e.level, e.rate, e.config_hash, e.seq))
    for (order, _line, at, cur), (total, e) in releases.items():
        if total:
            out.append(AccountLine(at, "release", f"order:{order}", cur, (("pending", -total), ("available", total)),
                                     order, e.level, e.rate, e.config_hash))
    out.sort(key=lambda m: (m.at_us, m.entry is None, m.entry or 0, m.order or "", m.level or 0))
    return out


@dataclass
class AccountStatement:
    """A payee's movements over ``[start_us, end_us)`` with opening and closing balances per currency."""

    payee: str
    start_us: int
    end_us: int
    lines: list[AccountLine]
    opening: dict[str, dict[str, int]]
    closing: dict[str, dict[str, int]]
    manifest: dict[str, Any] = field(default_factory=dict)
    #: the zone times are shown in, and why it was chosen
    tz: tzinfo = UTC
    tz_source: str = "UTC (default)"

    @property
    def merkle_root(self) -> str:
        """RFC 6962 root over each line's canonical JSON as printed (times in :attr:`tz`)."""
        return merkle_root(canonical_json(line.as_row(self.tz)) for line in self.lines)

    def balanced(self) -> bool:
        """Whether opening + movements == closing for every currency and state."""
        for cur in set(self.opening) | set(self.closing):
            for s in STATES:
                moved = sum(m.amount(s) for m in self.lines if m.currency == cur)
                if self.opening.get(cur, {}).get(s, 0) + moved != self.closing.get(cur, {}).get(s, 0):
                    return False
        return True

    def _money(self, cur: str, values: dict[str, int]) -> dict[str, str]:
        return {s: str(Money(values.get(s, 0), cur).amount) for s in STATES}

    def to_json(self) -> dict[str, Any]:
        currencies = sorted(set(self.opening) | set(self.closing))
        return {
            "payee": self.payee, "from": display_time(self.start_us, self.tz),
            "to": display_time(self.end_us, self.tz), "tz": zone_label(self.tz), "tz_source": self.tz_source,
            "currencies": {c: {"opening": self._money(c, self.opening.get(c, {})),
                               "closing": self._money(c, self.closing.get(c, {}))} for c in currencies},
            "lines": [line.as_row(self.tz) for line in self.lines],
            "merkle_root": self.merkle_root,
            "manifest": self.manifest,
        }

    def write_json(self, out: IO[str]) -> None:
        json.dump(self.to_json(), out, ensure_ascii=False, indent=2, sort_keys=True)
        out.write("\n")

    def write_csv(self, out: IO[str]) -> None:
        """One row per movement, framed by an ``opening`` and a ``closing`` row per currency; text cells
        escaped by :class:`cps_engine.textio.CsvWriter` (a payee ``=HYPERLINK(...)`` is not a formula);
        the ``tz`` column names the zone of the times on every row."""
        w = CsvWriter(out, CSV_COLUMNS, lineterminator="\n")
        w.writeheader()
        tz = zone_label(self.tz)
        currencies = sorted(set(self.opening) | set(self.closing))
        for cur in currencies:
            w.writerow({"at": display_time(self.start_us, self.tz), "kind": "opening", "currency": cur,
                        **self._money(cur, self.opening.get(cur, {})), "tz": tz})
        for line in self.lines:
            w.writerow({**line.as_row(self.tz), "tz": tz})
        for cur in currencies:
            w.writerow({"at": display_time(self.end_us, self.tz), "kind": "closing", "currency": cur,
                        **self._money(cur, self.closing.get(cur, {})), "tz": tz})


def _balances(lines: Iterable[AccountLine], before: int) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for m in lines:
        if m.at_us < before:
            row = out.setdefault(m.currency, dict.fromkeys(STATES, 0))
            for s, v in m.delta:
                row[s] += v
    return out


def build_statement(ledger: Ledger, payee: str, start: datetime | str | int, end: datetime | str | int, *,
                    tz: str | tzinfo | None = None) -> AccountStatement:
    """The statement of ``payee`` for ``[start, end)`` (times as aware datetimes, ISO text or µs), its
    times shown in ``tz`` (default: the offset the payee's events were recorded with, else UTC).

    >>> from cps_engine.ledger import Ledger
    >>> led = Ledger.open(":memory:", policy={"kind": "first_sharer", "rate": "10%"}, hold_days=1)
    >>> _ = led.record_many([
    ...     {"type": "share", "id": "s1", "sharer": "amy", "at": "2026-03-01T00:00:00Z"},
    ...     {"type": "order", "id": "o1", "buyer": "bo", "share": "s1", "amount": "50.00", "currency": "CNY",
    ...      "at": "2026-03-01T10:00:00Z"}])
    >>> st = build_statement(led, "amy", "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")
    >>> [(m.kind, m.as_row()["pending"], m.as_row()["available"]) for m in st.lines]
    [('accrual', '5.00', '0.00'), ('release', '-5.00', '5.00')]
    >>> st.to_json()["tz"], st.to_json()["lines"][0]["at"]
    ('UTC', '2026-03-01T10:00:00Z')
    >>> build_statement(led, "amy", "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z", tz="Asia/Shanghai"
    ...                 ).to_json()["lines"][0]["at"]
    '2026-03-01T18:00:00+08:00'
    >>> st.closing, st.balanced()
    ({'CNY': {'pending': 0, 'available': 500, 'paid': 0, 'fee': 0}}, True)
    """
    zone, why = recorded_zone(ledger, payee) if tz is None else (parse_zone(tz), "given")
    st = ledger.statement(payee, start, end)  # the ledger's own reading (holds included), shown in the zone
    st.tz, st.tz_source = zone, why
    return st


def statement_of(entries: Iterable[Entry], payee: str, start_us: int, end_us: int, *, chain_head: ChainHead,
                 rounding: Iterable[str], tz: tzinfo = UTC, tz_source: str = "UTC (default)") -> AccountStatement:
    """The statement of ``payee`` for ``[start_us, end_us)``: a pure function of the payee's entries
    up to ``end_us`` (what :func:`build_statement` reads from a ledger) and the manifest facts."""
    s, e = start_us, end_us
    if e <= s:
        raise ValueError("a statement period must end after it starts")
    all_moves = movements(entries)
    lines = [m for m in all_moves if s <= m.at_us < e]
    lib = library_version()
    manifest = {
        "chain_head": {"seq": chain_head.seq, "hash": chain_head.hash},
        "config_hashes": sorted({m.config_hash for m in lines if m.config_hash}),
        "rounding": sorted(set(rounding)),
        "library_version": lib,
    }
    return AccountStatement(payee, s, e, lines, _balances(all_moves, s), _balances(all_moves, e), manifest, tz,
                            tz_source)


#: the 0.x names of :class:`AccountStatement` and :class:`AccountLine`
Statement = AccountStatement
StatementLine = AccountLine
