"""Payout statements: lines, totals, the manifest, canonical encoding, CSV/JSON export and import.

A statement covers one period (``2026-03``) and lists, per payee, one line per order: the order,
the payee's level, the commissionable base (net of refunds), the rate, the amount and the line's
state.  Its :class:`Manifest` says what it was computed from and commits to every line:

- ``events_sha256``: sha256 of the canonical input events (:func:`events_digest`);
- ``policy_config_hash``, ``rounding``, ``binding``, ``library_version``;
- ``merkle_root``: RFC 6962 root over the lines' canonical encodings (:mod:`cps_engine.audit.merkle`);
- ``previous_period``/``previous_root``: the ``chain_root`` of the statement before it;
- ``chain_root = sha256(0x02 || canonical JSON of the manifest header)``, where the header is the
  manifest without ``chain_root`` and ``leaf_hashes``.  So each statement's ``chain_root`` commits to
  its lines, its inputs and every statement before it.
- ``leaf_hashes``: the leaf hash of every line in order.  They add nothing to the commitment (the root
  already fixes them) but let ``check-integrity`` *locate* an edit: a changed line's leaf hash no
  longer appears in the list, an inserted one was never there, a removed one is left over, and a
  moved one appears at another position.  They are left out of inclusion proofs, so a payee who
  checks their own line learns nothing about anyone else's.

There is no signature: the root proves nothing unless the auditor or the payee got it from the issuer
by a channel the editor does not control (a sent e-mail, the next statement's ``previous_root``).

**Canonical line encoding** (the Merkle leaf): UTF-8 JSON with keys sorted, no whitespace, non-ASCII
kept as is, of ``amount``/``base`` (decimal strings with exactly the currency's decimals),
``currency``, ``level`` (int), ``order``, ``payee``, ``rate`` (exact text: ``0.125`` or ``1/3``) and
``state``; a field a statement does not give is ``null``.

>>> line = StatementLine(payee="bob", order="o1", amount=Money(1899, "CNY"), level=1,
...                      base=Money(18999, "CNY"), rate=Fraction(1, 10), state="accrued")
>>> line.canonical().decode()
'{"amount":"18.99","base":"189.99","currency":"CNY","level":1,"order":"o1","payee":"bob","rate":"0.1","state":"accrued"}'
>>> line.leaf_hash().hex()[:16]
'47f1d1d5ea8e797a'
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, ClassVar, Final, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cps_engine._version import library_version
from cps_engine.audit.merkle import leaf_hash, root_of
from cps_engine.engine import Settlement, compute_events, orders_by_id, refunds_by_order
from cps_engine.errors import CpsError, InvalidMoney, InvalidRate, OutputError, brief
from cps_engine.graph import BindingConfig, BindingMode, ShareGraph
from cps_engine.ledger import Ledger
from cps_engine.limits import add_days, check_time
from cps_engine.merkle import canonical_json
from cps_engine.models import Event, OrderEvent
from cps_engine.money import CURRENCIES, Money, format_rate, parse_amount, parse_rate
from cps_engine.policies.base import PolicyConfig
from cps_engine.textio import CsvWriter, decode, loads_json, loads_toml, read_text, unescape_cell

__all__ = [
    "CSV_FIELDS",
    "FORMAT",
    "LINE_FIELDS",
    "STATES",
    "ColumnMap",
    "InvalidStatement",
    "Manifest",
    "Period",
    "Statement",
    "StatementLine",
    "Steps",
    "build_statement",
    "canonical_json",
    "events_digest",
    "excel_rate",
    "library_version",
    "period_lines",
    "rate_percent",
    "read_statement",
    "seal_lines",
    "statement_from_ledger",
    "statement_lines",
    "statement_paths",
    "totals_of",
    "zone_of",
]

#: Format tag of statements, manifests and proofs written by this module.
FORMAT: Final = "cps-engine-statement/1"
#: Fields of a statement line (the canonical encoding, the JSON form).
LINE_FIELDS: Final = ("payee", "order", "level", "currency", "base", "rate", "amount", "state")
#: Columns of the CSV form: the line fields plus ``rate_percent`` (the rate rounded for reading) next
#: to the exact ``rate`` (written as :func:`excel_rate`).
CSV_FIELDS: Final = ("payee", "order", "level", "currency", "base", "rate", "rate_percent", "amount", "state")
#: Line states: ``accrued`` (no hold period modelled), ``pending`` (inside the hold period),
#: ``available`` (hold period over), ``paid`` (only read from platform statements).
STATES: Final = ("accrued", "pending", "available", "paid")
CHAIN_PREFIX: Final = b"\x02"


class InvalidStatement(CpsError, ValueError):
    """A statement file that cannot be used; ``errors`` lists every bad row when there are several."""

    def __init__(self, message: str, *, errors: Sequence[CpsError] = (), record: str | None = None,
                 field: str | None = None, line: int | None = None) -> None:
        self.errors: list[CpsError] = list(errors)
        if self.errors:
            message = f"{message}:\n" + "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(message, record=record, field=field, line=line)


def _decimal_text(d: Decimal) -> str:
    """Exact decimal text without trailing zeros or exponent: ``Decimal('100.0')`` -> ``'100'``."""
    text = format(d.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _canonical_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _decimal_text(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, (list, tuple)):
        return [_canonical_value(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_canonical_value(v) for v in value)
    if isinstance(value, dict):
        return {str(k): _canonical_value(v) for k, v in value.items() if v is not None}
    return value


def canonical_event(event: Event) -> bytes:
    """Canonical bytes of one event: every field but ``None`` ones, decimals without trailing zeros,
    times in UTC (``Z``).  Formatting choices of the source file (``"100.0"`` vs ``"100.00"``,
    ``+08:00`` vs ``Z``, key order) do not change it.

    >>> from cps_engine.models import parse_event
    >>> canonical_event(parse_event({"type": "refund", "id": "r1", "order": "o1", "amount": "5.50",
    ...                              "at": "2026-03-02T08:00:00+08:00"})).decode()
    '{"amount":"5.5","at":"2026-03-02T00:00:00Z","id":"r1","kind":"refund","order":"o1","type":"refund"}'
    """
    return canonical_json(_canonical_value(event.model_dump(mode="python", exclude_none=True)))


def events_digest(events: Iterable[Event], *, steps: Steps | None = None) -> str:
    """sha256 (hex) of the canonical input events: each event's :func:`canonical_event`, exact repeats
    kept once, sorted bytewise, each followed by ``\\n``.  It does not depend on file order.

    >>> events_digest([])
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
    """
    evs = events if isinstance(events, Sequence) else list(events)
    if steps is not None:
        steps.stage("hashing the events", len(evs))
    canon: set[bytes] = set()
    for i, ev in enumerate(evs):
        canon.add(canonical_event(ev))
        if steps is not None and i % _STEP == _STEP - 1:
            steps.advance(_STEP)
    if steps is not None:
        steps.advance(len(evs) % _STEP)
    h = hashlib.sha256()
    for line in sorted(canon):
        h.update(line + b"\n")
    return h.hexdigest()


def _money_text(m: Money) -> str:
    return format(m.amount, "f")


class Steps(Protocol):
    """What long work reports as it goes (``cps_engine.cli_common.progress`` gives one that draws a bar on
    a terminal): ``stage`` when the kind of work changes, ``advance`` after each piece of it."""

    def advance(self, n: int = 1) -> None: ...

    def stage(self, name: str, total: int | None = None) -> None: ...


class _Quiet:
    def advance(self, n: int = 1) -> None:
        pass

    def stage(self, name: str, total: int | None = None) -> None:
        pass


_QUIET: Final = _Quiet()
#: lines or events between two progress reports
_STEP: Final = 4096


# ---------------------------------------------------------------------------------------------- spreadsheet-safe rates
#: significant digits a spreadsheet keeps of a number (a double, as Excel shows it)
_SHEET_DIGITS: Final = 15
_TEXT_FORMULA: Final = re.compile(r'^="([^"]*)"$')


def excel_rate(rate: Fraction) -> str:
    """The exact rate as a CSV cell that spreadsheets neither turn into a date nor round.

    A rate with a terminating decimal of at most 15 significant digits is that decimal (a number every
    spreadsheet keeps exactly: ``0.1``).  Any other (``3/34``, which Excel reads as March 1934, ``1/3``,
    read as 3 January) is its exact text inside a constant text formula, ``="3/34"``: Excel, Google Sheets
    and Numbers show the text ``3/34``, LibreOffice shows the cell as written; nothing shows a date.
    The formula is built here from a :class:`~fractions.Fraction` (digits and one ``/``), never from
    user data, so it is not a way in for formula injection.  :func:`read_statement` reads both forms
    back to the same exact rate.

    >>> excel_rate(Fraction(1, 10)), excel_rate(Fraction(3, 34)), excel_rate(Fraction(1, 2**60))
    ('0.1', '="3/34"', '="1/1152921504606846976"')
    """
    text = format_rate(rate)
    if "/" not in text and len(text.lstrip("-").replace(".", "").lstrip("0")) <= _SHEET_DIGITS:
        return text
    return f'="{rate.numerator}/{rate.denominator}"'


def rate_percent(rate: Fraction) -> str:
    """The rate as a percentage rounded half-even to 4 decimals, for reading (the exact rate is
    :func:`excel_rate`): ``8.8235%`` for 3/34.

    >>> rate_percent(Fraction(3, 34)), rate_percent(Fraction(1, 10)), rate_percent(Fraction(1, 8))
    ('8.8235%', '10%', '12.5%')
    """
    pct = (Decimal(rate.numerator) * 100 / Decimal(rate.denominator)).quantize(Decimal("0.0001"),
                                                                              rounding=ROUND_HALF_EVEN)
    return f"{_decimal_text(pct)}%"


def _unformula(text: str) -> str:
    """``="3/34"`` -> ``3/34``: the spreadsheet text form of :func:`excel_rate`; other text as is."""
    m = _TEXT_FORMULA.match(text.strip())
    return m.group(1) if m else text


class _Cell:
    """A CSV cell written as it is (:class:`CsvWriter` neutralises ``str`` cells only): the constant
    text formula of :func:`excel_rate`, which holds no user data."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


def zone_of(events: Iterable[Event], policy: PolicyConfig | None = None) -> tuple[str, str]:
    """The time zone a statement period is read in when none is given, and where it came from: the
    UTC offset every event carries when they all agree (``+08:00``, "the events' offset"), else a
    ``tz`` the policy config declares, else ``UTC``.

    >>> from cps_engine.models import load_events
    >>> zone_of(load_events(['{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}']))
    ('+08:00', "the events' offset")
    >>> zone_of([])
    ('UTC', 'default')
    """
    offsets = {ev.at.utcoffset() for ev in events}
    if len(offsets) == 1:
        (delta,) = offsets
        if delta is not None:
            return _offset_text(delta), "the events' offset"
    declared = getattr(policy, "tz", None) if policy is not None else None
    if isinstance(declared, str) and declared:
        return declared, "the policy"
    return "UTC", "default" if len(offsets) <= 1 else "default: the events' offsets differ"


def _offset_text(delta: timedelta) -> str:
    if not delta:
        return "UTC"
    sign = "-" if delta < timedelta(0) else "+"
    minutes = abs(int(delta.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


# ---------------------------------------------------------------------------------------------- lines
@dataclass(frozen=True, slots=True)
class StatementLine:
    """One payee's commission on one order, as a statement states it.

    ``level``, ``base``, ``rate`` and ``state`` may be missing (``None``) in statements read from a
    platform that does not send them.
    """

    payee: str
    order: str
    amount: Money
    level: int | None = None
    base: Money | None = None
    rate: Fraction | None = None
    state: str | None = None

    @property
    def currency(self) -> str:
        return self.amount.currency

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields (amounts and rate as exact strings; missing fields ``None``)."""
        return {"payee": self.payee, "order": self.order,
                "level": self.level, "currency": self.amount.currency,
                "base": _money_text(self.base) if self.base is not None else None,
                "rate": format_rate(self.rate) if self.rate is not None else None,
                "amount": _money_text(self.amount), "state": self.state}

    def as_row(self) -> dict[str, str]:
        """CSV row: every field as text, missing ones empty."""
        return {k: "" if v is None else str(v) for k, v in self.as_dict().items()}

    def canonical(self) -> bytes:
        """The canonical encoding hashed into the Merkle tree (see the module docs)."""
        return canonical_json(self.as_dict())

    def leaf_hash(self) -> bytes:
        """``sha256(0x00 || canonical())``."""
        return leaf_hash(self.canonical())

    def key(self) -> tuple[str, str]:
        return (self.order, self.payee)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StatementLine:
        """Read the exact form written by :meth:`as_dict` (strict: every field, exact text).

        >>> ln = StatementLine("bob", "o1", Money(1899, "CNY"), 1, Money(18999, "CNY"), Fraction(1, 10), "accrued")
        >>> StatementLine.from_dict(ln.as_dict()) == ln
        True
        """
        if not isinstance(data, Mapping):
            raise InvalidStatement("a line must be an object", field="line")
        try:
            cur = data["currency"]
            level = data["level"]
            if level is not None and type(level) is not int:
                raise InvalidStatement("level must be an integer", field="level")
            if not all(isinstance(data[k], str) for k in ("payee", "order", "currency", "amount")):
                raise InvalidStatement("payee, order, currency and amount must be strings", field="line")
            base, rate, state = data["base"], data["rate"], data["state"]
            return cls(payee=data["payee"], order=data["order"], amount=Money(parse_amount(data["amount"], cur), cur),
                       level=level, base=Money(parse_amount(base, cur), cur) if base is not None else None,
                       rate=parse_rate(rate) if rate is not None else None, state=state)
        except KeyError as exc:
            raise InvalidStatement(f"the line has no {exc.args[0]!r}", field=str(exc.args[0])) from None
        except (InvalidMoney, InvalidRate) as exc:
            raise InvalidStatement(exc.message, field=exc.field) from None


# ---------------------------------------------------------------------------------------------- periods
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\s*\.\.\s*(\d{4}-\d{2}-\d{2})$")
_OFFSET = re.compile(r"^(?:UTC)?([+-])(\d{2}):?(\d{2})$")


def parse_tz(text: str) -> tzinfo:
    """``UTC``, an offset (``+08:00``) or an IANA zone name (``Asia/Shanghai``).

    >>> parse_tz("+08:00")
    datetime.timezone(datetime.timedelta(seconds=28800))
    """
    t = text.strip()
    if t.upper() in ("UTC", "Z"):
        return UTC
    m = _OFFSET.match(t.upper())
    try:
        if m:
            delta = timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
            return timezone(-delta if m.group(1) == "-" else delta)
        return ZoneInfo(t)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # an offset of 24h or more, a path-like name
        raise InvalidStatement(f"unknown time zone {brief(text)} (use UTC, +08:00 or a name such as "
                               "Asia/Shanghai)", field="tz") from None


@dataclass(frozen=True, slots=True)
class Period:
    """A statement period: ``[start, end)`` in a time zone.  Orders belong by their paid time.

    >>> p = Period.parse("2026-03", "+08:00")
    >>> p.start.isoformat(), p.end.isoformat()
    ('2026-03-01T00:00:00+08:00', '2026-04-01T00:00:00+08:00')
    >>> datetime(2026, 2, 28, 17, tzinfo=timezone.utc) in p, datetime(2026, 2, 28, 15, tzinfo=timezone.utc) in p
    (True, False)
    """

    label: str
    tz: str
    start: datetime
    end: datetime

    @classmethod
    def parse(cls, text: str, tz: str = "UTC") -> Period:
        """A month ``YYYY-MM`` or an inclusive day range ``YYYY-MM-DD..YYYY-MM-DD``."""
        zone = parse_tz(tz)
        t = text.strip()
        try:
            m = _MONTH.match(t)
            if m:
                y, mo = int(m.group(1)), int(m.group(2))
                first = date(y, mo, 1)
                last = date(y + mo // 12, mo % 12 + 1, 1)
            else:
                r = _RANGE.match(t)
                if not r:
                    raise ValueError("format")
                first = date.fromisoformat(r.group(1))
                last = date.fromisoformat(r.group(2)) + timedelta(days=1)
                if last <= first:
                    raise ValueError("empty")
        except (ValueError, OverflowError):
            raise InvalidStatement(f"period {brief(text)} is not YYYY-MM or YYYY-MM-DD..YYYY-MM-DD",
                                   field="period") from None
        start = datetime(first.year, first.month, first.day, tzinfo=zone)
        end = datetime(last.year, last.month, last.day, tzinfo=zone)
        try:  # within the supported times (cps_engine.limits)
            check_time(start, field="period")
            check_time(end - timedelta(microseconds=1), field="period")
        except CpsError as exc:
            raise InvalidStatement(exc.message, field="period") from None
        return cls(t, tz, start, end)

    def __contains__(self, at: object) -> bool:
        return isinstance(at, datetime) and self.start <= at < self.end


# ---------------------------------------------------------------------------------------------- manifest
@dataclass(frozen=True, slots=True)
class Manifest:
    """What a statement was computed from, and the commitments to its lines (see the module docs)."""

    period: str
    tz: str
    period_start: str
    period_end: str
    as_of: str | None
    events_sha256: str
    policy: str
    policy_kind: str
    policy_config_hash: str
    rounding: str
    binding: str
    expire_days: int | None
    hold_days: int | None
    library_version: str
    line_count: int
    merkle_root: str
    previous_period: str | None
    previous_root: str | None
    chain_root: str
    leaf_hashes: tuple[str, ...] = ()
    format: str = FORMAT
    #: the ``chain_root`` of the statement this one replaced (``statement -o DIR --replace``); absent
    #: (and then left out of the header, so older chain roots are unchanged) for a first issue
    replaces: str | None = None

    def header(self) -> dict[str, Any]:
        """Every field but ``chain_root`` and ``leaf_hashes``: what ``chain_root`` commits to."""
        out = {k: getattr(self, k) for k in _MANIFEST_FIELDS if k not in ("chain_root", "leaf_hashes")}
        if self.replaces is not None:
            out["replaces"] = self.replaces
        return out

    def computed_chain_root(self) -> str:
        """``sha256(0x02 || canonical_json(header()))`` (hex)."""
        return hashlib.sha256(CHAIN_PREFIX + canonical_json(self.header())).hexdigest()

    def as_dict(self, *, leaf_hashes: bool = True) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in _MANIFEST_FIELDS}
        if self.replaces is not None:
            out["replaces"] = self.replaces
        out["leaf_hashes"] = list(self.leaf_hashes)
        if not leaf_hashes:
            del out["leaf_hashes"]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """Read a manifest written by :meth:`as_dict`; raises :class:`InvalidStatement` when malformed."""
        if not isinstance(data, Mapping):
            raise InvalidStatement("the manifest must be a JSON object", field="manifest")
        fmt = data.get("format", FORMAT)
        if fmt != FORMAT:
            raise InvalidStatement(f"unsupported statement format {fmt!r} (this library reads {FORMAT!r})",
                                   field="manifest.format")
        kwargs: dict[str, Any] = {}
        for name in _MANIFEST_FIELDS:
            if name not in data:
                if name in ("leaf_hashes", "format"):
                    continue
                raise InvalidStatement(f"the manifest has no {name!r}", field=f"manifest.{name}")
            value = data[name]
            if name in _MANIFEST_INTS:
                if value is not None and (type(value) is not int):
                    raise InvalidStatement(f"{name} must be an integer", field=f"manifest.{name}")
            elif name == "leaf_hashes":
                if not isinstance(value, list) or not all(isinstance(h, str) for h in value):
                    raise InvalidStatement("leaf_hashes must be a list of hex strings", field="manifest.leaf_hashes")
                value = tuple(value)
            elif value is not None and not isinstance(value, str):
                raise InvalidStatement(f"{name} must be a string", field=f"manifest.{name}")
            kwargs[name] = value
        replaces = data.get("replaces")
        if replaces is not None and not isinstance(replaces, str):
            raise InvalidStatement("replaces must be a string", field="manifest.replaces")
        kwargs["replaces"] = replaces
        try:
            return cls(**kwargs)
        except TypeError as exc:  # a required string given as null
            raise InvalidStatement(f"malformed manifest: {exc}", field="manifest") from None


_MANIFEST_FIELDS: Final = ("format", "period", "tz", "period_start", "period_end", "as_of", "events_sha256",
                           "policy", "policy_kind", "policy_config_hash", "rounding", "binding", "expire_days",
                           "hold_days", "library_version", "line_count", "merkle_root", "previous_period",
                           "previous_root", "chain_root", "leaf_hashes")
_MANIFEST_INTS: Final = ("expire_days", "hold_days", "line_count")


# ---------------------------------------------------------------------------------------------- statements
def totals_of(lines: Iterable[StatementLine]) -> dict[str, Any]:
    """Totals per currency and per payee (amounts as exact decimal strings).

    >>> totals_of([StatementLine("bob", "o1", Money(150, "CNY")), StatementLine("bob", "o2", Money(50, "CNY"))])
    {'CNY': {'amount': '2.00', 'lines': 2, 'payees': {'bob': {'amount': '2.00', 'lines': 2}}}}
    """
    acc: dict[str, dict[str, Any]] = {}
    for line in lines:
        cur = acc.setdefault(line.currency, {"amount": 0, "lines": 0, "payees": {}})
        cur["amount"] += line.amount.minor
        cur["lines"] += 1
        p = cur["payees"].setdefault(line.payee, {"amount": 0, "lines": 0})
        p["amount"] += line.amount.minor
        p["lines"] += 1
    out: dict[str, Any] = {}
    for code in sorted(acc):
        cur = acc[code]
        out[code] = {"amount": _money_text(Money(cur["amount"], code)), "lines": cur["lines"],
                     "payees": {p: {"amount": _money_text(Money(v["amount"], code)), "lines": v["lines"]}
                                for p, v in sorted(cur["payees"].items())}}
    return out


@dataclass(frozen=True, slots=True)
class Statement:
    """Statement lines plus (for statements this library issued) their manifest.

    ``rows`` gives, for a statement read from a file, the source location of each line (the physical
    line of a CSV, the 1-based index in a JSON ``lines`` array); ``totals`` the totals as the file
    stated them (``None`` when it stated none).
    """

    lines: tuple[StatementLine, ...]
    manifest: Manifest | None = None
    rows: tuple[int, ...] | None = None
    stated_totals: Mapping[str, Any] | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.rows is not None and len(self.rows) != len(self.lines):
            raise ValueError(f"{len(self.rows)} row locations for {len(self.lines)} lines (pass rows=None when "
                             "replacing the lines)")

    @property
    def totals(self) -> dict[str, Any]:
        return totals_of(self.lines)

    @property
    def period(self) -> str | None:
        return self.manifest.period if self.manifest is not None else None

    def row_of(self, index: int) -> int:
        """Source location of line ``index`` (0-based)."""
        return self.rows[index] if self.rows is not None else index + 1

    def leaf_hashes(self) -> list[bytes]:
        return [line.leaf_hash() for line in self.lines]

    def merkle_root(self) -> str:
        return root_of(self.leaf_hashes()).hex()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": FORMAT}
        if self.manifest is not None:
            out["manifest"] = self.manifest.as_dict()
        out["totals"] = self.totals
        out["lines"] = [line.as_dict() for line in self.lines]
        return out

    def to_json(self) -> str:
        """The statement as one JSON document (manifest, totals, lines), one line object per text line."""
        data = self.to_dict()
        lines = data.pop("lines")
        head = json.dumps(data, ensure_ascii=False, indent=1)
        body = ",\n".join(json.dumps(line, ensure_ascii=False) for line in lines)
        return f'{head[:-2]},\n "lines": [\n{body}\n ]\n}}\n' if lines else f'{head[:-2]},\n "lines": []\n}}\n'

    def write_csv(self, out: IO[str]) -> None:
        """Lines as CSV with a header row (:data:`CSV_FIELDS`): the exact rate as :func:`excel_rate`
        (never a date in a spreadsheet) with ``rate_percent`` (:func:`rate_percent`) beside it."""
        writer = CsvWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")  # formula cells neutralised
        writer.writeheader()
        shown: dict[Fraction, tuple[str | _Cell, str]] = {}
        for line in self.lines:
            row: dict[str, Any] = line.as_row()
            if line.rate is not None:
                hit = shown.get(line.rate)
                if hit is None:
                    exact = excel_rate(line.rate)
                    hit = shown[line.rate] = (_Cell(exact) if exact.startswith("=") else exact,
                                              rate_percent(line.rate))
                row["rate"], row["rate_percent"] = hit
            else:
                row["rate_percent"] = ""
            writer.writerow(row)

    def to_csv(self) -> str:
        buf = io.StringIO()
        self.write_csv(buf)
        return buf.getvalue()

    def manifest_json(self) -> str:
        """The CSV's sidecar: manifest and totals (what the CSV alone cannot carry)."""
        data: dict[str, Any] = {"format": FORMAT, "manifest": self.manifest.as_dict() if self.manifest else None,
                                "totals": self.totals}
        return json.dumps(data, ensure_ascii=False, indent=1) + "\n"

    def write(self, directory: str | Path) -> dict[str, Path]:
        """Write ``statement-<period>.json``, ``.csv`` and ``.manifest.json`` into ``directory``."""
        if self.manifest is None:
            raise InvalidStatement("only a statement with a manifest can be written as files")
        paths = statement_paths(directory, self.manifest.period)
        texts = {"json": self.to_json(), "csv": self.to_csv(), "manifest": self.manifest_json()}
        partial = {k: p.with_name(f".{p.name}.{os.getpid()}.partial") for k, p in paths.items()}
        current = Path(directory)
        try:  # all three files appear, or none changes
            current.mkdir(parents=True, exist_ok=True)
            for k, text in texts.items():
                current = paths[k]
                with open(partial[k], "w", encoding="utf-8", newline="") as fh:
                    fh.write(text)
            for k in texts:
                current = paths[k]
                os.replace(partial[k], paths[k])
        except OSError as exc:
            raise OutputError(f"cannot write {current}: {exc.strerror or exc}") from None
        finally:
            for p in partial.values():
                p.unlink(missing_ok=True)
        return paths


def statement_paths(directory: str | Path, period: str) -> dict[str, Path]:
    """File names of a statement for ``period`` in ``directory``.

    >>> sorted(p.name for p in statement_paths("out", "2026-03").values())
    ['statement-2026-03.csv', 'statement-2026-03.json', 'statement-2026-03.manifest.json']
    """
    safe = re.sub(r"[^0-9A-Za-z_.-]+", "_", period)
    d = Path(directory)
    return {"json": d / f"statement-{safe}.json", "csv": d / f"statement-{safe}.csv",
            "manifest": d / f"statement-{safe}.manifest.json"}


def _state(order: OrderEvent, hold_days: int | None, as_of: datetime | None) -> str:
    if hold_days is None:
        return "accrued"
    if as_of is not None and add_days(order.at, hold_days, field="hold_days") <= as_of:
        return "available"
    return "pending"


def statement_lines(settlements: Iterable[Settlement], orders: Mapping[str, OrderEvent], period: Period, *,
                    hold_days: int | None = None, as_of: datetime | None = None) -> list[StatementLine]:
    """The lines of the orders paid within ``period``, sorted by payee, currency, order time, order id,
    level.  ``state`` is ``accrued``, or with ``hold_days`` ``pending``/``available`` as of ``as_of``."""
    out: list[tuple[tuple[Any, ...], StatementLine]] = []
    for s in settlements:
        order = orders[s.order]
        if order.at not in period:
            continue
        state = _state(order, hold_days, as_of)
        for cl in s.lines:
            line = StatementLine(payee=cl.payee, order=cl.order, amount=cl.amount, level=cl.level,
                                 base=Money(cl.provenance.base, cl.amount.currency), rate=cl.rate, state=state)
            out.append(((cl.payee, cl.amount.currency, order.at, order.id, cl.level), line))
    out.sort(key=lambda kv: kv[0])
    return [line for _, line in out]


def period_lines(events: Sequence[Event], policy: PolicyConfig, period: Period, *,
                 binding: BindingConfig | BindingMode | str = BindingMode.FIRST_WINS, hold_days: int | None = None,
                 as_of: datetime | None = None, graph: ShareGraph | None = None,
                 steps: Steps | None = None) -> list[StatementLine]:
    """The lines owed on the orders of ``events`` paid within ``period`` (each on its net base after the
    history's refunds), sorted as :func:`statement_lines` sorts them; states as of ``as_of``.

    Computed on the batch path (:func:`~cps_engine.batch.compute_batch`, only the period's orders, the
    share graph built once) when pandas is installed (the ``analysis`` extra), else order by order
    (:func:`~cps_engine.engine.compute_events`): the same lines to the unit either way (a property
    test of the batch engine; the statement tests compare the two on the sample and on hostile ids).
    """
    steps = steps if steps is not None else _QUIET
    evs = list(events)
    config = _binding(binding)
    try:
        import pandas  # noqa: F401 - the batch engine's frames
    except ImportError:
        steps.stage("computing commissions order by order")
        settlements = compute_events(evs, policy, graph=graph, binding=config)
        return statement_lines(settlements, orders_by_id(evs), period, hold_days=hold_days, as_of=as_of)
    orders = orders_by_id(evs)
    refunded = refunds_by_order(evs, orders)
    inside = sorted((o for o in orders.values() if o.at in period), key=lambda o: (o.at, o.id))
    if not inside:
        return []
    if graph is None:
        steps.stage("building the share graph")
        graph = ShareGraph.from_events(evs, binding=config)
    steps.stage(f"computing the commissions of {len(inside):,} orders")
    frame = batch_frame(inside, policy, graph, {o.id: refunded[o.id] for o in inside if refunded.get(o.id)})
    return _frame_lines(frame, inside, hold_days, as_of, steps)


def batch_frame(orders: Sequence[OrderEvent], policy: PolicyConfig, graph: ShareGraph,
                refunds: Mapping[str, int] | None = None) -> Any:
    """``compute_batch`` of ``orders`` (events) on ``graph`` with ``refunds`` (order id -> refunded
    minor units): the lines frame (pandas).  A plugin policy without a batch plan is computed per
    order inside it, with the same lines: its warning is not repeated to the auditor."""
    from cps_engine.batch import compute_batch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return compute_batch(list(orders), policy=policy, graph=graph, refunds=dict(refunds) if refunds else None)


def _frame_lines(frame: Any, orders: Sequence[OrderEvent], hold_days: int | None, as_of: datetime | None,
                 steps: Steps) -> list[StatementLine]:
    n = len(frame)
    steps.stage("stating the lines", n)
    at = {o.id: o.at for o in orders}
    state = {o.id: _state(o, hold_days, as_of) for o in orders}
    rates: dict[str, Fraction] = {}
    cols = [frame[c].tolist() for c in ("order", "payee", "level", "amount_minor", "currency", "rate", "base_minor")]
    out: list[tuple[tuple[Any, ...], StatementLine]] = []
    for i, (order, payee, level, amount, cur, rate_text, base) in enumerate(zip(*cols, strict=True)):
        rate = rates.get(rate_text)
        if rate is None:
            rate = rates[rate_text] = Fraction(rate_text)
        line = StatementLine(payee=payee, order=order, amount=Money(int(amount), cur), level=int(level),
                             base=Money(int(base), cur), rate=rate, state=state[order])
        out.append(((payee, cur, at[order], order, line.level), line))
        if i % _STEP == _STEP - 1:
            steps.advance(_STEP)
    steps.advance(n % _STEP)
    out.sort(key=lambda kv: kv[0])
    return [line for _, line in out]


def _binding(binding: BindingConfig | BindingMode | str) -> BindingConfig:
    return BindingConfig.of(binding)


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def cut_events(events: Iterable[Event], as_of: datetime | None) -> list[Event]:
    """The events known at ``as_of`` (all of them when it is ``None``)."""
    return [ev for ev in events if as_of is None or ev.at <= as_of]


def build_statement(events: Iterable[Event], policy: PolicyConfig, period: str | Period, *,
                    tz: str | None = None, as_of: datetime | None = None, hold_days: int | None = None,
                    binding: BindingConfig | BindingMode | str = BindingMode.FIRST_WINS,
                    previous: Statement | Manifest | None = None, steps: Steps | None = None) -> Statement:
    """Recompute every commission from ``events`` and state the lines of orders paid in ``period``.

    The period is read in ``tz`` (``UTC``, ``+08:00`` or ``Asia/Shanghai``); without it, in the zone
    of the data (:func:`zone_of`: the offset all the events carry, else the policy's, else UTC).  The
    manifest's ``tz`` says which zone was used.
    Only events up to ``as_of`` count (default: all; the manifest records the latest event time).
    ``hold_days`` models the hold period (冻结天数): lines are ``pending`` until ``hold_days`` after
    the order, then ``available``; without it every line is ``accrued``.  ``previous`` chains the
    statement to the one before it.  ``steps`` hears of the progress of long work (:class:`Steps`).
    The lines are computed by :func:`period_lines` (the batch engine).

    >>> from cps_engine.models import load_events
    >>> from cps_engine.policies import load_policy
    >>> evs = load_events([
    ...   '{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}',
    ...   '{"type":"order","id":"o1","buyer":"cat","share":"s1","amount":"100.00","currency":"CNY",'
    ...   '"at":"2026-03-01T12:00:00+08:00"}'])
    >>> st = build_statement(evs, load_policy({"kind": "first_sharer", "rate": "10%"}), "2026-03")
    >>> [(ln.payee, str(ln.amount), ln.state) for ln in st.lines], st.manifest.line_count
    ([('amy', '10.00 CNY', 'accrued')], 1)
    >>> st.manifest.chain_root == st.manifest.computed_chain_root()
    True
    """
    config = _binding(binding)
    evs = cut_events(events, as_of)
    if isinstance(period, Period):
        per = period
    else:
        per = Period.parse(period, tz if tz is not None else zone_of(evs, policy)[0])
    effective_as_of = as_of if as_of is not None else max((ev.at for ev in evs), default=None)
    lines = period_lines(evs, policy, per, binding=config, hold_days=hold_days, as_of=effective_as_of, steps=steps)
    return seal_lines(lines, per, events_sha256=events_digest(evs, steps=steps), policy=policy.label,
                      policy_kind=policy.kind, policy_config_hash=policy.config_hash, rounding=policy.rounding.value,
                      binding=config.mode.value, expire_days=config.expire_days, hold_days=hold_days,
                      as_of=effective_as_of, previous=previous, steps=steps)


def statement_from_ledger(ledger: Ledger, period: str | Period, *, tz: str | None = None,
                          as_of: datetime | None = None, policy: PolicyConfig | None = None,
                          previous: Statement | Manifest | None = None, steps: Steps | None = None) -> Statement:
    """The statement of ``period`` from a ledger database: the events the ledger applied, replayed
    under its policy, hold days and binding mode, so the statement is recomputable from the same
    inputs by anyone (``audit verify`` on the exported events gives zero discrepancies).

    A ledger whose policy changed over time has no single policy to state: pass the ``policy`` of
    the period (its orders were computed with the version in force at their time).

    >>> from cps_engine.ledger import Ledger
    >>> from cps_engine.policies import load_policy
    >>> led = Ledger.open(":memory:", load_policy({"kind": "first_sharer", "rate": "10%"}), hold_days=0)
    >>> _ = led.record_many([
    ...   {"type": "share", "id": "s1", "sharer": "amy", "at": "2026-03-01T10:00:00+08:00"},
    ...   {"type": "order", "id": "o1", "buyer": "cat", "share": "s1", "amount": "100.00", "currency": "CNY",
    ...    "at": "2026-03-01T12:00:00+08:00"}])
    >>> [(ln.payee, str(ln.amount), ln.state) for ln in statement_from_ledger(led, "2026-03").lines]
    [('amy', '10.00 CNY', 'available')]
    """
    terms = ledger.terms
    if policy is None:
        if len({t.config_hash for t in terms}) > 1:
            raise InvalidStatement(f"the ledger's policy changed over time ({len(terms)} terms versions): give the "
                                   "policy in force for the period", field="policy")
        policy = terms[-1].policy
    holds = {t.rules.hold_days for t in terms}
    if len(holds) > 1:
        raise InvalidStatement(f"the ledger's hold period changed over time ({sorted(holds)} days): a statement "
                               "states one", field="hold_days")
    return build_statement(ledger.applied_events(), policy, period, tz=tz, as_of=as_of, hold_days=holds.pop(),
                           binding=ledger.binding, previous=previous, steps=steps)


def seal_lines(lines: Sequence[StatementLine], period: str | Period, *, tz: str = "UTC", events_sha256: str = "",
               policy: str = "", policy_kind: str = "", policy_config_hash: str = "", rounding: str = "down",
               binding: str = "first_wins", expire_days: int | None = None, hold_days: int | None = None,
               as_of: datetime | None = None, previous: Statement | Manifest | None = None,
               steps: Steps | None = None) -> Statement:
    """Attach a manifest (Merkle root, leaf hashes, chain root) to ``lines`` as they are, in their order.

    :func:`build_statement` fills in what the lines were computed from; a platform issuing its own
    statements in this format passes its own values.

    >>> from cps_engine.money import Money
    >>> st = seal_lines([StatementLine("amy", "o1", Money(5, "CNY"))], "2026-03")
    >>> st.manifest.merkle_root == st.merkle_root(), st.manifest.previous_root
    (True, None)
    """
    per = period if isinstance(period, Period) else Period.parse(period, tz)
    prev = previous.manifest if isinstance(previous, Statement) else previous
    if isinstance(previous, Statement) and prev is None:
        raise InvalidStatement("the previous statement has no manifest to chain to", field="previous")
    steps = steps if steps is not None else _QUIET
    steps.stage("hashing the lines", len(lines))
    hashes = []
    for i, line in enumerate(lines):
        hashes.append(line.leaf_hash())
        if i % _STEP == _STEP - 1:
            steps.advance(_STEP)
    steps.advance(len(lines) % _STEP)
    draft = Manifest(
        period=per.label, tz=per.tz, period_start=per.start.isoformat(), period_end=per.end.isoformat(),
        as_of=_iso(as_of), events_sha256=events_sha256, policy=policy, policy_kind=policy_kind,
        policy_config_hash=policy_config_hash, rounding=rounding, binding=binding, expire_days=expire_days,
        hold_days=hold_days, library_version=library_version(), line_count=len(lines),
        merkle_root=root_of(hashes).hex(), previous_period=prev.period if prev is not None else None,
        previous_root=prev.chain_root if prev is not None else None, chain_root="",
        leaf_hashes=tuple(h.hex() for h in hashes))
    return Statement(tuple(lines), replace(draft, chain_root=draft.computed_chain_root()))


# ---------------------------------------------------------------------------------------------- reading
def _norm(header: str) -> str:
    """Header normalised for matching: bracketed parts dropped, lower case, letters/digits/CJK only."""
    h = re.sub(r"[(（\[【].*?[)）\]】]", "", header)
    return "".join(ch for ch in h.lower() if ch.isalnum())


#: Header names platforms use for each line field (normalised by ``_norm``), most specific first.
ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "order": ("order", "orderid", "orderno", "ordernumber", "ordersn", "ordercode", "订单号", "订单编号",
              "订单id", "订单"),
    "payee": ("payee", "payeeid", "distributor", "distributorid", "promoter", "promoterid", "affiliate",
              "affiliateid", "agent", "agentid", "memberid", "member", "userid", "user", "sharer", "beneficiary",
              "分销员", "分销员id", "推广员", "推广员id", "佣金获得者", "收款人", "会员id", "用户id", "用户"),
    "level": ("level", "commissionlevel", "tier", "depth", "分销层级", "佣金层级", "层级", "级别"),
    "base": ("base", "commissionbase", "commissionable", "commissionableamount", "baseamount", "计佣金额",
             "佣金基数", "计佣基数"),
    "rate": ("rate", "commissionrate", "ratepercent", "percent", "percentage", "ratio", "佣金比例", "返佣比例",
             "分佣比例", "比例"),
    "amount": ("amount", "commissionamount", "commission", "payoutamount", "payout", "earnings", "earning",
               "amountminor", "amountcents", "commissioncents", "佣金金额", "返佣金额", "分佣金额", "佣金", "金额"),
    "currency": ("currency", "currencycode", "ccy", "币种", "货币"),
    "state": ("state", "status", "commissionstatus", "settlementstatus", "payoutstatus", "linestatus", "佣金状态",
              "结算状态", "状态"),
}
#: Platform state words and what they mean (lower case).
STATE_WORDS: Final[dict[str, str]] = {
    "accrued": "accrued", "earned": "accrued", "已入账": "accrued",
    "pending": "pending", "frozen": "pending", "hold": "pending", "on_hold": "pending", "unsettled": "pending",
    "冻结": "pending", "冻结中": "pending", "待结算": "pending", "未结算": "pending",
    "available": "available", "settled": "available", "withdrawable": "available", "已结算": "available",
    "可提现": "available",
    "paid": "paid", "withdrawn": "paid", "已提现": "paid", "已打款": "paid", "已发放": "paid",
}
_MINOR_HINTS: Final = ("cents", "cent", "fen", "minor", "分")
_CN_DIGITS: Final = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
_SYMBOLS: Final = re.compile(r"[¥￥$€£\s]|元|RMB|CNY|USD|EUR", re.I)


@dataclass(frozen=True)
class ColumnMap:
    """How a platform's CSV (or JSON records) maps onto statement lines.

    ``columns`` maps a line field (``order``, ``payee``, ``level``, ``base``, ``rate``, ``amount``,
    ``currency``, ``state``) to the header that holds it; fields not named are found by the usual
    header names (:data:`ALIASES`, English and Chinese, case and punctuation ignored).  ``amount_unit``
    says whether amounts are major units (``12.50``) or minor units (``1250``); ``auto`` reads a header
    ending in cents/fen/分 as minor.  ``rate_unit`` ``percent`` reads ``10`` as 10% (``auto``: when the
    header says percent or ``%``); ``10%`` is always a percentage.  ``currency`` is used when there is no
    currency column; ``decimal`` is the decimal separator; ``states`` maps extra state words.

    >>> ColumnMap.parse_options(["order=订单号", "amount_unit=minor"]).columns["order"]
    '订单号'
    """

    columns: Mapping[str, str] = field(default_factory=dict)
    amount_unit: Literal["auto", "major", "minor"] = "auto"
    rate_unit: Literal["auto", "fraction", "percent"] = "auto"
    currency: str | None = None
    decimal: Literal[".", ","] = "."
    delimiter: str | None = None
    encoding: str = "utf-8-sig"
    states: Mapping[str, str] = field(default_factory=dict)

    _OPTIONS: ClassVar[tuple[str, ...]] = ("amount_unit", "rate_unit", "currency", "decimal", "delimiter",
                                           "encoding")

    def __post_init__(self) -> None:
        for f in self.columns:
            if f not in ALIASES:
                raise InvalidStatement(f"unknown line field {f!r} in the column map (fields: "
                                       f"{', '.join(ALIASES)})", field="columns")
        if self.amount_unit not in ("auto", "major", "minor"):
            raise InvalidStatement("amount_unit must be auto, major or minor", field="amount_unit")
        if self.rate_unit not in ("auto", "fraction", "percent"):
            raise InvalidStatement("rate_unit must be auto, fraction or percent", field="rate_unit")
        if self.decimal not in (".", ","):
            raise InvalidStatement("decimal must be '.' or ','", field="decimal")
        if self.currency is not None and self.currency.upper() not in CURRENCIES:
            raise InvalidStatement(f"unknown currency {self.currency!r}", field="currency")
        for word, state in self.states.items():
            if state not in STATES:
                raise InvalidStatement(f"state {word!r} maps to {state!r}, not one of {', '.join(STATES)}",
                                       field="states")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ColumnMap:
        """From a TOML/JSON table: ``[columns]`` and ``[states]`` tables plus the options."""
        known = {"columns", "states", *cls._OPTIONS}
        extra = set(data) - known
        if extra:
            raise InvalidStatement(f"unknown column-map keys {sorted(extra)} (known: {sorted(known)})",
                                   field=sorted(extra)[0])
        kwargs: dict[str, Any] = {k: data[k] for k in cls._OPTIONS if k in data}
        for k, v in kwargs.items():
            if not isinstance(v, str):
                raise InvalidStatement(f"{k} must be a string", field=k)
        for table in ("columns", "states"):
            value = data.get(table, {})
            if not isinstance(value, Mapping) or not all(isinstance(x, str) for x in [*value, *value.values()]):
                raise InvalidStatement(f"{table} must be a table of strings", field=table)
            kwargs[table] = dict(value)
        return cls(**kwargs)

    @classmethod
    def load(cls, path: str | Path) -> ColumnMap:
        """Read a column map from a ``.toml`` or ``.json`` file."""
        p = Path(path)
        try:  # UTF-8 (a BOM dropped), strict JSON (no duplicate keys, bounded nesting) or TOML
            text = read_text(p, error=InvalidStatement)
            data = (loads_json(text, source=str(p), error=InvalidStatement) if p.suffix.lower() == ".json"
                    else loads_toml(text, source=str(p), error=InvalidStatement))
        except CpsError as exc:
            raise InvalidStatement(exc.message, field=exc.field or "columns", line=exc.line) from None
        if not isinstance(data, Mapping):
            raise InvalidStatement(f"{p}: a column map is a table (an object)", field="columns")
        return cls.from_mapping(data)

    @classmethod
    def parse_options(cls, options: Iterable[str], base: ColumnMap | None = None) -> ColumnMap:
        """Apply ``field=Header`` and ``option=value`` strings (the CLI's ``--map``) on ``base``."""
        columns = dict(base.columns) if base else {}
        kwargs: dict[str, Any] = {}
        for opt in options:
            name, sep, value = opt.partition("=")
            name = name.strip()
            if not sep or not name:
                raise InvalidStatement(f"--map {opt!r} is not FIELD=HEADER or OPTION=VALUE", field="map")
            if name in ALIASES:
                columns[name] = value.strip()
            elif name in cls._OPTIONS:
                kwargs[name] = value.strip()
            else:
                raise InvalidStatement(f"--map {opt!r}: {name!r} is neither a line field ({', '.join(ALIASES)}) "
                                       f"nor an option ({', '.join(cls._OPTIONS)})", field="map")
        if base is not None:
            merged = {k: getattr(base, k) for k in (*cls._OPTIONS, "states")}
            merged.update(kwargs)
            kwargs = merged
        return cls(columns=columns, **kwargs)

    # ------------------------------------------------------------------ header resolution
    def resolve(self, headers: Sequence[str]) -> dict[str, str]:
        """Line field -> header, for the fields present in ``headers``."""
        found: dict[str, str] = {}
        taken: set[str] = set()
        for f, h in self.columns.items():
            if h not in headers:
                raise InvalidStatement(f"the column map names header {h!r} for {f!r}, but the file's headers "
                                       f"are {list(headers)}", field=f)
            found[f] = h
            taken.add(h)
        by_norm: dict[str, str] = {}
        for h in headers:
            by_norm.setdefault(_norm(h), h)
        for f, aliases in ALIASES.items():
            if f in found:
                continue
            for alias in aliases:
                h2 = by_norm.get(alias)
                if h2 is not None and h2 not in taken:
                    found[f] = h2
                    taken.add(h2)
                    break
        return found

    def minor_amounts(self, header: str) -> bool:
        if self.amount_unit != "auto":
            return self.amount_unit == "minor"
        low = header.lower()
        return any(low.rstrip(")）] ").endswith(hint) for hint in _MINOR_HINTS)

    def percent_rates(self, header: str) -> bool:
        if self.rate_unit != "auto":
            return self.rate_unit == "percent"
        return "%" in header or "percent" in header.lower() or "百分" in header


def _parse_amount_text(text: str, currency: str, minor: bool, decimal: str) -> Money:
    t = _SYMBOLS.sub("", text)
    t = t.replace(".", "").replace(",", ".") if decimal == "," else t.replace(",", "")
    if t.startswith("(") and t.endswith(")"):
        t = "-" + t[1:-1]
    if minor:
        if not re.fullmatch(r"-?\d+", t):
            raise InvalidMoney(f"{text!r} is not a whole number of minor units")
        return Money(int(t), currency)
    return Money(parse_amount(t, currency), currency)


def _parse_level(text: str) -> int:
    t = text.strip()
    digits = re.search(r"\d+", t)
    if digits:
        return int(digits.group())
    for ch, n in _CN_DIGITS.items():
        if t.startswith(ch):
            return n
    raise ValueError(f"{text!r} is not a level")


def _parse_rate_text(text: str, percent: bool, decimal: str) -> Fraction:
    t = _unformula(text).strip()  # ="3/34", the spreadsheet-safe form of excel_rate
    if decimal == ",":
        t = t.replace(",", ".")
    if percent and not t.endswith("%") and "/" not in t:
        t += "%"
    return parse_rate(t)


def _state_word(text: str, cmap: ColumnMap) -> str:
    t = text.strip()
    mapped = cmap.states.get(t) or STATE_WORDS.get(t.lower())
    if mapped is None:
        raise ValueError(f"unknown state {text!r} (known: {', '.join(sorted({*STATE_WORDS, *cmap.states}))}; "
                         "map more in the column map's [states])")
    return mapped


def _line_from_record(rec: Mapping[str, Any], cols: Mapping[str, str], cmap: ColumnMap,
                      currency_of: Callable[[str], str | None] | None, where: int) -> StatementLine:
    def cell(f: str) -> str | None:
        h = cols.get(f)
        if h is None:
            return None
        v = rec.get(h)
        if v is None:
            return None
        if isinstance(v, float):
            raise InvalidMoney(f"{v!r} is a JSON float; statements must give amounts and rates as strings "
                               "or integers", field=h, line=where)
        text = str(v).strip()
        return text or None

    order, payee, amount_text = cell("order"), cell("payee"), cell("amount")
    for f, v in (("order", order), ("payee", payee), ("amount", amount_text)):
        if v is None:
            raise InvalidStatement(f"empty {f}", field=cols[f], line=where)
    assert order is not None and payee is not None and amount_text is not None
    cur_text = cell("currency")
    currency = (cur_text.upper() if cur_text else None) or (cmap.currency.upper() if cmap.currency else None)
    if currency is None and currency_of is not None:
        currency = currency_of(order)
    if currency is None:
        raise InvalidStatement("no currency: the file has no currency column; give one in the column map "
                               "(currency=CNY)", record=order, field="currency", line=where)
    if currency not in CURRENCIES:
        raise InvalidStatement(f"unknown currency {currency!r}", record=order, field=cols.get("currency"),
                               line=where)
    h = cols["amount"]
    try:
        amount = _parse_amount_text(amount_text, currency, cmap.minor_amounts(h), cmap.decimal)
    except CpsError as exc:
        raise InvalidStatement(exc.message, record=order, field=h, line=where) from None
    level = base = rate = state = None
    try:
        if (t := cell("level")) is not None:
            level = _parse_level(t)
        if (t := cell("base")) is not None:
            base = _parse_amount_text(t, currency, cmap.minor_amounts(cols["base"]), cmap.decimal)
        if (t := cell("rate")) is not None:
            rate = _parse_rate_text(t, cmap.percent_rates(cols["rate"]), cmap.decimal)
        if (t := cell("state")) is not None:
            state = _state_word(t, cmap)
    except (CpsError, ValueError) as exc:
        msg = exc.message if isinstance(exc, CpsError) else str(exc)
        bad = next((f for f in ("level", "base", "rate", "state") if f in msg), None)
        raise InvalidStatement(msg, record=order, field=cols.get(bad) if bad else None, line=where) from None
    return StatementLine(payee=payee, order=order, amount=amount, level=level, base=base, rate=rate, state=state)


def _from_records(records: Sequence[tuple[int, Mapping[str, Any]]], headers: Sequence[str], cmap: ColumnMap,
                  currency_of: Callable[[str], str | None] | None, source: str) -> tuple[list[StatementLine],
                                                                                   list[int]]:
    cols = cmap.resolve(headers)
    missing = [f for f in ("order", "payee", "amount") if f not in cols]
    if missing:
        raise InvalidStatement(f"{source}: no column for {', '.join(missing)} among headers {list(headers)}; "
                               "name it with --map FIELD=HEADER or a column map file", field=missing[0])
    lines: list[StatementLine] = []
    rows: list[int] = []
    errors: list[CpsError] = []
    for where, rec in records:
        try:
            lines.append(_line_from_record(rec, cols, cmap, currency_of, where))
            rows.append(where)
        except CpsError as exc:
            errors.append(exc)
            if len(errors) >= 50:
                break
    if errors:
        raise InvalidStatement(f"{source}: {len(errors)} unusable row(s)", errors=errors)
    return lines, rows


def _own_lines(records: Sequence[tuple[int, Mapping[str, Any]]], source: str) -> tuple[list[StatementLine],
                                                                                     list[int]]:
    """Lines of this library's own JSON format, read exactly (no column guessing)."""
    lines: list[StatementLine] = []
    errors: list[CpsError] = []
    for where, rec in records:
        try:
            lines.append(StatementLine.from_dict(rec))
        except CpsError as exc:
            errors.append(exc.located(line=where))
    if errors:
        raise InvalidStatement(f"{source}: {len(errors)} unusable line(s)", errors=errors[:50])
    return lines, [where for where, _ in records]


def _sniff_delimiter(sample: str) -> str:
    first = sample.splitlines()[0] if sample else ""
    counts = {d: first.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _read_csv(path: Path, cmap: ColumnMap, currency_of: Callable[[str], str | None] | None,
              ) -> tuple[list[StatementLine], list[int]]:
    try:
        if cmap.encoding.lower().replace("_", "-") in ("utf-8", "utf-8-sig", "utf8"):
            try:
                text = decode(path.read_bytes(), str(path), error=InvalidStatement)  # names line and byte offset
            except InvalidStatement as bad:
                raise InvalidStatement(f"{bad.message}; set encoding=gbk (or the file's encoding) in the column map",
                                       field="encoding", line=bad.line) from None
        else:
            text = path.read_text(encoding=cmap.encoding)
    except UnicodeDecodeError as exc:
        raise InvalidStatement(f"{path}: not {cmap.encoding} text ({exc.reason}); set encoding=gbk (or the "
                               "file's encoding) in the column map", field="encoding") from None
    except LookupError:
        raise InvalidStatement(f"unknown encoding {cmap.encoding!r}", field="encoding") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=cmap.delimiter or _sniff_delimiter(text))
    try:
        headers = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InvalidStatement(f"{path}: empty file, no header row") from None
    except csv.Error as exc:
        raise InvalidStatement(f"{path}: not readable CSV: {exc}", line=1) from None
    records: list[tuple[int, Mapping[str, Any]]] = []
    try:
        start = reader.line_num + 1
        for row in reader:
            if not any(c.strip() for c in row):
                start = reader.line_num + 1
                continue
            if len(row) != len(headers):
                raise InvalidStatement(f"{len(row)} cells for {len(headers)} headers", line=start)
            # undo the formula-cell escaping of CsvWriter (a quote before = + - @ ...): exact round trip
            records.append((start, dict(zip(headers, map(unescape_cell, row), strict=True))))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InvalidStatement(f"{path}: not readable CSV: {exc}", line=reader.line_num) from None
    return _from_records(records, headers, cmap, currency_of, str(path))


def _read_json_doc(path: Path) -> Any:
    # UTF-8 (a BOM dropped, bad bytes located), no duplicate keys, bounded nesting, floats kept as text
    return loads_json(read_text(path, error=InvalidStatement), source=str(path), error=InvalidStatement,
                      parse_float=_no_float)


class _FloatInJson(str):
    """A JSON number with a fraction or exponent, kept as text so it can be refused by name."""


def _no_float(text: str) -> Any:
    return _FloatInJson(text)


def _sidecar(path: Path) -> Path:
    name = path.name
    stem = name[: -len(".csv")] if name.lower().endswith(".csv") else path.stem
    return path.with_name(f"{stem}.manifest.json")


def _manifest_from(doc: Any, source: str) -> tuple[Manifest | None, Mapping[str, Any] | None]:
    if not isinstance(doc, Mapping):
        raise InvalidStatement(f"{source}: expected a JSON object with a manifest")
    raw = doc.get("manifest")
    manifest = Manifest.from_dict(raw) if raw is not None else None
    totals = doc.get("totals")
    return manifest, totals if isinstance(totals, Mapping) else None


def read_statement(path: str | Path, columns: ColumnMap | None = None, *,
                   currency_of: Callable[[str], str | None] | None = None,
                   manifest: str | Path | None = None) -> Statement:
    """Read a statement: this library's JSON (with its manifest), its CSV (with the sidecar
    ``<name>.manifest.json`` when present, or ``manifest``), or a platform's CSV or JSON records mapped
    by ``columns``.  ``currency_of(order)`` supplies the currency when the file has none.

    Raises :class:`InvalidStatement` listing every unusable row.
    """
    p = Path(path)
    cmap = columns or ColumnMap()
    if not p.exists():
        raise InvalidStatement(f"{p}: no such file")
    doc: Any = None
    is_json = p.suffix.lower() == ".json"
    if not is_json:
        head = p.read_bytes()[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
        is_json = head[:1] in (b"{", b"[")
    man: Manifest | None = None
    totals: Mapping[str, Any] | None = None
    if is_json:
        doc = _read_json_doc(p)
        records_raw: Any
        if isinstance(doc, Mapping):
            if doc.get("format") not in (None, FORMAT):
                raise InvalidStatement(f"{p}: unsupported statement format {doc.get('format')!r}", field="format")
            man, totals = _manifest_from(doc, str(p))
            records_raw = doc.get("lines")
        else:
            records_raw = doc
        if not isinstance(records_raw, list) or not all(isinstance(r, Mapping) for r in records_raw):
            raise InvalidStatement(f"{p}: expected a list of line objects (or an object with 'lines')",
                                   field="lines")
        headers: list[str] = []
        for r in records_raw:
            for k in r:
                if k not in headers:
                    headers.append(str(k))
        records = [(i + 1, r) for i, r in enumerate(records_raw)]
        for where, r in records:
            for k, v in r.items():
                if isinstance(v, _FloatInJson):
                    raise InvalidStatement(f"{v} is a JSON float; write amounts and rates as strings",
                                           field=str(k), line=where)
                if v is not None and not isinstance(v, (str, int)):
                    raise InvalidStatement(f"{k} must be a string or an integer", field=str(k), line=where)
        if isinstance(doc, Mapping) and doc.get("format") == FORMAT:
            lines, rows = _own_lines(records, str(p))
        else:
            lines, rows = _from_records(records, headers, cmap, currency_of, str(p))
    else:
        lines, rows = _read_csv(p, cmap, currency_of)
        side = Path(manifest) if manifest is not None else _sidecar(p)
        if side.exists():
            man, totals = _manifest_from(_read_json_doc(side), str(side))
    if manifest is not None and is_json:
        man, totals = _manifest_from(_read_json_doc(Path(manifest)), str(manifest))
    return Statement(tuple(lines), man, tuple(rows), totals, str(p))
