"""Money and rates: exact parsing, currencies, refusals, the one rounding rule, rate text."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cps_engine import (
    CURRENCIES,
    CurrencyMismatch,
    FloatRejected,
    InvalidMoney,
    InvalidRate,
    Money,
    Rounding,
    UnknownCurrency,
)
from cps_engine.money import MAX_MINOR, apply_rate, currency_exponent, format_rate, parse_amount, parse_rate

# ------------------------------------------------------------------ Money: parsing


def test_money_of_the_issue_example() -> None:
    m = Money.of("19.90", "CNY")
    assert m == Money(1990, "CNY")
    assert m.amount == Decimal("19.90") and str(m) == "19.90 CNY"


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [
        ("19.90", "CNY", 1990),
        ("19.9", "CNY", 1990),
        ("19.900", "CNY", 1990),  # trailing zeros are exact, not extra precision
        (" 5.50 ", "EUR", 550),
        ("1e2", "GBP", 10000),
        ("-3.10", "CNY", -310),
        ("0", "USD", 0),
        (Decimal("0.01"), "USD", 1),
        (Decimal("1234.5"), "HKD", 123450),
        (7, "SGD", 700),
        ("1200", "JPY", 1200),
        ("1200.0", "JPY", 1200),
        ("50000", "KRW", 50000),
        ("1.234", "KWD", 1234),
        ("0.001", "BHD", 1),
        ("99.99", "TWD", 9999),
    ],
)
def test_amounts_parse_exactly(value: object, currency: str, minor: int) -> None:
    assert parse_amount(value, currency) == minor
    assert Money.of(value, currency) == Money(minor, currency)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "exponent"),
    [("CNY", 2), ("USD", 2), ("EUR", 2), ("GBP", 2), ("HKD", 2), ("TWD", 2), ("SGD", 2),
     ("JPY", 0), ("KRW", 0), ("KWD", 3), ("BHD", 3)],
)
def test_currency_exponents(code: str, exponent: int) -> None:
    assert CURRENCIES[code] == exponent
    assert currency_exponent(code) == exponent
    assert Money(1, code).exponent == exponent
    assert Money(1, code).amount == Decimal(1).scaleb(-exponent)


def test_major_unit_text_follows_the_exponent() -> None:
    assert str(Money.of("1200", "JPY")) == "1200 JPY"
    assert str(Money.of("1.5", "KWD")) == "1.500 KWD"
    assert str(Money.of("-0.05", "CNY")) == "-0.05 CNY"


@pytest.mark.parametrize("code", ["XYZ", "", "EURO", None, 978])
def test_unknown_currency_is_refused(code: object) -> None:
    with pytest.raises(UnknownCurrency) as info:
        Money.of("1", code)  # type: ignore[arg-type]
    assert info.value.field == "currency"
    assert isinstance(info.value, ValueError)
    with pytest.raises(UnknownCurrency):
        Money(1, code)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "currency"),
    [("19.999", "CNY"), ("0.001", "USD"), ("1.5", "JPY"), ("0.1", "KRW"), ("0.0001", "KWD"), ("1.2345", "BHD"),
     (Decimal("0.005"), "EUR")],
)
def test_more_decimals_than_the_currency_allows_are_refused(value: object, currency: str) -> None:
    with pytest.raises(InvalidMoney, match="more decimals") as info:
        Money.of(value, currency)  # type: ignore[arg-type]
    assert info.value.field == "amount"


def test_a_stray_decimal_beyond_28_digits_is_not_rounded_away() -> None:
    with pytest.raises(InvalidMoney):
        parse_amount("1.0000000000000000000000000001", "CNY")  # 29 significant digits, 28 decimals


@pytest.mark.parametrize("value", ["abc", "1,000", "", "1.2.3", "NaN", "Infinity", "-inf", True, None, [1], b"1"])
def test_non_numbers_are_refused(value: object) -> None:
    with pytest.raises(InvalidMoney):
        Money.of(value, "CNY")  # type: ignore[arg-type]


def test_floats_are_refused_everywhere() -> None:
    assert issubclass(FloatRejected, TypeError) and issubclass(FloatRejected, ValueError)
    for call in (lambda: Money.of(19.9, "CNY"),  # type: ignore[arg-type]
                 lambda: Money(19.0, "CNY"),  # type: ignore[arg-type]
                 lambda: parse_amount(0.5, "USD"),
                 lambda: parse_rate(0.1),
                 lambda: parse_rate(1.0)):
        with pytest.raises(FloatRejected):
            call()
    with pytest.raises(TypeError):
        Money(100, "CNY") * 1.5  # type: ignore[operator]


def test_money_parse_of_a_float_says_float() -> None:
    with pytest.raises(FloatRejected):
        Money.parse(1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["1e999999999", "-1e999999999", "1e-999999999", "9" * 5000 + "e-4990"])
def test_giant_exponents_are_refused_without_building_giant_numbers(text: str) -> None:
    # each must fail fast by counting digits, never by computing 10**999999999 (that would hang)
    with pytest.raises(InvalidMoney) as info:
        parse_amount(text, "CNY")
    assert info.value.field == "amount"


@pytest.mark.parametrize("value", ["1e999999999", "1e-999999999", "1e999999999%", Decimal("1e-5000"),
                                   "1/" + "9" * 5000])
def test_rates_with_giant_exponents_are_refused_fast(value: object) -> None:
    # Fraction("1e999999999") would compute 10**999999999 and never return
    with pytest.raises(InvalidRate):
        parse_rate(value)


def test_rates_keep_their_exact_value_up_to_the_decimal_limit() -> None:
    assert parse_rate("1e-1000") == Fraction(1, 10**1000)
    assert parse_rate("0e-99999999") == 0 and parse_rate("100%") == 1


def test_zero_with_any_exponent_is_zero() -> None:
    assert parse_amount("0e99999999", "CNY") == parse_amount("-0.00", "CNY") == 0


def test_huge_amounts_beyond_int64_are_refused() -> None:
    assert MAX_MINOR == 2**63 - 1
    assert Money(MAX_MINOR, "CNY").minor == MAX_MINOR
    assert Money.of("92233720368547758.07", "CNY").minor == MAX_MINOR
    assert Money(-MAX_MINOR, "JPY").minor == -MAX_MINOR
    for bad in (lambda: Money(2**63, "CNY"), lambda: Money(-(2**63), "CNY"),
                lambda: Money.of("92233720368547758.08", "CNY"), lambda: Money.of("1e30", "JPY"),
                lambda: Money(MAX_MINOR, "CNY") + Money(1, "CNY"), lambda: Money(MAX_MINOR, "CNY") * 2):
        with pytest.raises(InvalidMoney):
            bad()


def test_negative_money_is_allowed() -> None:
    m = Money.of("-12.34", "CNY")
    assert m.minor == -1234 and -m == Money(1234, "CNY")
    assert Money(0, "CNY") - Money(5, "CNY") == Money(-5, "CNY")


def test_money_parse_text() -> None:
    assert Money.parse("5.00 USD") == Money(500, "USD")
    assert Money.parse("5 cny") == Money(500, "CNY")
    for bad in ("5.00", "USD 5.00", "5.00 USD extra", "5.001 USD"):
        with pytest.raises(InvalidMoney):
            Money.parse(bad)


# ------------------------------------------------------------------ Money: arithmetic


def test_arithmetic_within_one_currency() -> None:
    a, b = Money.of("19.90", "CNY"), Money.of("0.10", "CNY")
    assert a + b == Money(2000, "CNY") and a - b == Money(1980, "CNY")
    assert a * 3 == 3 * a == Money(5970, "CNY")
    assert b < a and a > b and a >= a and b <= b
    assert not Money.zero("CNY") and bool(a)


@pytest.mark.parametrize("op", ["add", "sub", "lt", "le", "gt", "ge"])
def test_arithmetic_across_currencies_is_refused(op: str) -> None:
    a, b = Money(100, "CNY"), Money(100, "USD")
    with pytest.raises(CurrencyMismatch):
        getattr(a, f"__{op}__")(b)
    assert issubclass(CurrencyMismatch, ValueError)


def test_money_does_not_combine_with_plain_numbers() -> None:
    with pytest.raises(TypeError):
        Money(1, "CNY") + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        Money(1, "CNY") * Decimal("1.5")  # type: ignore[operator]


minor_and_currency = st.tuples(st.integers(-(10**15), 10**15), st.sampled_from(sorted(CURRENCIES)))


@given(minor_and_currency, st.integers(-(10**15), 10**15))
def test_money_text_round_trips_and_adds_exactly(mc: tuple[int, str], other: int) -> None:
    minor, cur = mc
    m = Money(minor, cur)
    assert Money.parse(str(m)) == m
    assert Money.of(m.amount, cur) == m
    assert (m + Money(other, cur)).minor == minor + other
    assert (m - Money(other, cur)).minor == minor - other


# ------------------------------------------------------------------ rates


@pytest.mark.parametrize(
    ("value", "rate"),
    [
        ("10%", Fraction(1, 10)),
        (" 7 % ", Fraction(7, 100)),
        ("12.5%", Fraction(1, 8)),
        ("0.1", Fraction(1, 10)),
        ("0.125", Fraction(1, 8)),
        ("1/3", Fraction(1, 3)),
        ("100%", Fraction(1)),
        ("0%", Fraction(0)),
        (Decimal("0.05"), Fraction(1, 20)),
        (Fraction(2, 7), Fraction(2, 7)),
        (0, Fraction(0)),
        (1, Fraction(1)),
        ("33.333%", Fraction(33333, 100000)),
    ],
)
def test_rates_parse_exactly(value: object, rate: Fraction) -> None:
    parsed = parse_rate(value)
    assert parsed == rate and type(parsed) is Fraction


@pytest.mark.parametrize("value", ["101%", "-1%", "1.01", "-0.1", "3/2", Fraction(3, 2), Fraction(-1, 5), 2, -1,
                                   Decimal("-0.01"), Decimal("1.0000001")])
def test_rates_outside_zero_one_are_refused(value: object) -> None:
    with pytest.raises(InvalidRate, match=r"outside \[0, 1\]"):
        parse_rate(value)


@pytest.mark.parametrize("value", ["abc", "", "%", "1/0", "nan", "NaN%", "inf%", "ten percent", True, None, [1],
                                   Decimal("NaN")])
def test_non_rates_are_refused(value: object) -> None:
    with pytest.raises(InvalidRate) as info:
        parse_rate(value, field="rates.0")
    assert info.value.field == "rates.0"


def test_float_rates_are_refused_with_the_field() -> None:
    with pytest.raises(FloatRejected) as info:
        parse_rate(0.1, field="cap")
    assert info.value.field == "cap"
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


# apply_rate, computed by hand: base × rate, then each rounding mode.
#   1999 × 1/10 = 199.9   -> down 199, half_up 200, half_even 200, up 200
#   1995 × 1/10 = 199.5   -> tie: half_up 200, half_even 200 (199 is odd), down 199, up 200
#   1985 × 1/10 = 198.5   -> tie: half_up 199, half_even 198 (198 is even), down 198, up 199
#   5 × 1/2     = 2.5     -> tie: half_even 2
#   15 × 1/10   = 1.5     -> tie: half_even 2
#   12 × 1/8    = 1.5     -> tie: half_even 2;  20 × 1/8 = 2.5 -> half_even 2
#   7 × 1/8     = 0.875   -> down 0, others 1
#   1000 × 1/3  = 333.33… -> down/half 333, up 334;   2000 × 1/3 = 666.66… -> down 666, others 667
#   negative bases round symmetrically (down = toward zero, up and half_up away from zero)
APPLY_RATE_TABLE = [
    # base, rate, down, half_up, half_even, up
    (1999, Fraction(1, 10), 199, 200, 200, 200),
    (1995, Fraction(1, 10), 199, 200, 200, 200),
    (1985, Fraction(1, 10), 198, 199, 198, 199),
    (5, Fraction(1, 2), 2, 3, 2, 3),
    (15, Fraction(1, 10), 1, 2, 2, 2),
    (12, Fraction(1, 8), 1, 2, 2, 2),
    (20, Fraction(1, 8), 2, 3, 2, 3),
    (7, Fraction(1, 8), 0, 1, 1, 1),
    (1000, Fraction(1, 3), 333, 333, 333, 334),
    (2000, Fraction(1, 3), 666, 667, 667, 667),
    (100, Fraction(0), 0, 0, 0, 0),
    (100, Fraction(1), 100, 100, 100, 100),
    (0, Fraction(1, 3), 0, 0, 0, 0),
    (18999, Fraction(1, 10), 1899, 1900, 1900, 1900),
    (-1995, Fraction(1, 10), -199, -200, -200, -200),
    (-1985, Fraction(1, 10), -198, -199, -198, -199),
]


@pytest.mark.parametrize(("base", "rate", "down", "half_up", "half_even", "up"), APPLY_RATE_TABLE)
def test_apply_rate_table(base: int, rate: Fraction, down: int, half_up: int, half_even: int, up: int) -> None:
    assert apply_rate(base, rate) == down  # the default is down
    assert apply_rate(base, rate, Rounding.DOWN) == down
    assert apply_rate(base, rate, Rounding.HALF_UP) == half_up
    assert apply_rate(base, rate, Rounding.HALF_EVEN) == half_even
    assert apply_rate(base, rate, Rounding.UP) == up


def test_rounding_modes_by_name() -> None:
    assert {r.value for r in Rounding} == {"down", "half_up", "half_even", "up"}
    assert Rounding("half_even") is Rounding.HALF_EVEN


@given(st.integers(0, 10**15), st.fractions(0, 1, max_denominator=10**6))
def test_apply_rate_against_exact_arithmetic(base: int, rate: Fraction) -> None:
    exact = base * rate
    down = apply_rate(base, rate, Rounding.DOWN)
    assert down == math.floor(exact)
    assert apply_rate(base, rate, Rounding.UP) == math.ceil(exact)
    assert apply_rate(base, rate, Rounding.HALF_EVEN) == round(exact)  # Fraction.__round__ is half-even
    assert apply_rate(base, rate, Rounding.HALF_UP) == math.floor(exact + Fraction(1, 2))
    assert 0 <= down <= base


# ------------------------------------------------------------------ rate text


@pytest.mark.parametrize(
    ("rate", "text"),
    [(Fraction(1, 8), "0.125"), (Fraction(1, 3), "1/3"), (Fraction(0), "0"), (Fraction(1), "1"),
     (Fraction(1, 10), "0.1"), (Fraction(1, 10**7), "0.0000001"), (Fraction(2, 7), "2/7"), (Fraction(3, 20), "0.15")],
)
def test_format_rate_examples(rate: Fraction, text: str) -> None:
    assert format_rate(rate) == text


@given(st.fractions(0, 1, max_denominator=10**6))
def test_format_rate_round_trips(rate: Fraction) -> None:
    text = format_rate(rate)
    assert parse_rate(text) == rate
    den = rate.denominator
    while den % 2 == 0:
        den //= 2
    while den % 5 == 0:
        den //= 5
    assert ("/" in text) == (den != 1)  # a terminating decimal is written as a decimal
    assert "e" not in text.lower()


@given(st.integers(0, 60), st.integers(0, 60), st.integers(0, 10**6))
def test_format_rate_round_trips_long_decimals(twos: int, fives: int, num: int) -> None:
    den = 2**twos * 5**fives
    rate = Fraction(num % (den + 1), den)
    assert parse_rate(format_rate(rate)) == rate


@pytest.mark.parametrize("rate", [Fraction(1, 2**100), Fraction(1, 2**50), Fraction(123456789, 2**60)])
def test_format_rate_is_exact_for_long_terminating_decimals(rate: Fraction) -> None:
    assert parse_rate(format_rate(rate)) == rate
