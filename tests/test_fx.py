"""FxTable: exact dated rates for reporting.  Lookups take the latest rate on or before the day,
a total converts exactly and is rounded once (half-even), floats are refused everywhere."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cps_engine.errors import FloatRejected, InvalidInput, InvalidRate, UnknownCurrency
from cps_engine.fx import FxRate, FxTable, MissingRate
from cps_engine.money import Money, currency_exponent

CODES = ("CNY", "JPY", "USD", "EUR", "KWD", "HKD")
D0 = date(2026, 3, 1)

days = st.integers(-400, 400).map(lambda k: D0 + timedelta(days=k))
# exact decimal rates from 1e-8 to about 1e6, as the strings an FX file holds
rates = st.builds(lambda n, k: str(Decimal(n).scaleb(-k)), st.integers(1, 10**9), st.integers(0, 8))


def _half_even(num: int, den: int) -> int:
    """num / den to the nearest integer, ties to even: written out, independent of ``round``."""
    if den < 0:
        num, den = -num, -den
    q, r = divmod(num, den)  # floor division: 0 <= r < den
    if 2 * r > den or (2 * r == den and q % 2 == 1):
        q += 1
    return q


def _reference(total_minor: int, base: str, quote: str, rate: str) -> int:
    exact = Fraction(total_minor) * Fraction(Decimal(rate)) * Fraction(10) ** (
        currency_exponent(quote) - currency_exponent(base))
    return _half_even(exact.numerator, exact.denominator)


def check_sum_conversion(table: FxTable, amounts: list[int], base: str, quote: str, rate: str, day: date) -> None:
    got = table.convert_total([Money(a, base) for a in amounts], quote, day)
    want = _reference(sum(amounts), base, quote, rate)
    assert got == Money(want, quote)
    assert table.convert(Money(sum(amounts), base), quote, day) == got  # the same as converting the sum


@given(amounts=st.lists(st.integers(-10**12, 10**12), max_size=40), rate=rates, day=days,
       base=st.sampled_from(CODES), quote=st.sampled_from(CODES))
def test_a_sum_converts_exactly_and_is_rounded_once(amounts: list[int], rate: str, day: date, base: str,
                                                    quote: str) -> None:
    if base == quote:
        rate = "1"
    table = FxTable.from_mapping({f"{base}/{quote}": {D0 - timedelta(days=400): rate}})
    check_sum_conversion(table, amounts, base, quote, rate, day)
    got = table.convert_total([Money(a, base) for a in amounts], quote, day).minor
    exact = table.convert_exact(Money(sum(amounts), base), quote, day)
    assert abs(got - exact) <= Fraction(1, 2)


def test_the_property_fails_on_line_by_line_rounding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation checks: converting each amount and adding the rounded results, or rounding half up,
    is caught by the check the property runs."""
    table = FxTable.from_mapping({"JPY/CNY": {D0: "0.0483"}})
    check_sum_conversion(table, [1, 1, 1], "JPY", "CNY", "0.0483", D0)  # 14.49 -> 14

    def line_by_line(self: FxTable, amounts: Any, quote: str, day: date) -> Money:
        return Money(sum(self.convert(m, quote, day).minor for m in amounts), quote)

    with monkeypatch.context() as m:
        m.setattr(FxTable, "convert_total", line_by_line)
        with pytest.raises(AssertionError):
            check_sum_conversion(table, [1, 1, 1], "JPY", "CNY", "0.0483", D0)  # 3 x 5 = 15
    half = FxTable.from_mapping({"JPY/CNY": {D0: "0.025"}})
    check_sum_conversion(half, [1], "JPY", "CNY", "0.025", D0)  # 2.5 fen -> 2 (ties to even)
    with monkeypatch.context() as m:
        m.setattr("cps_engine.fx.round_half_even", lambda x: int(x + Fraction(1, 2)) if x >= 0 else -int(
            -x + Fraction(1, 2)))
        with pytest.raises(AssertionError):
            check_sum_conversion(half, [1], "JPY", "CNY", "0.025", D0)


@given(minor=st.integers(-10**15, 10**15), code=st.sampled_from(CODES), day=days)
def test_a_currency_converts_to_itself_unchanged(minor: int, code: str, day: date) -> None:
    for table in (FxTable(), FxTable.from_mapping({"USD/CNY": {D0: "7.1"}})):
        assert table.rate(code, code, day).rate == 1
        assert table.convert(Money(minor, code), code, day) == Money(minor, code)
    # a rate of 1 between currencies with other exponents moves only the decimal point
    one = FxTable.from_mapping({"CNY/JPY": {D0: "1"}, "JPY/CNY": {D0: "1"}})
    assert one.convert(Money(250, "CNY"), "JPY", D0) == Money(2, "JPY")  # 2.50 -> 2 (half-even)
    assert one.convert(Money(7, "JPY"), "CNY", D0) == Money(700, "CNY")


@given(dated=st.dictionaries(days, rates, min_size=1, max_size=8), day=days)
@settings(max_examples=200)
def test_the_rate_is_the_latest_on_or_before_the_day(dated: dict[date, str], day: date) -> None:
    table = FxTable.from_mapping({"EUR/CNY": dated})
    earlier = [d for d in dated if d <= day]
    if not earlier:
        with pytest.raises(MissingRate) as err:
            table.rate("EUR", "CNY", day)
        text = str(err.value)
        assert "EUR->CNY" in text and day.isoformat() in text and min(dated).isoformat() in text
        assert isinstance(err.value, LookupError)
        assert (err.value.base, err.value.quote, err.value.day) == ("EUR", "CNY", day)
        return
    found = table.rate("EUR", "CNY", day)
    assert found.day == max(earlier) and found.rate == Decimal(dated[max(earlier)])


def test_a_missing_pair_names_both_currencies_and_the_day() -> None:
    table = FxTable.from_mapping({"EUR/CNY": {D0: "7.8"}})
    with pytest.raises(MissingRate, match=r"no CNY->EUR rate dated on or before 2026-03-01 \(none listed\)"):
        table.rate("CNY", "EUR", D0)  # the reverse direction is not derived
    with pytest.raises(MissingRate, match="USD->CNY"):
        table.convert(Money(1, "USD"), "CNY", D0)
    with pytest.raises(UnknownCurrency):
        table.rate("XXQ", "CNY", D0)


@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_floats_are_refused_everywhere(value: float) -> None:
    for build in (lambda: FxTable.from_mapping({"EUR/CNY": {D0: value}}),
                  lambda: FxTable.from_rows([{"date": "2026-03-01", "base": "EUR", "quote": "CNY", "rate": value}])):
        with pytest.raises(FloatRejected) as err:
            build()
        assert isinstance(err.value, TypeError) and "float" in str(err.value)


def test_a_json_number_with_a_fraction_is_refused(tmp_path: Path) -> None:
    doc = '[{"date": "2026-03-01", "base": "EUR", "quote": "CNY", "rate": 7.8123}]'
    with pytest.raises(FloatRejected, match=r"7\.8123"):
        FxTable.from_json(doc)
    ok = FxTable.from_json(doc.replace("7.8123", '"7.8123"'))
    assert ok.rate("EUR", "CNY", D0).rate == Decimal("7.8123")
    assert FxTable.from_json('{"EUR/CNY": {"2026-03-01": 8}}').rate("EUR", "CNY", D0).rate == 8  # an int is exact
    path = tmp_path / "rates.json"
    path.write_text(json.dumps([r.as_row() for r in ok]), encoding="utf-8")
    assert list(FxTable.load(path)) == list(ok)


def test_csv_files_load_and_bad_rows_name_their_line(tmp_path: Path) -> None:
    path = tmp_path / "rates.csv"
    path.write_text("\ufeffdate,base,quote,rate,source\n2026-03-01,EUR,CNY,7.8123,ecb\n2026-03-02,EUR,CNY,7.9,ecb\n"
                    "2026-03-01,USD,CNY,7.1,ecb\n", encoding="utf-8")
    table = FxTable.load(path)
    assert len(table) == 3 and table.rate("EUR", "CNY", date(2026, 3, 5)).rate == Decimal("7.9")
    assert [r.as_row()["rate"] for r in table] == ["7.8123", "7.9", "7.1"]
    cases = {
        "date,base,quote\n": (InvalidInput, "missing: rate"),
        "date,base,quote,rate\n2026-03-01,EUR,CNY,seven\n": (InvalidRate, "line 2.*not a decimal"),
        "date,base,quote,rate\n2026-03-01,EUR,CNY,7\n2026-03-01,EUR,XXQ,7\n": (UnknownCurrency, "line 3"),
        "date,base,quote,rate\n2026-03-01,EUR,CNY,0\n": (InvalidRate, "above 0"),
        "date,base,quote,rate\n2026-03-01,EUR,CNY,-7\n": (InvalidRate, "above 0"),
        "date,base,quote,rate\n2026-03-01,EUR,CNY,1e999999999\n": (InvalidRate, "outside"),
        "date,base,quote,rate\n2026-03-01,EUR,CNY,NaN\n": (InvalidRate, "finite"),
        "date,base,quote,rate\n2026-03-01,EUR,CNY,0." + "0" * 5 + "1" * 40 + "\n": (InvalidRate, "decimal places"),
        "date,base,quote,rate\n01/03/2026,EUR,CNY,7\n": (InvalidInput, "YYYY-MM-DD"),
        "date,base,quote,rate\n2026-03-01,EUR,CNY,7\n2026-03-01,EUR,CNY,8\n": (InvalidRate, "listed twice"),
        "date,base,quote,rate\n2026-03-01,EUR,EUR,2\n": (InvalidRate, "itself"),
        "date,base,quote,rate\n2026-03-01,EUR,,7\n": (InvalidInput, "'quote' is missing"),
    }
    for text, (error, message) in cases.items():
        path.write_text(text, encoding="utf-8")
        with pytest.raises(error, match=message):
            FxTable.from_csv(path)
    path.write_text("date,base,quote,rate\n2026-03-01,EUR,CNY,7\n2026-03-01,EUR,CNY,7.00\n", encoding="utf-8")
    assert len(FxTable.from_csv(path)) == 1  # the same rate twice is one rate


def test_rates_are_dated_by_day_and_kept_exact() -> None:
    with pytest.raises(InvalidInput, match="by day"):
        FxTable.from_mapping({"EUR/CNY": {datetime(2026, 3, 1, 12): "7.8"}})
    with pytest.raises(TypeError):
        FxTable().rate("EUR", "CNY", datetime(2026, 3, 1, 12))  # type: ignore[arg-type]
    table = FxTable.from_mapping({("EUR", "CNY"): {D0: Decimal("7.81230")}, "KWD/JPY": {"2026-03-01": "1E+2"}})
    assert table.rate("EUR", "CNY", D0) == FxRate(D0, "EUR", "CNY", Decimal("7.8123"))
    assert str(table.rate("KWD", "JPY", D0).rate) == "100"
    # 1.234 KWD (3 decimals) at 100 = 123.4 JPY (no decimals): 123 (half-even)
    assert table.convert(Money(1234, "KWD"), "JPY", D0) == Money(123, "JPY")
    assert table.rate("KWD", "JPY", D0).minor_factor() == Fraction(1, 10)
    with pytest.raises(InvalidInput, match="BASE/QUOTE"):
        FxTable.from_mapping({"EURCNY": {D0: "7.8"}})
    with pytest.raises(TypeError):
        FxTable([{"date": D0}])  # type: ignore[list-item]
    assert "EUR/CNY" in repr(table)
