"""The currency table is the published ISO 4217 list (every code with a minor unit), pinned to the
maintained ``iso4217`` package: regenerate it with ``tools/update_currencies.py`` when that moves."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from cps_engine import CURRENCIES, Money
from cps_engine.currencies import ISO4217, ISO4217_SOURCE
from cps_engine.errors import UnknownCurrency

ROOT = Path(__file__).resolve().parents[1]


def test_the_table_is_the_generated_one_from_the_installed_source() -> None:
    iso4217 = pytest.importorskip("iso4217")
    spec = importlib.util.spec_from_file_location("update_currencies", ROOT / "tools" / "update_currencies.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    sys.modules["update_currencies"] = tool
    spec.loader.exec_module(tool)
    assert tool.table() == ISO4217, "tools/update_currencies.py would change the table: regenerate it"
    assert f"iso4217 {iso4217.__version__}" == ISO4217_SOURCE
    assert (ROOT / "src" / "cps_engine" / "currencies.py").read_text(encoding="utf-8") == tool.render()


@pytest.mark.parametrize(("code", "exponent"), [
    ("CNY", 2), ("USD", 2), ("JPY", 0), ("KRW", 0), ("KWD", 3), ("BHD", 3), ("CLF", 4), ("UYW", 4),
    ("NGN", 2), ("PKR", 2), ("EGP", 2), ("ARS", 2), ("COP", 2), ("PEN", 2), ("UAH", 2), ("KZT", 2), ("BDT", 2)])
def test_currencies_that_were_refused_are_known_with_their_minor_unit(code: str, exponent: int) -> None:
    assert CURRENCIES[code] == exponent
    assert Money.of("1", code).minor == 10**exponent


@pytest.mark.parametrize("code", ["XAU", "XDR", "XXX", "XTS", "ABC", "cny"])
def test_codes_without_a_minor_unit_or_not_in_the_list_are_refused(code: str) -> None:
    with pytest.raises(UnknownCurrency):
        Money.of("1", code)
