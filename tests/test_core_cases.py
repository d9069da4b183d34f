"""Hand-checked example cases: ``tests/cases/*.toml``.

Each case holds the input events (JSON Lines text), a policy (a TOML table), an optional
``binding`` mode and the expected commission lines (order, payee, level, amount, currency), whose
arithmetic is worked out by hand in the file's leading comment.  ``merchant_net`` optionally pins
what the merchant keeps per order.
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cps_engine import BindingConfig, compute_events, load_events, load_policy
from tests.strategies import POLICY_KINDS

CASES = sorted((Path(__file__).parent / "cases").glob("*.toml"))


def read(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        return tomllib.load(fh)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case(path: Path) -> None:
    case = read(path)
    assert set(case) <= {"description", "events", "policy", "binding", "expected", "merchant_net"}, path.name
    assert path.read_text(encoding="utf-8").startswith("#"), "the hand computation comes first, as a comment"
    events = load_events(case["events"].strip().splitlines())
    policy = load_policy(case["policy"])
    binding = BindingConfig(**case.get("binding", {}))
    settlements = compute_events(events, policy, binding=binding)
    got = [(ln.order, ln.payee, ln.level, str(ln.amount.amount), ln.amount.currency)
           for s in settlements for ln in s.lines]
    expected = [(e["order"], e["payee"], e["level"], e["amount"], e["currency"]) for e in case.get("expected", [])]
    assert got == expected
    by_order = {s.order: s for s in settlements}
    for order_id, net in case.get("merchant_net", {}).items():
        s = by_order[order_id]
        assert s.merchant_net.amount == Decimal(net), order_id
        assert sum(ln.amount.minor for ln in s.lines) + s.merchant_net.minor == s.base.minor


def test_cases_cover_what_the_issue_asks_for() -> None:
    cases = [read(p) for p in CASES]
    assert len(cases) >= 8
    assert {c["policy"]["kind"] for c in cases} >= set(POLICY_KINDS)
    events = "\n".join(c["events"] for c in cases)
    assert '"currency":"JPY"' in events and '"currency":"KWD"' in events
    assert '"type":"refund"' in events and '"type":"bind"' in events
    assert any(c["policy"].get("self_purchase") for c in cases)
    assert any("binding" in c for c in cases)
    assert any(c["policy"].get("product_rates") and c["policy"].get("category_rates") for c in cases)
    specs = [r for c in cases for r in [c["policy"].get("rate", ""), *c["policy"].get("rates", [])]]
    assert any(s.endswith("CNY") for s in specs) and any(s.endswith("/item") for s in specs)
    assert max(c["events"].count('"type":"share"') for c in cases) >= 10  # a deep chain

