"""Exact, dated exchange rates for *reporting* in one currency (what-if tables, reports).

The ledger never converts: every amount it records stays in the order's currency.  An
:class:`FxTable` only turns totals into a reporting currency, for reading them side by side.

- A rate is a decimal string (or ``Decimal``/``int``), never a float; it is dated by **day**:
  ``1 base = rate quote`` in major units (``EUR, CNY, 7.8123``: one euro is 7.8123 yuan).
- A lookup on a day takes the **latest rate dated on or before that day**; no such rate raises
  :class:`MissingRate`, naming both currencies and the day.  A currency converts to itself at 1.
  Only the direction listed is used (a CNY→EUR rate is not derived from EUR→CNY).
- **Rounding rule (the only one):** a total is converted exactly (Fraction arithmetic, exponents
  included) and rounded **once, half-even, to the reporting currency's minor unit**.  A total is
  summed first and converted after, never line by line; a total over several currencies is the exact
  sum of their exact conversions, rounded once.

>>> fx = FxTable.from_mapping({"EUR/CNY": {"2026-03-01": "7.8123", "2026-03-15": "7.9"}})
>>> fx.rate("EUR", "CNY", date(2026, 3, 10)).rate
Decimal('7.8123')
>>> fx.convert(Money.of("10.00", "EUR"), "CNY", date(2026, 3, 10))
Money(minor=7812, currency='CNY')
>>> fx.convert_total([Money.of("0.01", "EUR")] * 3, "CNY", date(2026, 3, 10))  # 0.234369, rounded once
Money(minor=23, currency='CNY')
>>> fx.rate("EUR", "CNY", date(2026, 2, 28))
Traceback (most recent call last):
...
cps_engine.fx.MissingRate: no EUR->CNY rate dated on or before 2026-02-28 (earliest: 2026-03-01)
"""

from __future__ import annotations

import bisect
import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, Final, NoReturn

from cps_engine.errors import CpsError, FloatRejected, InvalidInput, InvalidRate, brief
from cps_engine.money import Money, currency_exponent
from cps_engine.textio import loads_json, read_text, strip_bom

__all__ = ["FxRate", "FxTable", "MissingRate", "round_half_even"]

#: a rate is refused outside [10**-12, 10**12) or with more than this many decimal places
MAX_RATE_DECIMALS: Final = 30
_MIN_ADJUSTED: Final = -12
_MAX_ADJUSTED: Final = 11
#: the columns (CSV) or keys (JSON rows) of one rate
COLUMNS: Final = ("date", "base", "quote", "rate")


class MissingRate(CpsError, LookupError):
    """No rate for ``base -> quote`` dated on or before ``day``."""

    def __init__(self, base: str, quote: str, day: date, earliest: date | None = None) -> None:
        self.base, self.quote, self.day, self.earliest = base, quote, day, earliest
        hint = f" (earliest: {earliest.isoformat()})" if earliest is not None else " (none listed)"
        super().__init__(f"no {base}->{quote} rate dated on or before {day.isoformat()}{hint}")


def round_half_even(x: Fraction) -> int:
    """``x`` to the nearest integer, ties to even (Python's ``round`` on a ``Fraction``).

    >>> round_half_even(Fraction(5, 2)), round_half_even(Fraction(7, 2)), round_half_even(Fraction(-5, 2))
    (2, 4, -2)
    """
    return round(x)


def _fail(error: type[CpsError], message: str, *, field: str | None, line: int | None) -> NoReturn:
    raise error(message, field=field, line=line)


def _parse_rate(value: object, *, line: int | None = None) -> Decimal:
    if isinstance(value, float):
        raise FloatRejected(f"rate {value!r} is a float; write it as a decimal string such as '7.8123'",
                            field="rate", line=line)
    if isinstance(value, bool):
        _fail(InvalidRate, "a rate must be a decimal string, not a bool", field="rate", line=line)
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            _fail(InvalidRate, f"rate {brief(value)} is not a decimal number", field="rate", line=line)
    else:
        _fail(InvalidRate, f"a rate must be a decimal string, Decimal or int, not {type(value).__name__}",
              field="rate", line=line)
    if not d.is_finite() or d <= 0:
        _fail(InvalidRate, f"rate {brief(value)} must be a finite number above 0", field="rate", line=line)
    if not _MIN_ADJUSTED <= d.adjusted() <= _MAX_ADJUSTED:
        _fail(InvalidRate, f"rate {brief(value)} is outside [1e{_MIN_ADJUSTED}, 1e{_MAX_ADJUSTED + 1})",
              field="rate", line=line)
    d = d.normalize()
    exp = d.as_tuple().exponent
    assert isinstance(exp, int)
    if -exp > MAX_RATE_DECIMALS:
        _fail(InvalidRate, f"rate {brief(value)} has more than {MAX_RATE_DECIMALS} decimal places",
              field="rate", line=line)
    return d if exp <= 0 else d.quantize(Decimal(1))  # "1E+1" -> "10"


def _parse_day(value: object, *, line: int | None = None) -> date:
    if isinstance(value, datetime):
        _fail(InvalidInput, f"a rate is dated by day: give {value.date().isoformat()}, not a date and time",
              field="date", line=line)
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    _fail(InvalidInput, f"date {brief(value)} is not a day written YYYY-MM-DD", field="date", line=line)


def _parse_currency(value: object, field: str, *, line: int | None = None) -> str:
    code = value.strip() if isinstance(value, str) else value
    try:
        currency_exponent(code)  # type: ignore[arg-type]
    except CpsError as exc:
        raise type(exc)(exc.message, field=field, line=line) from None
    assert isinstance(code, str)
    return code


@dataclass(frozen=True, slots=True)
class FxRate:
    """``1 base = rate quote`` (major units), in force from ``day`` until the next rate of the pair."""

    day: date
    base: str
    quote: str
    rate: Decimal

    @property
    def fraction(self) -> Fraction:
        """The rate as an exact ``Fraction``."""
        return Fraction(self.rate)

    def minor_factor(self) -> Fraction:
        """What one minor unit of ``base`` is worth in minor units of ``quote``, exactly."""
        shift = currency_exponent(self.quote) - currency_exponent(self.base)
        return self.fraction * (Fraction(10) ** shift)

    def as_row(self) -> dict[str, str]:
        return {"date": self.day.isoformat(), "base": self.base, "quote": self.quote, "rate": str(self.rate)}


class FxTable:
    """Dated exchange rates, exact; see the module documentation for the lookup and rounding rules.

    Build one with :meth:`from_rows`, :meth:`from_mapping`, :meth:`from_csv`, :meth:`from_json` or
    :meth:`load`.  A pair listed twice on the same day with two different rates is refused.
    """

    def __init__(self, rates: Iterable[FxRate] = ()) -> None:
        pairs: dict[tuple[str, str], dict[date, FxRate]] = {}
        for r in rates:
            if not isinstance(r, FxRate):
                raise TypeError(f"FxTable takes FxRate values, not {type(r).__name__} (see FxTable.from_rows)")
            if r.base == r.quote and r.rate != 1:
                raise InvalidRate(f"{r.base}->{r.quote} on {r.day.isoformat()}: a currency converts to itself "
                                  f"at 1, not {r.rate}", field="rate")
            seen = pairs.setdefault((r.base, r.quote), {})
            old = seen.get(r.day)
            if old is not None and old.rate != r.rate:
                raise InvalidRate(f"{r.base}->{r.quote} on {r.day.isoformat()} listed twice: {old.rate} and "
                                  f"{r.rate}", field="rate")
            seen[r.day] = r
        self._days: dict[tuple[str, str], list[date]] = {}
        self._rates: dict[tuple[str, str], list[FxRate]] = {}
        for pair, by_day in pairs.items():
            days = sorted(by_day)
            self._days[pair] = days
            self._rates[pair] = [by_day[d] for d in days]

    # ------------------------------------------------------------------ building
    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> FxTable:
        """Rows with ``date``, ``base``, ``quote``, ``rate`` (other keys are ignored)."""
        out = []
        for i, row in enumerate(rows, start=1):
            out.append(_row(row, line=None, index=i))
        return cls(out)

    @classmethod
    def from_mapping(cls, mapping: Mapping[Any, Mapping[Any, Any]]) -> FxTable:
        """``{"EUR/CNY": {"2026-03-01": "7.8123", ...}, ("USD", "CNY"): {date(...): Decimal(...)}}``."""
        out = []
        for pair, by_day in mapping.items():
            if isinstance(pair, str) and pair.count("/") == 1:
                base, quote = pair.split("/")
            elif isinstance(pair, tuple) and len(pair) == 2:
                base, quote = pair
            else:
                raise InvalidInput(f"pair {brief(pair)} must be 'BASE/QUOTE' or a (base, quote) tuple", field="pair")
            if not isinstance(by_day, Mapping):
                raise InvalidInput(f"rates of {brief(pair)} must map a day to a rate", field="pair")
            b, q = _parse_currency(base, "base"), _parse_currency(quote, "quote")
            out += [FxRate(_parse_day(day), b, q, _parse_rate(rate)) for day, rate in by_day.items()]
        return cls(out)

    @classmethod
    def from_csv(cls, source: str | Path | IO[str]) -> FxTable:
        """A CSV file (path, or an open text file) with a header naming ``date, base, quote, rate``."""
        text = read_text(source) if isinstance(source, (str, Path)) else strip_bom(source.read())
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InvalidInput(f"the header must name {', '.join(COLUMNS)} (missing: {', '.join(missing)})", line=1)
        return cls(_row(row, line=reader.line_num) for row in reader)

    @classmethod
    def from_json(cls, source: str | Path) -> FxTable:
        """A JSON file (path) or text: a list of rows (as :meth:`from_rows`) or a mapping (as
        :meth:`from_mapping`).  Rates must be strings: a JSON number with a fraction is refused."""
        text = read_text(source) if isinstance(source, Path) or not source.lstrip().startswith(("[", "{")) \
            else source
        doc = loads_json(text, parse_float=_json_float)
        if isinstance(doc, list):
            if not all(isinstance(r, dict) for r in doc):
                raise InvalidInput("a JSON list of rates must hold objects with date, base, quote, rate")
            return cls.from_rows(doc)
        if isinstance(doc, dict):
            return cls.from_mapping(doc)
        raise InvalidInput("FX rates in JSON are a list of rows or an object of pairs")

    @classmethod
    def load(cls, source: FxTable | Mapping[Any, Any] | Iterable[Mapping[str, Any]] | str | Path) -> FxTable:
        """An ``FxTable`` from whatever holds one: a table, a mapping, rows, or a ``.csv``/``.json`` path."""
        if isinstance(source, FxTable):
            return source
        if isinstance(source, Mapping):
            return cls.from_mapping(source)
        if isinstance(source, (str, Path)):
            suffix = Path(source).suffix.lower()
            if suffix == ".csv":
                return cls.from_csv(source)
            if suffix == ".json":
                return cls.from_json(Path(source))
            raise InvalidInput(f"FX file {brief(str(source))}: expected a .csv or .json file")
        return cls.from_rows(source)

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return sum(len(v) for v in self._rates.values())

    def __iter__(self) -> Any:
        for pair in sorted(self._rates):
            yield from self._rates[pair]

    def __repr__(self) -> str:
        return f"FxTable({len(self)} rates, pairs: {', '.join(f'{b}/{q}' for b, q in sorted(self._rates))})"

    def rate(self, base: str, quote: str, day: date) -> FxRate:
        """The latest ``base -> quote`` rate dated on or before ``day`` (1 when the currencies are the
        same); :class:`MissingRate` when there is none."""
        if isinstance(day, datetime):
            raise TypeError("FxTable.rate takes a day (datetime.date), not a datetime")
        if base == quote:
            currency_exponent(base)
            return FxRate(day, base, quote, Decimal(1))
        days = self._days.get((base, quote))
        if not days:
            _parse_currency(base, "base")
            _parse_currency(quote, "quote")
            raise MissingRate(base, quote, day)
        i = bisect.bisect_right(days, day)
        if i == 0:
            raise MissingRate(base, quote, day, days[0])
        return self._rates[(base, quote)][i - 1]

    def convert_exact(self, amount: Money, quote: str, day: date) -> Fraction:
        """``amount`` in minor units of ``quote``, exactly (not rounded)."""
        return amount.minor * self.rate(amount.currency, quote, day).minor_factor()

    def convert(self, amount: Money, quote: str, day: date) -> Money:
        """``amount`` in ``quote``, rounded once half-even to the minor unit."""
        return Money(round_half_even(self.convert_exact(amount, quote, day)), quote)

    def convert_total(self, amounts: Iterable[Money], quote: str, day: date) -> Money:
        """The total of ``amounts`` (any currencies) in ``quote``: each currency summed, converted
        exactly, and the exact sum rounded once, half-even."""
        per: dict[str, int] = {}
        for m in amounts:
            if not isinstance(m, Money):
                raise FloatRejected(f"an amount to convert must be Money, not {type(m).__name__}")
            per[m.currency] = per.get(m.currency, 0) + m.minor
        exact = sum((self.convert_exact(Money(v, c), quote, day) for c, v in sorted(per.items())), Fraction(0))
        currency_exponent(quote)
        return Money(round_half_even(exact), quote)


def _json_float(text: str) -> NoReturn:
    raise FloatRejected(f"rate {brief(text)} is a JSON number with a fraction; write it as a string "
                        f"(\"{text}\") to stay exact", field="rate")


def _row(row: Mapping[str, Any], *, line: int | None, index: int | None = None) -> FxRate:
    where = line if line is not None else index
    for key in COLUMNS:
        if row.get(key) in (None, ""):
            raise InvalidInput(f"rate {where}: {key!r} is missing", field=key, line=line)
    return FxRate(_parse_day(row["date"], line=line), _parse_currency(row["base"], "base", line=line),
                  _parse_currency(row["quote"], "quote", line=line), _parse_rate(row["rate"], line=line))
