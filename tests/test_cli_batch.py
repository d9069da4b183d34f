"""``cps-engine compute`` runs on the batch path and writes the bytes the per-order engine wrote.

The reference is the old command's body: ``write_lines(compute_events(...))``.  Compared on the
bundled sample under every built-in policy kind (options included), and on a history of hostile
ids (formula prefixes, separators, quotes, the path separator, bidi and CJK text).
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cps_engine import compute_events, load_events, load_policy
from cps_engine.cli import app, sample_path, write_lines

T0 = datetime(2026, 3, 1, tzinfo=UTC)
HALF = [f"u{i:04d}" for i in range(0, 3000, 2)]  # every other person of the sample

POLICIES: list[dict[str, Any]] = [
    {"kind": "first_sharer", "rate": "10%"},
    {"kind": "first_sharer", "rate": "3.00 CNY", "distributors": [*HALF, "=1+1"]},
    {"kind": "last_sharer", "rate": "8%", "self_purchase": True, "rounding": "half_even"},
    {"kind": "capped_multilevel", "rates": ["10%", "5%", "2%"], "cap": "15%"},
    {"kind": "capped_multilevel", "rates": ["1/3", "0.50 CNY/item"], "cap": "20%", "ineligible": "keep_level",
     "distributors": [*HALF, "u1366", "a,b", "@sum"], "payee_rates": {"u1366": "12%", "u00010": "1%"},
     "rounding": "up"},
    {"kind": "compliant", "profile": "cn", "rates": ["10%", "5%"], "cap": "12%", "self_purchase_rate": "3%"},
    {"kind": "linear", "rate": "9%", "max_depth": 5},
    {"kind": "position_based", "rate": "10%", "category_rates": {"food": "6%"}, "product_rates": {"A1": "1/7"}},
    {"kind": "time_decay", "rate": "10%", "half_life_days": "7", "self_purchase": True},
]


def _reference(events: Path, policy: dict[str, Any], fmt: str) -> str:
    out = io.StringIO()
    write_lines(compute_events(load_events(events), load_policy(policy)), fmt, out)
    return out.getvalue()


def _cli(tmp: Path, events: Path, policy: dict[str, Any], fmt: str) -> str:
    pol = tmp / "policy.json"
    pol.write_text(json.dumps(policy), encoding="utf-8")
    target = tmp / f"out.{fmt}"
    result = CliRunner().invoke(app, ["compute", "--events", str(events), "--policy", str(pol), "--format", fmt,
                                      "-o", str(target)])
    assert result.exit_code == 0, result.output
    return target.read_bytes().decode("utf-8")


def _hostile(tmp: Path) -> Path:
    ids = ["=1+1", "a,b", 'q"uote', "s/1", "名字", "x\u202ey", "@sum", "-2", "+3", " lead", "u00010"]
    recs: list[dict[str, Any]] = []
    prev: str | None = None
    for i, who in enumerate(ids):
        sid = f"{who}#{i}"
        recs.append({"type": "share", "id": sid, "sharer": who, "parent": prev,
                     "at": (T0 + timedelta(hours=i)).isoformat()})
        prev = sid if i % 4 != 3 else None
    recs.append({"type": "bind", "id": "=HYPERLINK(1)", "user": "buyer,1", "upline": "@sum",
                 "at": T0.isoformat()})
    for i in range(len(ids)):
        recs.append({"type": "order", "id": f"=o{i},\"x\"", "buyer": ids[(i * 3) % len(ids)],
                     "share": f"{ids[i]}#{i}", "amount": f"{(i + 1) * 37}.{i:02d}", "currency": "CNY",
                     "at": (T0 + timedelta(days=2, hours=i)).isoformat(),
                     "lines": [{"sku": "A1", "category": "food", "quantity": i + 1, "unit_price": "1.00"}]})
    recs.append({"type": "order", "id": "-bound", "buyer": "buyer,1", "amount": "10.00", "currency": "CNY",
                 "at": (T0 + timedelta(days=3)).isoformat()})
    recs.append({"type": "refund", "id": "r1", "order": "=o2,\"x\"", "amount": "5.00",
                 "at": (T0 + timedelta(days=4)).isoformat()})
    path = tmp / "hostile.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    return path


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p["kind"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_compute_writes_the_per_order_bytes_on_the_sample(tmp_path: Path, policy: dict[str, Any], fmt: str) -> None:
    got = _cli(tmp_path, sample_path(), policy, fmt)
    assert got == _reference(sample_path(), policy, fmt)
    assert got.count("\n") > 100


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p["kind"])
def test_compute_writes_the_per_order_bytes_on_hostile_ids(tmp_path: Path, policy: dict[str, Any]) -> None:
    events = _hostile(tmp_path)
    for fmt in ("csv", "jsonl"):
        got = _cli(tmp_path, events, policy, fmt)
        assert got == _reference(events, policy, fmt)
    assert "'=o" in _cli(tmp_path, events, POLICIES[0], "csv")  # formula cells neutralised


def test_the_comparison_catches_a_wrong_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation check: a batch path that drops the links read before an ineligible payee differs."""
    from cps_engine.batch import _kernels

    monkeypatch.setattr(_kernels, "_paths", lambda pl, ga, cols: _kernels.Strings.of(["x"] * len(pl.pos)))
    policy = POLICIES[3]
    assert _cli(tmp_path, sample_path(), policy, "csv") != _reference(sample_path(), policy, "csv")
