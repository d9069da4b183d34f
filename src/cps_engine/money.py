"""Exact money and rates.

``Money`` is an integer number of minor units plus an ISO-4217 currency code; the currency's
exponent (CNY 2, JPY 0, KWD 3) says how many minor units make one major unit.  Floats are refused
everywhere; strings, ``Decimal`` and ``int`` (major units) are parsed exactly, and an amount with
more decimals than its currency allows is refused rather than rounded.

Rates are :class:`fractions.Fraction` in ``[0, 1]``, parsed exactly from ``"10%"``, ``"0.1"``,
``"1/3"``, ``Decimal`` or ``Fraction``.

There is one rounding rule, applied by :func:`apply_rate`: ``amount = round(base × rate)`` with a
:class:`Rounding` mode, default :attr:`Rounding.DOWN` (toward zero), so nobody is ever paid more
than their stated rate.

>>> Money.of("19.90", "CNY")
Money(minor=1990, currency='CNY')
>>> str(Money.of("19.90", "CNY") + Money.of("0.10", "CNY"))
'20.00 CNY'
>>> parse_rate("12.5%")
Fraction(1, 8)
>>> apply_rate(1999, parse_rate("10%"))
199
>>> apply_rate(1999, parse_rate("10%"), Rounding.HALF_UP)
200
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Final

from cps_engine.currencies import ISO4217
from cps_engine.errors import CurrencyMismatch, FloatRejected, InvalidMoney, InvalidRate, UnknownCurrency, brief

__all__ = [
    "CURRENCIES",
    "MAX_EVENT_MINOR",
    "MAX_MINOR",
    "Money",
    "Rounding",
    "apply_rate",
    "currency_exponent",
    "format_rate",
    "parse_amount",
    "parse_rate",
]

#: ISO-4217 code -> exponent (number of decimals of the minor unit): every currency of the published
#: ISO 4217 list that has a minor unit (:mod:`cps_engine.currencies`, generated from a maintained source).
CURRENCIES: Final[dict[str, int]] = dict(ISO4217)

#: Largest absolute amount in minor units: fits a signed 64-bit column (BIGINT, int64).
MAX_MINOR: Final[int] = 2**63 - 1

#: Largest amount of one event (order, shipping, tax, unit price, refund, payout) in minor units:
#: 10**15 (10 trillion CNY).  Events above it are refused at parse time, so a database sum over
#: 9,223 maximal events, or millions of ordinary ones, stays below 2**63 (BIGINT).
MAX_EVENT_MINOR: Final[int] = 10**15


def currency_exponent(code: str) -> int:
    """Exponent of ``code``; raises :class:`UnknownCurrency` for codes not in :data:`CURRENCIES`.

    >>> currency_exponent("JPY")
    0
    """
    try:
        return CURRENCIES[code]
    except (KeyError, TypeError):
        raise UnknownCurrency(f"unknown currency {brief(code)} (expected an ISO-4217 code such as 'CNY')",
                              field="currency") from None


def _to_decimal(value: object, what: str) -> Decimal:
    if isinstance(value, float):
        raise FloatRejected(f"{what} {value!r} is a float; give it as a string or Decimal to stay exact")
    if isinstance(value, bool):
        raise InvalidMoney(f"{what} must be a number, not a bool")
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            d = Decimal(text)
        except InvalidOperation:
            raise InvalidMoney(f"{what} {brief(value)} is not a decimal number") from None
    else:
        raise InvalidMoney(f"{what} must be a decimal string, Decimal or int, not {type(value).__name__}")
    if not d.is_finite():
        raise InvalidMoney(f"{what} {brief(value)} is not finite")
    return d


def parse_amount(value: object, currency: str, *, limit: int = MAX_MINOR) -> int:
    """Parse a major-unit amount (``"19.90"``, ``Decimal``, ``int``) into minor units, exactly.

    ``limit`` bounds the absolute result in minor units (events use :data:`MAX_EVENT_MINOR`).

    >>> parse_amount("19.9", "CNY"), parse_amount("1200", "JPY"), parse_amount("1.234", "KWD")
    (1990, 1200, 1234)
    >>> parse_amount("10000000000000.01", "CNY", limit=MAX_EVENT_MINOR)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cps_engine.errors.InvalidMoney: field 'amount': amount '10000000000000.01' is too large (limit 1000000000000000 ...
    """
    d = _to_decimal(value, "amount")  # first, so a float is refused as a float whatever the currency
    exponent = currency_exponent(currency)
    # Exact integer arithmetic on the digits (Decimal.scaleb would round to the context's 28 digits),
    # decided by counting digits before building any integer: never 10**huge, never int("9" * 5000).
    sign, digit_tuple, exp = d.as_tuple()
    assert isinstance(exp, int)  # _to_decimal refuses NaN and infinities
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    stripped = digits.rstrip("0")  # trailing zeros move into the exponent: "1.50" is 15e-1
    shift = exp + len(digits) - len(stripped) + exponent  # minor = int(stripped) * 10**shift
    if not stripped:
        minor = 0
    elif shift < 0:  # the last digit is not zero and sits below the minor unit
        raise InvalidMoney(f"amount {brief(value)} has more decimals than {currency} allows ({exponent})",
                           field="amount")
    elif len(stripped) + shift > len(str(limit)):  # more digits than the limit has
        raise InvalidMoney(f"amount {brief(value)} is too large (limit {limit} minor units)", field="amount")
    else:
        minor = int(stripped) * 10**shift
    if sign:
        minor = -minor
    if abs(minor) > limit:
        raise InvalidMoney(f"amount {brief(value)} is too large (limit {limit} minor units)", field="amount")
    return minor


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount: ``minor`` units of ``currency``.

    >>> Money(1990, "CNY").amount
    Decimal('19.90')
    >>> Money.of("5", "JPY") * 3
    Money(minor=15, currency='JPY')
    """

    minor: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.minor) is not int:
            if isinstance(self.minor, float):
                raise FloatRejected("Money.minor must be an int, not a float")
            raise InvalidMoney(f"Money.minor must be an int, not {type(self.minor).__name__}")
        if self.currency not in CURRENCIES:
            currency_exponent(self.currency)
        if not -MAX_MINOR <= self.minor <= MAX_MINOR:
            raise InvalidMoney(f"{self.minor} minor units is out of range (limit {MAX_MINOR})")

    @classmethod
    def of(cls, amount: str | Decimal | int, currency: str) -> Money:
        """Build from a major-unit amount, e.g. ``Money.of("19.90", "CNY")``."""
        return cls(parse_amount(amount, currency), currency)

    @classmethod
    def parse(cls, text: str) -> Money:
        """Parse ``"19.90 CNY"`` (amount, space, code).

        >>> Money.parse("5.00 USD")
        Money(minor=500, currency='USD')
        """
        if not isinstance(text, str):
            _to_decimal(text, "amount")  # a float is refused as a float
            raise InvalidMoney(f"{brief(text)} is not '<amount> <CURRENCY>', e.g. '5.00 CNY'")
        parts = text.split()
        if len(parts) != 2:
            raise InvalidMoney(f"{brief(text)} is not '<amount> <CURRENCY>', e.g. '5.00 CNY'")
        return cls.of(parts[0], parts[1].upper())

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @property
    def exponent(self) -> int:
        return CURRENCIES[self.currency]

    @property
    def amount(self) -> Decimal:
        """The amount in major units as an exact ``Decimal`` with the currency's decimals."""
        return Decimal(self.minor).scaleb(-self.exponent)

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"

    def _same(self, other: object) -> Money:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} with {other.currency}")
        return other

    def __add__(self, other: Money) -> Money:
        return Money(self.minor + self._same(other).minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        return Money(self.minor - self._same(other).minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def __mul__(self, factor: int) -> Money:
        if type(factor) is not int:
            raise TypeError("Money can only be multiplied by an int; use apply_rate for rates")
        return Money(self.minor * factor, self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        return self.minor < self._same(other).minor

    def __le__(self, other: Money) -> bool:
        return self.minor <= self._same(other).minor

    def __gt__(self, other: Money) -> bool:
        return self.minor > self._same(other).minor

    def __ge__(self, other: Money) -> bool:
        return self.minor >= self._same(other).minor

    def __bool__(self) -> bool:
        return self.minor != 0


class Rounding(enum.StrEnum):
    """How ``base × rate`` becomes whole minor units.  ``DOWN`` (toward zero) is the default."""

    DOWN = "down"
    HALF_UP = "half_up"
    HALF_EVEN = "half_even"
    UP = "up"


def apply_rate(base_minor: int, rate: Fraction, rounding: Rounding = Rounding.DOWN) -> int:
    """``round(base_minor × rate)`` to a whole minor unit with the given rounding mode.

    >>> apply_rate(5, Fraction(1, 2), Rounding.HALF_EVEN), apply_rate(15, Fraction(1, 10), Rounding.HALF_EVEN)
    (2, 2)
    """
    num = base_minor * rate.numerator
    den = rate.denominator
    if den == 1:
        return num
    q, r = divmod(abs(num), den)
    if r:
        if rounding is Rounding.UP:
            q += 1
        elif rounding is Rounding.HALF_UP:
            q += 2 * r >= den
        elif rounding is Rounding.HALF_EVEN:
            twice = 2 * r
            q += twice > den or (twice == den and q % 2 == 1)
    return q if num >= 0 else -q


#: most decimal places a rate may be written with (format_rate of 1/2**100 needs 100)
MAX_RATE_DECIMALS = 1000


def _decimal_rate(d: Decimal, value: object, field: str) -> Fraction:
    """A finite decimal as a Fraction, refusing exponents that would build giant integers
    (``Fraction("1e999999999")`` computes 10**999999999)."""
    if not d.is_finite():
        raise InvalidRate(f"rate {brief(value)} is not finite", field=field)
    if d and d.adjusted() > 2:  # >= 1000 (or 1000%): outside [0, 1] whatever the digits
        raise InvalidRate(f"rate {brief(value)} is outside [0, 1]", field=field)
    _, digit_tuple, exp = d.as_tuple()
    assert isinstance(exp, int)
    digits = "".join(map(str, digit_tuple))
    exp += len(digits) - len(digits.rstrip("0"))  # "0.10" has one decimal place, "1e-2000" 2000
    if digits.strip("0") and exp < -MAX_RATE_DECIMALS:
        raise InvalidRate(f"rate {brief(value)} has more than {MAX_RATE_DECIMALS} decimal places", field=field)
    return Fraction(d)


def parse_rate(value: Any, *, field: str = "rate") -> Fraction:
    """Parse an exact rate in [0, 1] from ``"10%"``, ``"0.1"``, ``"1/3"``, Decimal, Fraction or 0/1.

    >>> parse_rate("10%"), parse_rate("1/3"), parse_rate(Decimal("0.05"))
    (Fraction(1, 10), Fraction(1, 3), Fraction(1, 20))
    """
    if isinstance(value, float):
        raise FloatRejected(f"rate {value!r} is a float; write it as a string such as '10%'", field=field)
    if isinstance(value, bool):
        raise InvalidRate("a rate must be a number, not a bool", field=field)
    try:
        if isinstance(value, Fraction):
            rate = value
        elif isinstance(value, (int, Decimal)):
            rate = _decimal_rate(Decimal(value), value, field) if isinstance(value, Decimal) else Fraction(value)
        elif isinstance(value, str):
            text = value.strip()
            if text.endswith("%"):
                rate = _decimal_rate(Decimal(text[:-1].strip()), value, field) / 100
            elif "/" in text:
                rate = Fraction(text)
            else:
                rate = _decimal_rate(Decimal(text), value, field)
        else:
            raise InvalidRate(f"a rate must be a string, Decimal or Fraction, not {type(value).__name__}",
                              field=field)
    except (ValueError, ArithmeticError) as exc:
        if isinstance(exc, InvalidRate):
            raise
        raise InvalidRate(f"rate {brief(value)} is not an exact number", field=field) from None
    if not 0 <= rate <= 1:
        raise InvalidRate(f"rate {brief(value)} is outside [0, 1]", field=field)
    return rate


def format_rate(rate: Fraction) -> str:
    """Exact text for a rate: a terminating decimal when there is one, else ``p/q``.

    >>> format_rate(Fraction(1, 8)), format_rate(Fraction(1, 3)), format_rate(Fraction(0))
    ('0.125', '1/3', '0')
    """
    den = rate.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den != 1:
        return f"{rate.numerator}/{rate.denominator}"
    places = max(twos, fives)
    # integer digits, then the point placed by hand: exact at any length (no 28-digit Decimal context)
    scaled = abs(rate.numerator) * 10**places // rate.denominator
    sign = "-" if rate < 0 else ""
    if places == 0:
        return f"{sign}{scaled}"
    digits = str(scaled).rjust(places + 1, "0")
    whole, frac = digits[:-places], digits[-places:].rstrip("0")
    return f"{sign}{whole}.{frac}" if frac else f"{sign}{whole}"
